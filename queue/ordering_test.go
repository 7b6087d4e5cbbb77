package queue_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// The conformance cases of ordering keys: the jobs of one queue with one
// ordering key run one at a time, in submission order, whoever fetches them.

var orderingCases = []conformanceCase{
	{"ordering_one_at_a_time_in_order", testOrderingOneAtATime},
	{"ordering_rejects_bad_keys_and_forged_deliveries", testOrderingRejects},
	{"ordering_released_job_keeps_its_priority", testOrderingPriority},
	{"ordering_retrying_holder_keeps_the_turn", testOrderingRetryKeepsTurn},
	{"ordering_cancel_parked_and_holder", testOrderingCancel},
	{"ordering_reap_keeps_then_releases_the_turn", testOrderingReap},
	{"ordering_retry_goes_through_the_gate", testOrderingRetryParks},
	{"ordering_concurrent_workers", testOrderingConcurrent},
	{"ordering_leaves_no_keys", testOrderingNoKeysLeft},
}

// order returns the holder of ordering key key in queue q ("" when the key is
// free) and the ids waiting in its lane, oldest first.
func (e *env) order(q, key string) (string, []string) {
	e.t.Helper()
	holder, err := e.rdb.Get(e.ctx, queue.OrderHolderKey(q, key)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		e.t.Fatalf("GET %s: %v", queue.OrderHolderKey(q, key), err)
	}
	raw, err := e.rdb.LRange(e.ctx, queue.OrderLaneKey(q, key), 0, -1).Result()
	if err != nil {
		e.t.Fatalf("LRANGE %s: %v", queue.OrderLaneKey(q, key), err)
	}
	lane := make([]string, len(raw))
	for i, r := range raw {
		_, id, ok := strings.Cut(r, ":")
		if !ok {
			e.t.Errorf("lane entry %q of key %q is not <priority>:<id>", r, key)
		}
		lane[i] = id
	}
	return holder, lane
}

// wantOrder checks who holds key's turn and who waits, in which order. A
// free key must leave neither a holder nor a lane key behind.
func (e *env) wantOrder(q, key, holder string, lane ...string) {
	e.t.Helper()
	h, l := e.order(q, key)
	if h != holder || !slices.Equal(l, lane) {
		e.t.Errorf("ordering key %q of %s: holder %q, lane %v; want holder %q, lane %v", key, q, h, l, holder, lane)
	}
	if len(lane) == 0 && e.exists(queue.OrderLaneKey(q, key)) {
		e.t.Errorf("ordering key %q of %s: empty lane key left", key, q)
	}
	for _, id := range lane {
		e.wantState(q, id, "queued")
		e.wantNotIn(queue.ReadyKey(q), id)
		e.wantNotIn(queue.LeasedKey(q), id)
	}
}

// fetchOnly fetches with room for ten and expects exactly the job id: all
// the other jobs of the queue are running or wait for their turn.
func (e *env) fetchOnly(q, id string) *queue.Delivery {
	e.t.Helper()
	ds := e.fetch(q, 10)
	if len(ds) != 1 || ds[0].ID != id {
		e.t.Fatalf("Fetch(%s, 10) returned %v, want only %s", q, deliveryIDs(ds), id)
	}
	return ds[0]
}

// fetchConcurrently lets n fetchers, released at once, fetch from q until
// each finds nothing, and returns what they got, sorted by id.
func (e *env) fetchConcurrently(q string, n int) []*queue.Delivery {
	e.t.Helper()
	var mu sync.Mutex
	var got []*queue.Delivery
	var errs []error
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			for {
				ds, err := e.q.Fetch(e.ctx, q, 2)
				mu.Lock()
				got = append(got, ds...)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err != nil || len(ds) == 0 {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("%d Fetch errors, first: %v", len(errs), errs[0])
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	return got
}

// drain skips every message published on the subscription's channel before
// now (on a cluster, earlier messages of this case may still be on their
// way): it publishes a sentinel from queue q's node and reads up to it.
func (s *subscription) drain(q string) {
	s.e.t.Helper()
	sentinel := "sentinel-" + strconv.FormatInt(sentinelSeq.Add(1), 10)
	s.e.mu.Lock()
	s.e.queues[sentinel] = true
	s.e.mu.Unlock()
	if err := publishScript.Run(s.e.ctx, s.e.rdb, []string{queue.ReadyKey(q)}, s.channel, sentinel).Err(); err != nil {
		s.e.t.Fatalf("publish sentinel: %v", err)
	}
	for s.next() != sentinel {
	}
}

func deliveryIDs(ds []*queue.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

func testOrderingOneAtATime(t *testing.T, e *env) {
	const q, other = "ordered", "acct-7"
	// Braces and colons in a key change neither its slot nor other keys.
	const key = "acct:{42}:é"
	wake := e.subscribe(queue.ChannelWake)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	wake.expect(q)
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	x := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: other}).ID
	n1 := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	n2 := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID

	e.wantFields(q, a, map[string]string{"okey": key, "state": "queued"})
	e.wantFields(q, b, map[string]string{"okey": key, "state": "queued"})
	e.wantFields(q, n1, map[string]string{"okey": ""})
	e.wantOrder(q, key, a, b, c)
	e.wantOrder(q, other, x)
	e.wantCounts(q, map[string]int{"queued": 6}) // parked jobs count as queued
	if n, _, err := e.q.Admission(e.ctx, q, 0); err != nil || n != 4 {
		t.Errorf("Admission backlog = %d, %v; want 4 (the parked jobs are not runnable)", n, err)
	}

	// Five fetchers at once get the key's first job, the other key's job
	// and the jobs without a key: never B or C.
	got := e.fetchConcurrently(q, 5)
	want := []string{a, x, n1, n2}
	slices.Sort(want)
	if !slices.Equal(deliveryIDs(got), want) {
		t.Fatalf("concurrent fetch got %v, want %v (A, the other key's job, the unordered jobs)", deliveryIDs(got), want)
	}
	byID := map[string]*queue.Delivery{}
	for _, d := range got {
		byID[d.ID] = d
	}
	wantKey := map[string]string{a: key, x: other, n1: "", n2: ""}
	for id, k := range wantKey {
		if byID[id].OrderingKey != k {
			t.Errorf("delivery %s: OrderingKey %q, want %q", id, byID[id].OrderingKey, k)
		}
	}
	if again := e.fetchConcurrently(q, 5); len(again) != 0 {
		t.Fatalf("while A runs, fetchers got %v, want nothing", deliveryIDs(again))
	}
	x2 := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: other}).ID
	e.wantOrder(q, other, x, x2)
	e.fetchNone(q)

	// A's completion hands the turn to B, and only to B; the ready set was
	// empty, so idle workers are woken.
	e.complete(byID[a], queue.Outcome{})
	wake.expect(q)
	e.wantState(q, a, "succeeded")
	e.wantOrder(q, key, b, c)
	got = e.fetchConcurrently(q, 5)
	if !slices.Equal(deliveryIDs(got), []string{b}) {
		t.Fatalf("after A completed, fetchers got %v, want only B %s", deliveryIDs(got), b)
	}
	db := got[0]
	if db.Attempt != 1 || db.OrderingKey != key {
		t.Errorf("B's delivery: attempt %d, key %q", db.Attempt, db.OrderingKey)
	}
	// The unordered jobs and the other key are independent of this key.
	e.complete(byID[n1], queue.Outcome{})
	e.complete(byID[n2], queue.Outcome{})
	e.complete(byID[x], queue.Outcome{})
	e.wantOrder(q, other, x2)
	e.wantOrder(q, key, b, c)
	if got := e.fetchConcurrently(q, 5); !slices.Equal(deliveryIDs(got), []string{x2}) {
		t.Fatalf("after X completed, fetchers got %v, want only X2 %s", deliveryIDs(got), x2)
	}

	e.complete(db, queue.Outcome{})
	got = e.fetchConcurrently(q, 5)
	if !slices.Equal(deliveryIDs(got), []string{c}) {
		t.Fatalf("after B completed, fetchers got %v, want only C %s", deliveryIDs(got), c)
	}
	e.wantOrder(q, key, c)
	e.complete(got[0], queue.Outcome{})
	e.wantOrder(q, key, "")
	if e.exists(queue.OrderHolderKey(q, key)) {
		t.Errorf("holder key of a free ordering key left")
	}
	e.fetchNone(q)
	// A free key is taken at once again.
	d := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	e.wantOrder(q, key, d)
	e.fetchOnly(q, d)
}

func testOrderingRejects(t *testing.T, e *env) {
	const q = "ordbad"
	now := e.clock.Now()
	bad := []queue.NewJob{
		{Queue: q, Kind: "k", OrderingKey: "k", RunAt: now.Add(time.Minute)},
		{Queue: q, Kind: "k", OrderingKey: "k", RunAt: now.Add(-time.Minute)},
		{Queue: q, Kind: "k", OrderingKey: strings.Repeat("x", queue.MaxOrderingKey+1)},
		{Queue: q, Kind: "k", OrderingKey: "\xff"},
	}
	for _, j := range bad {
		if en, err := e.q.Enqueue(e.ctx, j); !errors.Is(err, queue.ErrBadOrderingKey) {
			t.Errorf("Enqueue(key %.20q, run_at %v) = %+v, %v; want ErrBadOrderingKey", j.OrderingKey, j.RunAt, en, err)
		}
	}
	long := strings.Repeat("é", queue.MaxOrderingKey) // 200 characters, 400 bytes
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: long}).ID
	plain := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	e.wantCounts(q, map[string]int{"queued": 2})
	e.wantOrder(q, long, id)

	// A delivery whose ordering key is not its job's would strand the key's
	// lane: Complete and Fail refuse it and change nothing.
	ds := e.fetch(q, 10)
	if len(ds) != 2 {
		t.Fatalf("Fetch returned %d deliveries, want 2", len(ds))
	}
	for _, d := range ds {
		forged := *d
		forged.OrderingKey = "forged"
		if d.ID == id {
			forged.OrderingKey = ""
		}
		before := e.snapshot(q, d.ID)
		if err := e.q.Complete(e.ctx, &forged, queue.Outcome{}); err == nil || errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("Complete of %s with key %q = %v, want an ordering key error", d.ID, forged.OrderingKey, err)
		}
		if st, err := e.q.Fail(e.ctx, &forged, queue.FailPermanent, time.Time{}, "x", testDoc); err == nil || errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("Fail of %s with key %q = %q, %v; want an ordering key error", d.ID, forged.OrderingKey, st, err)
		}
		if after := e.snapshot(q, d.ID); after != before {
			t.Errorf("a forged delivery changed job %s\nbefore %s\n after %s", d.ID, before, after)
		}
		e.complete(d, queue.Outcome{})
	}
	e.wantState(q, plain, "succeeded")
	e.wantOrder(q, long, "")
}

func testOrderingPriority(t *testing.T, e *env) {
	const q, key = "ordprio", "k"
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, Priority: 5}).ID
	low := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	raw, err := e.rdb.LRange(e.ctx, queue.OrderLaneKey(q, key), 0, -1).Result()
	if err != nil || len(raw) != 1 || raw[0] != "5:"+b {
		t.Errorf("lane = %q, %v; want [5:%s]", raw, err, b)
	}
	da := e.fetchOne(q, a)
	e.clock.Advance(time.Second)
	e.complete(da, queue.Outcome{})
	// Within the lane, submission order beats priority; once its turn comes,
	// B competes with the queue's other jobs at its own priority.
	e.fetchOne(q, b)
	e.fetchOne(q, low)
}

func testOrderingRetryKeepsTurn(t *testing.T, e *env) {
	const q, key = "ordretry", "k"
	done := e.subscribe(queue.ChannelDone)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 3}).ID
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	d := e.fetchOnly(q, a)

	// Attempt 1 fails: A waits for its backoff and keeps the turn.
	if st := e.fail(d, queue.FailRetry, e.clock.Now().Add(10*time.Second), "one"); st != "retrying" {
		t.Fatalf("Fail(retry) = %q, want retrying", st)
	}
	e.wantState(q, a, "retrying")
	e.wantOrder(q, key, a, b)
	e.fetchNone(q)
	e.clock.Advance(10 * time.Second)
	if n, err := e.q.Promote(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Promote = %d, %v; want 1", n, err)
	}
	e.wantOrder(q, key, a, b)
	d = e.fetchOnly(q, a)
	if d.Attempt != 2 {
		t.Errorf("attempt %d, want 2", d.Attempt)
	}
	// An interrupted attempt (shutdown) keeps the turn too.
	if st := e.fail(d, queue.FailRequeue, time.Time{}, "shutdown"); st != "queued" {
		t.Fatalf("Fail(requeue) = %q, want queued", st)
	}
	e.wantOrder(q, key, a, b)
	d = e.fetchOnly(q, a)
	if st := e.fail(d, queue.FailRetry, e.clock.Now().Add(time.Second), "two"); st != "retrying" {
		t.Fatalf("second Fail(retry) = %q, want retrying", st)
	}
	e.clock.Advance(time.Second)
	if n, err := e.q.Promote(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Promote = %d, %v; want 1", n, err)
	}
	d = e.fetchOnly(q, a)
	if d.Attempt != 3 {
		t.Errorf("attempt %d, want 3", d.Attempt)
	}
	// The last attempt fails: A is done, B's turn comes.
	if st := e.fail(d, queue.FailRetry, e.clock.Now().Add(time.Second), "three"); st != "failed" {
		t.Fatalf("last Fail(retry) = %q, want failed", st)
	}
	done.expect(a)
	e.wantOrder(q, key, b)
	db := e.fetchOnly(q, b)
	if st := e.fail(db, queue.FailPermanent, time.Time{}, "bad"); st != "failed" {
		t.Fatalf("Fail(permanent) = %q", st)
	}
	done.expect(b)
	e.wantOrder(q, key, "")

	// Canceled while it waits for its backoff, a holder passes the turn on.
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 2}).ID
	next := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	e.fail(e.fetchOnly(q, c), queue.FailRetry, e.clock.Now().Add(time.Minute), "boom")
	if res, err := e.q.Cancel(e.ctx, c); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel of a retrying holder = %v, %v; want Canceled", res, err)
	}
	e.wantNotIn(queue.ScheduledKey(q), c)
	e.wantOrder(q, key, next)
	e.complete(e.fetchOnly(q, next), queue.Outcome{})
	e.wantOrder(q, key, "")
}

func testOrderingCancel(t *testing.T, e *env) {
	const q, key = "ordcancel", "k"
	done := e.subscribe(queue.ChannelDone)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 3}).ID
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	d := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	da := e.fetchOnly(q, a)

	// A parked job leaves the lane; the others keep their order.
	if res, err := e.q.Cancel(e.ctx, c); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel of a parked job = %v, %v; want Canceled", res, err)
	}
	done.expect(c)
	e.wantState(q, c, "canceled")
	e.wantOrder(q, key, a, b, d)

	// The running holder is asked to stop and keeps the turn until it has.
	if res, err := e.q.Cancel(e.ctx, a); err != nil || res != queue.Canceling {
		t.Fatalf("Cancel of the running holder = %v, %v; want Canceling", res, err)
	}
	e.wantOrder(q, key, a, b, d)
	e.fetchNone(q)
	if st := e.fail(da, queue.FailCanceled, time.Time{}, "context canceled"); st != "canceled" {
		t.Fatalf("Fail(canceled) = %q", st)
	}
	done.expect(a)
	e.wantOrder(q, key, b, d)
	e.complete(e.fetchOnly(q, b), queue.Outcome{})
	e.wantOrder(q, key, d)
	dd := e.fetchOnly(q, d) // C was skipped

	// A holder still in the ready set is canceled at once and passes the turn.
	const key2 = "k2"
	e1 := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key2}).ID
	e2 := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key2}).ID
	if res, err := e.q.Cancel(e.ctx, e1); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel of a ready holder = %v, %v; want Canceled", res, err)
	}
	e.wantNotIn(queue.ReadyKey(q), e1)
	e.wantOrder(q, key2, e2)
	de2 := e.fetchOnly(q, e2)

	// So is a holder canceled between the two steps of Fetch.
	const key3 = "k3"
	f1 := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key3}).ID
	f2 := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key3}).ID
	pairs, err := e.q.LeaseOnly(e.ctx, q, 10)
	if err != nil || len(pairs) != 2 || pairs[0] != f1 {
		t.Fatalf("LeaseOnly = %v, %v; want F1 only", pairs, err)
	}
	if res, err := e.q.Cancel(e.ctx, f1); err != nil || res != queue.Canceled {
		t.Fatalf("Cancel of a leased holder = %v, %v; want Canceled", res, err)
	}
	if n, err := e.q.StartLeased(e.ctx, q, pairs); err != nil || n != 0 {
		t.Fatalf("start after cancel = %d, %v; want 0", n, err)
	}
	e.wantOrder(q, key3, f2)
	df2 := e.fetchOnly(q, f2)

	// The last parked job canceled: the lane key goes, the holder stays.
	g := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key3}).ID
	e.wantOrder(q, key3, f2, g)
	if _, err := e.q.Cancel(e.ctx, g); err != nil {
		t.Fatal(err)
	}
	e.wantOrder(q, key3, f2)
	for _, dl := range []*queue.Delivery{dd, de2, df2} {
		e.complete(dl, queue.Outcome{})
	}
	for _, k := range []string{key, key2, key3} {
		e.wantOrder(q, k, "")
	}
	e.fetchNone(q)
}

func testOrderingReap(t *testing.T, e *env) {
	const q, key = "ordreap", "k"
	wake := e.subscribe(queue.ChannelWake)
	done := e.subscribe(queue.ChannelDone)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 2}).ID
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 3}).ID
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	n := e.enqueue(queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 1}).ID
	if ds := e.fetch(q, 10); len(ds) != 2 {
		t.Fatalf("Fetch returned %v, want A and the unordered job", deliveryIDs(ds))
	}

	// Both workers die. One reap handles an ordered and an unordered job:
	// A is requeued and keeps the turn, the unordered job fails.
	wake.expect(q) // A's enqueue
	e.clock.Advance(testLease)
	if got, err := e.q.Reap(e.ctx, q, 10); err != nil || got != 2 {
		t.Fatalf("Reap = %d, %v; want 2", got, err)
	}
	done.expect(n)
	wake.expect(q) // A back in the empty ready set
	e.wantFields(q, a, map[string]string{"state": "queued", "attempt": "1"})
	e.wantState(q, n, "failed")
	e.wantOrder(q, key, a, b, c)
	if d := e.fetchOnly(q, a); d.Attempt != 2 {
		t.Errorf("A's attempt after reap = %d, want 2", d.Attempt)
	}

	// A's second worker dies too: at max attempts A fails and B's turn
	// comes; the ready set was empty, so workers are woken.
	e.clock.Advance(testLease)
	if got, err := e.q.Reap(e.ctx, q, 10); err != nil || got != 1 {
		t.Fatalf("second Reap = %d, %v; want 1", got, err)
	}
	done.expect(a)
	wake.expect(q)
	wake.expectQuiet(q)
	e.wantState(q, a, "failed")
	e.wantOrder(q, key, b, c)

	// B is leased but its worker dies before starting it: B stays queued
	// and keeps the turn.
	pairs, err := e.q.LeaseOnly(e.ctx, q, 10)
	if err != nil || len(pairs) != 2 || pairs[0] != b {
		t.Fatalf("LeaseOnly = %v, %v; want B only", pairs, err)
	}
	e.clock.Advance(testLease)
	if got, err := e.q.Reap(e.ctx, q, 10); err != nil || got != 1 {
		t.Fatalf("Reap of a leased B = %d, %v; want 1", got, err)
	}
	e.wantFields(q, b, map[string]string{"state": "queued", "attempt": "0"})
	e.wantOrder(q, key, b, c)

	// B is canceled while running and its worker dies: B ends canceled and
	// C's turn comes.
	e.fetchOnly(q, b)
	if res, err := e.q.Cancel(e.ctx, b); err != nil || res != queue.Canceling {
		t.Fatalf("Cancel = %v, %v; want Canceling", res, err)
	}
	e.clock.Advance(testLease)
	if got, err := e.q.Reap(e.ctx, q, 10); err != nil || got != 1 {
		t.Fatalf("Reap of a canceling B = %d, %v; want 1", got, err)
	}
	done.expect(b)
	e.wantState(q, b, "canceled")
	e.wantOrder(q, key, c)
	e.complete(e.fetchOnly(q, c), queue.Outcome{})
	e.wantOrder(q, key, "")
}

func testOrderingRetryParks(t *testing.T, e *env) {
	const q, key = "ordagain", "k"
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: 1}).ID
	if st := e.fail(e.fetchOnly(q, a), queue.FailRetry, e.clock.Now(), "only attempt"); st != "failed" {
		t.Fatalf("Fail = %q, want failed", st)
	}
	e.wantOrder(q, key, "")
	p := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	x := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	if _, err := e.q.Cancel(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	dp := e.fetchOnly(q, p)

	// Retried while P holds the turn, A waits at the back of the lane.
	if err := e.q.Retry(e.ctx, a); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	e.wantFields(q, a, map[string]string{"state": "queued", "attempt": "0", "error": ""})
	e.wantOrder(q, key, p, x, a)
	e.fetchNone(q)
	e.complete(dp, queue.Outcome{})
	e.complete(e.fetchOnly(q, x), queue.Outcome{})
	da := e.fetchOnly(q, a)
	if da.Attempt != 1 || da.OrderingKey != key {
		t.Errorf("retried A: attempt %d, key %q", da.Attempt, da.OrderingKey)
	}
	e.complete(da, queue.Outcome{})
	e.wantOrder(q, key, "")

	// Retried while the key is free, C takes the turn at once.
	wake := e.subscribe(queue.ChannelWake)
	wake.drain(q)
	if err := e.q.Retry(e.ctx, c); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	wake.expect(q)
	e.wantOrder(q, key, c)
	e.complete(e.fetchOnly(q, c), queue.Outcome{})
	e.wantOrder(q, key, "")
}

func testOrderingConcurrent(t *testing.T, e *env) {
	const q, jobs, keys, workers = "ordrace", 200, 10, 20
	keyOf := map[string]string{}
	submitted := map[string][]string{}
	for i := range jobs {
		k := fmt.Sprintf("key-%d", i%keys)
		id := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: k}).ID
		keyOf[id] = k
		submitted[k] = append(submitted[k], id)
	}

	// Each worker fetches, logs the start, logs the end, then completes.
	// A worker that finds nothing waits for the next completion (the only
	// event that can make a job runnable), not for a timer. No worker can
	// wait forever while work is left: the worker that completed a job
	// fetches again after it, so a job made runnable is always fetched.
	type event struct {
		start bool
		id    string
	}
	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		log      []event
		finished int
		gen      int
		errs     []error
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				seen, over := gen, finished == jobs || len(errs) > 0
				mu.Unlock()
				if over {
					return
				}
				ds, err := e.q.Fetch(e.ctx, q, 1+w%3)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					cond.Broadcast()
					mu.Unlock()
					return
				}
				if len(ds) == 0 {
					mu.Lock()
					for gen == seen && finished < jobs && len(errs) == 0 {
						cond.Wait()
					}
					mu.Unlock()
					continue
				}
				mu.Lock()
				for _, d := range ds {
					log = append(log, event{true, d.ID})
				}
				mu.Unlock()
				for i := len(ds) - 1; i >= 0; i-- { // finish in another order than fetched
					d := ds[i]
					mu.Lock()
					log = append(log, event{false, d.ID})
					mu.Unlock()
					err := e.q.Complete(e.ctx, d, queue.Outcome{})
					mu.Lock()
					if err != nil {
						errs = append(errs, fmt.Errorf("complete %s: %w", d.ID, err))
					}
					finished++
					gen++
					// A completion makes at most one job runnable: one idle
					// worker is enough (this one fetches again as well).
					if finished == jobs {
						cond.Broadcast()
					} else {
						cond.Signal()
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d errors, first: %v", len(errs), errs[0])
	}

	// Per key: starts in submission order, each start after the previous
	// job's end (the end is logged before Complete, the start after Fetch).
	started := map[string][]string{}
	running := map[string]string{}
	for _, ev := range log {
		k := keyOf[ev.id]
		if ev.start {
			if r := running[k]; r != "" {
				t.Errorf("key %s: %s started while %s ran", k, ev.id, r)
			}
			running[k] = ev.id
			started[k] = append(started[k], ev.id)
			continue
		}
		if running[k] != ev.id {
			t.Errorf("key %s: %s ended while %q was the running one", k, ev.id, running[k])
		}
		running[k] = ""
	}
	for k, ids := range submitted {
		if !slices.Equal(started[k], ids) {
			t.Errorf("key %s: start order\n got %v\nwant %v", k, started[k], ids)
		}
		e.wantOrder(q, k, "")
	}
	e.wantCounts(q, map[string]int{"succeeded": jobs})
}

func testOrderingNoKeysLeft(t *testing.T, e *env) {
	const q = "ordclean"
	baseline := e.keys()
	// Every way a job of a key ends, with jobs waiting behind it.
	j := func(key string, max int) string {
		return e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key, MaxAttempts: max}).ID
	}
	ok1, ok2 := j("done", 1), j("done", 1)
	fail1, fail2 := j("fail", 1), j("fail", 1)
	lost1, lost2 := j("lost", 1), j("lost", 1)
	can1, can2, can3 := j("cancel", 1), j("cancel", 1), j("cancel", 1)
	plain := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID

	ds := map[string]*queue.Delivery{}
	for _, d := range e.fetch(q, 20) {
		ds[d.ID] = d
	}
	if len(ds) != 5 {
		t.Fatalf("Fetch returned %d jobs, want the 4 holders and the unordered job", len(ds))
	}
	e.complete(ds[ok1], queue.Outcome{})
	e.fail(ds[fail1], queue.FailPermanent, time.Time{}, "x")
	if _, err := e.q.Cancel(e.ctx, can2); err != nil { // parked
		t.Fatal(err)
	}
	if _, err := e.q.Cancel(e.ctx, can1); err != nil { // running: canceling
		t.Fatal(err)
	}
	e.fail(ds[can1], queue.FailCanceled, time.Time{}, "stopped")
	e.complete(ds[plain], queue.Outcome{})
	e.clock.Advance(testLease) // lost1's worker died
	if n, err := e.q.Reap(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	for _, d := range e.fetch(q, 20) {
		ds[d.ID] = d
	}
	for _, id := range []string{ok2, fail2, lost2, can3} {
		if ds[id] == nil {
			t.Fatalf("job %s was not fetched after its key's turn came", id)
		}
		e.complete(ds[id], queue.Outcome{})
	}
	if err := e.q.Retry(e.ctx, can2); err != nil {
		t.Fatal(err)
	}
	e.complete(e.fetchOnly(q, can2), queue.Outcome{})
	e.wantState(q, lost1, "failed")

	for _, k := range e.keys() {
		if strings.Contains(k, ":ordh:") || strings.Contains(k, ":ordl:") {
			t.Errorf("ordering key left after every job finished: %s", k)
		}
	}
	e.clock.Advance(testRetention)
	if n, err := e.q.Expire(e.ctx, q, 100); err != nil || n != 10 {
		t.Fatalf("Expire = %d, %v; want 10", n, err)
	}
	wantKeys(t, e.persistentKeys(), append(baseline, queue.QueuesKey(), queue.SeqKey(q)))
	if e.mr != nil {
		e.clock.Advance(testTombstone)
		if got := e.keys(); len(got) != len(baseline)+2 {
			t.Errorf("%d keys past every TTL, want %d:\n  %s", len(got), len(baseline)+2, strings.Join(got, "\n  "))
		}
	}
}
