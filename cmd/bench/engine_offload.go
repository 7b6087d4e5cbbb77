package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/workers"
)

// offloadSystem is Offload's delivery engine: queue.Queue for enqueue,
// workers.Pool for processing, each over its own go-redis client with the
// options cmd/server gets from a plain redis:// URL (RESP2, queue.RESP; asynq
// keeps its own defaults, RESP3).
type offloadSystem struct {
	rdb  *redis.Client // the engine's
	poll *redis.Client // the completion poller's
}

func newOffloadSystem(opts *redis.Options) *offloadSystem {
	o := *opts
	o.Protocol = queue.Protocol(o.Protocol) // as cmd/server
	return &offloadSystem{rdb: redis.NewClient(&o), poll: redis.NewClient(opts)}
}

func (s *offloadSystem) close() { _ = s.rdb.Close(); _ = s.poll.Close() }

func offloadJob(name string) queue.NewJob {
	return queue.NewJob{Queue: name, Kind: "noop", Args: []byte("{}"), MaxAttempts: 3}
}

// offloadRegistry registers kind "noop", whose handler calls started (if not
// nil) and succeeds at once.
func offloadRegistry(started func()) (*workers.Registry, error) {
	reg := workers.NewRegistry()
	err := workers.Register(reg, workers.Kind[struct{}]{
		Name:   "noop",
		Schema: `{"type":"object"}`,
		Handler: func(context.Context, *workers.Job, struct{}) (workers.Result, error) {
			if started != nil {
				started()
			}
			return workers.Result{}, nil
		},
	})
	return reg, err
}

func (s *offloadSystem) fill(ctx context.Context, queues []string, counts []int, g int) error {
	q := queue.New(s.rdb, queue.Options{})
	return parallel(ctx, queues, counts, g, func(ctx context.Context, name string) error {
		_, err := q.Enqueue(ctx, offloadJob(name))
		return err
	})
}

func (s *offloadSystem) process(ctx context.Context, pc processCase, total int, w *window) error {
	q := queue.New(s.rdb, queue.Options{})
	reg, err := offloadRegistry(nil)
	if err != nil {
		return err
	}
	cfg := workers.PoolConfig{Concurrency: pc.concurrency, Strict: pc.strict, Logger: zerolog.Nop()}
	keys := make([]string, len(pc.queues))
	for i, name := range pc.queues {
		cfg.Queues = append(cfg.Queues, workers.QueueWeight{Name: name, Weight: pc.weights[i]})
		keys[i] = queue.StateKey(name, "succeeded")
	}
	pool := workers.NewPool(q, reg, cfg)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited := make(chan error, 1)
	w.begin(ctx)
	go func() { exited <- pool.Run(pctx) }()
	err = waitDone(ctx, total, exited, func(ctx context.Context) (int64, error) {
		return sumPipelined(ctx, s.poll, keys, func(p redis.Pipeliner, k string) *redis.IntCmd { return p.ZCard(ctx, k) })
	})
	w.end(ctx)
	cancel()
	return errors.Join(err, waitExit(exited))
}

func (s *offloadSystem) enqueue(ctx context.Context, n, g int, w *window) error {
	q := queue.New(s.rdb, queue.Options{})
	enq := func(ctx context.Context, name string) error {
		_, err := q.Enqueue(ctx, offloadJob(name))
		return err
	}
	return timedEnqueue(ctx, n, g, w, enq)
}

// timedEnqueue makes n calls of enq from g goroutines, timed by w, after g
// calls outside the window that warm the connection pool (and Offload's
// cache of queue names).
func timedEnqueue(ctx context.Context, n, g int, w *window, enq func(context.Context, string) error) error {
	if err := parallel(ctx, []string{"default"}, []int{g}, g, enq); err != nil {
		return err
	}
	w.begin(ctx)
	err := parallel(ctx, []string{"default"}, []int{n}, g, enq)
	w.end(ctx)
	return err
}

func (s *offloadSystem) latency(ctx context.Context, n int, _ string, h *histogram) error {
	q := queue.New(s.rdb, queue.Options{})
	starts := make(chan time.Time, 1)
	reg, err := offloadRegistry(func() {
		select {
		case starts <- time.Now():
		default:
		}
	})
	if err != nil {
		return err
	}
	pool := workers.NewPool(q, reg, workers.PoolConfig{Concurrency: 10, Logger: zerolog.Nop()})
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- pool.Run(pctx) }()
	err = oneAtATime(ctx, n, 10, starts, h, func(ctx context.Context) error {
		_, err := q.Enqueue(ctx, offloadJob("default"))
		return err
	})
	cancel()
	return errors.Join(err, waitExit(exited))
}

// parallel runs do counts[i] times with queue queues[i], from g goroutines.
func parallel(ctx context.Context, queues []string, counts []int, g int,
	do func(ctx context.Context, name string) error) error {
	var next atomic.Int64
	bounds := make([]int64, len(counts))
	var total int64
	for i, c := range counts {
		total += int64(c)
		bounds[i] = total
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range g {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				qi := 0
				for i >= bounds[qi] {
					qi++
				}
				if err := do(ctx, queues[qi]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(total)
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// sumPipelined sums one integer command per key, in one round trip.
func sumPipelined(ctx context.Context, rdb *redis.Client, keys []string,
	cmd func(p redis.Pipeliner, key string) *redis.IntCmd) (int64, error) {
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = cmd(p, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// pollEvery is how often the completion count is read: a cheap O(1) command,
// so the clock stops at most this late.
const pollEvery = 10 * time.Millisecond

// waitDone polls count until it reaches total. It fails when the workers exit
// first, or when the count does not move for stallAfter.
func waitDone(ctx context.Context, total int, exited <-chan error, count func(context.Context) (int64, error)) error {
	const stallAfter = 30 * time.Second
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var last int64 = -1
	moved := time.Now()
	for {
		n, err := count(ctx)
		if err != nil {
			return fmt.Errorf("count completions: %w", err)
		}
		if n >= int64(total) {
			return nil
		}
		if n != last {
			last, moved = n, time.Now()
		} else if time.Since(moved) > stallAfter {
			return fmt.Errorf("stalled at %d of %d completions", n, total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("workers exited after %d of %d completions: %v", n, total, err)
		case <-t.C:
		}
	}
}

// waitExit waits for the worker pool to return after its context was canceled.
func waitExit(exited <-chan error) error {
	select {
	case err := <-exited:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(30 * time.Second):
		return errors.New("workers did not stop within 30s")
	}
}

// oneAtATime enqueues warm+n jobs one at a time, each once the previous one's
// handler started, and records the time from just before each enqueue call to
// its handler's start (read from starts) for all but the warm-up jobs.
func oneAtATime(ctx context.Context, n, warm int, starts <-chan time.Time, h *histogram,
	enqueue func(ctx context.Context) error) error {
	for i := range warm + n {
		t0 := time.Now()
		if err := enqueue(ctx); err != nil {
			return fmt.Errorf("enqueue job %d: %w", i, err)
		}
		select {
		case s := <-starts:
			if i >= warm {
				h.record(s.Sub(t0))
			}
		case <-time.After(10 * time.Second):
			return fmt.Errorf("job %d did not start within 10s", i)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
