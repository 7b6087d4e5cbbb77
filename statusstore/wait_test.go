package statusstore

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// TestWaiterBatchMessage: a message on the done channel names one job, or
// the space-separated jobs of a batch of completions; every waiter of every
// job named is told, and no other.
func TestWaiterBatchMessage(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	w := NewWaiter(rdb)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("subscription not ready")
	}

	a1, _ := w.Watch("q.a")
	a2, _ := w.Watch("q.a")
	b, _ := w.Watch("q.b")
	c, stopC := w.Watch("q.c")
	defer stopC()
	tests := []struct {
		name    string
		payload string
		done    []<-chan struct{}
	}{
		{"batch", "q.a q.x q.b", []<-chan struct{}{a1, a2, b}},
		{"single", "q.c", []<-chan struct{}{c}},
	}
	for _, tc := range tests {
		if err := rdb.Publish(ctx, queue.ChannelDone, tc.payload).Err(); err != nil {
			t.Fatal(err)
		}
		for i, ch := range tc.done {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: waiter %d not told", tc.name, i)
			}
		}
		if tc.name == "batch" {
			select {
			case <-c:
				t.Fatal("a waiter of a job the batch does not name was told")
			default:
			}
		}
	}
	if n := w.Waiting(); n != 0 {
		t.Errorf("%d waiting after every job was done, want 0", n)
	}
}
