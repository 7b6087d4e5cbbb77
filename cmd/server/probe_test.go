package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestProbe: the container health check asks /healthz over the scheme the
// server serves, so that a server with TLS_CERT is not reported unhealthy.
func TestProbe(t *testing.T) {
	healthz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	plain := httptest.NewServer(healthz)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(healthz)
	defer tlsSrv.Close()
	plainAddr := strings.TrimPrefix(plain.URL, "http://")
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	for _, c := range []struct {
		name   string
		addr   string
		useTLS bool
		want   int
	}{
		{"plain", plainAddr, false, 0},
		{"tls", tlsAddr, true, 0},
		{"plain probe of a TLS server", tlsAddr, false, 1},
		{"port form", ":" + strings.Split(plainAddr, ":")[1], false, 0},
	} {
		if got := probe(c.addr, c.useTLS); got != c.want {
			t.Errorf("%s: probe(%s, %v) = %d, want %d", c.name, c.addr, c.useTLS, got, c.want)
		}
	}
}

// TestRedisLogger: go-redis's own log lines join the structured log.
func TestRedisLogger(t *testing.T) {
	var buf strings.Builder
	l := redisLogger{zerolog.New(&buf).With().Str("component", "go-redis").Logger()}
	l.Printf(context.Background(), "redis: %s failed to dial after %d attempts", "127.0.0.1:6379", 5)
	var line map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["level"] != "warn" || line["component"] != "go-redis" ||
		line["message"] != "redis: 127.0.0.1:6379 failed to dial after 5 attempts" {
		t.Errorf("line %v", line)
	}
}

// TestStartLine: the startup line shows the settings of the tiers the role
// runs, durations readable, and never the Redis password.
func TestStartLine(t *testing.T) {
	for role, want := range map[string]struct{ has, hasNot []string }{
		"api":    {[]string{`"sync_wait_max":"30s"`, `"body_limit":`}, []string{`"concurrency"`, `"queues"`, `"shutdown_grace"`}},
		"worker": {[]string{`"concurrency":10`, `"shutdown_grace":"10s"`}, []string{`"sync_wait_max"`, `"body_limit"`}},
		"all":    {[]string{`"concurrency":10`, `"sync_wait_max":"30s"`, `"lease":"30s"`}, nil},
	} {
		cfg, _, err := parseConfig(nil, env(map[string]string{"ROLE": role, "REDIS_URL": "redis://:s3cret@h:6379/0"}))
		if err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		startLine(zerolog.New(&buf), cfg).Msg("offload starting")
		line := buf.String()
		for _, s := range want.has {
			if !strings.Contains(line, s) {
				t.Errorf("%s: no %s in %s", role, s, line)
			}
		}
		for _, s := range append(want.hasNot, "s3cret") {
			if strings.Contains(line, s) {
				t.Errorf("%s: %s in %s", role, s, line)
			}
		}
	}
}
