package statusstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
)

// TestListSnapshot: a job that moves back and forth between two states
// (running, then requeued) while jobs are listed is in every page, once, and
// counted once by the queue's stats: the state sets of a queue are read as
// one snapshot. Read one after another,
// a move from a set read later into one read earlier (running → queued)
// hid the job from the page.
func TestListSnapshot(t *testing.T) {
	t.Parallel()
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		testListSnapshot(t, redistest.Start(t).Client(t))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		testListSnapshot(t, redistest.StartCluster(t).Client(t))
	})
}

func testListSnapshot(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	q := queue.New(rdb, queue.Options{})
	s := New(rdb)
	for range 5 {
		if _, err := q.Enqueue(ctx, queue.NewJob{Queue: "snap", Kind: "k", Priority: 1}); err != nil {
			t.Fatal(err)
		}
	}
	mover, err := q.Enqueue(ctx, queue.NewJob{Queue: "snap", Kind: "k", Priority: 9})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var moves int
	var moveErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ds, err := q.Fetch(ctx, "snap", 1) // the highest priority: the mover
			if err == nil && (len(ds) != 1 || ds[0].ID != mover.ID) {
				err = errors.New("fetched another job than the mover")
			}
			if err == nil {
				_, err = q.Fail(ctx, ds[0], queue.FailRequeue, time.Time{}, "requeued", queue.ErrorDoc{})
			}
			if err != nil {
				moveErr = err
				return
			}
			moves++
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	lists := 0
	for ; time.Now().Before(deadline); lists++ {
		page, err := s.List(ctx, Filter{Queue: "snap"})
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, j := range page.Jobs {
			if j.ID == mover.ID {
				seen++
			}
		}
		if len(page.Jobs) != 6 || seen != 1 {
			t.Errorf("list %d: %d jobs, the moving one %d times; want 6 jobs, it once", lists, len(page.Jobs), seen)
			break
		}
		st, err := q.Stats(ctx, "snap")
		if err != nil {
			t.Fatal(err)
		}
		if n := st.Counts["queued"] + st.Counts["running"]; n != 6 || len(st.Counts) != 8 {
			t.Errorf("stats %d: %v, want 6 jobs queued or running", lists, st.Counts)
			break
		}
	}
	close(stop)
	wg.Wait()
	if moveErr != nil {
		t.Fatal(moveErr)
	}
	if moves < 10 {
		t.Fatalf("the job moved %d times in %d lists: the test did not race", moves, lists)
	}
	t.Logf("%d lists while the job moved %d times", lists, moves)
}

// TestListRefusesUnknownState: a state filter that is no state is an error
// (every caller, not only the validated API, is told), not an empty page.
func TestListRefusesUnknownState(t *testing.T) {
	t.Parallel()
	s := New(redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()}))
	if _, err := s.List(context.Background(), Filter{State: "bogus"}); !errors.Is(err, ErrBadState) {
		t.Errorf("List(state bogus) = %v, want ErrBadState", err)
	}
	if _, err := s.List(context.Background(), Filter{State: "failed"}); err != nil {
		t.Errorf("List(state failed) = %v", err)
	}
}
