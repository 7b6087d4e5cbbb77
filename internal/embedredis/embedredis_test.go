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
	const tick = 10 * time.Millisecond
	s, err := Start("127.0.0.1:0", tick)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	// The TTL leaves a loaded CI machine a second between the SET and the
	// first EXISTS.
	const ttl = time.Second
	set := time.Now()
	if err := rdb.Set(ctx, "k", "v", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 1 {
		t.Fatalf("%v after SET: EXISTS = %d, %v; want 1", time.Since(set), n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			// A tick's FastForward may count the time since the last
			// tick from before the SET: a tick, or more when the ticker
			// is starved (under -race on two CPUs).
			if d := time.Since(set); d < ttl-10*tick {
				t.Fatalf("the key expired %v after SET, before its %v TTL", d, ttl)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key with a %v TTL still exists after 5s", ttl)
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
