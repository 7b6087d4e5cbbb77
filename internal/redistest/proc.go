package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// startAttempts bounds how often a node is relaunched on a new port when
	// the chosen port turned out to be taken (the free-port probe is racy
	// against other processes).
	startAttempts = 5
	// readyTimeout bounds how long one launch may take to answer PING.
	readyTimeout = 10 * time.Second
	// killTimeout bounds how long kill waits for the process to be reaped.
	killTimeout = 15 * time.Second
	// outputLimit is how many bytes of server output are kept for messages.
	outputLimit = 64 << 10
	// tailLines is how many output lines failure messages include.
	tailLines = 25
	// clusterBusOffset is the fixed distance between a cluster node's client
	// port and its cluster bus port (redis default when cluster-port is 0).
	clusterBusOffset = 10000
)

// proc is one running redis-server process.
type proc struct {
	addr string
	port int
	cmd  *exec.Cmd
	out  *tailBuffer

	done     chan struct{} // closed once cmd.Wait has returned
	waitErr  error         // written before done is closed
	killOnce sync.Once
}

// startNode launches redis-server on a free loopback port, retrying on bind
// failures, and returns once the process (and not some other server that
// owns the port) answers PING. extra, if non-nil, returns additional
// arguments given the node's data directory. The process is stopped in
// t.Cleanup. startNode never calls t.Fatal, so it is safe from any
// goroutine.
func startNode(t testing.TB, bin string, cluster bool, extra func(dir string) []string) (*proc, error) {
	dir := t.TempDir() // registered before the kill cleanup, so removed after it
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, release, err := reservePort(cluster)
		if err != nil {
			return nil, err
		}
		args := []string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--daemonize", "no",
		}
		if extra != nil {
			args = append(args, extra(dir)...)
		}
		p, err := launch(bin, port, args)
		if err != nil {
			release()
			return nil, err
		}
		t.Cleanup(func() {
			p.kill()
			release()
		})
		err = p.waitReady(readyTimeout)
		if err == nil {
			return p, nil
		}
		p.kill()
		errs = append(errs, fmt.Errorf("attempt %d on port %d: %w", attempt, port, err))
		if !p.bindFailed() {
			break
		}
	}
	return nil, fmt.Errorf("could not start %s: %w", bin, errors.Join(errs...))
}

// launch starts bin with args in its own process group, capturing its
// output, and reaps it in the background.
func launch(bin string, port int, args []string) (*proc, error) {
	out := &tailBuffer{limit: outputLimit}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	// Should a stray child keep the output pipe open, do not hang in Wait.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		port: port,
		cmd:  cmd,
		out:  out,
		done: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group and waits until the process is reaped.
// It is idempotent and safe for concurrent use.
func (p *proc) kill() {
	p.killOnce.Do(func() {
		if !p.exited() {
			killGroup(p.cmd)
		}
	})
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		// Nothing sensible is left to do; the caller reports via messages.
	}
}

// bindFailed reports whether the process died because its port was taken.
func (p *proc) bindFailed() bool {
	if !p.exited() {
		return false
	}
	s := strings.ToLower(p.out.String())
	return strings.Contains(s, "already in use") ||
		strings.Contains(s, "could not create server tcp listening socket") ||
		strings.Contains(s, "failed listening on port")
}

// waitReady polls until this very process answers PING (checked through
// INFO server's process_id), the process exits, or timeout passes.
func (p *proc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pid := p.cmd.Process.Pid
	backoff := 5 * time.Millisecond
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited before answering PING (%v)%s", p.waitErr, p.outputTail())
		default:
		}
		last = probe(p.addr, pid)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %v%s", p.addr, timeout, last, p.outputTail())
		}
		select {
		case <-p.done:
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// outputTail formats the last lines of the server's output for messages.
func (p *proc) outputTail() string {
	return formatTail(p.addr, p.out.lastLines(tailLines))
}

func formatTail(what, tail string) string {
	if tail == "" {
		return fmt.Sprintf("\n--- %s output: (empty) ---", what)
	}
	return fmt.Sprintf("\n--- last lines of %s output ---\n%s\n--- end ---", what, tail)
}

// probe checks that addr answers PING and that the answering server is the
// process with the given pid.
func probe(addr string, pid int) error {
	c, err := dialRESP(addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	pong, err := c.do("PING")
	if err != nil {
		return err
	}
	if pong != "PONG" {
		return fmt.Errorf("PING answered %q", pong)
	}
	info, err := c.do("INFO", "server")
	if err != nil {
		return err
	}
	got, ok := infoField(info, "process_id")
	if !ok {
		return errors.New("INFO server has no process_id")
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("port answered by process_id %s, not by our redis-server (pid %d)", got, pid)
	}
	return nil
}

// infoField extracts "key:value" from an INFO/CLUSTER INFO reply.
func infoField(info, key string) (string, bool) {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return v, true
		}
	}
	return "", false
}

// Free-port selection. Ports handed out in this process stay reserved until
// their server is stopped, so parallel tests in one test binary never race
// for the same port; collisions with other processes are caught by the
// process_id check and retried.
var (
	portsMu  sync.Mutex
	reserved = map[int]bool{}
)

// reservePort picks a free 127.0.0.1 port by listening on port 0. With
// cluster set, port+clusterBusOffset (the cluster bus) must be free as well.
func reservePort(cluster bool) (port int, release func(), err error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		port, err = freePort()
		if err != nil {
			return 0, nil, err
		}
		if reserved[port] {
			continue
		}
		if cluster {
			bus := port + clusterBusOffset
			if bus > 65535 || reserved[bus] || !portFree(bus) {
				continue
			}
			reserved[bus] = true
		}
		reserved[port] = true
		var once sync.Once
		release = func() {
			once.Do(func() {
				portsMu.Lock()
				defer portsMu.Unlock()
				delete(reserved, port)
				if cluster {
					delete(reserved, port+clusterBusOffset)
				}
			})
		}
		return port, release, nil
	}
	return 0, nil, errors.New("could not find a free loopback port")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// respConn is a minimal RESP2 client used for readiness probes, so that
// probing does not depend on (or log through) go-redis.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRESP(addr string, timeout time.Duration) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		_ = c.Close()
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c)}, nil
}

func (c *respConn) Close() error { return c.c.Close() }

// do sends one command and reads a simple, error, integer or bulk reply.
func (c *respConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty RESP reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis error: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unexpected RESP reply %q", line)
	}
}

// tailBuffer is a concurrency-safe io.Writer keeping the last limit bytes.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// lastLines returns at most n trailing lines of the buffered output.
func (b *tailBuffer) lastLines(n int) string {
	return lastLines(b.String(), n)
}

// lastLines returns at most n trailing lines of s, without the final newline.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
