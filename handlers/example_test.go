package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/expectconn"
	"github.com/offload-dev/offload/handlers"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/workers"
)

// GreetArgs are the arguments of the example's job kind.
type GreetArgs struct {
	Name string `json:"name"`
}

// Example embeds Offload in a Go program: a job kind of its own, the worker
// pool and queue maintenance, and the HTTP API, in one process over one
// Redis (here an in-memory one; use redis.NewUniversalClient for a real
// server or a cluster). It then submits a job synchronously, as a client
// sending Expect: 200-ok would, and shuts down in order.
func Example() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	// The kind: typed arguments, their JSON Schema (the API answers 422
	// naming the field for arguments that fail it) and the handler.
	reg := workers.NewRegistry()
	workers.MustRegister(reg, workers.Kind[GreetArgs]{
		Name:   "greet",
		Schema: `{"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}`,
		Handler: func(ctx context.Context, job *workers.Job, a GreetArgs) (workers.Result, error) {
			return workers.Result{Value: map[string]string{"greeting": "Hello, " + a.Name}}, nil
		},
	})

	q := queue.New(rdb, queue.Options{})
	ctx, stop := context.WithCancel(context.Background())
	var tiers sync.WaitGroup
	run := func(f func(context.Context) error) {
		tiers.Add(1)
		go func() { defer tiers.Done(); _ = f(ctx) }()
	}

	// The worker tier: the pool runs jobs; the maintainer promotes
	// scheduled jobs and retries, reaps expired leases, expires finished
	// jobs and relays follow-ups. Every process that runs a pool runs one.
	pool := workers.NewPool(q, reg, workers.PoolConfig{Concurrency: 4})
	run(pool.Run)
	run((&queue.Maintainer{Q: q}).Run)

	// The API tier. The waiter delivers completions to synchronous
	// requests; it must be live before the first request.
	waiter := statusstore.NewWaiter(rdb)
	run(waiter.Run)
	<-waiter.Ready()
	h, err := handlers.New(handlers.Config{
		Waiter:      waiter,
		Handoff:     pool.Reserve, // the pool runs in this process: sync jobs skip the queue
		NoDashboard: true,         // this program serves its own pages
	}, q, statusstore.New(rdb), reg)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	// The handler is served at the root of its host, and through
	// expectconn's listener: net/http would answer Expect: 200-ok itself.
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(expectconn.NewListener(ln)) }()

	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/jobs",
		strings.NewReader(`{"kind": "greet", "args": {"name": "Ada"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "200-ok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var job struct {
		State  string          `json:"state"`
		Result json.RawMessage `json:"result"`
	}
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	fmt.Println(resp.Status, err, job.State, string(job.Result))

	// Shutdown: the API first (no new jobs), then the worker tier (running
	// jobs finish within PoolConfig.ShutdownGrace) and the waiter.
	_ = srv.Shutdown(context.Background())
	stop()
	tiers.Wait()
	// Output: 200 OK <nil> succeeded {"greeting":"Hello, Ada"}
}
