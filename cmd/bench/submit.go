package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/queue"
)

// submitFlags are the flags of `bench submit`.
type submitFlags struct {
	redisURL    string
	redisBin    string
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	rounds      int
	body        string
	variants    string
	jsonOut     bool
	cpuprofile  string
	logMode     string
	timeout     time.Duration
	client      string
	list        bool
}

func parseSubmitFlags(args []string) (submitFlags, error) {
	var f submitFlags
	fs := flag.NewFlagSet("bench submit", flag.ContinueOnError)
	fs.StringVar(&f.redisURL, "redis-url", os.Getenv("REDIS_URL"),
		"Redis to use (default $REDIS_URL); empty: start redis-server on a free loopback port. "+
			"The database is FLUSHDB'd before every run: never point this at data you care about")
	fs.StringVar(&f.redisBin, "redis-server", "redis-server", "redis-server binary, when -redis-url is empty")
	fs.IntVar(&f.concurrency, "concurrency", 64, "concurrent keep-alive clients")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "load before each measured window, not counted")
	fs.DurationVar(&f.duration, "duration", 5*time.Second, "measured window of each run")
	fs.IntVar(&f.rounds, "rounds", 3, "rounds; each round runs every variant once, in turn")
	fs.StringVar(&f.body, "body", `{"kind":"sleep","args":{"ms":0}}`, "request body of every POST /v1/jobs")
	fs.StringVar(&f.variants, "variants", "", "comma-separated variants to run (default all; -list shows them)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (client and servers) to this file")
	fs.StringVar(&f.logMode, "log", "discard",
		"request logging of the offload API: discard (zerolog formats each line at info level into io.Discard, "+
			"as in production minus the write) or off (zerolog disabled)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "per-request client timeout")
	fs.StringVar(&f.client, "client", "http", "load generator client: http (net/http Transport, pooled keep-alive "+
		"connections) or conn (one raw keep-alive connection per client, answers parsed by http.ReadResponse; "+
		"lighter, closer to wrk)")
	fs.BoolVar(&f.list, "list", false, "list the variants and exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case f.concurrency < 1:
		return f, fmt.Errorf("-concurrency must be at least 1")
	case f.duration <= 0 || f.warmup < 0:
		return f, fmt.Errorf("-duration must be positive and -warmup not negative")
	case f.rounds < 1:
		return f, fmt.Errorf("-rounds must be at least 1")
	case f.client != "http" && f.client != "conn":
		return f, fmt.Errorf("-client must be http or conn")
	case f.logMode != "discard" && f.logMode != "off":
		return f, fmt.Errorf("-log must be discard or off")
	case !json.Valid([]byte(f.body)):
		return f, fmt.Errorf("-body is not valid JSON")
	}
	return f, nil
}

// selectVariants returns the variants named in list (all when empty), in
// registration order.
func selectVariants(all []variant, list string) ([]variant, error) {
	if list == "" {
		return all, nil
	}
	names := strings.Split(list, ",")
	var out []variant
	for _, v := range all {
		if slices.Contains(names, v.name) {
			out = append(out, v)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(all, func(v variant) bool { return v.name == n }) {
			return nil, fmt.Errorf("unknown variant %q (-list shows them)", n)
		}
	}
	return out, nil
}

func runSubmit(ctx context.Context, args []string) int {
	f, err := parseSubmitFlags(args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench submit:", err)
		}
		return 2
	}
	if f.list {
		for _, v := range submitVariants {
			fmt.Printf("%-10s %s\n", v.name, v.about)
		}
		return 0
	}
	vs, err := selectVariants(submitVariants, f.variants)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench submit:", err)
		return 2
	}
	rep, err := benchSubmit(ctx, f, vs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench submit:", err)
		return 1
	}
	return emit("submit", f.jsonOut, rep, rep.writeTable, rep.Failed, errFailed.Error())
}

func benchSubmit(ctx context.Context, f submitFlags, vs []variant) (*report, error) {
	rdb, where, cleanup, err := connectRedis(ctx, f)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	flush := func(ctx context.Context) error { return rdb.FlushDB(ctx).Err() }
	if f.redisURL == "" {
		flush = func(ctx context.Context) error { return rdb.FlushAll(ctx).Err() }
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}

	e := &env{rdb: rdb, log: zerolog.Nop()}
	if f.logMode == "discard" {
		e.log = zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Str("role", "api").Logger()
	}
	cfg := loadConfig{concurrency: f.concurrency, warmup: f.warmup, duration: f.duration,
		body: []byte(f.body), timeout: f.timeout, client: f.client}

	rep := &report{
		Benchmark: "submit",
		Env: envReport{
			OS: runtime.GOOS + "/" + runtime.GOARCH, NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
			Go: runtime.Version(), Redis: infoField(info, "redis_version"), RedisWhere: where,
			Concurrency: f.concurrency, Warmup: f.warmup.String(), Duration: f.duration.String(),
			Rounds: f.rounds, Body: f.body, Log: f.logMode, Client: f.client, LoadBefore: loadAverage(),
			Note: "the load generator, the servers under test and redis-server share this machine's CPUs; " +
				"absolute numbers are a lower bound, compare the ratio",
		},
	}
	rows := make([]*variantReport, len(vs))
	for i, v := range vs {
		rows[i] = &variantReport{Name: v.name, About: v.about}
	}
	fmt.Fprintf(os.Stderr, "bench submit: %d CPUs, %s, redis %s (%s); %d clients, %v warm-up + %v, %d rounds of %s\n",
		rep.Env.NumCPU, rep.Env.Go, rep.Env.Redis, where, f.concurrency, f.warmup, f.duration, f.rounds, names(vs))

	if f.cpuprofile != "" {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}

	for round := 1; round <= f.rounds; round++ {
		for i, v := range vs {
			if err := flush(ctx); err != nil {
				return nil, fmt.Errorf("flush redis: %w", err)
			}
			runtime.GC()
			m, err := measure(ctx, e, v, cfg)
			if err != nil {
				return nil, err
			}
			r := roundReport{
				RPS: m.rps(), P50: ms(m.hist.quantile(0.50)), P99: ms(m.hist.quantile(0.99)),
				Max: ms(m.hist.max), OK: m.ok, Errors: m.failed, ErrorSamples: m.errs,
			}
			if m.ok > 0 {
				r.CPUPerReq = us(m.cpu / time.Duration(m.ok))
				r.RedisCPUPerReq = us(m.redisCPU / time.Duration(m.ok))
			}
			if v.stored != nil {
				n, err := v.stored(ctx, rdb)
				if err != nil {
					return nil, fmt.Errorf("%s: count stored jobs: %w", v.name, err)
				}
				if uint64(n) != m.total {
					r.Errors++
					r.ErrorSamples = append(r.ErrorSamples,
						fmt.Sprintf("%d jobs in redis after %d successful answers", n, m.total))
				}
			}
			rows[i].Rounds = append(rows[i].Rounds, r)
			fmt.Fprintf(os.Stderr, "  round %d/%d %-10s %8.0f req/s  p50 %6.2fms  p99 %6.2fms  errors %d\n",
				round, f.rounds, v.name, r.RPS, r.P50, r.P99, r.Errors)
			for _, s := range r.ErrorSamples {
				fmt.Fprintf(os.Stderr, "      error: %s\n", s)
			}
		}
	}
	if err := flush(ctx); err != nil {
		return nil, fmt.Errorf("flush redis: %w", err)
	}
	rep.Env.LoadAfter = loadAverage()
	rep.summarize(rows)
	return rep, nil
}

// connectRedis returns a client for -redis-url, or for a redis-server started
// here, with a description of where it is and a cleanup.
func connectRedis(ctx context.Context, f submitFlags) (redis.UniversalClient, string, func(), error) {
	if f.redisURL != "" {
		opts, err := redis.ParseURL(f.redisURL)
		if err != nil {
			return nil, "", nil, fmt.Errorf("-redis-url: %w", err)
		}
		opts.Protocol = queue.Protocol(opts.Protocol)
		rdb := redis.NewClient(opts)
		return rdb, fmt.Sprintf("%s db %d, from -redis-url", opts.Addr, opts.DB), func() { _ = rdb.Close() }, nil
	}
	srv, err := startRedis(ctx, f.redisBin)
	if err != nil {
		return nil, "", nil, err
	}
	// Same client options as cmd/server gets from a plain redis:// URL, for
	// every variant (the floor's LPUSH included).
	rdb := redis.NewClient(&redis.Options{Addr: srv.addr, Protocol: queue.RESP})
	return rdb, "redis-server started on " + srv.addr, func() { _ = rdb.Close(); srv.stop() }, nil
}

func names(vs []variant) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.name
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
