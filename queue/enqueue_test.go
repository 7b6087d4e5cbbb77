package queue_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// testConcurrentEnqueue sends many enqueues at once, across queues, mixing
// scheduled and ordered jobs and one duplicate: they travel in shared
// batches, and each call gets its own answer — the duplicate fails alone.
func testConcurrentEnqueue(t *testing.T, e *env) {
	queues := []string{"cq-a", "cq-b", "cq-c"}
	e.mu.Lock()
	for _, q := range queues {
		e.queues[q] = true
	}
	e.mu.Unlock()
	dup := e.enqueue(queue.NewJob{Queue: "cq-a", Kind: "k"})
	const n, dupAt = 300, 6 // 6 % 3 == 0: queue cq-a
	res := make([]queue.Enqueued, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := queue.NewJob{Queue: queues[i%3], Kind: "k", Priority: i % 10}
			switch {
			case i == dupAt:
				// Another kind: a write of this call's own kind at the same
				// (fake) millisecond would pass for a retry of this call.
				j.ID, j.Kind = dup.ID, "other"
			case i%5 == 0:
				j.RunAt = e.clock.Now().Add(time.Hour)
			case i%7 == 0:
				j.OrderingKey = "key"
			}
			res[i], errs[i] = e.q.Enqueue(e.ctx, j)
		}()
	}
	wg.Wait()
	want := map[string]map[string]int{}
	ready := map[string]int64{}
	held := map[string]bool{}
	for _, q := range queues {
		want[q] = map[string]int{}
	}
	want["cq-a"]["queued"] = 1 // dup
	ready["cq-a"] = 1
	seen := map[string]bool{dup.ID: true}
	for i := range n {
		q := queues[i%3]
		if i == dupAt {
			if !errors.Is(errs[i], queue.ErrExists) {
				t.Errorf("enqueue of an existing id: %v, want ErrExists", errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("enqueue %d: %v", i, errs[i])
		}
		if seen[res[i].ID] {
			t.Fatalf("id %s answered twice", res[i].ID)
		}
		seen[res[i].ID] = true
		state := "queued"
		switch {
		case i%5 == 0:
			state = "scheduled"
		case i%7 == 0:
			if !held[q] {
				held[q] = true
				ready[q]++
			}
		default:
			ready[q]++
		}
		if res[i].State != state {
			t.Errorf("enqueue %d answered state %q, want %q", i, res[i].State, state)
		}
		want[q][state]++
		e.wantState(q, res[i].ID, state)
	}
	for _, q := range queues {
		e.wantCounts(q, want[q])
		if got := e.zcard(queue.ReadyKey(q)); got != ready[q] {
			t.Errorf("ready set of %s holds %d jobs, want %d (one per unordered job, one for the key)", q, got, ready[q])
		}
	}
}

// TestEnqueueGroupCommit checks that concurrent enqueues share script calls:
// while the first call's script is slowed down, the others gather, and go
// in a few batches instead of one call each.
func TestEnqueueGroupCommit(t *testing.T) {
	var scripts atomic.Int64
	q, rdb := slowQueue(t, &scripts)
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := q.Enqueue(t.Context(), queue.NewJob{Queue: "default", Kind: "k"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := rdb.ZCard(t.Context(), queue.ReadyKey("default")).Val(); got != n {
		t.Fatalf("%d jobs ready, want %d", got, n)
	}
	if c := scripts.Load(); c > n/4 {
		t.Errorf("%d script calls for %d concurrent enqueues: not batched", c, n)
	}
}

// TestEnqueueSameIDConcurrently: concurrent calls with one id of their own
// meet in one batch; one job is stored, with the record of the call told
// it was, and the other call gets ErrExists. (In one script call the second
// write would replace the first's record, and both calls would be told
// "queued".)
func TestEnqueueSameIDConcurrently(t *testing.T) {
	var scripts atomic.Int64
	q, rdb := slowQueue(t, &scripts)
	if _, err := q.Enqueue(t.Context(), queue.NewJob{Queue: "default", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		id := q.NewID("default")
		// A call in flight holds the batcher's flights; the two calls with
		// the id wait for it and leave together.
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { _, _ = q.Enqueue(t.Context(), queue.NewJob{Queue: "default", Kind: "k"}) })
		}
		time.Sleep(10 * time.Millisecond)
		kinds := []string{"a", "b"}
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() { _, errs[i] = q.Enqueue(t.Context(), queue.NewJob{Queue: "default", ID: id, Kind: kinds[i]}) })
		}
		wg.Wait()
		rec := rdb.HGet(t.Context(), queue.JobKey("default", id), "kind").Val()
		stored := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if stored >= 0 {
					t.Fatalf("round %d: both calls with id %s were told it was stored", round, id)
				}
				stored = i
			case !errors.Is(err, queue.ErrExists):
				t.Fatalf("round %d, call %d: %v", round, i, err)
			}
		}
		if stored < 0 || rec != kinds[stored] {
			t.Fatalf("round %d: record of kind %q; calls answered %v", round, rec, errs)
		}
	}
}

// TestEnqueueCanceledContext: a call whose context is done before its job
// is handed to a batch stores nothing and says so.
func TestEnqueueCanceledContext(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	q := queue.New(rdb, queue.Options{})
	// Register the queue first: the canceled call must fail on its own context.
	if _, err := q.Enqueue(t.Context(), queue.NewJob{Queue: "default", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := q.Enqueue(ctx, queue.NewJob{Queue: "default", Kind: "k"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("enqueue with a canceled context: %v", err)
	}
	if got := rdb.ZCard(t.Context(), queue.ReadyKey("default")).Val(); got != 1 {
		t.Fatalf("%d jobs ready, want 1", got)
	}
}

// slowQueue returns a Queue over miniredis whose script calls are counted
// in calls and each slowed down by 50 ms, and its client.
func slowQueue(t *testing.T, calls *atomic.Int64) (*queue.Queue, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(slowScripts{calls: calls, delay: 50 * time.Millisecond})
	return queue.New(rdb, queue.Options{}), rdb
}

// slowScripts counts script calls and slows each down.
type slowScripts struct {
	calls *atomic.Int64
	delay time.Duration
}

func (slowScripts) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h slowScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			h.calls.Add(1)
			time.Sleep(h.delay)
		}
		return next(ctx, cmd)
	}
}

func (h slowScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// testHandoff: a job handed off to an idle queue's caller starts leased and
// running, completes like a fetched one, and is reaped like one when its
// runner dies; a busy, paused or ordered queue declines and stores nothing.
func testHandoff(t *testing.T, e *env) {
	const q = "handoff"
	e.mu.Lock()
	e.queues[q] = true
	e.mu.Unlock()
	done := e.subscribe(queue.ChannelDone)
	en, d, err := e.q.Handoff(e.ctx, queue.NewJob{Queue: q, Kind: "k", Args: []byte(`{"n":1}`), MaxAttempts: 3})
	if err != nil {
		t.Fatalf("Handoff to an idle queue: %v", err)
	}
	if en.State != "running" || d == nil || d.ID != en.ID || d.Attempt != 1 || d.Token == "" ||
		d.Kind != "k" || string(d.Args) != `{"n":1}` || d.MaxAttempts != 3 {
		t.Fatalf("Handoff = %+v, %+v", en, d)
	}
	e.wantState(q, d.ID, "running")
	e.wantFields(q, d.ID, map[string]string{"state": "running", "attempt": "1", "kind": "k"})
	e.wantScore(queue.LeasedKey(q), d.ID, e.nowMS()+testLease.Milliseconds())
	e.wantNotIn(queue.ReadyKey(q), d.ID)
	e.fetchNone(q)
	e.complete(d, queue.Outcome{Result: []byte(`7`)})
	done.expect(d.ID)
	e.wantState(q, d.ID, "succeeded")

	// A runner that dies: its lease expires and the reaper puts the job back
	// in its queue.
	_, lost, err := e.q.Handoff(e.ctx, queue.NewJob{Queue: q, Kind: "k", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testLease)
	if n, err := e.q.Reap(e.ctx, q, 10); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	e.wantState(q, lost.ID, "queued")
	if err := e.q.Complete(e.ctx, lost, queue.Outcome{}); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("complete of a reaped hand-off: %v, want ErrLeaseLost", err)
	}

	// Declined, storing nothing: jobs ready ahead, a paused queue, an
	// ordering key, a run_at. The reaped job is ready: the queue is busy.
	declined := func(j queue.NewJob) {
		t.Helper()
		j.ID = e.q.NewID(q)
		if _, d, err := e.q.Handoff(e.ctx, j); !errors.Is(err, queue.ErrDeclined) || d != nil {
			t.Errorf("Handoff(%+v) = %v, %v; want ErrDeclined", j, d, err)
		}
		if e.exists(queue.JobKey(q, j.ID)) {
			t.Errorf("a declined hand-off stored %s", j.ID)
		}
	}
	declined(queue.NewJob{Queue: q, Kind: "k"})
	e.fetchOne(q, lost.ID)
	if err := e.q.SetPaused(e.ctx, q, true); err != nil {
		t.Fatal(err)
	}
	declined(queue.NewJob{Queue: q, Kind: "k"})
	if err := e.q.SetPaused(e.ctx, q, false); err != nil {
		t.Fatal(err)
	}
	declined(queue.NewJob{Queue: q, Kind: "k", OrderingKey: "o"})
	declined(queue.NewJob{Queue: q, Kind: "k", RunAt: e.clock.Now().Add(time.Minute)})
	if _, _, err := e.q.Handoff(e.ctx, queue.NewJob{ID: d.ID, Queue: q, Kind: "k"}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("Handoff of an existing id: %v, want ErrExists", err)
	}
	if backlog, paused, err := e.q.Admission(e.ctx, q, 0); err != nil || backlog != 0 || paused {
		t.Errorf("Admission = %d, %v, %v; want 0, false", backlog, paused, err)
	}
}
