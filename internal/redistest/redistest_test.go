package redistest_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-dev/offload/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestStartPing(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)

	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(s.Addr) {
		t.Fatalf("Addr = %q, want 127.0.0.1:PORT", s.Addr)
	}
	if want := "redis://" + s.Addr + "/0"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}

	ctx := context.Background()
	c := s.Client(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}

	// The URL is usable by go-redis directly.
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	uc := redis.NewClient(opt)
	defer uc.Close()
	if err := uc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET via URL client: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}

	// No persistence: the server must not be configured to save.
	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v; want empty", cfg, err)
	}
	cfg, err = c.ConfigGet(ctx, "appendonly").Result()
	if err != nil || cfg["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; want no", cfg, err)
	}
}

func TestKillMakesPingFail(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{
		Addr:        s.Addr,
		MaxRetries:  -1,
		DialTimeout: time.Second,
		ReadTimeout: time.Second,
	})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING before Kill: %v", err)
	}

	s.Kill()
	s.Kill() // idempotent

	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded, want an error")
	}
	if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s after Kill succeeded, want connection refused", s.Addr)
	}
}

func TestCleanupStopsServer(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("owner", func(t *testing.T) {
		s := redistest.Start(t)
		s.Client(t) // closed by cleanup too
		addr = s.Addr
	})
	if addr == "" {
		t.Fatal("subtest did not start a server")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("server on %s still reachable after its test finished", addr)
	}
}

func TestParallelStartIsolated(t *testing.T) {
	t.Parallel()
	const n = 12
	var (
		mu    sync.Mutex
		addrs = map[string]bool{}
	)
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			s := redistest.Start(t)
			mu.Lock()
			if addrs[s.Addr] {
				t.Errorf("address %s handed out twice", s.Addr)
			}
			addrs[s.Addr] = true
			mu.Unlock()

			ctx := context.Background()
			c := s.Client(t)
			// Fresh server: the shared key name must not exist yet.
			ok, err := c.SetNX(ctx, "shared", i, 0).Result()
			if err != nil || !ok {
				t.Fatalf("SETNX shared = %v, %v; server is not fresh", ok, err)
			}
			if n, err := c.DBSize(ctx).Result(); err != nil || n != 1 {
				t.Fatalf("DBSIZE = %d, %v; want 1", n, err)
			}
		})
	}
}

// fakeTB records Fatalf/Skip calls and stops the goroutine like the real
// ones do; everything else goes to the real test.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Skip(...any)          { f.SkipNow() }
func (f *fakeTB) Skipf(string, ...any) { f.SkipNow() }
func (f *fakeTB) SkipNow() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

func runFake(t *testing.T, fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestMissingBinaryFailsLoudly(t *testing.T) {
	// t.Setenv forbids t.Parallel.
	t.Setenv("REDIS_SERVER_BIN", "/nonexistent/redis-server")

	for name, fn := range map[string]func(testing.TB){
		"Start":        func(tb testing.TB) { redistest.Start(tb) },
		"StartCluster": func(tb testing.TB) { redistest.StartCluster(tb) },
	} {
		f := runFake(t, fn)
		if f.skipped {
			t.Errorf("%s skipped the test; it must fail instead", name)
		}
		if f.fatal == "" {
			t.Errorf("%s did not call Fatalf with a missing binary", name)
			continue
		}
		for _, want := range []string{"REDIS_SERVER_BIN", "apt-get install", "redis-server"} {
			if !strings.Contains(f.fatal, want) {
				t.Errorf("%s failure %q does not mention %q", name, f.fatal, want)
			}
		}
	}

	t.Setenv("REDIS_SERVER_BIN", "")
	t.Setenv("PATH", t.TempDir())
	f := runFake(t, func(tb testing.TB) { redistest.Start(tb) })
	if f.skipped || !strings.Contains(f.fatal, "not found on PATH") || !strings.Contains(f.fatal, "apt-get install") {
		t.Errorf("without redis-server on PATH: skipped=%v fatal=%q", f.skipped, f.fatal)
	}
}

func TestClusterSetGetAcrossSlots(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	if len(cl.Addrs) != 3 {
		t.Fatalf("Addrs = %v, want 3 masters", cl.Addrs)
	}
	ctx := context.Background()
	c := cl.Client(t)

	const n = 300
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key:%d: %v", i, err)
		}
	}
	for i := range n {
		got, err := c.Get(ctx, fmt.Sprintf("key:%d", i)).Int()
		if err != nil || got != i {
			t.Fatalf("GET key:%d = %d, %v", i, got, err)
		}
	}

	// The keys must really be spread over all three masters.
	var (
		mu     sync.Mutex
		sizes  []int64
		total  int64
		master int
	)
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		size, err := m.DBSize(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		master++
		sizes = append(sizes, size)
		total += size
		return err
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	if master != 3 || total != n {
		t.Fatalf("masters=%d total keys=%d (sizes %v), want 3 masters holding %d keys", master, total, sizes, n)
	}
	for _, s := range sizes {
		if s == 0 {
			t.Fatalf("a master holds no keys (sizes %v); slots are not spread", sizes)
		}
	}
}

func TestClusterHashTaggedLua(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	c := cl.Client(t)

	// Both keys share the {job:42} hash tag, hence one slot and one node.
	script := redis.NewScript(`
redis.call("SET", KEYS[1], ARGV[1])
redis.call("RPUSH", KEYS[2], ARGV[1])
return {redis.call("GET", KEYS[1]), redis.call("LLEN", KEYS[2])}
`)
	keys := []string{"{job:42}:state", "{job:42}:events"}
	res, err := script.Run(ctx, c, keys, "queued").Slice()
	if err != nil {
		t.Fatalf("EVAL with hash-tagged keys: %v", err)
	}
	if len(res) != 2 || res[0] != "queued" || res[1] != int64(1) {
		t.Fatalf("EVAL result = %#v, want [queued 1]", res)
	}
	if got, err := c.Get(ctx, keys[0]).Result(); err != nil || got != "queued" {
		t.Fatalf("GET %s = %q, %v", keys[0], got, err)
	}

	// Keys in different slots must be rejected: proves this is a real cluster.
	_, err = c.Eval(ctx, `return redis.call("MSET", KEYS[1], "a", KEYS[2], "b")`,
		[]string{"job:1", "job:2"}).Result()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") && !strings.Contains(err.Error(), "different slot") {
		t.Fatalf("cross-slot EVAL error = %v, want a CROSSSLOT-style error", err)
	}
}

func TestStartFromBenchmark(t *testing.T) {
	t.Parallel()
	res := testing.Benchmark(func(b *testing.B) {
		s := redistest.Start(b)
		c := s.Client(b)
		ctx := context.Background()
		for b.Loop() {
			if err := c.Incr(ctx, "n").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	if res.N == 0 {
		t.Fatal("benchmark using Start did not run")
	}
}
