package workers

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// TestPersist: a write is made again while Redis is unavailable, and only
// then; the context bounds the tries.
func TestPersist(t *testing.T) {
	t.Parallel()
	try := func(errs ...error) func(context.Context) error {
		return func(context.Context) error {
			if len(errs) == 0 {
				return nil
			}
			err := errs[0]
			errs = errs[1:]
			return err
		}
	}
	count := func(write func(context.Context) error, n *int) func(context.Context) error {
		return func(ctx context.Context) error { *n++; return write(ctx) }
	}
	ctx := context.Background()

	var n int
	if err := persist(ctx, count(try(io.EOF, io.ErrUnexpectedEOF, nil), &n)); err != nil || n != 3 {
		t.Errorf("two unavailable tries, then success: %v after %d tries, want nil after 3", err, n)
	}
	for _, final := range []error{queue.ErrLeaseLost, redis.ErrClosed, errors.New("ERR script refused")} {
		n = 0
		if err := persist(ctx, count(try(final), &n)); !errors.Is(err, final) || n != 1 {
			t.Errorf("%v: %v after %d tries, want it after 1", final, err, n)
		}
	}
	n = 0
	bounded, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	always := func(context.Context) error { n++; return io.EOF }
	if err := persist(bounded, always); !errors.Is(err, io.EOF) || n < 2 {
		t.Errorf("unavailable until the deadline: %v after %d tries, want io.EOF after several", err, n)
	}
	if bounded.Err() == nil {
		t.Error("persist returned before its context's deadline while Redis stayed unavailable")
	}
}
