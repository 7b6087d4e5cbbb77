package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// The engine benchmark (`bench engine`) measures the delivery engine, queue
// and workers, without HTTP, against github.com/hibiken/asynq on the same
// redis-server in the same run:
//
//   - process: a backlog of -jobs no-op jobs, enqueued before the clock starts,
//     drained by a fresh worker pool at each -concurrency; the clock stops when
//     Redis records the last completion (Offload: ZCARD of the succeeded state
//     set; asynq: its processed counter), polled every 10ms;
//   - enqueue: -enqueue-jobs jobs through the Go API from 1 and 16 goroutines;
//   - latency: -latency-jobs jobs one at a time into an idle pool of 10, from
//     just before the enqueue call to the start of the handler;
//   - priority: the -jobs backlog spread evenly over three queues weighted
//     6/3/1, then strict, against the single-queue run of the same round at
//     -prio-concurrency; each system is compared with itself.
//
// Each measurement runs every system in turn, the order swapped every round,
// on a FLUSHALL'd Redis.

// engineFlags are the flags of `bench engine`.
type engineFlags struct {
	redisURL         string
	redisBin         string
	rounds           int
	jobs             int
	enqueueJobs      int
	latencyJobs      int
	asynqLatencyJobs int
	concurrency      []int
	prioConcurrency  int
	systems          []string
	tests            []string
	fillWorkers      int
	jsonOut          bool
	cpuprofile       string
	commandstats     bool
}

var (
	engineSystems = []string{"offload", "asynq"}
	engineTests   = []string{"process", "enqueue", "latency", "priority"}
)

func parseEngineFlags(args []string) (engineFlags, error) {
	var f engineFlags
	fs := flag.NewFlagSet("bench engine", flag.ContinueOnError)
	fs.StringVar(&f.redisURL, "redis-url", "",
		"Redis to use; empty: start redis-server on a free loopback port. "+
			"The database is FLUSHDB'd before every measurement: never point this at data you care about")
	fs.StringVar(&f.redisBin, "redis-server", "redis-server", "redis-server binary, when -redis-url is empty")
	fs.IntVar(&f.rounds, "rounds", 1, "rounds; each round runs every measurement of every system once")
	fs.IntVar(&f.jobs, "jobs", 100000, "backlog of each processing and priority run")
	fs.IntVar(&f.enqueueJobs, "enqueue-jobs", 20000, "jobs enqueued by each enqueue run")
	fs.IntVar(&f.latencyJobs, "latency-jobs", 2000, "jobs of each latency run")
	fs.IntVar(&f.asynqLatencyJobs, "asynq-latency-jobs", 50,
		"jobs of the latency run of asynq with its default TaskCheckInterval (each waits 0.5-1.5s for asynq's poll)")
	conc := fs.String("concurrency", "10,50,100", "comma-separated worker concurrencies of the processing runs")
	fs.IntVar(&f.prioConcurrency, "prio-concurrency", 10, "worker concurrency of the priority runs")
	systems := fs.String("systems", strings.Join(engineSystems, ","), "comma-separated systems to run")
	tests := fs.String("tests", strings.Join(engineTests, ","), "comma-separated measurements to run")
	fs.IntVar(&f.fillWorkers, "fill-workers", 32, "goroutines enqueueing each backlog (not measured)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "",
		"write a CPU profile of each measured processing, priority and enqueue window to PREFIX-<system>-<case>.pprof")
	fs.BoolVar(&f.commandstats, "commandstats", false,
		"print Redis INFO commandstats of every measured window (calls and µs per job, µs per call)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for s := range strings.SplitSeq(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return f, fmt.Errorf("-concurrency: %q is not a positive integer", s)
		}
		f.concurrency = append(f.concurrency, n)
	}
	var err error
	if f.systems, err = pickList("-systems", *systems, engineSystems); err != nil {
		return f, err
	}
	if f.tests, err = pickList("-tests", *tests, engineTests); err != nil {
		return f, err
	}
	switch {
	case f.rounds < 1:
		return f, errors.New("-rounds must be at least 1")
	case f.jobs < 3 || f.enqueueJobs < 16 || f.latencyJobs < 1 || f.asynqLatencyJobs < 0:
		return f, errors.New("-jobs must be at least 3, -enqueue-jobs at least 16, -latency-jobs at least 1")
	case f.prioConcurrency < 1 || f.fillWorkers < 1:
		return f, errors.New("-prio-concurrency and -fill-workers must be positive")
	}
	return f, nil
}

func pickList(name, list string, all []string) ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(all, s) {
			return nil, fmt.Errorf("%s: unknown %q (want some of %s)", name, s, strings.Join(all, ","))
		}
		out = append(out, s)
	}
	return out, nil
}

// engineSystem is one delivery engine under test. Every method starts from an
// empty Redis and leaves its workers stopped.
type engineSystem interface {
	// fill enqueues counts[i] no-op jobs into queues[i], unmeasured.
	fill(ctx context.Context, queues []string, counts []int, workers int) error
	// process starts a worker pool draining queues and returns once Redis
	// records total completions; done is what the clock measures.
	process(ctx context.Context, p processCase, total int, w *window) error
	// enqueue enqueues n jobs from g goroutines, all inside w.
	enqueue(ctx context.Context, n, g int, w *window) error
	// latency runs n jobs one at a time into an idle pool; it records one
	// enqueue→handler-start latency per job.
	latency(ctx context.Context, n int, variant string, h *histogram) error
	close()
}

// processCase is one worker-pool shape.
type processCase struct {
	concurrency int
	queues      []string
	weights     []int
	strict      bool
}

// engineCase is one measurement: a test, a configuration, a row per system.
type engineCase struct {
	Test   string       `json:"test"`
	Config string       `json:"config"`
	Jobs   int          `json:"jobs"`
	Rows   []*engineRow `json:"rows"`

	// only, if set, is the one system this case runs.
	only string
	run  func(ctx context.Context, sys engineSystem, name string, row *engineRow) (engineRound, error) `json:"-"`
}

// engineRow is one system's results in one case: medians over the rounds.
type engineRow struct {
	System         string        `json:"system"`
	JobsPerSec     float64       `json:"jobs_per_sec,omitempty"`
	Seconds        float64       `json:"seconds,omitempty"`
	CPUPerJob      float64       `json:"cpu_us_per_job,omitempty"`
	RedisCPUPerJob float64       `json:"redis_cpu_us_per_job,omitempty"`
	AllocsPerJob   float64       `json:"allocs_per_job,omitempty"`
	P50            float64       `json:"p50_ms,omitempty"`
	P99            float64       `json:"p99_ms,omitempty"`
	Max            float64       `json:"max_ms,omitempty"`
	Rounds         []engineRound `json:"rounds"`
}

// engineRound is one measured window.
type engineRound struct {
	Jobs       int     `json:"jobs"`
	Seconds    float64 `json:"seconds"`
	JobsPerSec float64 `json:"jobs_per_sec"`
	// CPUPerJob is this process's CPU (the system under test and the
	// completion poller) per job; RedisCPUPerJob is redis-server's (INFO cpu).
	CPUPerJob      float64   `json:"cpu_us_per_job"`
	RedisCPUPerJob float64   `json:"redis_cpu_us_per_job"`
	AllocsPerJob   float64   `json:"allocs_per_job"`
	P50            float64   `json:"p50_ms,omitempty"`
	P99            float64   `json:"p99_ms,omitempty"`
	Max            float64   `json:"max_ms,omitempty"`
	Commands       []cmdStat `json:"commands,omitempty"`
	Error          string    `json:"error,omitempty"`
	hist           *histogram
}

// cmdStat is one line of INFO commandstats, over one window.
type cmdStat struct {
	Command string  `json:"command"`
	Calls   int64   `json:"calls"`
	Usec    int64   `json:"usec"`
	PerJob  float64 `json:"calls_per_job"`
	UsecJob float64 `json:"usec_per_job"`
}

// engineRatio compares two rows.
type engineRatio struct {
	Name     string    `json:"name"`
	Ratio    float64   `json:"ratio"`
	PerRound []float64 `json:"per_round,omitempty"`
	// CPURatio is the other row's CPU per job (process + Redis) over this
	// one's: the throughput ratio on an otherwise idle CPU-bound machine.
	CPURatio float64 `json:"cpu_cost_ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
}

type engineEnv struct {
	OS         string `json:"os"`
	Nproc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	Redis      string `json:"redis_server_version"`
	RedisWhere string `json:"redis"`
	Asynq      string `json:"asynq"`
	Rounds     int    `json:"rounds"`
	Command    string `json:"command"`
	Source     string `json:"source,omitempty"`
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
	Note       string `json:"note"`
}

type engineReport struct {
	Benchmark string        `json:"benchmark"`
	Env       engineEnv     `json:"env"`
	Cases     []*engineCase `json:"cases"`
	Ratios    []engineRatio `json:"ratios"`
	Failed    bool          `json:"failed"`
	Errors    []string      `json:"errors,omitempty"`
}

// window measures one timed section: wall time, this process's CPU and
// allocations, Redis's CPU and, optionally, its command statistics.
type window struct {
	rdb      redis.UniversalClient
	stats    bool
	profile  string
	started  bool
	t0       time.Time
	elapsed  time.Duration
	c0, cpu  time.Duration
	r0, rcpu time.Duration
	m0, mall uint64
	cmds     map[string][2]int64
	pf       *os.File
}

// begin starts the clock (and the profile, if any).
func (w *window) begin(ctx context.Context) {
	if w.stats {
		_ = w.rdb.ConfigResetStat(ctx).Err()
	}
	if w.profile != "" {
		if pf, err := os.Create(w.profile); err == nil {
			if err := startCPUProfile(pf); err == nil {
				w.pf = pf
			} else {
				_ = pf.Close()
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.m0 = ms.Mallocs
	w.r0 = redisCPU(ctx, w.rdb)
	w.c0 = processCPU()
	w.started = true
	w.t0 = time.Now()
}

// end stops the clock.
func (w *window) end(ctx context.Context) {
	w.elapsed = time.Since(w.t0)
	w.cpu = processCPU() - w.c0
	w.rcpu = redisCPU(ctx, w.rdb) - w.r0
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.mall = ms.Mallocs - w.m0
	if w.pf != nil {
		stopCPUProfile()
		_ = w.pf.Close()
		w.pf = nil
	}
	if w.stats {
		w.cmds = commandStats(ctx, w.rdb)
	}
}

func (w *window) round(jobs int) engineRound {
	r := engineRound{Jobs: jobs, Seconds: w.elapsed.Seconds()}
	if jobs > 0 && w.elapsed > 0 {
		r.JobsPerSec = float64(jobs) / w.elapsed.Seconds()
		r.CPUPerJob = us(w.cpu) / float64(jobs)
		r.RedisCPUPerJob = us(w.rcpu) / float64(jobs)
		r.AllocsPerJob = float64(w.mall) / float64(jobs)
	}
	for name, v := range w.cmds {
		if name == "config|resetstat" || name == "info" {
			continue
		}
		r.Commands = append(r.Commands, cmdStat{Command: name, Calls: v[0], Usec: v[1],
			PerJob: float64(v[0]) / float64(jobs), UsecJob: float64(v[1]) / float64(jobs)})
	}
	slices.SortFunc(r.Commands, func(a, b cmdStat) int { return int(b.Usec - a.Usec) })
	return r
}

// commandStats parses INFO commandstats: command -> {calls, usec}.
func commandStats(ctx context.Context, rdb redis.UniversalClient) map[string][2]int64 {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil
	}
	out := map[string][2]int64{}
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var v [2]int64
		for kv := range strings.SplitSeq(stats, ",") {
			k, val, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch k {
			case "calls":
				v[0] = n
			case "usec":
				v[1] = n
			}
		}
		out[name] = v
	}
	return out
}

func runEngine(ctx context.Context, args []string) int {
	f, err := parseEngineFlags(args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench engine:", err)
		}
		return 2
	}
	rep, err := benchEngine(ctx, f, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench engine:", err)
		return 1
	}
	return emit("engine", f.jsonOut, rep, func(w io.Writer) { rep.writeTable(w, f.commandstats) },
		rep.Failed, "some measurements failed")
}

// engineRedis is the Redis every system of the run shares.
type engineRedis struct {
	opts  *redis.Options
	rdb   *redis.Client
	where string
	flush func(context.Context) error
	stop  func()
}

func connectEngineRedis(ctx context.Context, f engineFlags) (*engineRedis, error) {
	e := &engineRedis{}
	if f.redisURL != "" {
		opts, err := redis.ParseURL(f.redisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis-url: %w", err)
		}
		e.opts = opts
		e.where = fmt.Sprintf("%s db %d, from -redis-url", opts.Addr, opts.DB)
		e.stop = func() {}
	} else {
		srv, err := startRedis(ctx, f.redisBin)
		if err != nil {
			return nil, err
		}
		e.opts = &redis.Options{Addr: srv.addr}
		e.where = "redis-server started on " + srv.addr
		e.stop = srv.stop
	}
	e.rdb = redis.NewClient(e.opts)
	e.flush = func(ctx context.Context) error { return e.rdb.FlushDB(ctx).Err() }
	if f.redisURL == "" {
		e.flush = func(ctx context.Context) error { return e.rdb.FlushAll(ctx).Err() }
	}
	stop := e.stop
	e.stop = func() { _ = e.rdb.Close(); stop() }
	return e, nil
}

func benchEngine(ctx context.Context, f engineFlags, args []string) (*engineReport, error) {
	er, err := connectEngineRedis(ctx, f)
	if err != nil {
		return nil, err
	}
	defer er.stop()
	rep := &engineReport{Benchmark: "engine", Env: engineEnv{
		OS: runtime.GOOS + "/" + runtime.GOARCH, Nproc: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version(), Redis: redisServerVersion(ctx, f.redisBin, er.rdb), RedisWhere: er.where,
		Asynq: asynqVersion, Rounds: f.rounds,
		Command:    strings.TrimSpace("go run ./cmd/bench engine " + strings.Join(args, " ")),
		LoadBefore: loadAverage(), Source: gitState(ctx),
		Note: "the systems under test, the completion poller and redis-server share this machine's CPUs; " +
			"compare the ratios (and the cpu-cost ratios, less sensitive to other load)",
	}}

	systems := map[string]engineSystem{}
	for _, name := range f.systems {
		switch name {
		case "offload":
			systems[name] = newOffloadSystem(er.opts)
		case "asynq":
			systems[name] = newAsynqSystem(er.opts)
		}
		defer systems[name].close()
	}
	rep.Cases = engineCases(f, er)
	fmt.Fprintf(os.Stderr, "bench engine: %d CPUs, %s, redis %s (%s), asynq %s; %d round(s) of %d measurements × %s\n",
		rep.Env.Nproc, rep.Env.Go, rep.Env.Redis, er.where, asynqVersion, f.rounds, len(rep.Cases),
		strings.Join(f.systems, ","))

	for round := 1; round <= f.rounds; round++ {
		order := slices.Clone(f.systems)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, c := range rep.Cases {
			for _, name := range order {
				if c.only != "" && c.only != name {
					continue
				}
				row := c.row(name)
				if err := er.flush(ctx); err != nil {
					return nil, fmt.Errorf("flush redis: %w", err)
				}
				runtime.GC()
				r, err := c.run(ctx, systems[name], name, row)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if err != nil {
					r.Error = err.Error()
					rep.Failed = true
					rep.Errors = append(rep.Errors, fmt.Sprintf("round %d %s %s %s: %v", round, c.Test, c.Config, name, err))
				}
				row.Rounds = append(row.Rounds, r)
				fmt.Fprintf(os.Stderr, "  round %d/%d %-8s %-34s %-8s %s\n", round, f.rounds, c.Test, c.Config, name, r.short())
			}
		}
	}
	if err := er.flush(ctx); err != nil {
		return nil, fmt.Errorf("flush redis: %w", err)
	}
	rep.Env.LoadAfter = loadAverage()
	rep.summarize(f)
	return rep, nil
}

func (r engineRound) short() string {
	if r.Error != "" {
		return "error: " + r.Error
	}
	s := fmt.Sprintf("%9.0f jobs/s  %6.2fs  cpu %6.1fµs/job  redis %6.1fµs/job", r.JobsPerSec, r.Seconds,
		r.CPUPerJob, r.RedisCPUPerJob)
	if r.P50 > 0 || r.P99 > 0 {
		s = fmt.Sprintf("p50 %7.3fms  p99 %7.3fms  max %7.3fms  (%d jobs)", r.P50, r.P99, r.Max, r.Jobs)
	}
	return s
}

func (c *engineCase) row(system string) *engineRow {
	for _, r := range c.Rows {
		if r.System == system {
			return r
		}
	}
	r := &engineRow{System: system}
	c.Rows = append(c.Rows, r)
	return r
}

// newWindow returns the window of one measurement.
func newWindow(f engineFlags, er *engineRedis, system, label string, profile bool) *window {
	w := &window{rdb: er.rdb, stats: f.commandstats}
	if profile && f.cpuprofile != "" {
		w.profile = fmt.Sprintf("%s-%s-%s.pprof", f.cpuprofile, system, label)
	}
	return w
}

// Priority queues, as in asynq's BenchmarkEndToEndMultipleQueues.
var (
	prioQueues  = []string{"critical", "default", "low"}
	prioWeights = []int{6, 3, 1}
)

func processConfig(c int) string { return fmt.Sprintf("1 queue, concurrency %d", c) }

// engineCases lists the measurements of one round.
func engineCases(f engineFlags, er *engineRedis) []*engineCase {
	var cases []*engineCase
	has := func(t string) bool { return slices.Contains(f.tests, t) }
	conc := slices.Clone(f.concurrency)
	if has("priority") && !slices.Contains(conc, f.prioConcurrency) {
		conc = append(conc, f.prioConcurrency)
	}
	if has("process") || has("priority") {
		for _, c := range conc {
			if !has("process") && c != f.prioConcurrency {
				continue
			}
			pc := processCase{concurrency: c, queues: []string{"default"}, weights: []int{1}}
			cases = append(cases, processingCase("process", processConfig(c), fmt.Sprintf("c%d", c), f, er, pc))
		}
	}
	if has("priority") {
		for _, strict := range []bool{false, true} {
			pc := processCase{concurrency: f.prioConcurrency, queues: prioQueues, weights: prioWeights, strict: strict}
			mode, label := "weighted 6/3/1", "weighted"
			if strict {
				mode, label = "strict", "strict"
			}
			cases = append(cases, processingCase("priority",
				fmt.Sprintf("3 queues %s, concurrency %d", mode, f.prioConcurrency), label, f, er, pc))
		}
	}
	if has("enqueue") {
		for _, g := range []int{1, 16} {
			n := f.enqueueJobs
			cases = append(cases, &engineCase{Test: "enqueue", Config: fmt.Sprintf("%d goroutine(s)", g), Jobs: n,
				run: func(ctx context.Context, sys engineSystem, name string, _ *engineRow) (engineRound, error) {
					w := newWindow(f, er, name, fmt.Sprintf("enqueue-g%d", g), true)
					err := sys.enqueue(ctx, n, g, w)
					return w.round(n), err
				}})
		}
	}
	if has("latency") {
		lat := func(variant string, jobs func(system string) int) *engineCase {
			return &engineCase{Test: "latency", Config: variant, Jobs: f.latencyJobs,
				run: func(ctx context.Context, sys engineSystem, name string, _ *engineRow) (engineRound, error) {
					n := jobs(name)
					var h histogram
					err := sys.latency(ctx, n, variant, &h)
					return engineRound{Jobs: int(h.n), P50: msf(h.quantile(0.50)), P99: msf(h.quantile(0.99)),
						Max: msf(h.max), hist: &h}, err
				}}
		}
		cases = append(cases, lat(latencyDefault, func(system string) int {
			if system == "asynq" {
				return f.asynqLatencyJobs
			}
			return f.latencyJobs
		}))
		if slices.Contains(f.systems, "asynq") {
			c := lat(latencyAsynqPoll1ms, func(string) int { return f.latencyJobs })
			c.only = "asynq"
			cases = append(cases, c)
		}
	}
	return cases
}

// Latency variants.
const (
	latencyDefault      = "default settings, concurrency 10"
	latencyAsynqPoll1ms = "asynq TaskCheckInterval 1ms, concurrency 10"
)

func msf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func processingCase(test, config, label string, f engineFlags, er *engineRedis, pc processCase) *engineCase {
	return &engineCase{Test: test, Config: config, Jobs: f.jobs,
		run: func(ctx context.Context, sys engineSystem, name string, _ *engineRow) (engineRound, error) {
			counts := spread(f.jobs, len(pc.queues))
			if err := sys.fill(ctx, pc.queues, counts, f.fillWorkers); err != nil {
				return engineRound{}, fmt.Errorf("fill backlog: %w", err)
			}
			runtime.GC()
			w := newWindow(f, er, name, label, true)
			err := sys.process(ctx, pc, f.jobs, w)
			return w.round(f.jobs), err
		}}
}

// spread splits n jobs evenly over k queues.
func spread(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// summarize computes the medians and the ratios.
func (rep *engineReport) summarize(f engineFlags) {
	for _, c := range rep.Cases {
		// The asynq-only variant is dropped when it did not run.
		for _, r := range c.Rows {
			pick := func(get func(engineRound) float64) float64 {
				var xs []float64
				for _, rr := range r.Rounds {
					if rr.Error == "" {
						xs = append(xs, get(rr))
					}
				}
				return median(xs)
			}
			r.JobsPerSec = pick(func(x engineRound) float64 { return x.JobsPerSec })
			r.Seconds = pick(func(x engineRound) float64 { return x.Seconds })
			r.CPUPerJob = pick(func(x engineRound) float64 { return x.CPUPerJob })
			r.RedisCPUPerJob = pick(func(x engineRound) float64 { return x.RedisCPUPerJob })
			r.AllocsPerJob = pick(func(x engineRound) float64 { return x.AllocsPerJob })
			if c.Test == "latency" {
				// Quantiles of all rounds' samples together.
				var h histogram
				for _, rr := range r.Rounds {
					if rr.hist != nil {
						h.merge(rr.hist)
					}
				}
				r.P50, r.P99, r.Max = msf(h.quantile(0.50)), msf(h.quantile(0.99)), msf(h.max)
			}
		}
	}
	find := func(test, config, system string) *engineRow {
		for _, c := range rep.Cases {
			if c.Test == test && c.Config == config {
				for _, r := range c.Rows {
					if r.System == system {
						return r
					}
				}
			}
		}
		return nil
	}
	throughput := func(name, target string, a, b *engineRow) {
		if a == nil || b == nil || b.JobsPerSec == 0 {
			return
		}
		er := engineRatio{Name: name, Ratio: a.JobsPerSec / b.JobsPerSec, Target: target}
		if ca := a.CPUPerJob + a.RedisCPUPerJob; ca > 0 {
			er.CPURatio = (b.CPUPerJob + b.RedisCPUPerJob) / ca
		}
		for i := range min(len(a.Rounds), len(b.Rounds)) {
			if b.Rounds[i].JobsPerSec > 0 {
				er.PerRound = append(er.PerRound, a.Rounds[i].JobsPerSec/b.Rounds[i].JobsPerSec)
			}
		}
		rep.Ratios = append(rep.Ratios, er)
	}
	for _, c := range f.concurrency {
		if slices.Contains(f.tests, "process") {
			cfg := processConfig(c)
			throughput("process "+cfg+": offload/asynq", "≥ 3", find("process", cfg, "offload"), find("process", cfg, "asynq"))
		}
	}
	for _, c := range rep.Cases {
		if c.Test == "enqueue" {
			throughput("enqueue "+c.Config+": offload/asynq", "≥ 1", find("enqueue", c.Config, "offload"),
				find("enqueue", c.Config, "asynq"))
		}
	}
	if slices.Contains(f.tests, "priority") {
		single := processConfig(f.prioConcurrency)
		for _, c := range rep.Cases {
			if c.Test != "priority" {
				continue
			}
			for _, sys := range f.systems {
				target := ""
				if sys == "offload" {
					target = "≥ 0.90"
				}
				throughput("priority "+sys+": "+c.Config+" / "+single, target,
					find("priority", c.Config, sys), find("process", single, sys))
			}
			throughput("priority "+c.Config+": offload/asynq", "", find("priority", c.Config, "offload"),
				find("priority", c.Config, "asynq"))
		}
	}
}

// writeTable prints the human-readable form.
func (rep *engineReport) writeTable(w io.Writer, stats bool) {
	e := rep.Env
	fmt.Fprintf(w, "bench engine: Offload's delivery engine (queue + workers) vs asynq %s, same Redis, same process\n", e.Asynq)
	fmt.Fprintf(w, "command: %s\n", e.Command)
	if e.Source != "" {
		fmt.Fprintf(w, "source: %s\n", e.Source)
	}
	fmt.Fprintf(w, "machine: %s, nproc %d (GOMAXPROCS %d), %s, %s (%s)\n", e.OS, e.Nproc, e.GOMAXPROCS, e.Go, e.Redis, e.RedisWhere)
	fmt.Fprintf(w, "rounds: %d (systems alternate within each measurement, order swapped every round; medians shown)\n", e.Rounds)
	if e.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1 min): %s before, %s after\n", e.LoadBefore, e.LoadAfter)
	}
	fmt.Fprintf(w, "note: %s\n\n", e.Note)

	hasThroughput := slices.ContainsFunc(rep.Cases, func(c *engineCase) bool { return c.Test != "latency" })
	hasLatency := slices.ContainsFunc(rep.Cases, func(c *engineCase) bool { return c.Test == "latency" })
	tw := newTabWriter(w)
	if hasThroughput {
		fmt.Fprintln(tw, "test\tconfig\tsystem\tjobs\tjobs/s\tseconds\tcpu µs/job\tredis cpu µs/job\tallocs/job\tjobs/s by round\t")
	}
	for _, c := range rep.Cases {
		if c.Test == "latency" {
			continue
		}
		for _, r := range c.Rows {
			by := make([]string, len(r.Rounds))
			for i, rr := range r.Rounds {
				by[i] = fmt.Sprintf("%.0f", rr.JobsPerSec)
				if rr.Error != "" {
					by[i] = "error"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.2f\t%.1f\t%.1f\t%.0f\t%s\t\n", c.Test, c.Config, r.System, c.Jobs,
				r.JobsPerSec, r.Seconds, r.CPUPerJob, r.RedisCPUPerJob, r.AllocsPerJob, strings.Join(by, " "))
		}
	}
	_ = tw.Flush()
	if hasThroughput {
		fmt.Fprintln(w)
	}
	tw = newTabWriter(w)
	if hasLatency {
		fmt.Fprintln(tw, "latency (enqueue call → handler start)\tsystem\tjobs\tp50\tp99\tmax\t")
	}
	for _, c := range rep.Cases {
		if c.Test != "latency" {
			continue
		}
		for _, r := range c.Rows {
			n := 0
			for _, rr := range r.Rounds {
				n += rr.Jobs
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3fms\t%.3fms\t%.3fms\t\n", c.Config, r.System, n, r.P50, r.P99, r.Max)
		}
	}
	_ = tw.Flush()
	if hasLatency {
		fmt.Fprintln(w)
	}
	for _, r := range rep.Ratios {
		per := make([]string, len(r.PerRound))
		for i, x := range r.PerRound {
			per[i] = fmt.Sprintf("%.2f", x)
		}
		t := ""
		if r.Target != "" {
			t = "   target " + r.Target
		}
		fmt.Fprintf(w, "ratio %s = %.2f   (by round: %s; cpu-cost ratio %.2f)%s\n", r.Name, r.Ratio,
			strings.Join(per, " "), r.CPURatio, t)
	}
	if stats {
		for _, c := range rep.Cases {
			for _, r := range c.Rows {
				for i, rr := range r.Rounds {
					if len(rr.Commands) == 0 {
						continue
					}
					fmt.Fprintf(w, "\nredis commandstats: %s %s, %s, round %d (%d jobs)\n", c.Test, c.Config, r.System, i+1, rr.Jobs)
					tw := newTabWriter(w)
					fmt.Fprintln(tw, "command\tcalls\tcalls/job\tusec\tµs/job\tµs/call\t")
					for _, s := range rr.Commands {
						fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%.2f\t%.2f\t\n", s.Command, s.Calls, s.PerJob, s.Usec, s.UsecJob,
							float64(s.Usec)/float64(max(s.Calls, 1)))
					}
					_ = tw.Flush()
				}
			}
		}
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintln(w)
		for _, e := range rep.Errors {
			fmt.Fprintln(w, "error:", e)
		}
	}
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

func startCPUProfile(w io.Writer) error { return pprof.StartCPUProfile(w) }
func stopCPUProfile()                   { pprof.StopCPUProfile() }

// gitState names the commit the measured code is on and the files that
// differ from it (other engineers edit the tree while benchmarks run).
func gitState(ctx context.Context) string {
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "git " + strings.TrimSpace(string(head))
	out, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no", "--", "queue", "workers").Output()
	if err == nil && len(out) > 0 {
		var files []string
		for line := range strings.Lines(string(out)) {
			if len(line) > 3 {
				files = append(files, strings.TrimSpace(line[3:]))
			}
		}
		s += " + uncommitted changes in " + strings.Join(files, ", ")
	}
	return s
}

// redisServerVersion is `redis-server --version`, or the server's INFO
// redis_version when the binary is not at hand.
func redisServerVersion(ctx context.Context, bin string, rdb redis.UniversalClient) string {
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	info, _ := rdb.Info(ctx, "server").Result()
	return "redis " + infoField(info, "redis_version")
}
