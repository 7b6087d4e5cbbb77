package workers

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// TestPrefetchFollowsRunTimes: a pool prefetches only what its slots start
// within prefetchHorizon at its handlers' run times, within Prefetch.
func TestPrefetchFollowsRunTimes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		runAvg time.Duration
		want   int
	}{
		{"no handler returned yet", 0, 0},
		{"quick handlers: the default bound", 10 * time.Microsecond, 64},
		{"1ms handlers", time.Millisecond, 16},
		{"slower handlers", 5 * time.Millisecond, 3},
		{"slow handlers", time.Second, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(nil, NewRegistry(), PoolConfig{Concurrency: 8})
			p.runAvg = tc.runAvg
			if got := p.prefetchLocked(); got != tc.want {
				t.Errorf("prefetch = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestOrderSkipsEmptiedQueues: a queue that a fetch emptied is left out of
// the fetch order until a wake-up names it (or the safety net), and a
// wake-up that came while the fetch ran keeps it in.
func TestOrderSkipsEmptiedQueues(t *testing.T) {
	t.Parallel()
	names := func(ts []queueTry) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.name)
		}
		return out
	}
	tests := []struct {
		name string
		do   func(p *Pool)
		want []string
	}{
		{"none emptied", func(*Pool) {}, []string{"a", "b", "c"}},
		{"emptied", func(p *Pool) { p.markEmpty(p.order()[0]) }, []string{"b", "c"}},
		{"emptied, then woken", func(p *Pool) {
			p.markEmpty(p.order()[0])
			p.wake("a")
		}, []string{"a", "b", "c"}},
		{"woken while its fetch ran", func(p *Pool) {
			try := p.order()[1] // the fetch begins
			p.wake("b")
			p.markEmpty(try) // and comes back short
		}, []string{"a", "b", "c"}},
		{"another queue woken", func(p *Pool) {
			p.markEmpty(p.order()[0])
			p.wake("c")
			p.wake("elsewhere")
		}, []string{"b", "c"}},
		{"safety net", func(p *Pool) {
			try := p.order()[2]
			p.markEmpty(try)
			p.wakeMu.Lock()
			p.empty["c"] = emptyMark{wakes: try.wakes, at: time.Now().Add(-emptyFor)}
			p.wakeMu.Unlock()
		}, []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := NewPool(nil, NewRegistry(), PoolConfig{Strict: true,
				Queues: []QueueWeight{{Name: "a"}, {Name: "b"}, {Name: "c"}}})
			tc.do(p)
			if got := names(p.order()); !slices.Equal(got, tc.want) {
				t.Errorf("order = %v, want %v", got, tc.want)
			}
		})
	}
}

// gateEnv is a real Redis and a registry whose kind "gate" reports each start
// on starts and returns when told to on proceed (or when its context ends,
// with its error).
type gateEnv struct {
	q       *queue.Queue
	reg     *Registry
	store   *statusstore.Store
	starts  chan string
	proceed chan struct{}
}

type gateArgs struct {
	Name string `json:"name"`
}

func newGateEnv(t *testing.T) *gateEnv {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	e := &gateEnv{q: queue.New(rdb, queue.Options{Lease: 5 * time.Second}), reg: NewRegistry(),
		store: statusstore.New(rdb), starts: make(chan string, 100), proceed: make(chan struct{})}
	MustRegister(e.reg, Kind[gateArgs]{Name: "gate", Schema: `{"type":"object"}`,
		Handler: func(ctx context.Context, _ *Job, a gateArgs) (Result, error) {
			e.starts <- a.Name
			select {
			case <-e.proceed:
				return Result{}, nil
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		}})
	return e
}

func (e *gateEnv) enqueue(t *testing.T, queueName, name string) string {
	t.Helper()
	args, _ := json.Marshal(gateArgs{Name: name})
	en, err := e.q.Enqueue(context.Background(), queue.NewJob{Queue: queueName, Kind: "gate", Args: args,
		MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return en.ID
}

// next waits for the next handler start and returns its job's name.
func (e *gateEnv) next(t *testing.T) string {
	t.Helper()
	select {
	case name := <-e.starts:
		return name
	case <-time.After(eventTimeout):
		t.Fatal("no handler started")
		return ""
	}
}

func (e *gateEnv) job(t *testing.T, id string) api.Job { return storedJob(t, e.store, id) }

// waitFor polls the pool's state until cond holds.
func waitFor(t *testing.T, p *Pool, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		p.mu.Lock()
		ok := cond()
		p.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, eventTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// quick has p prefetch as if its handlers had been quick so far, and keep
// its waiting jobs however long they wait (no give-back), for the tests that
// hold jobs waiting on purpose.
func quick(p *Pool) {
	p.mu.Lock()
	p.runAvg = time.Microsecond
	p.giveBackAfter = time.Hour
	p.mu.Unlock()
}

// runOwnPool runs p until the returned stop is called (or the test ends).
func runOwnPool(t *testing.T, p *Pool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Pool.Run: %v", err)
			}
		case <-time.After(eventTimeout):
			t.Errorf("Pool.Run did not return within %v of its shutdown", eventTimeout)
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestPoolStrictTakesWokenQueueFirst: a strict pool skips its first queue
// once a fetch emptied it; a job arriving there wakes it, and it runs before
// the jobs of the later queue still in their queue.
func TestPoolStrictTakesWokenQueueFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		prefetch int
	}{{"no prefetch", -1}, {"prefetch", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newGateEnv(t)
			for _, name := range []string{"low1", "low2", "low3", "low4"} {
				e.enqueue(t, "low", name)
			}
			p := NewPool(e.q, e.reg, PoolConfig{Concurrency: 1, Prefetch: tc.prefetch, Strict: true,
				Queues: []QueueWeight{{Name: "high"}, {Name: "low"}}})
			quick(p)
			runOwnPool(t, p)
			// low1 runs: the fetch that took it found high empty first.
			if got := e.next(t); got != "low1" {
				t.Fatalf("first job %s, want low1", got)
			}
			e.enqueue(t, "high", "high")
			// The wake-up tells the pool: a fetch that ran before it came
			// (pub/sub is a message away) did not know yet.
			waitFor(t, p, "the wake-up of high heard", func() bool {
				p.wakeMu.Lock()
				defer p.wakeMu.Unlock()
				return p.wakes["high"] > 0
			})
			order := []string{"low1"}
			for len(order) < 5 {
				e.proceed <- struct{}{}
				order = append(order, e.next(t))
			}
			e.proceed <- struct{}{}
			// Without prefetch the high job is next; with it, the job
			// already waiting for the slot may go first.
			h := slices.Index(order, "high")
			if h < 0 || h > 1+p.cfg.Prefetch {
				t.Errorf("jobs ran in the order %v: high should run within %d jobs of its enqueue",
					order, 1+p.cfg.Prefetch)
			}
		})
	}
}

// TestPoolShutdownRequeuesWaitingJobs: jobs fetched ahead of a slot are held
// (never more handlers than Concurrency) and go back to their queue on
// shutdown without spending an attempt, like the interrupted running job.
func TestPoolShutdownRequeuesWaitingJobs(t *testing.T) {
	t.Parallel()
	e := newGateEnv(t)
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		ids = append(ids, e.enqueue(t, "default", name))
	}
	p := NewPool(e.q, e.reg, PoolConfig{Concurrency: 1, Prefetch: 2, ShutdownGrace: 50 * time.Millisecond})
	quick(p)
	stop := runOwnPool(t, p)
	e.next(t)
	waitFor(t, p, "two jobs waiting for the slot", func() bool { return len(p.waiting) == 2 })
	for _, id := range ids {
		if j := e.job(t, id); j.State != api.StateRunning {
			t.Fatalf("job %s is %s while held, want running", id, j.State)
		}
	}
	stop()
	select {
	case name := <-e.starts:
		t.Errorf("job %s started with the slot taken", name)
	default:
	}
	for _, id := range ids {
		if j := e.job(t, id); j.State != api.StateQueued || j.Attempt != 0 {
			t.Errorf("after shutdown, job %s is %s at attempt %d, want queued at attempt 0", id, j.State, j.Attempt)
		}
	}
}

// TestPoolGivesBackJobsBehindSlowHandlers: jobs prefetched behind a handler
// that turned slow go back to their queue, unstarted and without spending an
// attempt, once they waited giveBackAfter; the pool prefetches nothing more
// until a handler returns, then runs them in their order.
func TestPoolGivesBackJobsBehindSlowHandlers(t *testing.T) {
	t.Parallel()
	e := newGateEnv(t)
	e.enqueue(t, "default", "slow")
	a, b := e.enqueue(t, "default", "a"), e.enqueue(t, "default", "b")
	p := NewPool(e.q, e.reg, PoolConfig{Concurrency: 1, Prefetch: 2})
	quick(p)
	p.giveBackAfter = 20 * time.Millisecond
	stop := runOwnPool(t, p)
	defer stop()
	if name := e.next(t); name != "slow" {
		t.Fatalf("first start: %s, want slow", name)
	}
	waitFor(t, p, "the waiting jobs given back", func() bool { return p.stalled && len(p.waiting) == 0 })
	for _, id := range []string{a, b} {
		deadline := time.Now().Add(eventTimeout)
		for e.job(t, id).State != api.StateQueued {
			if time.Now().After(deadline) {
				t.Fatalf("job %s not queued again within %v", id, eventTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Stalled, the pool leaves them in the queue for other processes: it
	// does not fetch them back while its slot is taken.
	time.Sleep(5 * p.giveBackAfter)
	for _, id := range []string{a, b} {
		if j := e.job(t, id); j.State != api.StateQueued || j.Attempt != 0 {
			t.Errorf("job %s is %s at attempt %d while the slow handler runs, want queued at attempt 0", id, j.State, j.Attempt)
		}
	}
	e.proceed <- struct{}{} // the slow handler returns
	for _, want := range []string{"a", "b"} {
		if name := e.next(t); name != want {
			t.Fatalf("next start: %s, want %s", name, want)
		}
		e.proceed <- struct{}{}
	}
	stop()
	for _, id := range []string{a, b} {
		if j := e.job(t, id); j.State != api.StateSucceeded || j.Attempt != 1 {
			t.Errorf("job %s ended %s at attempt %d, want succeeded at attempt 1", id, j.State, j.Attempt)
		}
	}
}

// TestPoolCancelWaitingJob: a job canceled while it waits for a slot is
// recorded canceled at once, and its handler never runs.
func TestPoolCancelWaitingJob(t *testing.T) {
	t.Parallel()
	e := newGateEnv(t)
	e.enqueue(t, "default", "running")
	waiting := e.enqueue(t, "default", "waiting")
	p := NewPool(e.q, e.reg, PoolConfig{Concurrency: 1, Prefetch: 1})
	quick(p)
	stop := runOwnPool(t, p)
	e.next(t)
	waitFor(t, p, "a job waiting for the slot", func() bool { return len(p.waiting) == 1 })
	done := subscribeDone(t, e.q.Client())
	if _, err := e.q.Cancel(context.Background(), waiting); err != nil {
		t.Fatal(err)
	}
	done.wait(t, waiting)
	if j := e.job(t, waiting); j.State != api.StateCanceled {
		t.Errorf("canceled waiting job is %s, want canceled", j.State)
	}
	e.proceed <- struct{}{}
	stop() // every job started was started by now
	select {
	case name := <-e.starts:
		t.Errorf("job %s started after its cancellation", name)
	default:
	}
}
