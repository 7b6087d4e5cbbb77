package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
)

var benchArgs = []byte(`{"ms":0,"result":{"ok":true}}`)

// BenchmarkEnqueue measures Enqueue from many goroutines against a real
// redis-server: the calls that meet share script calls (group commit).
func BenchmarkEnqueue(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	q := queue.New(rdb, queue.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Enqueue(ctx, queue.NewJob{Queue: "bench", Kind: "sleep", Args: benchArgs}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkEnqueueOneGoroutine measures what one goroutine stores against a
// real redis-server, one op per job: Enqueue call after call (a round trip
// each), and EnqueueMany of 256 jobs at a time.
func BenchmarkEnqueueOneGoroutine(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	ctx := context.Background()
	job := queue.NewJob{Queue: "bench", Kind: "sleep", Args: benchArgs}
	b.Run("enqueue", func(b *testing.B) {
		q := queue.New(rdb, queue.Options{})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := q.Enqueue(ctx, job); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	b.Run("many-256", func(b *testing.B) {
		q := queue.New(rdb, queue.Options{})
		jobs := make([]queue.NewJob, 256)
		for i := range jobs {
			jobs[i] = job
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i += len(jobs) {
			_, errs := q.EnqueueMany(ctx, jobs[:min(len(jobs), b.N-i)])
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkFetchComplete measures the worker's side against a real
// redis-server: fetch a batch (two scripts) and complete each job of it (one
// script each). One op is one job.
func BenchmarkFetchComplete(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	ctx := context.Background()
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			q := queue.New(rdb, queue.Options{})
			enqueueN(b, q, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				ds, err := q.Fetch(ctx, "bench", batch)
				if err != nil {
					b.Fatal(err)
				}
				if len(ds) == 0 {
					b.Fatalf("queue empty after %d of %d jobs", done, b.N)
				}
				for _, d := range ds {
					if err := q.Complete(ctx, d, queue.Outcome{Result: []byte(`{"ok":true}`)}); err != nil {
						b.Fatal(err)
					}
				}
				done += len(ds)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// enqueueN enqueues n jobs, untimed, from a few goroutines.
func enqueueN(b *testing.B, q *queue.Queue, n int) {
	b.Helper()
	const workers = 16
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := q.Enqueue(ctx, queue.NewJob{Queue: "bench", Kind: "sleep", Args: benchArgs}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
