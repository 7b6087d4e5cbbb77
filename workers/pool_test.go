package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// eventTimeout bounds every wait for an event in these tests.
const eventTimeout = 20 * time.Second

// doneSub receives the ids of jobs that reached a terminal state.
type doneSub struct {
	ch   <-chan *redis.Message
	seen map[string]bool // announced while waiting for another job
}

// subscribeDone subscribes to queue.ChannelDone and returns once Redis
// confirmed it, so that no later completion is missed.
func subscribeDone(t *testing.T, rdb redis.UniversalClient) *doneSub {
	t.Helper()
	ps := rdb.Subscribe(context.Background(), queue.ChannelDone)
	t.Cleanup(func() { _ = ps.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE %s: %v", queue.ChannelDone, err)
	}
	return &doneSub{ch: ps.Channel(), seen: map[string]bool{}}
}

// wait waits until job id is announced done.
func (s *doneSub) wait(t *testing.T, id string) {
	t.Helper()
	timeout := time.After(eventTimeout)
	for !s.seen[id] {
		select {
		case m := <-s.ch:
			for _, done := range strings.Fields(m.Payload) { // a batch names several
				s.seen[done] = true
			}
		case <-timeout:
			t.Fatalf("job %s: not done within %v", id, eventTimeout)
		}
	}
}

// runPool runs a pool over q until the returned stop is called (or the test
// ends); stop returns once Pool.Run has.
func runPool(t *testing.T, q *queue.Queue, reg *Registry, cfg PoolConfig) (stop func()) {
	t.Helper()
	return runOwnPool(t, NewPool(q, reg, cfg))
}

func TestClassifyInterruptions(t *testing.T) {
	t.Parallel()
	p := NewPool(nil, NewRegistry(), PoolConfig{})
	canceledBy := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	sliceOver := fmt.Errorf("%w after step 3", errSliceOver)
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"run slice over", context.Background(), sliceOver, queue.FailRequeue},
		{"shutdown", canceledBy(errShutdown), context.Canceled, queue.FailRequeue},
		{"client cancel wins over the run slice", canceledBy(errCanceledByClient), sliceOver, queue.FailCanceled},
		{"permanent", context.Background(), Permanent(errors.New("bad")), queue.FailPermanent},
		{"plain error", context.Background(), errors.New("flaky"), queue.FailRetry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := p.classify(tc.ctx, tc.err); got != tc.want {
				t.Errorf("classify = %s, want %s", got, tc.want)
			}
		})
	}
}

// iterEnv is a real Redis with a queue and a registry holding the "count"
// iterative kind.
type iterEnv struct {
	rdb   *redis.Client
	q     *queue.Queue
	reg   *Registry
	walk  *countWalk
	store *statusstore.Store
	done  *doneSub
}

func newIterEnv(t *testing.T, walk *countWalk) *iterEnv {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	e := &iterEnv{rdb: rdb, q: queue.New(rdb, queue.Options{Lease: 5 * time.Second}), reg: NewRegistry(),
		walk: walk, store: statusstore.New(rdb), done: subscribeDone(t, rdb)}
	MustRegister(e.reg, Kind[countArgs]{Name: "count", Schema: `{"type": "object"}`, Queue: "count",
		Handler: walk.iteration().Run})
	return e
}

func (e *iterEnv) enqueue(t *testing.T, a countArgs) string {
	t.Helper()
	args, _ := json.Marshal(a)
	en, err := e.q.Enqueue(context.Background(), queue.NewJob{Queue: "count", Kind: "count", Version: 1,
		Args: args, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return en.ID
}

func (e *iterEnv) job(t *testing.T, id string) api.Job { return storedJob(t, e.store, id) }

// storedJob reads job id's status document, failing the test on an error.
func storedJob(t *testing.T, st *statusstore.Store, id string) api.Job {
	t.Helper()
	j, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestPoolRunSlice: with a run slice shorter than any step, every attempt
// takes one step and is requeued, never consuming an attempt: a job allowed
// a single attempt walks its ten steps over ten deliveries and succeeds.
func TestPoolRunSlice(t *testing.T) {
	t.Parallel()
	e := newIterEnv(t, &countWalk{})
	runPool(t, e.q, e.reg, PoolConfig{Concurrency: 1, Queues: []QueueWeight{{Name: "count"}},
		MaxRunSlice: time.Nanosecond})
	id := e.enqueue(t, countArgs{N: 100, Batch: 10})
	e.done.wait(t, id)
	job := e.job(t, id)
	if job.State != api.StateSucceeded || string(job.Result) != "5050" || job.Attempt != 1 || len(job.AttemptErrors) != 0 {
		t.Fatalf("job %s, result %s, attempt %d, attempt errors %+v: want succeeded with 5050 on attempt 1",
			job.State, job.Result, job.Attempt, job.AttemptErrors)
	}
	if b, s := e.walk.calls(); b != 1 || s != 10 {
		t.Errorf("%d begins and %d steps, want 1 and 10", b, s)
	}
}

// TestPoolShutdownRequeuesAtCheckpoint: past the shutdown grace, an iterative
// job stops at the end of its step, checkpoints it and is requeued without
// consuming its attempt; another pool resumes it from that checkpoint.
func TestPoolShutdownRequeuesAtCheckpoint(t *testing.T) {
	t.Parallel()
	inStep3 := make(chan struct{})
	walk := &countWalk{inStep: func(ctx context.Context, step int) {
		if step == 3 {
			close(inStep3)
			<-ctx.Done() // the step runs until the grace is over
		}
	}}
	e := newIterEnv(t, walk)
	cfg := PoolConfig{Concurrency: 1, Queues: []QueueWeight{{Name: "count"}}, ShutdownGrace: 50 * time.Millisecond}
	stop := runPool(t, e.q, e.reg, cfg)
	id := e.enqueue(t, countArgs{N: 100, Batch: 10})
	select {
	case <-inStep3:
	case <-time.After(eventTimeout):
		t.Fatal("step 3 never ran")
	}
	stop()
	job := e.job(t, id)
	if job.State != api.StateQueued || job.Attempt != 0 || string(job.Checkpoint) != `{"next":31,"sum":465}` {
		t.Fatalf("after shutdown: job %s, attempt %d, checkpoint %s; want queued, attempt 0, checkpoint after item 30",
			job.State, job.Attempt, job.Checkpoint)
	}

	runPool(t, e.q, e.reg, cfg)
	e.done.wait(t, id)
	job = e.job(t, id)
	if job.State != api.StateSucceeded || string(job.Result) != "5050" || job.Attempt != 1 {
		t.Fatalf("job %s, result %s, attempt %d: want succeeded with 5050 on attempt 1", job.State, job.Result, job.Attempt)
	}
	if b, s := walk.calls(); b != 1 || s != 10 {
		t.Errorf("%d begins and %d steps, want 1 and 10", b, s)
	}
}
