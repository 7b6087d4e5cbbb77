// Package redistest owns the lifecycle of throwaway Redis servers for tests
// and benchmarks: it finds the redis-server (and redis-cli) binaries, starts
// a fresh single server or a 3-master Redis Cluster on free loopback ports,
// waits until they answer, hands out go-redis clients, and stops everything
// in t.Cleanup.
//
// Every server runs without persistence (--save "" --appendonly no) in its
// own t.TempDir(), so tests never share state and may call Start in parallel.
//
// A missing redis-server is a hard test failure, never a skip: install it
// (Debian/Ubuntu: apt-get install -y redis-server redis-tools; macOS: brew
// install redis) or point REDIS_SERVER_BIN (and REDIS_CLI_BIN for clusters)
// at the binaries.
package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Environment variables that override the binaries found on PATH (each may
// be a path or a name to look up on PATH). envCLIBin is only needed by
// StartCluster.
const (
	envServerBin = "REDIS_SERVER_BIN"
	envCLIBin    = "REDIS_CLI_BIN"
)

const installHint = "install it (Debian/Ubuntu: `sudo apt-get update && sudo apt-get install -y redis-server redis-tools`; " +
	"macOS: `brew install redis`) or set " + envServerBin + "=/path/to/redis-server (and " + envCLIBin + "=/path/to/redis-cli for clusters)"

// Server is one redis-server process started by Start. It is stopped
// automatically when the test that started it finishes.
type Server struct {
	// Addr is the "127.0.0.1:PORT" address the server listens on.
	Addr string

	p *proc
}

// Start starts a fresh redis-server on a free 127.0.0.1 port for this test
// (or benchmark), waits until it answers PING, and stops it in t.Cleanup.
// It fails the test with t.Fatalf (never skips) when redis-server is not
// installed, explaining how to install it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := serverBin()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	p, err := startNode(t, bin, false, nil)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return &Server{Addr: p.addr, p: p}
}

// URL returns the server's connection URL, "redis://127.0.0.1:PORT/0",
// suitable for redis.ParseURL and for application config.
func (s *Server) URL() string {
	return "redis://" + s.Addr + "/0"
}

// resp is the protocol of the clients this package returns: RESP2, what
// Offload's server speaks by default (queue.RESP; this package cannot import
// queue, whose tests use it). Tests that build their own clients, on
// miniredis for one, keep go-redis's default, RESP3, so both are exercised.
const resp = 2

// Client returns a go-redis client connected to the server. The client is
// closed in t.Cleanup (before the server itself is stopped when both belong
// to the same test).
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: resp})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill stops the server abruptly with SIGKILL (no shutdown, no flush) and
// waits until the process has exited, so that afterwards every request to
// Addr fails. It is meant for failure-path tests; calling it more than once
// is harmless.
func (s *Server) Kill() {
	s.p.kill()
}

// serverBin resolves the redis-server binary from $REDIS_SERVER_BIN or PATH.
func serverBin() (string, error) {
	if v := os.Getenv(envServerBin); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%q is not an executable redis-server: %v; %s", envServerBin, v, err, installHint)
		}
		return p, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found on PATH (%v); these tests need a real Redis: %s", err, installHint)
	}
	return p, nil
}

// cliBin resolves redis-cli from $REDIS_CLI_BIN, then next to serverBin,
// then PATH.
func cliBin(server string) (string, error) {
	if v := os.Getenv(envCLIBin); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%q is not an executable redis-cli: %v; %s", envCLIBin, v, err, installHint)
		}
		return p, nil
	}
	sibling := filepath.Join(filepath.Dir(server), "redis-cli")
	if fi, err := os.Stat(sibling); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return sibling, nil
	}
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", fmt.Errorf("redis-cli not found on PATH (%v); StartCluster needs it to join the cluster: %s", err, installHint)
	}
	return p, nil
}
