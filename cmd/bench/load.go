package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// loadConfig shapes the load of one measurement.
type loadConfig struct {
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	body        []byte
	timeout     time.Duration
	// client is "http" (net/http Transport) or "conn" (one raw keep-alive
	// connection per worker, answers parsed with http.ReadResponse).
	client string
}

// measurement is the outcome of one variant in one round.
type measurement struct {
	ok       uint64 // answers with the wanted status inside the window
	failed   uint64 // failures during warm-up or the window
	total    uint64 // successful answers during warm-up and the window
	elapsed  time.Duration
	hist     histogram
	errs     []string // the first few distinct failures
	cpu      time.Duration
	redisCPU time.Duration
}

func (m *measurement) rps() float64 { return float64(m.ok) / m.elapsed.Seconds() }

// measure serves v on a fresh loopback listener and drives it with
// cfg.concurrency keep-alive clients: warm-up first, then the measured window.
func measure(ctx context.Context, e *env, v variant, cfg loadConfig) (*measurement, error) {
	addr, stop, err := serve(e, v, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer stop(ctx)

	want := v.want
	if want == 0 {
		want = http.StatusAccepted
	}
	newPoster, closeClient := newClient(cfg, addr, v.header, want)
	defer closeClient()

	start := time.Now()
	mStart := start.Add(cfg.warmup)
	mEnd := mStart.Add(cfg.duration)

	// CPU readings at the edges of the window, off the request path.
	m := &measurement{elapsed: cfg.duration}
	var cpuWG sync.WaitGroup
	cpuWG.Add(1)
	go func() {
		defer cpuWG.Done()
		sleepUntil(ctx, mStart)
		c0, r0 := processCPU(), redisCPU(ctx, e.rdb)
		sleepUntil(ctx, mEnd)
		m.cpu, m.redisCPU = processCPU()-c0, redisCPU(ctx, e.rdb)-r0
	}()

	results := make([]*workerResult, cfg.concurrency)
	var wg sync.WaitGroup
	for i := range results {
		wr := &workerResult{}
		results[i] = wr
		p := newPoster()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.close()
			wr.run(ctx, p, mStart, mEnd)
		}()
	}
	wg.Wait()
	cpuWG.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, wr := range results {
		m.ok += wr.ok
		m.failed += wr.failed
		m.total += wr.total
		m.hist.merge(&wr.hist)
		for _, s := range wr.errs {
			if !seen[s] && len(m.errs) < 5 {
				seen[s] = true
				m.errs = append(m.errs, s)
			}
		}
	}
	return m, nil
}

// serve builds a fresh handler of v and serves it on addr, with the server
// timeouts of cmd/server. It returns the address served and a stop func.
func serve(e *env, v variant, addr string) (string, func(context.Context), error) {
	hctx, cancel := context.WithCancel(context.Background())
	h, err := v.handler(hctx, e)
	if err != nil {
		cancel()
		return "", nil, fmt.Errorf("%s: build handler: %w", v.name, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		return "", nil, fmt.Errorf("%s: %w", v.name, err)
	}
	if v.listener != nil {
		ln = v.listener(ln)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	stop := func(ctx context.Context) {
		defer cancel()
		sctx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancelShutdown()
		_ = srv.Shutdown(sctx)
	}
	return ln.Addr().String(), stop, nil
}

// workerResult is what one client goroutine saw.
type workerResult struct {
	ok, failed, total uint64
	hist              histogram
	errs              []string
}

// run POSTs in a loop until mEnd, recording the latency of every answer that
// arrives inside [mStart, mEnd).
func (wr *workerResult) run(ctx context.Context, p poster, mStart, mEnd time.Time) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(mEnd) {
			return
		}
		err := p.post(ctx)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wr.failed++
			if len(wr.errs) < 5 {
				wr.errs = append(wr.errs, err.Error())
			}
			continue
		}
		wr.total++
		if !t1.Before(mStart) && t1.Before(mEnd) {
			wr.ok++
			wr.hist.record(t1.Sub(t0))
		}
	}
}

// poster sends one request and reads the whole answer; it is used by one
// worker goroutine.
type poster interface {
	post(ctx context.Context) error
	close()
}

// newClient returns a constructor of one poster per worker, and a func that
// releases what they share.
func newClient(cfg loadConfig, addr string, header http.Header, want int) (func() poster, func()) {
	if cfg.client == "conn" {
		var b bytes.Buffer
		fmt.Fprintf(&b, "POST /v1/jobs HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
			addr, len(cfg.body))
		_ = header.Write(&b)
		b.WriteString("\r\n")
		b.Write(cfg.body)
		raw := b.Bytes()
		return func() poster { return &connPoster{addr: addr, req: raw, want: want, timeout: cfg.timeout} }, func() {}
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.concurrency,
		MaxIdleConnsPerHost: cfg.concurrency,
		MaxConnsPerHost:     cfg.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr, Timeout: cfg.timeout}
	url := "http://" + addr + "/v1/jobs"
	return func() poster {
		return &httpPoster{client: client, url: url, header: header, body: cfg.body, want: want}
	}, tr.CloseIdleConnections
}

// httpPoster goes through net/http's client and its pooled connections.
type httpPoster struct {
	client *http.Client
	url    string
	header http.Header
	body   []byte
	want   int
}

func (p *httpPoster) post(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range p.header {
		req.Header[k] = vs
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	return readAnswer(resp, p.want)
}

func (p *httpPoster) close() {}

// connPoster writes a prepared request on its own keep-alive connection and
// parses the answer with http.ReadResponse: no pool, no per-connection
// goroutines, so the load generator takes less of the shared CPUs.
type connPoster struct {
	addr    string
	req     []byte
	want    int
	timeout time.Duration

	conn net.Conn
	br   *bufio.Reader
}

func (p *connPoster) post(ctx context.Context) error {
	if p.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return err
		}
		p.conn, p.br = c, bufio.NewReaderSize(c, 4096)
	}
	if p.timeout > 0 {
		_ = p.conn.SetDeadline(time.Now().Add(p.timeout))
	}
	if _, err := p.conn.Write(p.req); err != nil {
		p.close()
		return err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.close()
		return err
	}
	if err := readAnswer(resp, p.want); err != nil {
		p.close()
		return err
	}
	if resp.Close {
		p.close()
	}
	return nil
}

func (p *connPoster) close() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

// readAnswer checks the status and reads the whole body, so that the
// connection can carry the next request.
func readAnswer(resp *http.Response, want int) error {
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, want, bytes.TrimSpace(b))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

var errFailed = errors.New("some requests failed")
