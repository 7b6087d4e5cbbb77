package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// conformanceCase is one behaviour every backend must show.
type conformanceCase struct {
	name string
	run  func(t *testing.T, e *env)
}

// TestConformance runs every case against every backend. The backends run in
// parallel, each with one server (or cluster) for all its cases; the cases of
// one backend run one after the other on a flushed database.
func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			newEnv := b.setup(t)
			for _, c := range slices.Concat(conformanceCases, orderingCases) {
				t.Run(c.name, func(t *testing.T) { c.run(t, newEnv(t)) })
			}
		})
	}
}

var conformanceCases = []conformanceCase{
	{"lifecycle", testLifecycle},
	{"enqueue_rejects_duplicate_and_bad_name", testEnqueueRejects},
	{"enqueue_rejects_id_of_another_queue", testEnqueueForeignID},
	{"enqueue_rounds_timeout_up_to_a_millisecond", testTimeoutRounding},
	{"fifo_within_priority", testFIFO},
	{"priority_order", testPriority},
	{"fetch_at_most_n", testFetchAtMostN},
	{"pause_and_resume", testPause},
	{"wake_on_enqueue_into_empty_queue", testWakeOnEnqueue},
	{"complete_publishes_done_and_stores_target", testCompleteTarget},
	{"fencing_after_reap", testFencing},
	{"heartbeat_extends_lease", testHeartbeat},
	{"reap_at_max_attempts_fails", testReapMaxAttempts},
	{"reap_of_leased_but_not_started", testReapLeasedNotStarted},
	{"reap_of_canceling_job_ends_canceled", testReapCanceling},
	{"progress_and_checkpoint", testProgress},
	{"fail_retry_then_promote", testFailRetry},
	{"fail_permanent", testFailPermanent},
	{"fail_attempts_exhausted", testFailExhausted},
	{"fail_requeue_keeps_attempt", testFailRequeue},
	{"fail_return_keeps_place", testFailReturn},
	{"fail_canceled_mode", testFailCanceledMode},
	{"scheduled_job", testScheduled},
	{"cancel_queued", testCancelQueued},
	{"cancel_scheduled", testCancelScheduled},
	{"cancel_leased_not_started", testCancelLeasedNotStarted},
	{"cancel_running", testCancelRunning},
	{"cancel_finished_and_unknown", testCancelConflicts},
	{"retry_failed_and_canceled", testRetry},
	{"expire_after_retention", testExpire},
	{"throughput_counts_finished_jobs", testThroughput},
	{"worker_presence", testPresence},
	{"maintainer", testMaintainer},
	{"concurrent_fetch_exactly_once", testConcurrentFetch},
	{"complete_many_in_one_call", testCompleteMany},
	{"memory_bounded_after_many_jobs", testMemoryBounded},
	{"concurrent_enqueues_share_batches", testConcurrentEnqueue},
	{"handoff_to_an_idle_queue", testHandoff},
	{"tokens_hash_is_a_hash_table_while_leases_are_held", testTokensHash},
}

// testTokensHash: while any lease is held, the tokens hash carries its
// marker and is a hash table, never a listpack scanned per lookup (on real
// Redis; miniredis has no encodings); once the last lease ends, by any path,
// the key is gone. A hash that holds one token and no marker (left by a
// release before the marker) is not deleted.
func testTokensHash(t *testing.T, e *env) {
	const q = "tokens"
	for range 4 {
		e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 2})
	}
	ds := e.fetch(q, 3)
	if len(ds) != 3 {
		t.Fatalf("fetched %d, want 3", len(ds))
	}
	wantHeld := func(n int) {
		t.Helper()
		h, err := e.rdb.HGetAll(e.ctx, queue.TokensKey(q)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != n+1 || len(h[queue.TokensMarker]) <= 64 {
			t.Fatalf("tokens hash = %v, want %d tokens and the marker (> 64 bytes)", h, n)
		}
		if e.mr == nil {
			if enc, err := e.rdb.ObjectEncoding(e.ctx, queue.TokensKey(q)).Result(); err != nil || enc != "hashtable" {
				t.Errorf("tokens hash encoding = %q, %v; want hashtable", enc, err)
			}
		}
	}
	wantHeld(3)
	e.complete(ds[0], queue.Outcome{})
	wantHeld(2)
	if st := e.fail(ds[1], queue.FailRequeue, time.Time{}, "shutdown"); st != "queued" {
		t.Fatalf("Fail(requeue) = %q", st)
	}
	wantHeld(1)
	if res, err := e.q.Cancel(e.ctx, ds[2].ID); err != nil || res != queue.Canceling {
		t.Fatalf("Cancel = %v, %v", res, err)
	}
	e.fail(ds[2], queue.FailCanceled, time.Time{}, "canceled")
	if e.exists(queue.TokensKey(q)) {
		t.Errorf("tokens hash left after the last lease ended")
	}
	// A lease taken and reaped: the reaper ends the last lease.
	d := e.fetch(q, 1)
	if len(d) != 1 {
		t.Fatalf("fetched %d, want 1", len(d))
	}
	wantHeld(1)
	e.clock.Advance(testLease * 2)
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	if e.exists(queue.TokensKey(q)) {
		t.Errorf("tokens hash left after the reaper ended the last lease")
	}
	// A hash with one token of a lease taken before the marker existed.
	if err := e.rdb.HSet(e.ctx, queue.TokensKey(q), q+".01ARZ3NDEKTSV4RRFFQ69G5FAV", "1").Err(); err != nil {
		t.Fatal(err)
	}
	d = e.fetch(q, 1)
	if len(d) != 1 {
		t.Fatalf("fetched %d, want 1", len(d))
	}
	e.complete(d[0], queue.Outcome{})
	if n, err := e.rdb.HLen(e.ctx, queue.TokensKey(q)).Result(); err != nil || n != 2 {
		t.Errorf("tokens hash holds %d fields (%v), want the old token and the marker", n, err)
	}
}

// testMemoryBounded passes many jobs through and checks that, after
// retention, only what retention promises is left: one tombstone per job
// (with a TTL), the per-minute counters (with a TTL), and the two keys that
// never expire (the queue registry and the fencing counter).
func testMemoryBounded(t *testing.T, e *env) {
	const q = "mass"
	n := 20000
	if e.mr != nil || testing.Short() {
		n = 2000
	}
	baseline := e.keys()
	for start := 0; start < n; start += 500 {
		for range 500 {
			e.enqueue(queue.NewJob{Queue: q, Kind: "k", Args: []byte(`{"payload":"xxxxxxxxxxxxxxxx"}`)})
		}
		ds := e.fetch(q, 500)
		cs := make([]queue.Completion, len(ds))
		for i, d := range ds {
			cs[i] = queue.Completion{D: d, O: queue.Outcome{Result: []byte(`{"ok":true}`)}}
		}
		if _, err := e.q.CompleteMany(e.ctx, q, cs); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(testRetention + time.Second)
	for {
		k, err := e.q.Expire(e.ctx, q, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	var tombs, other []string
	for _, k := range e.keys() {
		switch {
		case slices.Contains(baseline, k):
		case strings.HasSuffix(k, ":tomb"):
			tombs = append(tombs, k)
		default:
			other = append(other, k)
		}
	}
	if len(tombs) != n {
		t.Errorf("%d tombstones after %d jobs, want %d", len(tombs), n, n)
	}
	want := []string{queue.QueuesKey(), queue.SeqKey(q)}
	for _, k := range other {
		if slices.Contains(want, k) || strings.Contains(k, ":tput:") {
			continue
		}
		t.Errorf("key %s left after every job expired", k)
	}
	e.wantCounts(q, map[string]int{})
}

// testCompleteMany records a batch in one call: each completion is fenced on
// its own, and the throughput counter counts only those recorded.
func testCompleteMany(t *testing.T, e *env) {
	const q = "batch"
	var ids []string
	for range 5 {
		ids = append(ids, e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID)
	}
	ds := e.fetch(q, 5)
	if len(ds) != 5 {
		t.Fatalf("fetched %d, want 5", len(ds))
	}
	stale := *ds[2]
	stale.Token = "999999"
	cs := []queue.Completion{}
	for i, d := range ds {
		if i == 2 {
			d = &stale
		}
		cs = append(cs, queue.Completion{D: d, O: queue.Outcome{Result: []byte(fmt.Sprintf(`{"n":%d}`, i))}})
	}
	errs, err := e.q.CompleteMany(e.ctx, q, cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if i == 2 {
			if !errors.Is(err, queue.ErrLeaseLost) {
				t.Errorf("stale completion %d = %v, want ErrLeaseLost", i, err)
			}
			e.wantState(q, ds[i].ID, "running")
			continue
		}
		if err != nil {
			t.Errorf("completion %d = %v", i, err)
		}
		e.wantFields(q, ds[i].ID, map[string]string{"state": "succeeded", "result": fmt.Sprintf(`{"n":%d}`, i)})
	}
	tp, err := e.q.Throughput(e.ctx, q, 1)
	if err != nil || len(tp) != 1 || tp[0].Succeeded != 4 {
		t.Errorf("throughput = %+v, %v; want 4 succeeded", tp, err)
	}
	if _, err := e.q.CompleteMany(e.ctx, "other", cs[:1]); err == nil {
		t.Error("a batch with a delivery of another queue was accepted")
	}
	_ = ids
}

func testLifecycle(t *testing.T, e *env) {
	const q = "emails"
	done := e.subscribe(queue.ChannelDone)
	created := e.nowMS()
	en := e.enqueue(queue.NewJob{Queue: q, Kind: "send", Version: 3, Args: []byte(`{"to":"a@b.c"}`),
		MaxAttempts: 4, Timeout: 90 * time.Second, Target: "images"})
	if en.State != "queued" || !en.RunAt.IsZero() || en.CreatedAt.UnixMilli() != created {
		t.Errorf("Enqueue = %+v, want state queued, zero RunAt, CreatedAt %d", en, created)
	}
	if got, ok := queue.QueueOf(en.ID); !ok || got != q {
		t.Errorf("QueueOf(%s) = %q, %v", en.ID, got, ok)
	}
	id := en.ID
	// The key tells the id and queue: the record does not repeat them.
	e.wantFields(q, id, map[string]string{"id": "", "queue": "", "state": "queued", "kind": "send",
		"ver": "3", "args": `{"to":"a@b.c"}`, "attempt": "0", "max": "4", "timeout": "90000",
		"target_kind": "images", "created": itoa(created), "started": "", "finished": "",
		"expires": "", "result": "", "target": ""})
	e.wantState(q, id, "queued")
	e.wantCounts(q, map[string]int{"queued": 1})
	if names, err := e.q.Names(e.ctx); err != nil || len(names) != 1 || names[0] != q {
		t.Errorf("Names = %v, %v; want [%s]", names, err, q)
	}

	e.clock.Advance(time.Second)
	started := e.nowMS()
	ds := e.fetch(q, 5)
	if len(ds) != 1 {
		t.Fatalf("Fetch returned %d deliveries, want 1", len(ds))
	}
	d := ds[0]
	if d.ID != id || d.Queue != q || d.Kind != "send" || d.Version != 3 || string(d.Args) != `{"to":"a@b.c"}` ||
		d.Attempt != 1 || d.MaxAttempts != 4 || d.Timeout != 90*time.Second || d.Checkpoint != nil || d.Token == "" {
		t.Errorf("delivery = %+v", *d)
	}
	e.wantFields(q, id, map[string]string{"state": "running", "attempt": "1", "started": itoa(started),
		"finished": ""})
	e.wantState(q, id, "running")
	e.wantCounts(q, map[string]int{"running": 1})
	e.wantScore(queue.LeasedKey(q), id, started+testLease.Milliseconds())
	e.wantNotIn(queue.ReadyKey(q), id)

	e.clock.Advance(time.Second)
	finished := e.nowMS()
	e.complete(d, queue.Outcome{Result: []byte(`{"sent":true}`)})
	done.expect(id)
	e.wantFields(q, id, map[string]string{"state": "succeeded", "attempt": "1", "result": `{"sent":true}`,
		"finished": itoa(finished), "expires": itoa(finished + testRetention.Milliseconds()),
		"pct": "100", "target": ""})
	e.wantState(q, id, "succeeded")
	e.wantCounts(q, map[string]int{"succeeded": 1})
	e.wantNotIn(queue.LeasedKey(q), id)
	e.wantScore(queue.ExpiringKey(q), id, finished+testRetention.Milliseconds())
	if e.exists(queue.TokensKey(q)) || e.exists(queue.TargetKey(q, id)) {
		t.Errorf("tokens or target key left after a completion without target")
	}
	if err := e.q.Complete(e.ctx, d, queue.Outcome{}); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("second Complete = %v, want ErrLeaseLost", err)
	}
	e.fetchNone(q)
}

func testEnqueueRejects(t *testing.T, e *env) {
	const q = "dups"
	en := e.enqueue(queue.NewJob{Queue: q, Kind: "k", Args: []byte(`1`)})
	if _, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: en.ID, Queue: q, Kind: "other", Args: []byte(`2`)}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("Enqueue of an existing id = %v, want ErrExists", err)
	}
	e.wantFields(q, en.ID, map[string]string{"kind": "k", "args": "1", "max": "1", "ver": "1"})
	e.wantCounts(q, map[string]int{"queued": 1})
	// The same write again (what a client's retry after a lost reply
	// sends: same id and kind, same millisecond) finds this call's own job:
	// accepted as it was, stored once.
	again, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: en.ID, Queue: q, Kind: "k", Args: []byte(`1`)})
	if err != nil || again.ID != en.ID || again.State != "queued" || !again.CreatedAt.Equal(en.CreatedAt) {
		t.Errorf("the same write again = %+v, %v; want %+v", again, err, en)
	}
	e.wantCounts(q, map[string]int{"queued": 1})
	// Another call with the id and the kind in the same millisecond, but
	// other args, is not that write: refused, the record untouched.
	if _, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: en.ID, Queue: q, Kind: "k", Args: []byte(`2`)}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("Enqueue of an existing id with other args = %v, want ErrExists", err)
	}
	e.wantFields(q, en.ID, map[string]string{"kind": "k", "args": "1"})
	// So is one that differs in any other field the enqueue writes.
	for _, other := range []queue.NewJob{{Priority: 5}, {MaxAttempts: 9}, {Timeout: time.Minute},
		{RunAt: e.clock.Now().Add(time.Hour)}, {OrderingKey: "o"}, {Version: 2}, {Parent: "p"}} {
		other.ID, other.Queue, other.Kind, other.Args = en.ID, q, "k", []byte(`1`)
		if _, err := e.q.Enqueue(e.ctx, other); !errors.Is(err, queue.ErrExists) {
			t.Errorf("Enqueue of an existing id, differing in %+v = %v, want ErrExists", other, err)
		}
	}
	e.wantFields(q, en.ID, map[string]string{"kind": "k", "args": "1", "prio": "", "max": "1", "run_at": "", "okey": ""})
	e.wantCounts(q, map[string]int{"queued": 1})
	// A scheduled job's write again is its own too.
	sch := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Hour)})
	again, err = e.q.Enqueue(e.ctx, queue.NewJob{ID: sch.ID, Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Hour)})
	if err != nil || again.State != "scheduled" || !again.RunAt.Equal(sch.RunAt) {
		t.Errorf("the same scheduled write again = %+v, %v; want %+v", again, err, sch)
	}
	if _, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: sch.ID, Queue: q, Kind: "k", RunAt: e.clock.Now().Add(2 * time.Hour)}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("Enqueue of a scheduled id with another run_at = %v, want ErrExists", err)
	}
	if _, err := e.q.Cancel(e.ctx, sch.ID); err != nil {
		t.Fatal(err)
	}
	// Once it runs, its queue's ready set is empty: its id is still taken.
	e.fetchOne(q, en.ID)
	if _, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: en.ID, Queue: q, Kind: "other", Args: []byte(`2`)}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("Enqueue of the id of a running job = %v, want ErrExists", err)
	}
	e.wantFields(q, en.ID, map[string]string{"kind": "k", "state": "running"})
	e.wantCounts(q, map[string]int{"running": 1, "canceled": 1})
	for _, bad := range []string{"", "Bad", "a.b", "a{b}", strings.Repeat("x", 65)} {
		if _, err := e.q.Enqueue(e.ctx, queue.NewJob{Queue: bad, Kind: "k"}); !errors.Is(err, queue.ErrBadQueueName) {
			t.Errorf("Enqueue into %q = %v, want ErrBadQueueName", bad, err)
		}
	}
	if err := e.q.SetPaused(e.ctx, "Bad", true); !errors.Is(err, queue.ErrBadQueueName) {
		t.Errorf("SetPaused(Bad) = %v, want ErrBadQueueName", err)
	}
}

func testEnqueueForeignID(t *testing.T, e *env) {
	const q = "mine"
	// A caller-chosen id of this queue is accepted and found by id.
	own := e.q.NewID(q)
	if en := e.enqueue(queue.NewJob{ID: own, Queue: q, Kind: "k"}); en.ID != own {
		t.Fatalf("Enqueue kept id %s, want %s", en.ID, own)
	}
	if res, err := e.q.Cancel(e.ctx, own); err != nil || res != queue.Canceled {
		t.Errorf("Cancel(%s) = %v, %v", own, res, err)
	}
	// Every by-id operation (Cancel, Retry, the status store) finds a job
	// through the queue encoded in its id: a job stored under another
	// queue's name, or under an id that encodes no queue, could never be
	// found again.
	for _, id := range []string{e.q.NewID("theirs"), "custom-id", q + ".not-a-ulid"} {
		if en, err := e.q.Enqueue(e.ctx, queue.NewJob{ID: id, Queue: q, Kind: "k"}); err == nil {
			t.Errorf("Enqueue(id %q, queue %s) = %+v, want an error: QueueOf(id) is not %s", id, q, en, q)
			if _, err := e.q.Cancel(e.ctx, id); err != nil {
				t.Errorf("  ... and the job cannot be canceled: Cancel = %v", err)
			}
		}
	}
}

// testTimeoutRounding: a job's timeout is kept in whole milliseconds,
// rounded up, so that a timeout under a millisecond still bounds the
// attempt instead of reading as none.
func testTimeoutRounding(t *testing.T, e *env) {
	const q = "timeouts"
	for _, c := range []struct{ set, want time.Duration }{
		{time.Nanosecond, time.Millisecond},
		{100 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{90 * time.Second, 90 * time.Second},
		{0, 0},
	} {
		en := e.enqueue(queue.NewJob{Queue: q, Kind: "k", Timeout: c.set})
		if d := e.fetchOne(q, en.ID); d.Timeout != c.want {
			t.Errorf("timeout %v: delivered with %v, want %v", c.set, d.Timeout, c.want)
		}
	}
}

func testFIFO(t *testing.T, e *env) {
	const q = "fifo"
	var ids []string
	for i := range 6 {
		if i == 3 {
			e.clock.Advance(time.Millisecond) // both orders: same ms and later ms
		}
		ids = append(ids, e.enqueue(queue.NewJob{Queue: q, Kind: "k", Priority: 2}).ID)
	}
	ds := e.fetch(q, 10)
	var got []string
	for _, d := range ds {
		got = append(got, d.ID)
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("fetch order\n got %v\nwant %v", got, ids)
	}
}

func testPriority(t *testing.T, e *env) {
	const q = "prio"
	type job struct {
		name string
		prio int
	}
	jobs := []job{{"low", 0}, {"high1", 10}, {"mid", 5}, {"neg", -3}, {"high2", 10}, {"low2", 0}}
	byID := map[string]string{}
	for i, j := range jobs {
		e.clock.Advance(time.Duration(i) * time.Millisecond)
		byID[e.enqueue(queue.NewJob{Queue: q, Kind: j.name, Priority: j.prio}).ID] = j.name
	}
	// A job waited for has ahead of it the ready jobs of a higher priority
	// or of its own (which came before it), not the others.
	for _, c := range []struct {
		prio int
		want int64
	}{{11, 0}, {10, 2}, {7, 2}, {5, 3}, {0, 5}, {-3, 6}} {
		if n, _, err := e.q.Admission(e.ctx, q, c.prio); err != nil || n != c.want {
			t.Errorf("Admission(priority %d) = %d, %v; want %d jobs ahead", c.prio, n, err, c.want)
		}
	}
	var got []string
	for {
		ds := e.fetch(q, 1)
		if len(ds) == 0 {
			break
		}
		got = append(got, byID[ds[0].ID])
	}
	if want := "high1,high2,mid,low,low2,neg"; strings.Join(got, ",") != want {
		t.Errorf("fetch order %v, want %s", got, want)
	}
}

func testFetchAtMostN(t *testing.T, e *env) {
	const q = "batch"
	for range 5 {
		e.enqueue(queue.NewJob{Queue: q, Kind: "k"})
	}
	if ds := e.fetch(q, 2); len(ds) != 2 {
		t.Fatalf("Fetch(2) returned %d", len(ds))
	}
	e.wantCounts(q, map[string]int{"queued": 3, "running": 2})
	if n := e.zcard(queue.ReadyKey(q)); n != 3 {
		t.Errorf("ready set holds %d, want 3", n)
	}
	if n := e.zcard(queue.LeasedKey(q)); n != 2 {
		t.Errorf("leased set holds %d, want 2", n)
	}
	if ds := e.fetch(q, 10); len(ds) != 3 {
		t.Fatalf("Fetch(10) returned %d, want the 3 left", len(ds))
	}
	e.fetchNone(q)
	e.fetchNone("never-used")
	e.wantCounts(q, map[string]int{"running": 5})
}

func testPause(t *testing.T, e *env) {
	const q = "paused"
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	if err := e.q.SetPaused(e.ctx, q, true); err != nil {
		t.Fatal(err)
	}
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	if st := e.wantCounts(q, map[string]int{"queued": 2}); !st.Paused {
		t.Errorf("Stats.Paused = false while paused")
	}
	e.fetchNone(q)
	e.wantState(q, a, "queued")
	e.wantState(q, b, "queued")

	wake := e.subscribe(queue.ChannelWake)
	if err := e.q.SetPaused(e.ctx, q, false); err != nil {
		t.Fatal(err)
	}
	wake.expect(q)
	if st := e.wantCounts(q, map[string]int{"queued": 2}); st.Paused {
		t.Errorf("Stats.Paused = true after resume")
	}
	if ds := e.fetch(q, 10); len(ds) != 2 || ds[0].ID != a || ds[1].ID != b {
		t.Errorf("Fetch after resume returned %d deliveries, want %s, %s", len(ds), a, b)
	}
	if names, err := e.q.Names(e.ctx); err != nil || len(names) != 1 || names[0] != q {
		t.Errorf("Names = %v, %v", names, err)
	}
}

func testWakeOnEnqueue(t *testing.T, e *env) {
	const q, other = "wake", "wake-other"
	wake := e.subscribe(queue.ChannelWake)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	wake.expect(q)
	e.enqueue(queue.NewJob{Queue: q, Kind: "k"})
	wake.expectQuiet(q)
	e.enqueue(queue.NewJob{Queue: other, Kind: "k"})
	wake.expect(other)

	e.fetchOne(q, a)
	e.fetch(q, 1)
	// Empty again; a scheduled job does not make it runnable.
	e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Minute)})
	wake.expectQuiet(q)
	e.enqueue(queue.NewJob{Queue: q, Kind: "k"})
	wake.expect(q)
}

func testCompleteTarget(t *testing.T, e *env) {
	const q = "images"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "thumbnail", Target: "images"}).ID
	d := e.fetchOne(q, id)
	body := []byte{0x89, 'P', 'N', 'G', 0, '\r', '\n', 0xff}
	e.complete(d, queue.Outcome{TargetURL: "/v1/images/" + id, TargetType: "image/png", TargetBody: body})
	done.expect(id)
	e.wantFields(q, id, map[string]string{"state": "succeeded", "target": "/v1/images/" + id, "result": ""})
	tgt, err := e.rdb.HGetAll(e.ctx, queue.TargetKey(q, id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(tgt) != 2 || tgt["type"] != "image/png" || tgt["body"] != string(body) {
		t.Errorf("target hash = %q", tgt)
	}
}

func testFencing(t *testing.T, e *env) {
	const q = "fence"
	wake := e.subscribe(queue.ChannelWake)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	wake.expect(q)
	d1 := e.fetchOne(q, id)
	if d1.Attempt != 1 {
		t.Fatalf("first attempt = %d", d1.Attempt)
	}

	// Not yet expired: Reap leaves it.
	e.clock.Advance(testLease - time.Millisecond)
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 0 {
		t.Fatalf("Reap before the deadline = %d, %v; want 0", n, err)
	}
	e.clock.Advance(time.Millisecond)
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	wake.expect(q)
	e.wantFields(q, id, map[string]string{"state": "queued", "attempt": "1"})
	e.wantState(q, id, "queued")
	e.wantNotIn(queue.LeasedKey(q), id)
	if errs := e.attemptErrors(q, id); len(errs) != 1 || errs[0].Attempt != 1 || !strings.Contains(errs[0].Error, "lease expired") {
		t.Errorf("attempt errors after reap = %+v", errs)
	}

	stale := func(when string) {
		t.Helper()
		before := e.snapshot(q, id)
		if err := e.q.Complete(e.ctx, d1, queue.Outcome{Result: []byte(`"stale"`)}); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("%s: stale Complete = %v, want ErrLeaseLost", when, err)
		}
		for _, mode := range []string{queue.FailRetry, queue.FailPermanent, queue.FailCanceled, queue.FailRequeue} {
			if st, err := e.q.Fail(e.ctx, d1, mode, e.clock.Now(), "stale", testDoc); !errors.Is(err, queue.ErrLeaseLost) {
				t.Errorf("%s: stale Fail(%s) = %q, %v; want ErrLeaseLost", when, mode, st, err)
			}
		}
		if err := e.q.Progress(e.ctx, d1, 50, "stale", []byte("cursor")); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("%s: stale Progress = %v, want ErrLeaseLost", when, err)
		}
		if after := e.snapshot(q, id); after != before {
			t.Errorf("%s: stale writes changed the job\nbefore %s\n after %s", when, before, after)
		}
	}
	stale("queued after reap")

	e.clock.Advance(time.Second)
	d2 := e.fetchOne(q, id)
	if d2.Attempt != 2 || d2.Token == d1.Token {
		t.Errorf("second delivery attempt %d token %q (first token %q); want attempt 2, new token", d2.Attempt, d2.Token, d1.Token)
	}
	stale("running again")
	codes, err := e.q.Heartbeat(e.ctx, q, []*queue.Delivery{d1, d2})
	if err != nil || len(codes) != 2 || codes[0] != queue.LeaseLost || codes[1] != queue.LeaseHeld {
		t.Errorf("Heartbeat(stale, current) = %v, %v; want [LeaseLost LeaseHeld]", codes, err)
	}
	e.complete(d2, queue.Outcome{Result: []byte(`"fresh"`)})
	e.wantFields(q, id, map[string]string{"state": "succeeded", "attempt": "2", "result": `"fresh"`})
	stale("succeeded")
}

func testHeartbeat(t *testing.T, e *env) {
	const q = "beat"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	d := e.fetchOne(q, id)
	e.clock.Advance(20 * time.Second)
	codes, err := e.q.Heartbeat(e.ctx, q, []*queue.Delivery{d})
	if err != nil || len(codes) != 1 || codes[0] != queue.LeaseHeld {
		t.Fatalf("Heartbeat = %v, %v; want [LeaseHeld]", codes, err)
	}
	e.wantScore(queue.LeasedKey(q), id, e.nowMS()+testLease.Milliseconds())
	e.clock.Advance(20 * time.Second) // 40s after the fetch, 20s after the heartbeat
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 0 {
		t.Fatalf("Reap after heartbeat = %d, %v; want 0", n, err)
	}
	e.wantState(q, id, "running")
	if err := e.q.Progress(e.ctx, d, 10, "still here", nil); err != nil {
		t.Errorf("Progress after heartbeat: %v", err)
	}
	e.clock.Advance(10 * time.Second)
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Reap after the renewed lease = %d, %v; want 1", n, err)
	}
	if codes, err := e.q.Heartbeat(e.ctx, q, []*queue.Delivery{d}); err != nil || len(codes) != 1 || codes[0] != queue.LeaseLost {
		t.Errorf("Heartbeat after reap = %v, %v; want [LeaseLost]", codes, err)
	}
	if codes, err := e.q.Heartbeat(e.ctx, q, nil); err != nil || len(codes) != 0 {
		t.Errorf("Heartbeat(nil) = %v, %v", codes, err)
	}
}

func testReapMaxAttempts(t *testing.T, e *env) {
	const q = "reapmax"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	e.fetchOne(q, id)
	e.clock.Advance(testLease + time.Second)
	now := e.nowMS()
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	done.expect(id)
	e.wantFields(q, id, map[string]string{"state": "failed", "attempt": "1", "finished": itoa(now),
		"expires": itoa(now + testRetention.Milliseconds())})
	e.wantState(q, id, "failed")
	e.wantCounts(q, map[string]int{"failed": 1})
	errs := e.attemptErrors(q, id)
	if len(errs) != 1 || errs[0].Attempt != 1 || !strings.Contains(errs[0].Error, "lease expired") ||
		!errs[0].At.Equal(e.clock.Now()) {
		t.Errorf("attempt errors = %+v", errs)
	}
	if doc := e.errorDoc(q, id); doc != queue.LeaseExpiredDoc {
		t.Errorf("error doc = %+v, want %+v", doc, queue.LeaseExpiredDoc)
	}
	e.wantScore(queue.ExpiringKey(q), id, now+testRetention.Milliseconds())
	e.wantNotIn(queue.ReadyKey(q), id)
	e.wantNotIn(queue.LeasedKey(q), id)
	e.fetchNone(q)
}

func testReapLeasedNotStarted(t *testing.T, e *env) {
	const q = "halfway"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	pairs, err := e.q.LeaseOnly(e.ctx, q, 1)
	if err != nil || len(pairs) != 2 || pairs[0] != id {
		t.Fatalf("LeaseOnly = %v, %v", pairs, err)
	}
	// The worker died between the two steps of Fetch.
	e.clock.Advance(testLease)
	if n, err := e.q.Reap(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	e.wantFields(q, id, map[string]string{"state": "queued", "attempt": "0"})
	e.wantState(q, id, "queued")
	if errs := e.attemptErrors(q, id); len(errs) != 0 {
		t.Errorf("a never-started attempt was recorded: %+v", errs)
	}
	if n, err := e.q.StartLeased(e.ctx, q, pairs); err != nil || n != 0 {
		t.Errorf("late start of the reaped lease = %d, %v; want 0", n, err)
	}
	d := e.fetchOne(q, id)
	if d.Attempt != 1 {
		t.Errorf("attempt = %d, want 1 (the reaped lease never started)", d.Attempt)
	}
}

func testReapCanceling(t *testing.T, e *env) {
	const q = "reapcancel"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	e.fetchOne(q, id)
	if res, err := e.q.Cancel(e.ctx, id); err != nil || res != queue.Canceling {
		t.Fatalf("Cancel = %v, %v; want Canceling", res, err)
	}
	// The worker dies before it sees the cancel.
	e.clock.Advance(testLease)
	if n, err := e.q.Reap(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	done.expect(id)
	e.wantState(q, id, "canceled")
	e.wantNotIn(queue.ReadyKey(q), id)
	e.fetchNone(q)
	// The client asked for the cancel: the job's error says it was canceled,
	// as for every other way a job ends canceled, not that a worker was lost.
	if doc := e.errorDoc(q, id); doc != queue.CanceledDoc {
		t.Errorf("error of a canceled job whose worker died = %+v, want CanceledDoc %+v", doc, queue.CanceledDoc)
	}
}

func testProgress(t *testing.T, e *env) {
	const q = "iter"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "report", MaxAttempts: 2}).ID
	d := e.fetchOne(q, id)
	e.clock.Advance(time.Second)
	if err := e.q.Progress(e.ctx, d, 42.5, "half way", []byte(`{"row":10}`)); err != nil {
		t.Fatal(err)
	}
	e.wantFields(q, id, map[string]string{"pct": "42.5", "msg": "half way", "ckpt": `{"row":10}`,
		"updated": itoa(e.nowMS()), "state": "running"})
	if err := e.q.Progress(e.ctx, d, 50, "no new checkpoint", nil); err != nil {
		t.Fatal(err)
	}
	e.wantFields(q, id, map[string]string{"pct": "50", "ckpt": `{"row":10}`})
	if st := e.fail(d, queue.FailRequeue, time.Time{}, "shutdown"); st != "queued" {
		t.Fatalf("Fail(requeue) = %q", st)
	}
	d2 := e.fetchOne(q, id)
	if string(d2.Checkpoint) != `{"row":10}` || d2.Attempt != 1 {
		t.Errorf("resumed delivery checkpoint %q attempt %d; want the stored cursor, attempt 1", d2.Checkpoint, d2.Attempt)
	}
}

func testFailRetry(t *testing.T, e *env) {
	const q = "retry"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	d := e.fetchOne(q, id)
	retryAt := e.clock.Now().Add(10 * time.Second)
	if st := e.fail(d, queue.FailRetry, retryAt, "boom"); st != "retrying" {
		t.Fatalf("Fail(retry) = %q, want retrying", st)
	}
	e.wantFields(q, id, map[string]string{"state": "retrying", "attempt": "1", "run_at": itoa(retryAt.UnixMilli()),
		"finished": ""})
	e.wantState(q, id, "retrying")
	e.wantCounts(q, map[string]int{"retrying": 1})
	e.wantScore(queue.ScheduledKey(q), id, retryAt.UnixMilli())
	e.wantNotIn(queue.LeasedKey(q), id)
	e.wantNotIn(queue.ExpiringKey(q), id)
	if doc := e.errorDoc(q, id); doc != testDoc {
		t.Errorf("error doc = %+v", doc)
	}
	if errs := e.attemptErrors(q, id); len(errs) != 1 || errs[0].Attempt != 1 || errs[0].Error != "boom" {
		t.Errorf("attempt errors = %+v", errs)
	}
	if due, ok, err := e.q.NextDue(e.ctx, q); err != nil || !ok || !due.Equal(retryAt) {
		t.Errorf("NextDue = %v, %v, %v; want %v", due, ok, err, retryAt)
	}
	e.fetchNone(q)

	e.clock.Advance(10*time.Second - time.Millisecond)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 0 {
		t.Fatalf("Promote before retryAt = %d, %v; want 0", n, err)
	}
	e.wantState(q, id, "retrying")
	e.fetchNone(q)

	wake := e.subscribe(queue.ChannelWake)
	e.clock.Advance(time.Millisecond)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Promote at retryAt = %d, %v; want 1", n, err)
	}
	wake.expect(q)
	e.wantState(q, id, "queued")
	e.wantNotIn(queue.ScheduledKey(q), id)
	if _, ok, err := e.q.NextDue(e.ctx, q); err != nil || ok {
		t.Errorf("NextDue after promotion: ok=%v err=%v; want nothing due", ok, err)
	}
	if d2 := e.fetchOne(q, id); d2.Attempt != 2 {
		t.Errorf("attempt after retry = %d, want 2", d2.Attempt)
	}
}

func testFailPermanent(t *testing.T, e *env) {
	const q = "perm"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 5}).ID
	d := e.fetchOne(q, id)
	now := e.nowMS()
	if st := e.fail(d, queue.FailPermanent, e.clock.Now().Add(time.Minute), "bad input"); st != "failed" {
		t.Fatalf("Fail(permanent) = %q, want failed", st)
	}
	done.expect(id)
	e.wantFields(q, id, map[string]string{"state": "failed", "attempt": "1", "finished": itoa(now),
		"expires": itoa(now + testRetention.Milliseconds())})
	e.wantState(q, id, "failed")
	e.wantNotIn(queue.ScheduledKey(q), id)
	e.wantScore(queue.ExpiringKey(q), id, now+testRetention.Milliseconds())
	if errs := e.attemptErrors(q, id); len(errs) != 1 || errs[0].Error != "bad input" {
		t.Errorf("attempt errors = %+v", errs)
	}
	if doc := e.errorDoc(q, id); doc != testDoc {
		t.Errorf("error doc = %+v", doc)
	}
	e.fetchNone(q)
}

func testFailExhausted(t *testing.T, e *env) {
	const q = "exhaust"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 2}).ID
	d := e.fetchOne(q, id)
	if st := e.fail(d, queue.FailRetry, e.clock.Now().Add(time.Second), "one"); st != "retrying" {
		t.Fatalf("first Fail = %q, want retrying", st)
	}
	e.clock.Advance(time.Second)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Promote = %d, %v", n, err)
	}
	d = e.fetchOne(q, id)
	if d.Attempt != 2 {
		t.Fatalf("second attempt = %d", d.Attempt)
	}
	if st := e.fail(d, queue.FailRetry, e.clock.Now().Add(time.Second), "two"); st != "failed" {
		t.Fatalf("last Fail = %q, want failed", st)
	}
	done.expect(id)
	e.wantState(q, id, "failed")
	e.wantNotIn(queue.ScheduledKey(q), id)
	errs := e.attemptErrors(q, id)
	if len(errs) != 2 || errs[0].Attempt != 1 || errs[0].Error != "one" || errs[1].Attempt != 2 || errs[1].Error != "two" {
		t.Errorf("attempt errors = %+v", errs)
	}
	e.clock.Advance(time.Minute)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 0 {
		t.Errorf("Promote after failure = %d, %v; want 0", n, err)
	}
	e.fetchNone(q)
}

func testFailRequeue(t *testing.T, e *env) {
	const q = "requeue"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 2}).ID
	d := e.fetchOne(q, id)
	wake := e.subscribe(queue.ChannelWake)
	if st := e.fail(d, queue.FailRequeue, time.Time{}, "shutdown"); st != "queued" {
		t.Fatalf("Fail(requeue) = %q, want queued", st)
	}
	wake.expect(q)
	e.wantFields(q, id, map[string]string{"state": "queued", "attempt": "0", "finished": ""})
	e.wantState(q, id, "queued")
	e.wantNotIn(queue.LeasedKey(q), id)
	if errs := e.attemptErrors(q, id); len(errs) != 0 {
		t.Errorf("requeue recorded an attempt error: %+v", errs)
	}
	// Requeued any number of times, the job keeps its attempt budget.
	for range 3 {
		d = e.fetchOne(q, id)
		if d.Attempt != 1 {
			t.Fatalf("attempt after requeue = %d, want 1", d.Attempt)
		}
		e.fail(d, queue.FailRequeue, time.Time{}, "shutdown")
	}
	d = e.fetchOne(q, id)
	if st := e.fail(d, queue.FailRetry, e.clock.Now(), "real failure"); st != "retrying" {
		t.Errorf("Fail(retry) after requeues = %q, want retrying (1 of 2 attempts used)", st)
	}
}

// testFailReturn: a job given back unstarted (FailReturn) keeps its attempt
// budget and its place in the queue, ahead of jobs that became ready after
// it; a requeued one (FailRequeue) goes behind them.
func testFailReturn(t *testing.T, e *env) {
	const q = "giveback"
	var ids []string
	for range 3 {
		ids = append(ids, e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 2}).ID)
		e.clock.Advance(time.Millisecond)
	}
	a, b := e.fetchOne(q, ids[0]), e.fetchOne(q, ids[1])
	e.clock.Advance(time.Second)
	// retryAt is ignored: the job goes back at its RunnableSince.
	if st := e.fail(b, queue.FailReturn, e.clock.Now().Add(time.Hour), "slot busy"); st != "queued" {
		t.Fatalf("Fail(return) = %q, want queued", st)
	}
	if st := e.fail(a, queue.FailRequeue, time.Time{}, "shutdown"); st != "queued" {
		t.Fatalf("Fail(requeue) = %q, want queued", st)
	}
	e.wantFields(q, ids[1], map[string]string{"state": "queued", "attempt": "0", "finished": ""})
	e.wantState(q, ids[1], "queued")
	e.wantNotIn(queue.LeasedKey(q), ids[1])
	if errs := e.attemptErrors(q, ids[1]); len(errs) != 0 {
		t.Errorf("a job given back recorded an attempt error: %+v", errs)
	}
	// Given back, b is ahead of c (ready since before the give-back); a,
	// requeued, is behind it.
	for _, id := range []string{ids[1], ids[2], ids[0]} {
		if d := e.fetchOne(q, id); d.Attempt != 1 {
			t.Errorf("job %s: attempt %d after its return, want 1", id, d.Attempt)
		}
	}
}

func testFailCanceledMode(t *testing.T, e *env) {
	const q = "failcancel"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	d := e.fetchOne(q, id)
	if st := e.fail(d, queue.FailCanceled, e.clock.Now(), "stopped"); st != "canceled" {
		t.Fatalf("Fail(canceled) = %q", st)
	}
	done.expect(id)
	e.wantState(q, id, "canceled")
	e.wantFields(q, id, map[string]string{"finished": itoa(e.nowMS())})
	e.fetchNone(q)
}

func testScheduled(t *testing.T, e *env) {
	const q = "sched"
	runAt := e.clock.Now().Add(time.Hour + 1500*time.Microsecond) // not a whole ms
	wantDue := time.UnixMilli(runAt.UnixMilli())
	later := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: runAt.Add(time.Hour)}).ID
	en := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: runAt})
	if en.State != "scheduled" || !en.RunAt.Equal(wantDue) {
		t.Errorf("Enqueue = %+v, want scheduled at %v", en, wantDue)
	}
	id := en.ID
	past := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(-time.Hour)})
	if past.State != "queued" {
		t.Errorf("a job with run_at in the past is %q, want queued", past.State)
	}
	e.wantFields(q, id, map[string]string{"state": "scheduled", "run_at": itoa(runAt.UnixMilli())})
	e.wantState(q, id, "scheduled")
	e.wantScore(queue.ScheduledKey(q), id, runAt.UnixMilli())
	e.wantCounts(q, map[string]int{"scheduled": 2, "queued": 1})
	if due, ok, err := e.q.NextDue(e.ctx, q); err != nil || !ok || !due.Equal(wantDue) {
		t.Errorf("NextDue = %v, %v, %v; want %v", due, ok, err, wantDue)
	}
	e.fetchOne(q, past.ID)
	e.fetchNone(q)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 0 {
		t.Errorf("Promote before run_at = %d, %v", n, err)
	}
	e.clock.Advance(time.Hour + time.Millisecond)
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("Promote after run_at = %d, %v; want 1", n, err)
	}
	e.wantState(q, id, "queued")
	e.wantState(q, later, "scheduled")
	if due, ok, err := e.q.NextDue(e.ctx, q); err != nil || !ok || !due.Equal(wantDue.Add(time.Hour)) {
		t.Errorf("NextDue = %v, %v, %v; want the later job", due, ok, err)
	}
	if d := e.fetchOne(q, id); d.Attempt != 1 {
		t.Errorf("attempt = %d", d.Attempt)
	}
	e.fetchNone(q)
	// Promote honours its limit.
	e.clock.Advance(2 * time.Hour)
	for range 3 {
		e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Second)})
	}
	e.clock.Advance(time.Second)
	if n, err := e.q.Promote(e.ctx, q, 2); err != nil || n != 2 {
		t.Errorf("Promote(limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := e.q.Promote(e.ctx, q, 100); err != nil || n != 2 {
		t.Errorf("second Promote = %d, %v; want the remaining 2", n, err)
	}
	if ds := e.fetch(q, 10); len(ds) != 4 {
		t.Errorf("Fetch after promotion returned %d, want 4", len(ds))
	}
}

func testCancelQueued(t *testing.T, e *env) {
	const q = "cancelq"
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	keep := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	now := e.nowMS()
	res, err := e.q.Cancel(e.ctx, id)
	if err != nil || res != queue.Canceled {
		t.Fatalf("Cancel = %v, %v; want Canceled", res, err)
	}
	done.expect(id)
	e.wantFields(q, id, map[string]string{"state": "canceled", "cancel": "1", "finished": itoa(now),
		"expires": itoa(now + testRetention.Milliseconds())})
	e.wantState(q, id, "canceled")
	if doc := e.errorDoc(q, id); doc != queue.CanceledDoc {
		t.Errorf("error doc = %+v", doc)
	}
	e.wantNotIn(queue.ReadyKey(q), id)
	e.wantScore(queue.ExpiringKey(q), id, now+testRetention.Milliseconds())
	e.wantCounts(q, map[string]int{"canceled": 1, "queued": 1})
	e.fetchOne(q, keep)
	e.fetchNone(q)
}

func testCancelScheduled(t *testing.T, e *env) {
	const q = "cancels"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Minute)}).ID
	if res, err := e.q.Cancel(e.ctx, id); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel = %v, %v; want Canceled", res, err)
	}
	e.wantState(q, id, "canceled")
	e.wantNotIn(queue.ScheduledKey(q), id)
	if _, ok, err := e.q.NextDue(e.ctx, q); err != nil || ok {
		t.Errorf("NextDue after cancel: ok=%v err=%v", ok, err)
	}
	e.clock.Advance(time.Hour)
	if n, err := e.q.Promote(e.ctx, q, 10); err != nil || n != 0 {
		t.Errorf("Promote = %d, %v; want 0", n, err)
	}
	e.fetchNone(q)

	// A job waiting for its retry backoff is canceled at once too.
	r := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	e.fail(e.fetchOne(q, r), queue.FailRetry, e.clock.Now().Add(time.Minute), "boom")
	if res, err := e.q.Cancel(e.ctx, r); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel of a retrying job = %v, %v; want Canceled", res, err)
	}
	e.wantState(q, r, "canceled")
	e.wantNotIn(queue.ScheduledKey(q), r)
}

func testCancelLeasedNotStarted(t *testing.T, e *env) {
	const q = "cancelrace"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	pairs, err := e.q.LeaseOnly(e.ctx, q, 1)
	if err != nil || len(pairs) != 2 || pairs[0] != id {
		t.Fatalf("LeaseOnly = %v, %v", pairs, err)
	}
	// The cancel lands between the two steps of Fetch.
	if res, err := e.q.Cancel(e.ctx, id); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel = %v, %v; want Canceled", res, err)
	}
	if n, err := e.q.StartLeased(e.ctx, q, pairs); err != nil || n != 0 {
		t.Fatalf("start after cancel = %d, %v; want 0 started", n, err)
	}
	e.wantFields(q, id, map[string]string{"state": "canceled", "attempt": "0", "started": ""})
	e.wantState(q, id, "canceled")
	if e.zcard(queue.LeasedKey(q)) != 0 || e.exists(queue.TokensKey(q)) {
		t.Errorf("lease of a canceled job left behind")
	}
	e.clock.Advance(testLease * 2)
	if n, err := e.q.Reap(e.ctx, q, 10); err != nil || n != 0 {
		t.Errorf("Reap = %d, %v; want 0", n, err)
	}
	e.wantState(q, id, "canceled")
	e.fetchNone(q)
}

func testCancelRunning(t *testing.T, e *env) {
	const q = "cancelrun"
	cancels := e.subscribe(queue.ChannelCancel)
	done := e.subscribe(queue.ChannelDone)
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	d := e.fetchOne(q, id)
	res, err := e.q.Cancel(e.ctx, id)
	if err != nil || res != queue.Canceling {
		t.Fatalf("Cancel of a running job = %v, %v; want Canceling", res, err)
	}
	cancels.expect(id)
	e.wantFields(q, id, map[string]string{"state": "canceling", "cancel": "1", "finished": ""})
	e.wantState(q, id, "canceling")
	e.wantCounts(q, map[string]int{"canceling": 1})
	if res, err := e.q.Cancel(e.ctx, id); err != nil || res != queue.Canceling {
		t.Errorf("second Cancel = %v, %v; want Canceling", res, err)
	}
	codes, err := e.q.Heartbeat(e.ctx, q, []*queue.Delivery{d})
	if err != nil || len(codes) != 1 || codes[0] != queue.LeaseCanceled {
		t.Fatalf("Heartbeat = %v, %v; want [LeaseCanceled]", codes, err)
	}
	e.wantScore(queue.LeasedKey(q), id, e.nowMS()+testLease.Milliseconds())
	st := e.fail(d, queue.FailRetry, e.clock.Now().Add(time.Second), "context canceled")
	if st != "canceled" {
		t.Fatalf("Fail(retry) of a canceling job = %q, want canceled", st)
	}
	done.expect(id)
	e.wantState(q, id, "canceled")
	e.wantNotIn(queue.ScheduledKey(q), id)
	e.wantNotIn(queue.LeasedKey(q), id)
	e.wantFields(q, id, map[string]string{"finished": itoa(e.nowMS())})
	e.clock.Advance(time.Minute)
	if n, err := e.q.Promote(e.ctx, q, 10); err != nil || n != 0 {
		t.Errorf("Promote = %d, %v; want 0", n, err)
	}
	e.fetchNone(q)
	if _, err := e.q.Cancel(e.ctx, id); !errors.Is(err, queue.ErrConflict) {
		t.Errorf("Cancel of a canceled job = %v, want ErrConflict", err)
	}
	cancels.expectQuiet(q)
}

func testCancelConflicts(t *testing.T, e *env) {
	const q = "cancelx"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	e.complete(e.fetchOne(q, id), queue.Outcome{})
	before := e.snapshot(q, id)
	if _, err := e.q.Cancel(e.ctx, id); !errors.Is(err, queue.ErrConflict) {
		t.Errorf("Cancel of a succeeded job = %v, want ErrConflict", err)
	}
	if after := e.snapshot(q, id); after != before {
		t.Errorf("Cancel of a finished job changed it\nbefore %s\n after %s", before, after)
	}
	f := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	e.fail(e.fetchOne(q, f), queue.FailPermanent, time.Time{}, "x")
	if _, err := e.q.Cancel(e.ctx, f); !errors.Is(err, queue.ErrConflict) {
		t.Errorf("Cancel of a failed job = %v, want ErrConflict", err)
	}
	for _, unknown := range []string{e.q.NewID(q), e.q.NewID("elsewhere"), "not-an-id", "", q + ".short"} {
		if _, err := e.q.Cancel(e.ctx, unknown); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Cancel(%q) = %v, want ErrNotFound", unknown, err)
		}
	}
}

func testRetry(t *testing.T, e *env) {
	const q = "again"
	failed := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	d := e.fetchOne(q, failed)
	if err := e.q.Progress(e.ctx, d, 40, "half way", []byte("cursor")); err != nil {
		t.Fatal(err)
	}
	e.fail(d, queue.FailRetry, e.clock.Now(), "only attempt")
	e.wantState(q, failed, "failed")
	canceled := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	if _, err := e.q.Cancel(e.ctx, canceled); err != nil {
		t.Fatal(err)
	}

	wake := e.subscribe(queue.ChannelWake)
	e.clock.Advance(time.Minute)
	if err := e.q.Retry(e.ctx, failed); err != nil {
		t.Fatalf("Retry(failed): %v", err)
	}
	wake.expect(q)
	// What described the last run goes (a queued job has not started);
	// the checkpoint stays, so that the run resumes from it.
	e.wantFields(q, failed, map[string]string{"state": "queued", "attempt": "0", "finished": "",
		"expires": "", "error": "", "cancel": "", "started": "", "msg": "", "pct": "0", "ckpt": "cursor"})
	e.wantState(q, failed, "queued")
	e.wantNotIn(queue.ExpiringKey(q), failed)
	if errs := e.attemptErrors(q, failed); len(errs) != 1 {
		t.Errorf("Retry dropped the attempt history: %+v", errs)
	}
	if err := e.q.Retry(e.ctx, canceled); err != nil {
		t.Fatalf("Retry(canceled): %v", err)
	}
	e.wantFields(q, canceled, map[string]string{"state": "queued", "attempt": "0", "cancel": "", "error": ""})
	e.wantState(q, canceled, "queued")
	e.wantCounts(q, map[string]int{"queued": 2})

	ds := e.fetch(q, 10)
	if len(ds) != 2 {
		t.Fatalf("Fetch after Retry returned %d, want 2", len(ds))
	}
	for _, d := range ds {
		if d.Attempt != 1 {
			t.Errorf("job %s attempt %d after Retry, want 1", d.ID, d.Attempt)
		}
	}
	if err := e.q.Retry(e.ctx, failed); !errors.Is(err, queue.ErrConflict) {
		t.Errorf("Retry of a running job = %v, want ErrConflict", err)
	}
	// The retried canceled job runs to the end: its old cancel no longer applies.
	var dc *queue.Delivery
	for _, d := range ds {
		if d.ID == canceled {
			dc = d
		}
	}
	if st := e.fail(dc, queue.FailRetry, e.clock.Now(), "x"); st != "failed" {
		t.Errorf("Fail of the retried canceled job = %q, want failed", st)
	}
	s := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	e.complete(e.fetchOne(q, s), queue.Outcome{})
	if err := e.q.Retry(e.ctx, s); !errors.Is(err, queue.ErrConflict) {
		t.Errorf("Retry of a succeeded job = %v, want ErrConflict", err)
	}
	if err := e.q.Retry(e.ctx, e.q.NewID(q)); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry of an unknown job = %v, want ErrNotFound", err)
	}
	if err := e.q.Retry(e.ctx, "nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry(nope) = %v, want ErrNotFound", err)
	}
}

func testExpire(t *testing.T, e *env) {
	const q = "expire"
	baseline := e.keys()

	s := e.enqueue(queue.NewJob{Queue: q, Kind: "k", Target: "images"}).ID
	e.complete(e.fetchOne(q, s), queue.Outcome{Result: []byte(`1`), TargetURL: "/v1/images/" + s,
		TargetType: "image/png", TargetBody: []byte("png")})
	f := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	e.fail(e.fetchOne(q, f), queue.FailRetry, e.clock.Now(), "boom")
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	if _, err := e.q.Cancel(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	finished := map[string]string{s: "succeeded", f: "failed", c: "canceled"}
	if !e.exists(queue.ErrorsKey(q, f)) || !e.exists(queue.TargetKey(q, s)) {
		t.Fatalf("errors or target key missing before expiry")
	}

	e.clock.Advance(testRetention - time.Millisecond)
	if n, err := e.q.Expire(e.ctx, q, 100); err != nil || n != 0 {
		t.Fatalf("Expire before retention = %d, %v; want 0", n, err)
	}
	for id, st := range finished {
		e.wantState(q, id, st)
	}
	e.clock.Advance(time.Millisecond)
	if n, err := e.q.Expire(e.ctx, q, 2); err != nil || n != 2 {
		t.Fatalf("Expire(limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := e.q.Expire(e.ctx, q, 100); err != nil || n != 1 {
		t.Fatalf("second Expire = %d, %v; want 1", n, err)
	}
	if n, err := e.q.Expire(e.ctx, q, 100); err != nil || n != 0 {
		t.Fatalf("third Expire = %d, %v; want 0", n, err)
	}
	for id, st := range finished {
		for _, k := range []string{queue.JobKey(q, id), queue.ErrorsKey(q, id), queue.TargetKey(q, id)} {
			if e.exists(k) {
				t.Errorf("%s still exists after expiry", k)
			}
		}
		if got, err := e.rdb.Get(e.ctx, queue.TombKey(q, id)).Result(); err != nil || got != st {
			t.Errorf("tombstone of %s = %q, %v; want %q", id, got, err, st)
		}
		if ttl, err := e.rdb.PTTL(e.ctx, queue.TombKey(q, id)).Result(); err != nil || ttl <= 0 || ttl > testTombstone {
			t.Errorf("tombstone TTL of %s = %v, %v; want (0, %v]", id, ttl, err, testTombstone)
		}
		for _, k := range []string{queue.ExpiringKey(q), queue.ReadyKey(q),
			queue.ScheduledKey(q), queue.LeasedKey(q)} {
			e.wantNotIn(k, id)
		}
		for _, st := range []string{"queued", "scheduled", "running", "retrying", "canceling", "succeeded", "failed", "canceled"} {
			e.wantNotIn(queue.StateKey(q, st), id)
		}
	}
	e.wantCounts(q, map[string]int{})

	// What is left without a TTL: the queue registry and the fencing
	// counter (tokens must never repeat). Everything else left (one
	// tombstone per expired job, per-minute counters) goes away by itself.
	want := append([]string{}, baseline...)
	want = append(want, queue.QueuesKey(), queue.SeqKey(q))
	wantKeys(t, e.persistentKeys(), want)
	for id := range finished {
		if !slices.Contains(e.keys(), queue.TombKey(q, id)) {
			t.Errorf("no tombstone key for %s", id)
		}
	}
	if e.mr != nil {
		// Past every TTL the key count is back at the baseline plus the
		// queue's two permanent keys.
		e.clock.Advance(testTombstone)
		if got := e.keys(); len(got) != len(baseline)+2 {
			t.Errorf("%d keys past every TTL, want %d:\n  %s", len(got), len(baseline)+2, strings.Join(got, "\n  "))
		}
	}
}

func wantKeys(t *testing.T, got, want []string) {
	t.Helper()
	w := append([]string{}, want...)
	sort.Strings(w)
	if strings.Join(got, "\n") != strings.Join(w, "\n") {
		t.Errorf("keys (%d):\n  %s\nwant (%d):\n  %s", len(got), strings.Join(got, "\n  "), len(w), strings.Join(w, "\n  "))
	}
}

func testThroughput(t *testing.T, e *env) {
	const q = "tput"
	// Start on a minute boundary so that every finish below is in one minute.
	e.clock.Advance(clockStart.Truncate(time.Minute).Add(time.Minute).Sub(clockStart))
	for range 2 {
		id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
		e.complete(e.fetchOne(q, id), queue.Outcome{})
	}
	p := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3}).ID
	e.fail(e.fetchOne(q, p), queue.FailPermanent, time.Time{}, "bad")
	r := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 2}).ID
	e.fail(e.fetchOne(q, r), queue.FailRetry, e.clock.Now(), "once") // retrying: not finished
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	if _, err := e.q.Cancel(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	lost := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	e.fetchOne(q, lost)
	e.clock.Advance(testLease) // still the same minute
	if n, err := e.q.Reap(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v", n, err)
	}
	e.wantState(q, lost, "failed")

	got, err := e.q.Throughput(e.ctx, q, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Throughput(3) returned %d minutes", len(got))
	}
	thisMinute := e.clock.Now().Truncate(time.Minute)
	for i, m := range got {
		if want := thisMinute.Add(time.Duration(i-2) * time.Minute); !m.At.Equal(want) {
			t.Errorf("minute %d at %v, want %v", i, m.At, want)
		}
	}
	if got[0].Succeeded != 0 || got[0].Failed != 0 || got[1].Succeeded != 0 || got[1].Failed != 0 {
		t.Errorf("earlier minutes count %+v, want nothing", got[:2])
	}
	// Two completions; two failures: the permanent one and the job whose
	// last lease expired (failed by the reaper).
	if got[2].Succeeded != 2 || got[2].Failed != 2 {
		t.Errorf("this minute counts succeeded %d failed %d, want 2 and 2", got[2].Succeeded, got[2].Failed)
	}
	for _, k := range e.keys() {
		if strings.Contains(k, ":tput:") {
			if ttl, err := e.rdb.PTTL(e.ctx, k).Result(); err != nil || ttl <= 0 {
				t.Errorf("counter %s has TTL %v, %v; want one", k, ttl, err)
			}
		}
	}
}

func testPresence(t *testing.T, e *env) {
	ttl := 10 * time.Second
	a := api.Worker{ID: "w-a", Hostname: "host-a", PID: 11, Queues: []string{"default"}, Concurrency: 4,
		StartedAt: e.clock.Now().UTC()}
	if err := e.q.Announce(e.ctx, a, ttl); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	b := a
	b.ID, b.Hostname = "w-b", "host-b"
	if err := e.q.Announce(e.ctx, b, ttl); err != nil {
		t.Fatal(err)
	}
	ws, err := e.q.Workers(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].ID != "w-b" || ws[1].ID != "w-a" || ws[1].Hostname != "host-a" ||
		ws[1].Concurrency != 4 || !ws[0].LastSeen.Equal(e.clock.Now()) {
		t.Errorf("Workers = %+v, want w-b then w-a", ws)
	}
	if err := e.q.Retire(e.ctx, "w-b"); err != nil {
		t.Fatal(err)
	}
	if ws, err := e.q.Workers(e.ctx); err != nil || len(ws) != 1 || ws[0].ID != "w-a" {
		t.Errorf("Workers after Retire = %+v, %v; want w-a", ws, err)
	}
	if e.mr != nil {
		// A worker that stops announcing is forgotten after its TTL.
		e.clock.Advance(ttl)
		if ws, err := e.q.Workers(e.ctx); err != nil || len(ws) != 0 {
			t.Errorf("Workers after the TTL = %+v, %v; want none", ws, err)
		}
	}
}

func testMaintainer(t *testing.T, e *env) {
	const q = "maint"
	sched := e.enqueue(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Minute)}).ID
	lost := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	e.fetchOne(q, lost)
	wake := e.subscribe(queue.ChannelWake)
	done := e.subscribe(queue.ChannelDone)

	var mu sync.Mutex
	var stepErrs []string
	reaped := map[string]int{}
	m := &queue.Maintainer{Q: e.q, Tick: time.Millisecond, SweepEvery: time.Millisecond,
		OnReap: func(name string, n int) {
			mu.Lock()
			reaped[name] += n
			mu.Unlock()
		},
		OnError: func(step, name string, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			mu.Lock()
			stepErrs = append(stepErrs, fmt.Sprintf("%s %s: %v", step, name, err))
			mu.Unlock()
		}}
	ctx, cancel := context.WithCancel(e.ctx)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Maintainer.Run = %v", err)
			}
		case <-time.After(eventTimeout):
			t.Errorf("Maintainer.Run did not return after cancel")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(stepErrs) > 0 {
			t.Errorf("maintainer errors: %v", stepErrs)
		}
	}()

	e.clock.Advance(time.Minute)
	wake.expect(q)    // the scheduled job was promoted into the empty ready set
	done.expect(lost) // the expired lease of a job at max attempts failed it
	e.wantState(q, lost, "failed")
	e.wantState(q, sched, "queued")
	e.fetchOne(q, sched)
	mu.Lock()
	if reaped[q] != 1 || len(reaped) != 1 {
		t.Errorf("OnReap told of %v, want the one expired lease of %s", reaped, q)
	}
	mu.Unlock()
}

func testConcurrentFetch(t *testing.T, e *env) {
	const q, jobs, workers = "race", 1000, 200
	want := make(map[string]bool, jobs)
	for range jobs {
		want[e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID] = true
	}
	var mu sync.Mutex
	got := make(map[string]int, jobs)
	tokens := make(map[string]bool, jobs)
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				ds, err := e.q.Fetch(e.ctx, q, 1+w%4)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, d := range ds {
					got[d.ID]++
					if tokens[d.Token] {
						errs = append(errs, fmt.Errorf("token %s handed out twice", d.Token))
					}
					tokens[d.Token] = true
				}
				mu.Unlock()
				if err != nil || len(ds) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Fetch errors, first: %v", len(errs), errs[0])
	}
	var missing, dup int
	for id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(got) != jobs {
		t.Errorf("%d jobs: %d delivered, %d missing, %d delivered more than once", jobs, len(got), missing, dup)
	}
	e.wantCounts(q, map[string]int{"running": jobs})
	if n := e.zcard(queue.LeasedKey(q)); n != jobs {
		t.Errorf("leased set holds %d, want %d", n, jobs)
	}
	if n := e.zcard(queue.ReadyKey(q)); n != 0 {
		t.Errorf("ready set holds %d, want 0", n)
	}
}
