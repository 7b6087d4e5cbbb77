package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// emit prints the report rep of command cmd to standard output, as JSON
// with jsonOut and as table prints it otherwise, and returns the command's
// exit status: 1, after failure on standard error, when failed.
func emit(cmd string, jsonOut bool, rep any, table func(io.Writer), failed bool, failure string) int {
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		table(os.Stdout)
	}
	if failed {
		fmt.Fprintf(os.Stderr, "bench %s: %s\n", cmd, failure)
		return 1
	}
	return 0
}

// report is the outcome of one benchmark, as printed by -json.
type report struct {
	Benchmark string           `json:"benchmark"`
	Env       envReport        `json:"env"`
	Variants  []*variantReport `json:"variants"`
	// Ratios maps "variant/floor" to the ratio of median req/s.
	Ratios []ratioReport `json:"ratios,omitempty"`
	Failed bool          `json:"failed"`
}

type envReport struct {
	OS          string `json:"os"`
	NumCPU      int    `json:"num_cpu"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	Go          string `json:"go"`
	Redis       string `json:"redis_version"`
	RedisWhere  string `json:"redis"`
	Concurrency int    `json:"concurrency"`
	Warmup      string `json:"warmup"`
	Duration    string `json:"duration"`
	Rounds      int    `json:"rounds"`
	Body        string `json:"body"`
	Log         string `json:"log"`
	Client      string `json:"client"`
	Note        string `json:"note"`
	// LoadBefore and LoadAfter are the 1-minute load averages around the run.
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
}

// variantReport is one row: medians over the rounds, and the rounds.
type variantReport struct {
	Name           string        `json:"name"`
	About          string        `json:"about"`
	RPS            float64       `json:"rps"`
	P50            float64       `json:"p50_ms"`
	P99            float64       `json:"p99_ms"`
	CPUPerReq      float64       `json:"cpu_us_per_req"`
	RedisCPUPerReq float64       `json:"redis_cpu_us_per_req"`
	Errors         uint64        `json:"errors"`
	Rounds         []roundReport `json:"rounds"`
}

type roundReport struct {
	RPS float64 `json:"rps"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	OK  uint64  `json:"ok"`
	// CPUPerReq is this process's CPU time (load generator and servers) per
	// measured request; RedisCPUPerReq is redis-server's (INFO cpu).
	CPUPerReq      float64  `json:"cpu_us_per_req"`
	RedisCPUPerReq float64  `json:"redis_cpu_us_per_req"`
	Errors         uint64   `json:"errors"`
	ErrorSamples   []string `json:"error_samples,omitempty"`
}

type ratioReport struct {
	Name     string    `json:"name"` // "offload/floor"
	Ratio    float64   `json:"ratio"`
	PerRound []float64 `json:"per_round"`
	// CPURatio is the floor's CPU cost per request (this process plus Redis)
	// over the variant's: the throughput ratio a machine running nothing but
	// this benchmark would show when CPU-bound. It is far less sensitive than
	// Ratio to CPU taken by other work on the machine.
	CPURatio float64 `json:"cpu_cost_ratio"`
}

// summarize fills the medians, the ratios against the floor and Failed.
func (r *report) summarize(rows []*variantReport) {
	r.Variants = rows
	var floor *variantReport
	for _, v := range rows {
		pick := func(f func(roundReport) float64) float64 {
			xs := make([]float64, len(v.Rounds))
			for i, rr := range v.Rounds {
				xs[i] = f(rr)
			}
			return median(xs)
		}
		v.RPS = pick(func(rr roundReport) float64 { return rr.RPS })
		v.P50 = pick(func(rr roundReport) float64 { return rr.P50 })
		v.P99 = pick(func(rr roundReport) float64 { return rr.P99 })
		v.CPUPerReq = pick(func(rr roundReport) float64 { return rr.CPUPerReq })
		v.RedisCPUPerReq = pick(func(rr roundReport) float64 { return rr.RedisCPUPerReq })
		for _, rr := range v.Rounds {
			v.Errors += rr.Errors
		}
		if v.Errors > 0 {
			r.Failed = true
		}
		if v.Name == floorName {
			floor = v
		}
	}
	if floor == nil || floor.RPS == 0 {
		return
	}
	for _, v := range rows {
		if v == floor {
			continue
		}
		rr := ratioReport{Name: v.Name + "/" + floor.Name, Ratio: v.RPS / floor.RPS}
		if c := v.CPUPerReq + v.RedisCPUPerReq; c > 0 {
			rr.CPURatio = (floor.CPUPerReq + floor.RedisCPUPerReq) / c
		}
		for i := range v.Rounds {
			if i < len(floor.Rounds) && floor.Rounds[i].RPS > 0 {
				rr.PerRound = append(rr.PerRound, v.Rounds[i].RPS/floor.Rounds[i].RPS)
			}
		}
		r.Ratios = append(r.Ratios, rr)
	}
}

// writeTable prints the human-readable form.
func (r *report) writeTable(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "bench %s: POST /v1/jobs %s\n", r.Benchmark, e.Body)
	fmt.Fprintf(w, "machine: %s, %d CPUs (GOMAXPROCS %d), %s, redis %s (%s)\n",
		e.OS, e.NumCPU, e.GOMAXPROCS, e.Go, e.Redis, e.RedisWhere)
	fmt.Fprintf(w, "load: %d keep-alive clients (%s), %s warm-up + %s measured, %d rounds alternating, medians shown; request log: %s\n",
		e.Concurrency, e.Client, e.Warmup, e.Duration, e.Rounds, e.Log)
	if e.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1 min): %s before, %s after\n", e.LoadBefore, e.LoadAfter)
	}
	fmt.Fprintf(w, "note: %s\n\n", e.Note)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\treq/s\tp50\tp99\terrors\tcpu/req\tredis cpu/req\treq/s by round\t")
	for _, v := range r.Variants {
		rounds := make([]string, len(v.Rounds))
		for i, rr := range v.Rounds {
			rounds[i] = fmt.Sprintf("%.0f", rr.RPS)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2fms\t%.2fms\t%d\t%.1fµs\t%.1fµs\t%s\t\n", v.Name, v.RPS, v.P50, v.P99,
			v.Errors, v.CPUPerReq, v.RedisCPUPerReq, strings.Join(rounds, " "))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, rr := range r.Ratios {
		per := make([]string, len(rr.PerRound))
		for i, x := range rr.PerRound {
			per[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(w, "ratio %s = %.2f   (by round: %s)\n", rr.Name, rr.Ratio, strings.Join(per, " "))
		if rr.CPURatio > 0 {
			fmt.Fprintf(w, "cpu-cost ratio %s = %.2f   (floor's cpu+redis per request / %s's)\n",
				rr.Name, rr.CPURatio, strings.TrimSuffix(rr.Name, "/"+floorName))
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
