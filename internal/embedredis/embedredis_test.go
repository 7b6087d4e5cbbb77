package embedredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A key set with a TTL is gone once the TTL has passed in wall time, as on a
// real Redis; without the clock, miniredis would keep it forever.
func TestKeysExpireInWallTime(t *testing.T) {
	s, err := Start("127.0.0.1:0", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 1 {
		t.Fatalf("just after SET: EXISTS = %d, %v; want 1", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key with a 300ms TTL still exists after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// TIME follows the wall clock too.
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now); d > time.Second || d < -time.Second {
		t.Fatalf("TIME is %v off the wall clock", d)
	}
}
