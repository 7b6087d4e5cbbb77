package queue

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/redis/go-redis/v9"
)

// Unavailable reports whether err means Redis could not serve a call for
// now: unreachable or too slow (a network error, a connection cut, ctx's
// deadline, the pool's), or answering that it cannot (a Redis Cluster with a
// slot uncovered, a failover under way, a dataset loading, a replica that
// has not been promoted yet, a script running past its time limit). Such a call may succeed if made again later;
// any other error (a script's refusal, ErrLeaseLost, a bad argument) will
// not. A client that was closed is unavailable too, for good.
func Unavailable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	for _, prefix := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "READONLY", "BUSY "} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
