package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server process this command started for itself.
type redisServer struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed once cmd.Wait returned

	stopOnce sync.Once
}

// startRedis execs bin on a free loopback port, without persistence, and
// returns once it answers PING. A port taken between the probe and the exec
// is retried on another port.
func startRedis(ctx context.Context, bin string) (*redisServer, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("no -redis-url given and %s not found (install redis-server or pass -redis-url): %w", bin, err)
	}
	dir, err := os.MkdirTemp("", "offload-bench-redis-")
	if err != nil {
		return nil, err
	}
	var errs []error
	for attempt := 1; attempt <= 5; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s := &redisServer{
			addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			dir:  dir,
			out:  &lockedBuffer{},
			done: make(chan struct{}),
		}
		s.cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		s.cmd.SysProcAttr = sysProcAttr()
		s.cmd.WaitDelay = 5 * time.Second
		if err := s.cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start %s: %w", path, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		if err := s.waitReady(ctx, 10*time.Second); err == nil {
			return s, nil
		} else {
			errs = append(errs, fmt.Errorf("port %d: %w", port, err))
		}
		s.kill()
		if !strings.Contains(strings.ToLower(s.out.String()), "in use") {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not start: %w", errors.Join(errs...))
}

// waitReady polls PING until this process answers, exits, or timeout passes.
func (s *redisServer) waitReady(ctx context.Context, timeout time.Duration) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("exited: %s", strings.TrimSpace(s.out.String()))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := rdb.Info(pctx, "server").Result()
		cancel()
		if err == nil {
			// Make sure it is our process, not another server on a reused port.
			if infoField(info, "process_id") == strconv.Itoa(s.cmd.Process.Pid) {
				return nil
			}
			return errors.New("port answered by another process (in use)")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer within %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop kills the server, waits for it and removes its directory.
func (s *redisServer) stop() {
	s.stopOnce.Do(func() {
		s.kill()
		_ = os.RemoveAll(s.dir)
	})
}

func (s *redisServer) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	killProcess(s.cmd)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// infoField returns field's value in the text of an INFO reply.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// redisCPU returns the CPU time Redis has used (user + system), from INFO cpu.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) time.Duration {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, _ := strconv.ParseFloat(infoField(info, f), 64)
		total += v
	}
	return time.Duration(total * float64(time.Second))
}

// lockedBuffer collects a process's output; the process writes it from
// exec's copying goroutine while we may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
