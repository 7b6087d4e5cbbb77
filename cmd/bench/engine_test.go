package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/offload-dev/offload/internal/redistest"
)

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		name string
		n, k int
		want []int
	}{
		{"even", 9, 3, []int{3, 3, 3}},
		{"remainder first", 100000, 3, []int{33334, 33333, 33333}},
		{"one queue", 7, 1, []int{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spread(tc.n, tc.k); !slices.Equal(got, tc.want) {
				t.Fatalf("spread(%d, %d) = %v, want %v", tc.n, tc.k, got, tc.want)
			}
		})
	}
}

func TestParseEngineFlags(t *testing.T) {
	f, err := parseEngineFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.jobs != 100000 || f.rounds != 1 || !slices.Equal(f.concurrency, []int{10, 50, 100}) {
		t.Fatalf("defaults: %+v", f)
	}
	for _, bad := range [][]string{{"-systems", "sidekiq"}, {"-tests", "nope"}, {"-concurrency", "0"}, {"-rounds", "0"}} {
		if _, err := parseEngineFlags(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestEngineSmoke runs every measurement of both systems on a small scale
// against a real redis-server: every job must be done, every row filled.
func TestEngineSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and both engines")
	}
	srv := redistest.Start(t)
	args := []string{"-redis-url", srv.URL(), "-jobs", "300", "-enqueue-jobs", "100", "-latency-jobs", "20",
		"-asynq-latency-jobs", "0", "-concurrency", "10,50"}
	f, err := parseEngineFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := benchEngine(context.Background(), f, args)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed {
		t.Fatalf("failed: %v", rep.Errors)
	}
	for _, c := range rep.Cases {
		for _, r := range c.Rows {
			if c.Test != "latency" && r.JobsPerSec <= 0 {
				t.Errorf("%s %s %s: no throughput", c.Test, c.Config, r.System)
			}
			if c.Test == "latency" && r.System == "offload" && r.P50 <= 0 {
				t.Errorf("%s %s: no latency", c.Config, r.System)
			}
		}
	}
	var out bytes.Buffer
	rep.writeTable(&out, false)
	for _, want := range []string{"ratio process 1 queue, concurrency 50: offload/asynq", "ratio priority offload: 3 queues strict"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
