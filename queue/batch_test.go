package queue_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/queue"
)

// TestBatchTransitions runs the cases of the batched transitions (one
// multi-member command per batch, one done message per batch) against every
// backend, like TestConformance.
func TestBatchTransitions(t *testing.T) {
	cases := []conformanceCase{
		{"complete_many_publishes_one_done_message", testCompleteManyDone},
		{"complete_many_refuses_a_repeated_delivery", testCompleteManyRepeated},
		{"complete_many_mixed_shapes", testCompleteManyMixed},
		{"batches_past_the_lua_unpack_limit", testBigBatch},
		{"enqueue_batch_checks_each_job_only_when_a_key_exists", testEnqueueBatchExisting},
		{"enqueue_many_answers_each_job_and_stores_an_id_once", testEnqueueMany},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			newEnv := b.setup(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, newEnv(t)) })
			}
		})
	}
}

// testCompleteManyDone: a batch publishes one message on the done channel,
// the recorded ids separated by spaces, without the refused ones; jobs with
// an ordering key pass its turn on within the batch.
func testCompleteManyDone(t *testing.T, e *env) {
	const q, key = "batchdone", "k"
	done := e.subscribe(queue.ChannelDone)
	a := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	b := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	c := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	next := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: key}).ID
	ds := e.fetch(q, 3)
	if len(ds) != 3 {
		t.Fatalf("fetched %d, want 3", len(ds))
	}
	e.wantState(q, next, "queued")
	var cs []queue.Completion
	var want []string
	for _, d := range ds {
		if d.ID == c {
			stale := *d
			stale.Token = "999999"
			d = &stale
		} else {
			want = append(want, d.ID)
		}
		cs = append(cs, queue.Completion{D: d})
	}
	errs, err := e.q.CompleteMany(e.ctx, q, cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if wantLost := cs[i].D.ID == c; wantLost != errors.Is(err, queue.ErrLeaseLost) || (!wantLost && err != nil) {
			t.Errorf("completion of %s = %v", cs[i].D.ID, err)
		}
	}
	// next() skips what is not one of this case's ids or queues: read the
	// batch's message from the channel.
	var msg string
	for msg == "" {
		select {
		case m := <-done.ch:
			if f := strings.Fields(m.Payload); len(f) > 0 && e.ours(f[0]) {
				msg = m.Payload
			}
		case <-time.After(eventTimeout):
			t.Fatal("no message on the done channel")
		}
	}
	if got := strings.Fields(msg); !slices.Equal(got, want) {
		t.Errorf("done message %q, want the ids %v", msg, want)
	}
	done.expectQuiet(q)
	e.wantState(q, a, "succeeded")
	e.wantState(q, b, "succeeded")
	e.wantState(q, c, "running")
	e.wantCounts(q, map[string]int{"succeeded": 2, "running": 1, "queued": 1})
	e.wantOrder(q, key, next)
	e.fetchOne(q, next)
}

// testCompleteManyRepeated: the same delivery twice in one batch is
// recorded once; the second is refused as a lost lease and not counted.
func testCompleteManyRepeated(t *testing.T, e *env) {
	const q = "batchrepeat"
	id := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	d := e.fetchOne(q, id)
	errs, err := e.q.CompleteMany(e.ctx, q, []queue.Completion{{D: d}, {D: d}})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], queue.ErrLeaseLost) {
		t.Errorf("errors %v, want nil then ErrLeaseLost", errs)
	}
	e.wantState(q, id, "succeeded")
	tp, err := e.q.Throughput(e.ctx, q, 1)
	if err != nil || len(tp) != 1 || tp[0].Succeeded != 1 {
		t.Errorf("throughput = %+v, %v; want 1 succeeded", tp, err)
	}
}

// testBigBatch: a batch whose multi-member commands exceed what one Lua
// unpack() can pass (about 8000 values) is split, not refused.
func testBigBatch(t *testing.T, e *env) {
	const q, n = "batchbig", 4100
	e.mu.Lock()
	e.queues[q] = true
	e.mu.Unlock()
	for range n {
		if _, err := e.q.Enqueue(e.ctx, queue.NewJob{Queue: q, Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	ds := e.fetch(q, n)
	if len(ds) != n {
		t.Fatalf("fetched %d, want %d", len(ds), n)
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if seen[d.Token] {
			t.Fatalf("token %s handed out twice", d.Token)
		}
		seen[d.Token] = true
	}
	e.wantCounts(q, map[string]int{"running": n})
	if got := e.zcard(queue.LeasedKey(q)); got != n {
		t.Errorf("%d leases, want %d", got, n)
	}
	cs := make([]queue.Completion, n)
	for i, d := range ds {
		cs[i] = queue.Completion{D: d}
	}
	errs, err := e.q.CompleteMany(e.ctx, q, cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("completion %d: %v", i, err)
		}
	}
	e.wantCounts(q, map[string]int{"succeeded": n})
	if got := e.zcard(queue.LeasedKey(q)); got != 0 {
		t.Errorf("%d leases left, want 0", got)
	}
	if got := e.zcard(queue.ExpiringKey(q)); got != n {
		t.Errorf("%d jobs expiring, want %d", got, n)
	}
}

// testEnqueueBatchExisting: a batch of new jobs is checked with one EXISTS
// over all its keys; when some key exists (a duplicate id, the holder of an
// ordering key) every job is checked on its own, and only the duplicate is
// refused, its record untouched.
func testEnqueueBatchExisting(t *testing.T, e *env) {
	const q = "bq"
	old := e.enqueue(queue.NewJob{Queue: q, Kind: "k", Args: []byte(`{"old":true}`)})
	holder := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "key"})
	before := e.snapshot(q, old.ID)

	res, errs := e.q.EnqueueMany(e.ctx, []queue.NewJob{
		{Queue: q, Kind: "k"},
		{Queue: q, Kind: "other", ID: old.ID},
		{Queue: q, Kind: "k", OrderingKey: "key"},
		{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Hour)},
	})
	for i, want := range []string{"queued", "", "queued", "scheduled"} {
		if want == "" {
			if !errors.Is(errs[i], queue.ErrExists) {
				t.Errorf("job %d, an existing id: %v, want ErrExists", i, errs[i])
			}
			continue
		}
		if errs[i] != nil || res[i].State != want {
			t.Fatalf("job %d: %+v, %v; want state %s", i, res[i], errs[i], want)
		}
		e.wantState(q, res[i].ID, want)
	}
	if got := e.snapshot(q, old.ID); got != before {
		t.Errorf("the existing job changed:\n%s\nwant\n%s", got, before)
	}
	e.wantOrder(q, "key", holder.ID, res[2].ID)

	// All new: one EXISTS for the batch, every job stored.
	res, errs = e.q.EnqueueMany(e.ctx, []queue.NewJob{{Queue: q, Kind: "k"}, {Queue: q, Kind: "k"}})
	for i := range res {
		if errs[i] != nil {
			t.Fatalf("new job %d: %v", i, errs[i])
		}
		e.wantState(q, res[i].ID, "queued")
	}
	// Alone, a duplicate is refused too.
	if _, errs = e.q.EnqueueMany(e.ctx, []queue.NewJob{{Queue: q, Kind: "other", ID: old.ID}}); !errors.Is(errs[0], queue.ErrExists) {
		t.Errorf("a lone existing id: %v, want ErrExists", errs[0])
	}
	if got := e.zcard(queue.ReadyKey(q)); got != 5 {
		t.Errorf("ready set holds %d jobs, want 5 (old, the key's holder, three new)", got)
	}
	e.wantCounts(q, map[string]int{"queued": 6, "scheduled": 1})
}

// testCompleteManyMixed: one batch mixes every shape of completion: a plain
// job, jobs with a result, a target, follow-ups and ordering keys, in an
// order where each one's keys and arguments follow another shape's. Each is
// recorded with its own outputs, and each ordered job passes its key's turn.
func testCompleteManyMixed(t *testing.T, e *env) {
	const q = "mixed"
	plain := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	ordTarget := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "x"}).ID
	parent := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	ordPlain := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "y"}).ID
	target := e.enqueue(queue.NewJob{Queue: q, Kind: "k"}).ID
	nextX := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "x"}).ID
	nextY := e.enqueue(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "y"}).ID
	byID := map[string]*queue.Delivery{}
	for _, d := range e.fetch(q, 5) {
		byID[d.ID] = d
	}
	if len(byID) != 5 {
		t.Fatalf("fetched %d jobs, want 5", len(byID))
	}
	child := queue.NewJob{ID: e.q.NewID("kids"), Queue: "kids", Kind: "k"}
	outs := []struct {
		id string
		o  queue.Outcome
	}{
		{plain, queue.Outcome{}},
		{ordTarget, queue.Outcome{Result: []byte(`{"x":1}`), TargetURL: "/v1/images/" + ordTarget,
			TargetType: "image/png", TargetBody: []byte("png-x")}},
		{parent, queue.Outcome{FollowUps: []queue.NewJob{child}}},
		{ordPlain, queue.Outcome{}},
		{target, queue.Outcome{TargetURL: "/v1/reports/" + target, TargetType: "application/json",
			TargetBody: []byte(`{"r":1}`)}},
	}
	var cs []queue.Completion
	for _, c := range outs {
		cs = append(cs, queue.Completion{D: byID[c.id], O: c.o})
	}
	errs, err := e.q.CompleteMany(e.ctx, q, cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("completion of %s: %v", cs[i].D.ID, err)
		}
	}
	for _, c := range outs {
		e.wantState(q, c.id, "succeeded")
	}
	e.wantFields(q, plain, map[string]string{"result": "", "target": "", "children": ""})
	e.wantFields(q, ordTarget, map[string]string{"result": `{"x":1}`, "target": "/v1/images/" + ordTarget})
	e.wantFields(q, parent, map[string]string{"result": "", "target": "", "children": child.ID})
	e.wantFields(q, ordPlain, map[string]string{"result": "", "target": ""})
	e.wantFields(q, target, map[string]string{"result": "", "target": "/v1/reports/" + target})
	for id, want := range map[string]map[string]string{
		ordTarget: {"type": "image/png", "body": "png-x"},
		target:    {"type": "application/json", "body": `{"r":1}`},
	} {
		got, err := e.rdb.HGetAll(e.ctx, queue.TargetKey(q, id)).Result()
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("target of %s = %v, %v; want %v", id, got, err, want)
		}
	}
	for _, id := range []string{plain, parent, ordPlain} {
		if e.exists(queue.TargetKey(q, id)) {
			t.Errorf("job %s without a target has a target key", id)
		}
	}
	staged, err := e.rdb.LRange(e.ctx, queue.OutboxKey(q), 0, -1).Result()
	if err != nil || len(staged) != 1 || !strings.Contains(staged[0], child.ID) {
		t.Errorf("outbox = %q, %v; want one entry with %s", staged, err, child.ID)
	}
	e.wantOrder(q, "x", nextX)
	e.wantOrder(q, "y", nextY)
	got := map[string]bool{}
	for _, d := range e.fetch(q, 5) {
		got[d.ID] = true
	}
	if len(got) != 2 || !got[nextX] || !got[nextY] {
		t.Errorf("after the batch, fetched %v; want the next jobs of both keys, %s and %s", got, nextX, nextY)
	}
}

// testEnqueueMany: EnqueueMany stores a set of jobs larger than one chunk,
// across two queues, and answers each as Enqueue would: a bad job is
// refused alone, an id named twice (in one chunk, and in two) is stored
// once with its first job's record and the later job gets ErrExists, the
// jobs of an ordering key keep their order across chunks. With its context
// done, it stores nothing.
func testEnqueueMany(t *testing.T, e *env) {
	qs := []string{"many-a", "many-b"}
	e.mu.Lock()
	for _, q := range qs {
		e.queues[q] = true
	}
	e.mu.Unlock()
	const n = 600
	near, far := e.q.NewID("many-a"), e.q.NewID("many-a")
	jobs := make([]queue.NewJob, n)
	for i := range jobs {
		jobs[i] = queue.NewJob{Queue: qs[i%2], Kind: "k", Args: []byte(fmt.Sprintf(`{"i":%d}`, i))}
	}
	jobs[3].Queue = "bad name"
	jobs[10].ID, jobs[12].ID, jobs[12].Kind = near, near, "other" // one chunk
	jobs[20].ID, jobs[500].ID = far, far                          // two chunks; the same kind at the same (fake) millisecond
	ordered := []int{5, 9, 301, 599}                              // queue many-b; chunks 1, 1, 2 and 3 of 256 jobs
	for _, i := range ordered {
		jobs[i].OrderingKey = "key"
	}
	jobs[7].RunAt = e.clock.Now().Add(time.Hour)

	res, errs := e.q.EnqueueMany(e.ctx, jobs)
	if len(res) != n || len(errs) != n {
		t.Fatalf("%d answers and %d errors for %d jobs", len(res), len(errs), n)
	}
	want := map[string]map[string]int{"many-a": {}, "many-b": {}}
	for i, j := range jobs {
		switch i {
		case 3:
			if !errors.Is(errs[i], queue.ErrBadQueueName) {
				t.Errorf("job %d, a bad queue name: %v, want ErrBadQueueName", i, errs[i])
			}
			continue
		case 12, 500:
			if !errors.Is(errs[i], queue.ErrExists) {
				t.Errorf("job %d, an id named before: %v, want ErrExists", i, errs[i])
			}
			continue
		}
		state := "queued"
		if i == 7 {
			state = "scheduled"
		}
		if errs[i] != nil || res[i].State != state || res[i].ID == "" {
			t.Fatalf("job %d: %+v, %v; want state %s", i, res[i], errs[i], state)
		}
		if got := e.job(j.Queue, res[i].ID); got["kind"] != "k" || got["args"] != string(j.Args) {
			t.Errorf("job %d: record %v, want kind k and args %s", i, got, j.Args)
		}
		want[j.Queue][state]++
	}
	if res[10].ID != near || res[20].ID != far {
		t.Errorf("ids %s and %s, want %s and %s", res[10].ID, res[20].ID, near, far)
	}
	ids := make([]string, len(ordered))
	for k, i := range ordered {
		ids[k] = res[i].ID
	}
	e.wantOrder("many-b", "key", ids[0], ids[1:]...)
	for _, q := range qs {
		e.wantCounts(q, want[q])
	}

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, errs = e.q.EnqueueMany(ctx, []queue.NewJob{{Queue: "many-a", Kind: "k"}, {Queue: "many-b", Kind: "k"}})
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("job %d with a done context: %v, want context.Canceled", i, err)
		}
	}
	for _, q := range qs {
		e.wantCounts(q, want[q])
	}
}
