package main

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// BenchmarkEnqueueShape measures what one-goroutine enqueue costs Redis for
// each shape of the enqueue script, to show where the gap with asynq's
// enqueue comes from (docs/benchmarks.md, "Why enqueue with one goroutine is
// still below asynq"). Each sub-benchmark enqueues b.N jobs into one queue,
// one round trip each, and reports the time Redis spent in EVALSHA per job
// (evalsha-µs/op: INFO commandstats, the commands the script calls
// included) next to the wall time per job.
//
//   - offload: queue.Enqueue, the shipped script: EXISTS, HSET of the record,
//     ZADD to the st:queued index, ZADD to the ready set.
//   - no-state-index: the same without the st:queued ZADD (what a queued
//     state that is not indexed by creation time would cost).
//   - list-ready: that, with a list as the ready set (LPUSH instead of ZADD):
//     no per-job priority and no creation-ordered index of queued jobs.
//   - asynq: asynq.Client.EnqueueContext (EXISTS, HSET, LPUSH).
//
// The two middle shapes are not Offload's code: they are the shipped script
// (enqueueOneScript in queue/enqueue.go) with one write removed or replaced,
// run with the same keys and arguments; keep them in step with it.
//
//	go test -run '^$' -bench EnqueueShape -benchtime 20000x -count 5 ./cmd/bench/
func BenchmarkEnqueueShape(b *testing.B) {
	rdb := benchRedis(b)
	ctx := context.Background()
	job := offloadJob("default")
	b.Run("offload", func(b *testing.B) {
		q := queue.New(rdb, queue.Options{})
		shapeLoop(b, rdb, func() error {
			_, err := q.Enqueue(ctx, job)
			return err
		})
	})
	for _, s := range []struct{ name, write string }{
		{"no-state-index", `redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])`},
		{"list-ready", `redis.call('LPUSH', KEYS[2], ARGV[3])`},
	} {
		script := redis.NewScript(`
local seen = redis.call('EXISTS', KEYS[1], KEYS[1], KEYS[2])
if seen >= 2 then return 0 end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'state', 'queued', 'kind', ARGV[5], 'args', ARGV[6], unpack(ARGV, 7))
` + s.write + `
if seen == 0 then redis.call('PUBLISH', 'offload:wake', ARGV[4]) end
return 1`)
		b.Run(s.name, func(b *testing.B) {
			q := queue.New(rdb, queue.Options{})
			ready := queue.ReadyKey(job.Queue)
			shapeLoop(b, rdb, func() error {
				id, now := q.NewID(job.Queue), time.Now().UnixMilli()
				return script.Run(ctx, rdb, []string{queue.JobKey(job.Queue, id), ready},
					now, now, id, job.Queue, job.Kind, job.Args, "max", job.MaxAttempts).Err()
			})
		})
	}
	b.Run("asynq", func(b *testing.B) {
		c := asynq.NewClient(asynq.RedisClientOpt{Addr: rdb.Options().Addr})
		defer func() { _ = c.Close() }()
		shapeLoop(b, rdb, func() error {
			_, err := c.EnqueueContext(ctx, asynq.NewTask("noop", nil))
			return err
		})
	})
}

// shapeLoop runs enqueue b.N times on an empty Redis (after one call that
// loads the script) and reports the EVALSHA time per call.
func shapeLoop(b *testing.B, rdb *redis.Client, enqueue func() error) {
	ctx := context.Background()
	_ = rdb.FlushAll(ctx).Err()
	if err := enqueue(); err != nil {
		b.Fatal(err)
	}
	_ = rdb.ConfigResetStat(ctx).Err()
	b.ResetTimer()
	for b.Loop() {
		if err := enqueue(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st, ok := commandStats(ctx, rdb)["evalsha"]
	if !ok {
		b.Fatal("no evalsha line in INFO commandstats")
	}
	b.ReportMetric(float64(st[1])/float64(b.N), "evalsha-µs/op")
}
