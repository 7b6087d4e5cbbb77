// Command server runs Offload: the HTTP API, the worker pool and the queue
// maintenance, in one process (ROLE=all) or split into tiers (ROLE=api,
// ROLE=worker) over one Redis or Redis Cluster. With no REDIS_URL it starts an
// embedded in-memory Redis, so that `go run ./cmd/server` is a whole service.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/expectconn"
	"github.com/offload-dev/offload/handlers"
	"github.com/offload-dev/offload/internal/embedredis"
	"github.com/offload-dev/offload/metrics"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/workers"
)

func main() {
	cfg, healthcheck, err := parseConfig(os.Args[1:], getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "offload: configuration:", err)
		os.Exit(2)
	}
	if healthcheck {
		os.Exit(probe(cfg.Addr, cfg.TLSCert != ""))
	}
	log := newLogger(cfg)
	// go-redis logs what it retries (dial failures, pool events) through
	// its own logger, in plain text: into the structured log instead.
	// go-redis logs a line per failed dial: during an outage, at most 5
	// per 10s.
	redis.SetLogger(redisLogger{log.With().Str("component", "go-redis").Logger().
		Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})})
	start := time.Now()
	if err := run(cfg, log); err != nil {
		log.Error().Err(err).Msg("offload stopped")
		os.Exit(1)
	}
	log.Info().Stringer("uptime", time.Since(start).Round(time.Millisecond)).Msg("offload stopped")
}

// startLine is the configuration in effect, secrets masked, as the fields
// of one log event: those of the tiers this role runs, durations as Go
// durations ("30s").
func startLine(log zerolog.Logger, cfg Config) *zerolog.Event {
	ev := log.Info().Str("addr", cfg.Addr).Str("redis", cfg.masked()).Bool("redis_cluster", cfg.RedisCluster).
		Stringer("retention", cfg.Retention).Stringer("tombstone", cfg.Tombstone).Stringer("lease", cfg.Lease)
	if cfg.Role != "api" {
		ev = ev.Int("concurrency", cfg.Concurrency).Str("queues", cfg.Queues).Bool("queues_strict", cfg.QueuesStrict).
			Str("prefetch", cfg.Prefetch).Stringer("shutdown_grace", cfg.ShutdownGrace).
			Stringer("max_run_slice", cfg.MaxRunSlice)
	}
	if cfg.Role != "worker" {
		ev = ev.Int64("body_limit", cfg.BodyLimit).Stringer("sync_wait_max", cfg.SyncWaitMax).
			Int("sync_max_backlog", cfg.SyncMaxBacklog).Stringer("idempotency_ttl", cfg.IdempotencyTTL).
			Strs("trusted_origins", cfg.origins)
	}
	return ev.Bool("tls", cfg.TLSCert != "").Str("log_level", cfg.LogLevel).Str("log_format", cfg.LogFormat)
}

// redisLogger writes go-redis's log lines as warnings of the structured log.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Msgf(format, v...)
}

func newLogger(cfg Config) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	var l zerolog.Logger
	if cfg.LogFormat == "console" {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	} else {
		l = zerolog.New(os.Stderr)
	}
	return l.Level(level).With().Timestamp().Str("role", cfg.Role).Logger()
}

// apiDrain bounds how long the API lets in-flight requests finish after a
// SIGTERM (README: Graceful shutdown).
const apiDrain = 15 * time.Second

func run(cfg Config, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rdb, closeRedis, err := connect(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	startLine(log, cfg).Msg("offload starting")

	q := queue.New(rdb, queue.Options{Lease: cfg.Lease, Retention: cfg.Retention, Tombstone: cfg.Tombstone})
	reg := workers.NewRegistry()
	if err := workers.RegisterBuiltins(reg); err != nil {
		return err
	}
	ready := func(ctx context.Context) error { return redisReady(ctx, rdb) }
	waiter := statusstore.NewWaiter(rdb)
	mx := metrics.New(q, waiter.Waiting)

	// Shutdown order, on SIGINT or SIGTERM:
	//  1. the API stops accepting connections and finishes in-flight requests
	//     (http.Server.Shutdown, bounded), so no new job is accepted; then
	//     the completion subscription of synchronous requests ends;
	//  2. the worker pool stops fetching, lets running jobs finish within
	//     SHUTDOWN_GRACE, then cancels them: each is requeued without
	//     consuming an attempt;
	//  3. queue maintenance stops;
	//  4. the Redis client closes (and the embedded Redis, if any, stops).
	// Every tier runs under ctx; the deferred closeRedis runs last.
	var wg sync.WaitGroup
	errc := make(chan error, 5) // pool, maintainer, waiter, server: never blocks a tier
	// handoff lets the API of an "all" process run synchronous jobs of idle
	// queues in its own worker slots (handlers.Config.Handoff).
	var handoff func(string) (func(*queue.Delivery), func(), bool)
	if cfg.Role == "all" || cfg.Role == "worker" {
		pool := workers.NewPool(q, reg, workers.PoolConfig{Concurrency: cfg.Concurrency, Queues: cfg.queues,
			Strict: cfg.QueuesStrict, Prefetch: cfg.prefetch, ShutdownGrace: cfg.ShutdownGrace,
			MaxRunSlice: cfg.MaxRunSlice, Logger: log, Observer: mx})
		// Maintenance runs every 25ms: while Redis is away, at most 5
		// lines per 10s say so.
		mlog := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
		m := &queue.Maintainer{Q: q, OnError: func(step, name string, err error) {
			if ctx.Err() == nil {
				mlog.Error().Err(err).Str("step", step).Str("queue", name).Msg("maintenance failed")
			}
		}, OnReap: func(name string, n int) {
			// A worker died or lost Redis for longer than LEASE: say so.
			log.Warn().Str("queue", name).Int("jobs", n).
				Msg("leases expired: jobs whose worker stopped heartbeating were requeued, or ended on their last attempt")
			mx.LeasesExpired(name, n)
		}}
		// The API (step 1) must stop before the pool (step 2): the worker
		// tier watches apiDone, not ctx, when both run here.
		workerCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
		defer stopWorkers()
		go func() {
			<-ctx.Done()
			wg.Wait() // wait for the API to drain, if it runs here
			stopWorkers()
		}()
		var tiers sync.WaitGroup
		tiers.Add(2)
		go func() { defer tiers.Done(); errc <- pool.Run(workerCtx) }()
		if cfg.Role == "all" {
			handoff = pool.Reserve
		}
		go func() { defer tiers.Done(); errc <- m.Run(workerCtx) }()
		// On every return: when run fails before the API is up (its port
		// is taken, the completion subscription found no Redis), nothing
		// else stops the worker tier, and the process must exit with the
		// error, not linger headless. After a signal, the API has drained
		// by now (wg.Wait below), as step 1 wants.
		defer func() { stopWorkers(); tiers.Wait() }()
	}
	waiterCtx, stopWaiter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWaiter()
	var h http.Handler
	if cfg.Role == "worker" {
		// A worker serves only health and metrics on ADDR.
		h = handlers.Ops(handlers.Config{Logger: log, Ready: ready, Metrics: mx})
	} else {
		// One subscription to job completions serves every synchronous
		// request of this process; it is live before the first request,
		// and until the API has drained (stopWaiter, after srv.Shutdown):
		// the requests in flight at a SIGTERM still get their answers as
		// soon as their jobs end.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := waiter.Run(waiterCtx); err != nil && waiterCtx.Err() == nil {
				errc <- fmt.Errorf("completion subscription: %w", err)
			}
		}()
		select {
		case <-waiter.Ready():
		case <-ctx.Done():
			return nil // stopped before it started
		case err := <-errc:
			return redisErr(cfg, err)
		case <-time.After(10 * time.Second):
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := redisReady(pctx, rdb)
			cancel()
			if err == nil {
				err = errors.New("no answer")
			}
			return fmt.Errorf("completion subscription: Redis at %s did not answer within 10s: %w", cfg.masked(), err)
		}
		h, err = handlers.New(handlers.Config{BodyLimit: cfg.BodyLimit, Logger: log, Ready: ready,
			Waiter: waiter, Metrics: mx, SyncWaitMax: cfg.SyncWaitMax, SyncMaxBacklog: cfg.SyncMaxBacklog,
			TrustedOrigins: cfg.origins,
			IdempotencyTTL: cfg.IdempotencyTTL, Handoff: handoff},
			q, statusstore.New(rdb), reg)
		if err != nil {
			return err
		}
	}
	{
		srv, ln, err := listen(cfg, h)
		if err != nil {
			return err
		}
		log.Info().Str("addr", ln.Addr().String()).Bool("tls", cfg.TLSCert != "").Msg("http listening")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- serveError{err}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), apiDrain)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn().Err(err).Msg("api shutdown")
			}
			stopWaiter()
		}()
	}
	select {
	case <-ctx.Done():
		ev := log.Info()
		if cfg.Role != "worker" {
			ev = ev.Stringer("api_drain_max", apiDrain)
		}
		if cfg.Role != "api" {
			ev = ev.Stringer("shutdown_grace", cfg.ShutdownGrace)
		}
		ev.Msg("shutting down")
	case err := <-errc:
		if err != nil {
			stop()
			return redisErr(cfg, err)
		}
	}
	wg.Wait()
	return nil
}

// serveError is the error of the API's http.Server.Serve.
type serveError struct{ error }

func (e serveError) Unwrap() error { return e.error }

// redisErr names the Redis of cfg in err when err is Redis being
// unavailable (not the API's own listener failing).
func redisErr(cfg Config, err error) error {
	var se serveError
	if err == nil || errors.As(err, &se) || !queue.Unavailable(err) {
		return err
	}
	return fmt.Errorf("Redis at %s: %w", cfg.masked(), err)
}

// listen opens the API's listener and server. HTTP/1.x connections go through
// expectconn, so that Expect: 200-ok and its kin reach the handlers instead of
// net/http's automatic 417; h2c (HTTP/2 without TLS) is served too, and with
// TLS_CERT/TLS_KEY, HTTPS with HTTP/2 by ALPN.
func listen(cfg Config, h http.Handler) (*http.Server, net.Listener, error) {
	raw, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, Protocols: &protocols}
	if cfg.TLSCert == "" {
		return srv, expectconn.NewListener(raw), nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("TLS_CERT/TLS_KEY: %w", err)
	}
	protocols.SetHTTP2(true)
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"},
		MinVersion: tls.VersionTLS12}
	return srv, expectconn.NewTLSListener(raw, srv.TLSConfig), nil
}

// connect returns the Redis client: REDIS_URL, or an embedded miniredis. It
// speaks queue.RESP unless the URL names a protocol.
func connect(cfg Config, log zerolog.Logger) (redis.UniversalClient, func(), error) {
	if cfg.RedisURL == "" {
		mr, err := embedredis.Start("127.0.0.1:0", embedredis.Tick)
		if err != nil {
			return nil, nil, err
		}
		log.Warn().Str("addr", mr.Addr()).Msg("REDIS_URL is not set: using an EMBEDDED IN-MEMORY Redis. " +
			"NOTHING SURVIVES A RESTART and other processes cannot share it. Set REDIS_URL for real use.")
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: queue.RESP})
		return rdb, func() { _ = rdb.Close(); mr.Close() }, nil
	}
	if cfg.RedisCluster {
		opts, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opts.Protocol = queue.Protocol(opts.Protocol)
		rdb := redis.NewClusterClient(opts)
		return rdb, func() { _ = rdb.Close() }, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.Protocol = queue.Protocol(opts.Protocol)
	rdb := redis.NewClient(opts)
	return rdb, func() { _ = rdb.Close() }, nil
}

// redisReady reports whether Redis can serve the service: a PING answered
// and, on a Redis Cluster, a PING answered by every master and the cluster
// state ok (a PING reaches one node; a cluster with a master down fails the
// requests of that master's slots, and then every request, while a single
// node still answers).
func redisReady(ctx context.Context, rdb redis.UniversalClient) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if err := c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%s: %w", c.Options().Addr, err)
		}
		return nil
	}); err != nil {
		return err
	}
	info, err := cc.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return errors.New("cluster_state is not ok")
	}
	return nil
}

// probe GETs /healthz on addr, over HTTPS when the server serves TLS, and
// returns the process exit code. It asks the process it runs beside (the
// container's own), so it does not verify the certificate, which names the
// service's public host, not 127.0.0.1.
func probe(addr string, useTLS bool) int {
	host := addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	scheme := "http://"
	c := http.Client{Timeout: 3 * time.Second}
	if useTLS {
		scheme = "https://"
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a local liveness probe
	}
	resp, err := c.Get(scheme + host + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
