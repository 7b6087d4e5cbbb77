package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/workers"
)

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, hc, err := parseConfig(nil, env(nil))
	if err != nil || hc {
		t.Fatalf("parseConfig with nothing set: %v, healthcheck %v", err, hc)
	}
	if c.Addr != ":8080" || c.RedisURL != "" || c.Role != "all" || c.Concurrency != 10 || c.Queues != "default" ||
		c.QueuesStrict || c.Prefetch != "auto" || c.prefetch != 0 || c.BodyLimit != 1<<20 ||
		c.Retention != 24*time.Hour || c.Tombstone != 7*24*time.Hour || c.Lease != 30*time.Second ||
		c.ShutdownGrace != 10*time.Second || c.MaxRunSlice != 0 || c.SyncWaitMax != 30*time.Second ||
		c.SyncMaxBacklog != 10 || c.IdempotencyTTL != 24*time.Hour || c.LogLevel != "info" || c.LogFormat != "json" {
		t.Errorf("defaults = %+v", c)
	}
	if want := []workers.QueueWeight{{Name: "default", Weight: 1}}; !slices.Equal(c.queues, want) {
		t.Errorf("queues = %v, want %v", c.queues, want)
	}
	if got := c.masked(); got != "(embedded)" {
		t.Errorf("masked() with no REDIS_URL = %q", got)
	}
}

func TestConfigEnvAndFlags(t *testing.T) {
	vars := map[string]string{"ROLE": "worker", "CONCURRENCY": "32", "QUEUES": "critical:6, default:3,low",
		"LEASE": "9s", "PREFETCH": "0", "BODY_LIMIT": "4096", "QUEUES_STRICT": "true"}
	c, _, err := parseConfig([]string{"-concurrency", "64", "-prefetch", "7"}, env(vars))
	if err != nil {
		t.Fatal(err)
	}
	// A flag wins over its variable; the variables set the rest.
	if c.Role != "worker" || c.Concurrency != 64 || c.Lease != 9*time.Second || c.BodyLimit != 4096 ||
		!c.QueuesStrict || c.Prefetch != "7" || c.prefetch != 7 {
		t.Errorf("config = %+v", c)
	}
	want := []workers.QueueWeight{{Name: "critical", Weight: 6}, {Name: "default", Weight: 3}, {Name: "low", Weight: 1}}
	if !slices.Equal(c.queues, want) {
		t.Errorf("queues = %v, want %v", c.queues, want)
	}
	// PREFETCH=0 turns prefetching off: a negative PoolConfig.Prefetch.
	if c, _, err := parseConfig(nil, env(vars)); err != nil || c.prefetch >= 0 {
		t.Errorf("PREFETCH=0: prefetch %d, %v; want negative", c.prefetch, err)
	}
}

// TestConfigRefusesBadValues: each bad setting is refused with an error that
// names its variable, and the server does not start.
func TestConfigRefusesBadValues(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"ROLE", "both", "ROLE"},
		{"CONCURRENCY", "0", "CONCURRENCY"},
		{"CONCURRENCY", "ten", "CONCURRENCY"},
		{"PREFETCH", "-1", "PREFETCH"},
		{"PREFETCH", "lots", "PREFETCH"},
		{"QUEUES", "a,Bad", "QUEUES"},
		{"QUEUES", "a:0", "QUEUES"},
		{"QUEUES", "a:x", "QUEUES"},
		{"QUEUES", "a,b:2,a", "listed twice"},
		{"BODY_LIMIT", "100", "BODY_LIMIT"},
		{"RETENTION", "0s", "RETENTION"},
		{"RETENTION", "a day", "RETENTION"},
		{"TOMBSTONE", "-1h", "TOMBSTONE"},
		{"LEASE", "1s", "LEASE"},
		{"SHUTDOWN_GRACE", "0s", "SHUTDOWN_GRACE"},
		{"MAX_RUN_SLICE", "-1s", "MAX_RUN_SLICE"},
		{"SYNC_WAIT_MAX", "2h", "SYNC_WAIT_MAX"},
		{"SYNC_MAX_BACKLOG", "-1", "SYNC_MAX_BACKLOG"},
		{"IDEMPOTENCY_TTL", "0s", "IDEMPOTENCY_TTL"},
		{"TLS_CERT", "cert.pem", "TLS_CERT and TLS_KEY"},
		{"LOG_FORMAT", "xml", "LOG_FORMAT"},
		{"LOG_LEVEL", "verbose", "LOG_LEVEL"},
		{"REDIS_CLUSTER", "yes", "REDIS_CLUSTER"},
		{"QUEUES_STRICT", "on", "QUEUES_STRICT"},
		{"REDIS_URL", "garbage", "REDIS_URL"},
		{"REDIS_URL", "redis://h:6379/abc", "REDIS_URL"},
		{"REDIS_URL", "redis://h:6379/%zz", "REDIS_URL"},
		{"TRUSTED_ORIGINS", "https://ui.example.com,ui.example.com/x", "TRUSTED_ORIGINS"},
	}
	for _, tc := range cases {
		_, _, err := parseConfig(nil, env(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: error %v, want one naming %s", tc.name, tc.value, err, tc.want)
		}
	}
}

func TestConfigMasksThePassword(t *testing.T) {
	for url, want := range map[string]string{
		"redis://:s3cret@redis.internal:6379/0":     "redis://:xxxxx@redis.internal:6379/0",
		"rediss://app:s3cret@redis.internal:6380/1": "rediss://app:xxxxx@redis.internal:6380/1",
		"redis://redis.internal:6379/0?protocol=3":  "redis://redis.internal:6379/0?protocol=3",
		"redis://app@redis.internal:6379/0":         "redis://app@redis.internal:6379/0",
	} {
		c, _, err := parseConfig(nil, env(map[string]string{"REDIS_URL": url}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.masked(); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("masked(%q) = %q, want %q", url, got, want)
		}
	}
}

// TestConfigErrorsMaskThePassword: a REDIS_URL the client refuses is a
// configuration error whose text never holds its password, however the
// parser quoted the URL.
func TestConfigErrorsMaskThePassword(t *testing.T) {
	for _, url := range []string{
		"redis://:s3cret@127.0.0.1:port/5",
		"redis://:s3cr et%zz@127.0.0.1:6379/0",
		"redis://app:s3cret@127.0.0.1:6379/abc",
		"redis://app:s3cr\"et@127.0.0.1:x/0",
	} {
		_, _, err := parseConfig(nil, env(map[string]string{"REDIS_URL": url}))
		if err == nil {
			t.Errorf("REDIS_URL=%q accepted", url)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr") || !strings.Contains(msg, "REDIS_URL") {
			t.Errorf("REDIS_URL=%q: error %q shows the password or does not name the variable", url, msg)
		}
	}
}

// TestConfigVariablesAreDocumented: every variable the server reads has its
// row in the README's configuration table.
func TestConfigVariablesAreDocumented(t *testing.T) {
	var read []string
	if _, _, err := parseConfig(nil, func(k string) string { read = append(read, k); return "" }); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The names in the first cell of each table row: "| `A`, `B` | ...".
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.TrimSpace(cells[0]) != "" {
			continue
		}
		for _, name := range strings.Split(cells[1], ",") {
			documented[strings.Trim(strings.TrimSpace(name), "`")] = true
		}
	}
	for _, k := range read {
		if !documented[k] {
			t.Errorf("%s is read but has no row in the README's configuration table", k)
		}
	}
	if len(read) < 20 {
		t.Errorf("only %d variables read: %v", len(read), read)
	}
}
