package workers

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

type childArgs struct {
	N int `json:"n"`
}

// TestFollowUps runs on a real redis-server: a parent's follow-ups are staged
// with its success and relayed into their queues, linked both ways; an
// attempt that failed stages none.
func TestFollowUps(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	q := queue.New(rdb, queue.Options{Lease: 5 * time.Second})
	reg := NewRegistry()
	var parentRuns atomic.Int32
	MustRegister(reg, Kind[struct{}]{Name: "parent", Schema: `{"type":"object"}`, Queue: "main",
		Handler: func(_ context.Context, job *Job, _ struct{}) (Result, error) {
			parentRuns.Add(1)
			res := Result{FollowUps: []FollowUp{{Kind: "child", Args: childArgs{N: 1}},
				{Kind: "child", Args: childArgs{N: 2}, Queue: "side"}}}
			if job.Attempt == 1 {
				return res, errors.New("first attempt fails after asking for follow-ups")
			}
			return res, nil
		}})
	MustRegister(reg, Kind[childArgs]{Name: "child", Queue: "main",
		Schema: `{"type":"object","required":["n"],"properties":{"n":{"type":"integer","minimum":1}}}`,
		Handler: func(_ context.Context, _ *Job, a childArgs) (Result, error) {
			return Result{Value: a}, nil
		}})
	MustRegister(reg, Kind[struct{}]{Name: "bad-parent", Schema: `{"type":"object"}`, Queue: "main",
		Handler: func(context.Context, *Job, struct{}) (Result, error) {
			return Result{FollowUps: []FollowUp{{Kind: "child", Args: childArgs{N: 0}}}}, nil
		}})
	done := subscribeDone(t, rdb)
	runPool(t, q, reg, PoolConfig{Concurrency: 4, Queues: []QueueWeight{{Name: "main"}, {Name: "side"}},
		Backoff: func(int) time.Duration { return 0 }})
	mctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() { _ = (&queue.Maintainer{Q: q, Tick: 10 * time.Millisecond}).Run(mctx) }()
	store := statusstore.New(rdb)

	e, err := q.Enqueue(ctx, queue.NewJob{Queue: "main", Kind: "parent", Args: []byte(`{}`), MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	done.wait(t, e.ID)
	parent, err := store.Get(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if parent.State != api.StateSucceeded || parent.Attempt != 2 || len(parent.Children) != 2 {
		t.Fatalf("parent %s on attempt %d with children %v; want succeeded on 2 with 2", parent.State,
			parent.Attempt, parent.Children)
	}
	for i, id := range parent.Children {
		done.wait(t, id)
		child, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"main", "side"}[i]
		if child.State != api.StateSucceeded || child.Parent != e.ID || child.Queue != want ||
			child.Links.Parent != "/v1/jobs/"+e.ID {
			t.Errorf("child %d: %+v", i, child)
		}
	}
	// Exactly two children exist: the failed first attempt staged nothing.
	var kids int64
	for _, name := range []string{"main", "side"} {
		n, err := rdb.ZCard(ctx, queue.StateKey(name, api.StateSucceeded)).Result()
		if err != nil {
			t.Fatal(err)
		}
		kids += n
	}
	if kids != 3 || parentRuns.Load() != 2 { // the parent and its two children
		t.Errorf("%d jobs succeeded and the parent ran %d times; want 3 and 2", kids, parentRuns.Load())
	}
	if n, _ := rdb.LLen(ctx, queue.OutboxKey("main")).Result(); n != 0 {
		t.Errorf("outbox holds %d batches after the relay", n)
	}

	// A follow-up whose args fail its schema fails the attempt, permanently.
	b, err := q.Enqueue(ctx, queue.NewJob{Queue: "main", Kind: "bad-parent", Args: []byte(`{}`), MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	done.wait(t, b.ID)
	bad, err := store.Get(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bad.State != api.StateFailed || bad.Attempt != 1 || len(bad.Children) != 0 ||
		bad.Error == nil || !strings.Contains(bad.Error.Detail, "follow-up of kind \"child\"") {
		t.Errorf("bad parent: %+v", bad)
	}
}
