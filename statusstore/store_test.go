package statusstore

import (
	"context"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
)

// TestRunAtOnlyWhileDue: the status document tells run_at while the job
// waits for it, and not once it has stopped waiting (the record keeps it).
func TestRunAtOnlyWhileDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	q := queue.New(rdb, queue.Options{})
	s := New(rdb)
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	en, err := q.Enqueue(ctx, queue.NewJob{Queue: "later", Kind: "k", RunAt: at})
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.Get(ctx, en.ID)
	if err != nil || j.State != api.StateScheduled || j.RunAt == nil || !j.RunAt.Equal(at) {
		t.Fatalf("scheduled job: %+v, %v; want state scheduled with run_at %v", j, err, at)
	}
	if _, err := q.Cancel(ctx, en.ID); err != nil {
		t.Fatal(err)
	}
	j, err = s.Get(ctx, en.ID)
	if err != nil || j.State != api.StateCanceled || j.RunAt != nil {
		t.Fatalf("canceled job: state %s, run_at %v, %v; want canceled without run_at", j.State, j.RunAt, err)
	}
}
