package main

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynqVersion is the version of github.com/hibiken/asynq in go.mod.
const asynqVersion = "v0.26.0"

// asynqSystem is github.com/hibiken/asynq with its default settings: a Client
// for enqueue and a Server per measurement, each with the Redis options
// asynq.RedisClientOpt gives (the same go-redis defaults as Offload's).
type asynqSystem struct {
	opt    asynq.RedisClientOpt
	client *asynq.Client
	poll   *redis.Client
}

func newAsynqSystem(opts *redis.Options) *asynqSystem {
	opt := asynq.RedisClientOpt{Addr: opts.Addr, Username: opts.Username, Password: opts.Password, DB: opts.DB}
	return &asynqSystem{opt: opt, client: asynq.NewClient(opt), poll: redis.NewClient(opts)}
}

func (s *asynqSystem) close() { _ = s.client.Close(); _ = s.poll.Close() }

// asynqProcessedKey is asynq's counter of the tasks of queue q that were
// processed (base.ProcessedTotalKey): its Done script increments it in the
// same script that removes the task, as Offload's Complete adds the job to
// its succeeded set.
func asynqProcessedKey(q string) string { return "asynq:{" + q + "}:processed" }

func (s *asynqSystem) fill(ctx context.Context, queues []string, counts []int, g int) error {
	return parallel(ctx, queues, counts, g, func(ctx context.Context, name string) error {
		_, err := s.client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(name))
		return err
	})
}

func (s *asynqSystem) server(c int, queues []string, weights []int, strict bool, check time.Duration) *asynq.Server {
	qs := make(map[string]int, len(queues))
	for i, name := range queues {
		qs[name] = weights[i]
	}
	return asynq.NewServer(s.opt, asynq.Config{Concurrency: c, Queues: qs, StrictPriority: strict,
		TaskCheckInterval: check, LogLevel: asynq.WarnLevel})
}

func (s *asynqSystem) process(ctx context.Context, pc processCase, total int, w *window) error {
	srv := s.server(pc.concurrency, pc.queues, pc.weights, pc.strict, 0)
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error { return nil })
	keys := make([]string, len(pc.queues))
	for i, name := range pc.queues {
		keys[i] = asynqProcessedKey(name)
	}
	exited := make(chan error, 1)
	w.begin(ctx)
	if err := srv.Start(mux); err != nil {
		w.end(ctx)
		return err
	}
	err := waitDone(ctx, total, exited, func(ctx context.Context) (int64, error) {
		return sumPipelined(ctx, s.poll, keys, func(p redis.Pipeliner, k string) *redis.IntCmd {
			c := redis.NewIntCmd(ctx, "get", k) // GET: nil (0) until the first task is done
			_ = p.Process(ctx, c)
			return c
		})
	})
	w.end(ctx)
	srv.Shutdown()
	return err
}

func (s *asynqSystem) enqueue(ctx context.Context, n, g int, w *window) error {
	enq := func(ctx context.Context, _ string) error {
		_, err := s.client.EnqueueContext(ctx, asynq.NewTask("noop", nil))
		return err
	}
	return timedEnqueue(ctx, n, g, w, enq)
}

func (s *asynqSystem) latency(ctx context.Context, n int, variant string, h *histogram) error {
	check, warm := time.Duration(0), 2
	if variant == latencyAsynqPoll1ms {
		check, warm = time.Millisecond, 10
	}
	srv := s.server(10, []string{"default"}, []int{1}, false, check)
	starts := make(chan time.Time, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		select {
		case starts <- time.Now():
		default:
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return err
	}
	defer srv.Shutdown()
	if n == 0 {
		return nil
	}
	return oneAtATime(ctx, n, warm, starts, h, func(ctx context.Context) error {
		_, err := s.client.EnqueueContext(ctx, asynq.NewTask("noop", nil))
		return err
	})
}
