package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/workers"
)

// Config is every setting of the server. Each field is read from an
// environment variable and a flag of the same meaning (the flag wins); the
// defaults are in withDefaults and in the README.
type Config struct {
	// Addr is where the API listens (ADDR, -addr). Default ":8080".
	Addr string
	// RedisURL is redis://[:password@]host:port/db (REDIS_URL, -redis-url).
	// Empty starts an embedded in-memory Redis that keeps nothing across restarts.
	RedisURL string
	// RedisCluster treats RedisURL as a cluster seed: redis://host:port?addr=host2:port2
	// (REDIS_CLUSTER, -redis-cluster). Default false.
	RedisCluster bool
	// Role is api, worker or all (ROLE, -role). Default all.
	Role string
	// Concurrency is how many jobs one worker process runs at once
	// (CONCURRENCY, -concurrency). Default 10.
	Concurrency int
	// Queues are the queues a worker drains, "name[:weight],..." (QUEUES,
	// -queues). Default "default".
	Queues string
	// QueuesStrict drains queues in the listed order instead of by weight
	// (QUEUES_STRICT, -queues-strict). Default false.
	QueuesStrict bool
	// Prefetch is how many jobs a worker process may lease beyond
	// Concurrency so that a freed slot finds its next job at hand: "auto"
	// (up to 64, as many as the free slots start within about 2 ms at the
	// handlers' recent run time) or a number, the same bound in place of 64,
	// 0 for none (PREFETCH, -prefetch). Default auto.
	Prefetch string
	// BodyLimit bounds request bodies in bytes (BODY_LIMIT, -body-limit). Default 1048576.
	BodyLimit int64
	// Retention is how long finished jobs stay readable (RETENTION, -retention). Default 24h.
	Retention time.Duration
	// Tombstone is how long an expired job answers 410 (TOMBSTONE, -tombstone). Default 168h.
	Tombstone time.Duration
	// Lease is the visibility timeout of a job held by a worker, renewed by
	// heartbeat every third of it (LEASE, -lease). Default 30s.
	Lease time.Duration
	// ShutdownGrace is how long running jobs may finish on shutdown before
	// they are interrupted and requeued (SHUTDOWN_GRACE, -shutdown-grace). Default 10s.
	ShutdownGrace time.Duration
	// MaxRunSlice bounds one attempt of an iterative job (the report kind):
	// past it the job stops at its next checkpoint and is requeued, without
	// consuming an attempt, to resume from that checkpoint on any worker
	// (MAX_RUN_SLICE, -max-run-slice). Default 0: no bound.
	MaxRunSlice time.Duration
	// SyncWaitMax bounds how long a request with Expect: 200-ok (or Prefer:
	// wait) waits for its job (SYNC_WAIT_MAX, -sync-wait-max). Default 30s.
	SyncWaitMax time.Duration
	// SyncMaxBacklog is how many runnable jobs per live worker slot may be
	// ahead of a synchronous job before it is refused with 417
	// (SYNC_MAX_BACKLOG, -sync-max-backlog). Default 10.
	SyncMaxBacklog int
	// IdempotencyTTL is how long an Idempotency-Key is remembered after its
	// job was accepted (IDEMPOTENCY_TTL, -idempotency-ttl). Default 24h.
	IdempotencyTTL time.Duration
	// TrustedOrigins are origins, "scheme://host[:port],...", whose browser
	// pages may send the API's POST and DELETE (TRUSTED_ORIGINS,
	// -trusted-origins): a UI served from another origin. Default empty:
	// cross-origin browser requests to them answer 403.
	TrustedOrigins string
	// TLSCert and TLSKey are PEM files; when both are set the API serves
	// HTTPS with HTTP/2 by ALPN (TLS_CERT, TLS_KEY, -tls-cert, -tls-key).
	// Default empty: plain HTTP/1.1 and h2c.
	TLSCert, TLSKey string
	// LogLevel is debug, info, warn or error (LOG_LEVEL, -log-level). Default info.
	LogLevel string
	// LogFormat is json or console (LOG_FORMAT, -log-format). Default json.
	LogFormat string

	queues   []workers.QueueWeight
	origins  []string // TrustedOrigins, split
	prefetch int      // PoolConfig.Prefetch: 0 auto, negative none
}

// parseConfig reads the environment, then the flags.
func parseConfig(args []string, getenv func(string) string) (Config, bool, error) {
	var c Config
	fs := flag.NewFlagSet("offload", flag.ContinueOnError)
	str := func(p *string, name, env, def, usage string) {
		v := getenv(env)
		if v == "" {
			v = def
		}
		fs.StringVar(p, name, v, usage+" ($"+env+")")
	}
	var errs []error
	num := func(p *int, name, env string, def int, usage string) {
		v := def
		if s := getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			v = n
		}
		fs.IntVar(p, name, v, usage+" ($"+env+")")
	}
	boolean := func(p *bool, name, env, usage string) {
		var v bool
		if s := getenv(env); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s must be true or false (or 1, 0, t, f), not %q", env, s))
			}
			v = b
		}
		fs.BoolVar(p, name, v, usage+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		v := def
		if s := getenv(env); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			v = d
		}
		fs.DurationVar(p, name, v, usage+" ($"+env+")")
	}
	var bodyLimit int
	str(&c.Addr, "addr", "ADDR", ":8080", "listen address")
	str(&c.RedisURL, "redis-url", "REDIS_URL", "", "Redis URL; empty starts an embedded in-memory Redis")
	boolean(&c.RedisCluster, "redis-cluster", "REDIS_CLUSTER", "treat REDIS_URL as a Redis Cluster seed")
	str(&c.Role, "role", "ROLE", "all", "api, worker or all")
	num(&c.Concurrency, "concurrency", "CONCURRENCY", 10, "jobs run at once per worker process")
	str(&c.Queues, "queues", "QUEUES", "default", "queues to drain: name[:weight],...")
	boolean(&c.QueuesStrict, "queues-strict", "QUEUES_STRICT", "drain queues in strict order")
	str(&c.Prefetch, "prefetch", "PREFETCH", "auto", "jobs a worker process may lease beyond CONCURRENCY: auto, or a number (0: none)")
	num(&bodyLimit, "body-limit", "BODY_LIMIT", 1<<20, "request body limit in bytes")
	dur(&c.Retention, "retention", "RETENTION", 24*time.Hour, "how long finished jobs are kept")
	dur(&c.Tombstone, "tombstone", "TOMBSTONE", 7*24*time.Hour, "how long expired jobs answer 410")
	dur(&c.Lease, "lease", "LEASE", 30*time.Second, "job lease (visibility timeout)")
	dur(&c.ShutdownGrace, "shutdown-grace", "SHUTDOWN_GRACE", 10*time.Second, "grace for running jobs at shutdown")
	dur(&c.MaxRunSlice, "max-run-slice", "MAX_RUN_SLICE", 0, "longest attempt of an iterative job before it is requeued at its next checkpoint (0: no bound)")
	dur(&c.SyncWaitMax, "sync-wait-max", "SYNC_WAIT_MAX", 30*time.Second, "longest synchronous wait (Expect: 200-ok, Prefer: wait)")
	num(&c.SyncMaxBacklog, "sync-max-backlog", "SYNC_MAX_BACKLOG", 10, "runnable jobs per live worker slot a synchronous job may wait behind")
	dur(&c.IdempotencyTTL, "idempotency-ttl", "IDEMPOTENCY_TTL", 24*time.Hour, "how long an Idempotency-Key is remembered")
	str(&c.TrustedOrigins, "trusted-origins", "TRUSTED_ORIGINS", "", "origins (scheme://host[:port],...) whose browser pages may POST and DELETE on the API")
	str(&c.TLSCert, "tls-cert", "TLS_CERT", "", "TLS certificate PEM file (with TLS_KEY: serve HTTPS and HTTP/2)")
	str(&c.TLSKey, "tls-key", "TLS_KEY", "", "TLS private key PEM file")
	str(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "LOG_FORMAT", "json", "json or console")
	healthcheck := fs.Bool("healthcheck", false, "GET /healthz on ADDR and exit 0 when it answers 200 (for container health checks)")
	if err := fs.Parse(args); err != nil {
		return c, false, err
	}
	c.BodyLimit = int64(bodyLimit)
	if err := errors.Join(errs...); err != nil {
		return c, false, err
	}
	return c, *healthcheck, c.validate()
}

// validate checks every field and parses the queue list.
func (c *Config) validate() error {
	var errs []error
	switch c.Role {
	case "all", "api", "worker":
	default:
		errs = append(errs, fmt.Errorf("ROLE must be all, api or worker, not %q", c.Role))
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		errs = append(errs, fmt.Errorf("CONCURRENCY must be 1..10000, not %d", c.Concurrency))
	}
	if c.BodyLimit < 1024 {
		errs = append(errs, fmt.Errorf("BODY_LIMIT must be at least 1024 bytes, not %d", c.BodyLimit))
	}
	for name, d := range map[string]time.Duration{"RETENTION": c.Retention, "TOMBSTONE": c.Tombstone,
		"IDEMPOTENCY_TTL": c.IdempotencyTTL,
		"LEASE":           c.Lease, "SHUTDOWN_GRACE": c.ShutdownGrace} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %s", name, d))
		}
	}
	if c.MaxRunSlice < 0 {
		errs = append(errs, fmt.Errorf("MAX_RUN_SLICE must not be negative, not %s", c.MaxRunSlice))
	}
	if c.SyncWaitMax <= 0 || c.SyncWaitMax > time.Hour {
		errs = append(errs, fmt.Errorf("SYNC_WAIT_MAX must be in (0, 1h], not %s", c.SyncWaitMax))
	}
	if c.SyncMaxBacklog < 0 {
		errs = append(errs, fmt.Errorf("SYNC_MAX_BACKLOG must not be negative, not %d", c.SyncMaxBacklog))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("TLS_CERT and TLS_KEY go together"))
	}
	if c.Lease < 3*time.Second && c.Lease > 0 {
		errs = append(errs, fmt.Errorf("LEASE must be at least 3s, not %s", c.Lease))
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT must be json or console, not %q", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel))
	}
	switch n, err := strconv.Atoi(c.Prefetch); {
	case c.Prefetch == "auto":
		c.prefetch = 0
	case err != nil || n < 0 || n > 10000:
		errs = append(errs, fmt.Errorf("PREFETCH must be auto or 0..10000, not %q", c.Prefetch))
	case n == 0:
		c.prefetch = -1
	default:
		c.prefetch = n
	}
	c.queues = nil
	seen := map[string]bool{}
	for _, part := range strings.Split(c.Queues, ",") {
		name, w, hasW := strings.Cut(strings.TrimSpace(part), ":")
		weight := 1
		if hasW {
			n, err := strconv.Atoi(w)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("QUEUES: weight of %q must be a positive integer", name))
			}
			weight = n
		}
		if !queue.ValidQueueName(name) {
			errs = append(errs, fmt.Errorf("QUEUES: %q: %w", name, queue.ErrBadQueueName))
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("QUEUES: %q is listed twice", name))
		}
		seen[name] = true
		c.queues = append(c.queues, workers.QueueWeight{Name: name, Weight: weight})
	}
	c.origins = nil
	for _, o := range strings.Split(c.TrustedOrigins, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("TRUSTED_ORIGINS: %w", err))
		}
		c.origins = append(c.origins, o)
	}
	if c.RedisURL != "" {
		// The client's own parser, so that what it would refuse is a
		// configuration error here; its error text may quote the URL, so
		// it is reported with the password masked.
		var err error
		if c.RedisCluster {
			_, err = redis.ParseClusterURL(c.RedisURL)
		} else {
			_, err = redis.ParseURL(c.RedisURL)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("REDIS_URL %s: %s", c.masked(), maskSecret(err.Error(), c.RedisURL)))
		}
	}
	return errors.Join(errs...)
}

// maskSecret replaces, in msg, the password of the URL raw, however msg
// quotes it (as is, or escaped), with xxxxx. It finds the password by
// hand, as a URL url.Parse refuses is the case that needs it.
func maskSecret(msg, raw string) string {
	rest := raw
	if _, after, ok := strings.Cut(rest, "://"); ok {
		rest = after
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return msg
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || pw == "" {
		return msg
	}
	quoted := strconv.Quote(pw)
	for _, form := range []string{pw, quoted[1 : len(quoted)-1], url.QueryEscape(pw)} {
		msg = strings.ReplaceAll(msg, form, "xxxxx")
	}
	return msg
}

// masked returns the Redis URL with its password hidden.
func (c Config) masked() string {
	if c.RedisURL == "" {
		return "(embedded)"
	}
	u, err := url.Parse(c.RedisURL)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func getenv(k string) string { return os.Getenv(k) }
