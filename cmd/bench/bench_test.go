package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/workers"
)

// These benchmarks call the handlers in-process, one request at a time, with
// no HTTP client and no sockets on the API side: what is left is the server's
// own CPU per request (cpu-µs/op, this process), Redis's (redis-µs/op, INFO
// cpu) and the part of it Redis spent executing the commands themselves
// (redis-cmd-µs/op, INFO commandstats). They split the submit path into its parts, to show where the
// difference with the floor goes; `bench submit` gives the throughput.
//
//	go test -run '^$' -bench . ./cmd/bench/

const benchBody = `{"kind":"sleep","args":{"ms":0}}`

func benchRedis(b *testing.B) *redis.Client {
	b.Helper()
	return redistest.Start(b).Client(b)
}

// cpuMeter reports CPU time per op of this process and of Redis.
type cpuMeter struct {
	rdb    redis.UniversalClient
	c0, r0 time.Duration
}

func startMeter(b *testing.B, rdb redis.UniversalClient) *cpuMeter {
	b.Helper()
	b.ResetTimer()
	_ = rdb.ConfigResetStat(context.Background()).Err()
	return &cpuMeter{rdb: rdb, c0: processCPU(), r0: redisCPU(context.Background(), rdb)}
}

// redisCommandTime sums the time Redis spent executing commands (INFO
// commandstats), which leaves out its network I/O and event loop. A command
// that a script calls is counted twice: within the script's time and again
// on its own line (Redis keeps no separate count for it); `bench engine
// -commandstats` shows the lines apart.
func redisCommandTime(rdb redis.UniversalClient) time.Duration {
	var total time.Duration
	for name, st := range commandStats(context.Background(), rdb) {
		if name != "info" && !strings.HasPrefix(name, "config") {
			total += time.Duration(st[1]) * time.Microsecond
		}
	}
	return total
}

func (m *cpuMeter) stop(b *testing.B) {
	b.StopTimer()
	c, r := processCPU()-m.c0, redisCPU(context.Background(), m.rdb)-m.r0
	b.ReportMetric(us(c)/float64(b.N), "cpu-µs/op")
	b.ReportMetric(us(r)/float64(b.N), "redis-µs/op")
	b.ReportMetric(us(redisCommandTime(m.rdb))/float64(b.N), "redis-cmd-µs/op")
}

func newRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/jobs", bytes.NewReader([]byte(benchBody)))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// serveLoop serves newRequest to h once per iteration, wanting 202, and
// reports the CPU and allocations per request.
func serveLoop(b *testing.B, rdb redis.UniversalClient, h http.Handler) {
	b.Helper()
	b.ReportAllocs()
	m := startMeter(b, rdb)
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, newRequest())
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	m.stop(b)
}

// BenchmarkHandler runs each variant's whole handler.
func BenchmarkHandler(b *testing.B) {
	rdb := benchRedis(b)
	for _, v := range submitVariants {
		b.Run(v.name, func(b *testing.B) {
			_ = rdb.FlushAll(context.Background()).Err()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h, err := v.handler(ctx, &env{rdb: rdb, log: zerolog.New(nil).Level(zerolog.InfoLevel).With().Timestamp().Logger()})
			if err != nil {
				b.Fatal(err)
			}
			serveLoop(b, rdb, h)
		})
	}
}

// BenchmarkPart runs the parts of the offload submit path on their own.
func BenchmarkPart(b *testing.B) {
	rdb := benchRedis(b)
	ctx := context.Background()
	b.Run("openapi-validator", func(b *testing.B) {
		spec, err := api.LoadSpec()
		if err != nil {
			b.Fatal(err)
		}
		val, err := api.NewValidator(spec, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		h := val.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
		serveLoop(b, rdb, h)
	})
	b.Run("kind-schema", func(b *testing.B) {
		reg := workers.NewRegistry()
		if err := workers.RegisterBuiltins(reg); err != nil {
			b.Fatal(err)
		}
		args := []byte(`{"ms":0}`)
		b.ReportAllocs()
		m := startMeter(b, rdb)
		for b.Loop() {
			if errs := reg.Validate("sleep", args); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
		m.stop(b)
	})
	b.Run("enqueue", func(b *testing.B) {
		_ = rdb.FlushAll(ctx).Err()
		q := queue.New(rdb, queue.Options{})
		nj := queue.NewJob{Queue: "default", Kind: "sleep", Version: 1, Args: []byte(`{"ms":0}`),
			MaxAttempts: 3, Timeout: 2 * time.Hour}
		b.ReportAllocs()
		m := startMeter(b, rdb)
		for b.Loop() {
			if _, err := q.Enqueue(ctx, nj); err != nil {
				b.Fatal(err)
			}
		}
		m.stop(b)
	})
	// What the enqueue part is measured against: asynq's enqueue (one
	// script: EXISTS, HSET of 3 fields, LPUSH), and the least any one-job
	// script call of Offload's shape can cost — a script that returns at
	// once, called with the keys and arguments the one-job enqueue script
	// gets for the job above (3 keys; now, score, id, queue, kind, args and
	// the max, timeout pairs).
	b.Run("asynq-enqueue", func(b *testing.B) {
		_ = rdb.FlushAll(ctx).Err()
		c := asynq.NewClient(asynq.RedisClientOpt{Addr: rdb.Options().Addr})
		defer func() { _ = c.Close() }()
		b.ReportAllocs()
		m := startMeter(b, rdb)
		for b.Loop() {
			if _, err := c.EnqueueContext(ctx, asynq.NewTask("sleep", []byte(`{"ms":0}`))); err != nil {
				b.Fatal(err)
			}
		}
		m.stop(b)
	})
	b.Run("script-floor", func(b *testing.B) {
		_ = rdb.FlushAll(ctx).Err()
		noop := redis.NewScript("return 1")
		q := queue.New(rdb, queue.Options{})
		b.ReportAllocs()
		m := startMeter(b, rdb)
		for b.Loop() {
			id, now := q.NewID("default"), time.Now().UnixMilli()
			keys := []string{queue.JobKey("default", id), queue.StateKey("default", "queued"), queue.ReadyKey("default")}
			if err := noop.Run(ctx, rdb, keys, now, now, id, "default", "sleep", `{"ms":0}`,
				"max", 3, "timeout", 7200000).Err(); err != nil {
				b.Fatal(err)
			}
		}
		m.stop(b)
	})
	b.Run("lpush", func(b *testing.B) {
		_ = rdb.FlushAll(ctx).Err()
		body := []byte(benchBody)
		b.ReportAllocs()
		m := startMeter(b, rdb)
		for b.Loop() {
			if err := rdb.LPush(ctx, floorKey, body).Err(); err != nil {
				b.Fatal(err)
			}
		}
		m.stop(b)
	})
}
