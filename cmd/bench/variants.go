package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/expectconn"
	"github.com/offload-dev/offload/handlers"
	"github.com/offload-dev/offload/metrics"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/workers"
)

// env is what a variant builds its server from. Every variant of one run
// shares the Redis server and client; the database is flushed before each
// measurement.
type env struct {
	rdb redis.UniversalClient
	log zerolog.Logger
}

// variant is one server under test: a name, the handler it serves and,
// optionally, a wrapper around its listener, extra request headers, the
// status every answer must have, and how to count what it stored.
//
// To add a variant (say, the Offload API behind expectconn), append to
// submitVariants; the load, the table, the ratio and -json follow.
type variant struct {
	// name is the row label and the -variants selector.
	name string
	// about is one line for -list.
	about string
	// handler builds a fresh handler for one measurement; ctx is canceled
	// once the server has shut down, and stops what the handler started.
	handler func(ctx context.Context, e *env) (http.Handler, error)
	// listener, if set, wraps the loopback listener (e.g. expectconn.NewListener).
	listener func(net.Listener) net.Listener
	// header is added to every request (e.g. "Expect: 202-accepted").
	header http.Header
	// want is the status every answer must have; 0 means 202.
	want int
	// stored, if set, counts the jobs the variant stored in Redis; after the
	// run it must equal the number of successful answers.
	stored func(ctx context.Context, rdb redis.UniversalClient) (int64, error)
}

// floorName is the variant every other one is compared with.
const floorName = "floor"

// submitVariants are the servers `bench submit` measures, in the order they
// alternate within a round. The floor comes first.
var submitVariants = []variant{
	{
		name:  floorName,
		about: "bare chi handler: read the body, one go-redis LPUSH, 202 with a small JSON",
		handler: func(_ context.Context, e *env) (http.Handler, error) {
			return floorHandler(e.rdb), nil
		},
		stored: func(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
			return rdb.LLen(ctx, floorKey).Result()
		},
	},
	{
		name:    "offload",
		about:   "handlers.New wired as cmd/server (metrics, sync waiter), built-in kinds, no worker pool: 202 status document",
		handler: offloadHandler,
		stored: func(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
			return rdb.ZCard(ctx, queue.ReadyKey("default")).Result()
		},
	},
	{
		name: "async+pool",
		about: "offload behind expectconn with a worker pool (concurrency 50) draining the queue: the async 202 " +
			"round trip, the baseline of sync",
		handler:  offloadWithPool,
		listener: expectconn.NewListener,
		stored:   countJobs,
	},
	{
		name: "sync+pool",
		about: "the same with Expect: 200-ok: each answer waits for its job (sleep 0 ms) to run on the pool; " +
			"the API hands jobs of an idle queue to a free slot (ROLE=all)",
		handler:  offloadWithPool,
		listener: expectconn.NewListener,
		header:   http.Header{"Expect": []string{"200-ok"}},
		want:     http.StatusOK,
		stored:   countJobs,
	},
	{
		name: "sync+tiers",
		about: "sync+pool without the hand-off: every job goes through the queue, as when the API and the " +
			"workers run in separate processes (ROLE=api, ROLE=worker)",
		handler: func(ctx context.Context, e *env) (http.Handler, error) {
			return withPool(ctx, e, false)
		},
		listener: expectconn.NewListener,
		header:   http.Header{"Expect": []string{"200-ok"}},
		want:     http.StatusOK,
		stored:   countJobs,
	},
	{
		name: "offload+expect",
		about: "offload behind expectconn, the listener cmd/server uses so that Expect reaches the handlers " +
			"(requests carry no Expect: the layer's cost on the plain path)",
		handler:  offloadHandler,
		listener: expectconn.NewListener,
		stored: func(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
			return rdb.ZCard(ctx, queue.ReadyKey("default")).Result()
		},
	},
}

const floorKey = "bench:floor"

// floorHandler is the least a submit endpoint can do: take the body, push it
// on a Redis list, say 202.
func floorHandler(rdb redis.UniversalClient) http.Handler {
	r := chi.NewRouter()
	r.Post("/v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := rdb.LPush(r.Context(), floorKey, body).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"state":"queued"}`+"\n")
	})
	return r
}

// countJobs counts every job of the default queue, whatever its state: the
// state sets, read in one transaction (a pool still at work moves jobs
// between them).
func countJobs(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	cmds := make([]*redis.IntCmd, len(api.States))
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range api.States {
			cmds[i] = p.ZCard(ctx, queue.StateKey("default", s))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// offloadWithPool is offloadHandler with a worker pool running the jobs, so
// that synchronous requests are answered; the async variant runs it too, so
// that both pay for the pool's CPU. The API hands synchronous jobs to the
// pool's free slots, as cmd/server does with ROLE=all.
func offloadWithPool(ctx context.Context, e *env) (http.Handler, error) {
	return withPool(ctx, e, true)
}

// withPool runs a worker pool (concurrency 50) beside the API; handoff wires
// the pool's free slots to the API (handlers.Config.Handoff).
func withPool(ctx context.Context, e *env, handoff bool) (http.Handler, error) {
	reg := workers.NewRegistry()
	if err := workers.RegisterBuiltins(reg); err != nil {
		return nil, err
	}
	pool := workers.NewPool(queue.New(e.rdb, queue.Options{}), reg,
		workers.PoolConfig{Concurrency: 50, Logger: zerolog.Nop()})
	go func() { _ = pool.Run(ctx) }()
	var reserve func(string) (func(*queue.Delivery), func(), bool)
	if handoff {
		reserve = pool.Reserve
	}
	h, err := offloadAPI(ctx, e, reserve)
	if err != nil {
		return nil, err
	}
	// Synchronous admission needs the pool to have announced itself.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, _ := e.rdb.ZCard(ctx, queue.WorkersKey()).Result(); n > 0 {
			return h, nil
		}
	}
	return nil, errors.New("the worker pool did not announce itself within 10s")
}

// offloadHandler is the product's API wired as cmd/server wires it (request
// log, metrics, the completion waiter of synchronous requests), without a
// worker pool: the backlog just grows.
func offloadHandler(ctx context.Context, e *env) (http.Handler, error) {
	return offloadAPI(ctx, e, nil)
}

// offloadAPI is offloadHandler with handlers.Config.Handoff set to handoff.
func offloadAPI(ctx context.Context, e *env, handoff func(string) (func(*queue.Delivery), func(), bool)) (http.Handler, error) {
	reg := workers.NewRegistry()
	if err := workers.RegisterBuiltins(reg); err != nil {
		return nil, err
	}
	q := queue.New(e.rdb, queue.Options{})
	waiter := statusstore.NewWaiter(e.rdb)
	go func() { _ = waiter.Run(ctx) }()
	select {
	case <-waiter.Ready():
	case <-time.After(10 * time.Second):
		return nil, errors.New("completion subscription: Redis did not answer within 10s")
	}
	ready := func(ctx context.Context) error { return e.rdb.Ping(ctx).Err() }
	return handlers.New(handlers.Config{Logger: e.log, Ready: ready, Waiter: waiter,
		Metrics: metrics.New(q, waiter.Waiting), Handoff: handoff}, q, statusstore.New(e.rdb), reg)
}
