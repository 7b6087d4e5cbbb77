package workers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// TestPoolRecordsAcrossAnOutage: Redis goes away while two handlers run,
// and comes back two seconds after they returned, well within the ten
// seconds an outcome's write may take. The success and the permanent
// failure are both recorded as they happened, on their first attempt:
// neither is left to the lease's expiry (which would fail the one-attempt
// success with "lease expired" or run it a second time).
func TestPoolRecordsAcrossAnOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t) // the test's own view, around the proxy
	proxy := redistest.StartProxy(t, srv.Addr)
	via := redis.NewClient(&redis.Options{Addr: proxy.Addr, Protocol: 2})
	t.Cleanup(func() { _ = via.Close() })
	q := queue.New(via, queue.Options{Lease: 30 * time.Second})

	started, release := make(chan string, 2), make(chan struct{})
	reg := NewRegistry()
	MustRegister(reg, Kind[struct{}]{Name: "gate", Schema: `{"type": "object"}`, Queue: "outage",
		Handler: func(ctx context.Context, job *Job, _ struct{}) (Result, error) {
			started <- job.ID
			<-release
			return Result{Value: "done"}, nil
		}})
	MustRegister(reg, Kind[struct{}]{Name: "refuse", Schema: `{"type": "object"}`, Queue: "outage",
		Handler: func(ctx context.Context, job *Job, _ struct{}) (Result, error) {
			started <- job.ID
			<-release
			return Result{}, Permanent(errors.New("refused for good"))
		}})
	done := subscribeDone(t, rdb)
	direct := queue.New(rdb, queue.Options{})
	ids := map[string]string{}
	for _, kind := range []string{"gate", "refuse"} {
		en, err := direct.Enqueue(context.Background(), queue.NewJob{Queue: "outage", Kind: kind,
			Args: []byte("{}"), MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids[kind] = en.ID
	}
	stop := runPool(t, q, reg, PoolConfig{Concurrency: 2, Queues: []QueueWeight{{Name: "outage"}},
		Logger: zerolog.Nop()})
	defer stop()
	for range 2 {
		select {
		case <-started:
		case <-time.After(eventTimeout):
			t.Fatal("the two jobs did not start")
		}
	}

	proxy.Down()
	close(release)
	time.Sleep(2 * time.Second) // past go-redis's own retries of one call
	proxy.Up()

	st := statusstore.New(rdb)
	for kind, id := range ids {
		done.wait(t, id)
		j := storedJob(t, st, id)
		switch kind {
		case "gate":
			if j.State != api.StateSucceeded || string(j.Result) != `"done"` || j.Attempt != 1 {
				t.Errorf("gate job: %s, result %s, attempt %d, error %+v; want succeeded with \"done\" on attempt 1",
					j.State, j.Result, j.Attempt, j.Error)
			}
		case "refuse":
			if j.State != api.StateFailed || j.Attempt != 1 || j.Error == nil || j.Error.Detail != "refused for good" {
				t.Errorf("refuse job: %s, attempt %d, error %+v; want failed on attempt 1 with the handler's error",
					j.State, j.Attempt, j.Error)
			}
		}
	}
}
