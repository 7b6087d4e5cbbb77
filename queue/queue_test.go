package queue_test

import (
	"testing"

	"github.com/offload-dev/offload/queue"
)

func TestProtocol(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want int }{{0, queue.RESP}, {2, 2}, {3, 3}} {
		if got := queue.Protocol(c.in); got != c.want {
			t.Errorf("Protocol(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	if queue.RESP != 2 {
		t.Errorf("RESP = %d, want 2 (see its comment)", queue.RESP)
	}
}
