package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/internal/redistest"
)

// TestRedisReady: /readyz's check answers for the whole of a Redis Cluster,
// not for the one node a PING reaches.
func TestRedisReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("single", func(t *testing.T) {
		rs := redistest.Start(t)
		rdb := rs.Client(t)
		if err := redisReady(ctx, rdb); err != nil {
			t.Fatalf("ready: %v", err)
		}
		rs.Kill()
		if err := redisReady(ctx, rdb); err == nil {
			t.Fatal("ready with the server killed")
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		cc := c.Client(t)
		if err := redisReady(ctx, cc); err != nil {
			t.Fatalf("ready: %v", err)
		}
		c.KillNode(2)
		// A PING still works on the nodes that are up: the check must not.
		if err := cc.Ping(ctx).Err(); err != nil {
			t.Logf("(a plain PING failed too: %v)", err)
		}
		err := redisReady(ctx, cc)
		if err == nil {
			t.Fatal("ready with a master killed")
		}
		if !strings.Contains(err.Error(), c.Addrs[2]) {
			t.Errorf("error %q does not name the node that is down (%s)", err, c.Addrs[2])
		}
	})
}
