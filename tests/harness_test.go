// Package tests holds Offload's black-box end-to-end tests: each test builds
// nothing but talks to the real server binary (built once by TestMain), started
// on a free loopback port against a real redis-server, over plain HTTP as curl
// would. Every response is validated against the /openapi.yaml the server
// itself serves.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
)

const (
	// readyTimeout bounds how long a server may take to answer /readyz 200.
	readyTimeout = 15 * time.Second
	// stopTimeout bounds how long a server may take to exit after SIGTERM.
	stopTimeout = 20 * time.Second
	// pollEvery is the interval between polls of a status resource.
	pollEvery = 20 * time.Millisecond
	// jobTimeout is the default bound on waiting for a job outcome.
	jobTimeout = 15 * time.Second
)

// serverBin is the path of the server binary built by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "offload-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	serverBin = filepath.Join(dir, "offload-server")
	build := exec.Command("go", "build", "-o", serverBin, "github.com/offload-dev/offload/cmd/server")
	build.Stdout = os.Stderr
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building the server:", err)
		return 1
	}
	// Binary bodies (the thumbnails) are not decoded by the validator: any
	// bytes are a valid "type: string, format: binary".
	raw := func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	}
	openapi3filter.RegisterBodyDecoder("image/png", raw)
	openapi3filter.RegisterBodyDecoder("image/jpeg", raw)
	return m.Run()
}

// Server is one running server process.
type Server struct {
	// URL is "http://127.0.0.1:PORT"; a ROLE=worker process serves only
	// /healthz, /readyz and /metrics there.
	URL string
	// Role is all, api or worker.
	Role string
	// Redis is the redis-server the process uses, when the harness started
	// it or it was passed in.
	Redis *redistest.Server
	// RedisURL is the REDIS_URL the process uses.
	RedisURL string

	t       *testing.T
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{}
	waitErr error
	stopped bool // Stop or Kill was called
	mu      sync.Mutex
}

// configVars are the variables the server reads; inherited values are
// dropped so that the developer's environment cannot change a test.
var configVars = []string{"IDEMPOTENCY_TTL", "ADDR", "REDIS_URL", "REDIS_CLUSTER", "ROLE", "CONCURRENCY", "QUEUES",
	"QUEUES_STRICT", "BODY_LIMIT", "RETENTION", "TOMBSTONE", "LEASE", "SHUTDOWN_GRACE", "LOG_LEVEL", "LOG_FORMAT",
	"MAX_RUN_SLICE", "SYNC_MAX_BACKLOG", "SYNC_WAIT_MAX", "TLS_CERT", "TLS_KEY", "PREFETCH"}

// startServer starts the server binary with env (ROLE, LEASE, ...). Unless
// env names a REDIS_URL, it first starts a fresh redis-server for the test.
// The process is stopped with SIGTERM when the test ends (and the test fails
// if it does not exit within 20s, or exits non-zero).
func startServer(t *testing.T, env map[string]string) *Server {
	t.Helper()
	if env["REDIS_URL"] != "" {
		return startOn(t, nil, env)
	}
	return startOn(t, redistest.Start(t), env)
}

// startOn starts the server binary on the redis-server rs with env.
func startOn(t *testing.T, rs *redistest.Server, env map[string]string) *Server {
	t.Helper()
	e := map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "info", "ROLE": "all"}
	if rs != nil {
		e["REDIS_URL"] = rs.URL()
	}
	for k, v := range env {
		e[k] = v
	}
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		e["ADDR"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s, err := launch(t, rs, e)
		if err == nil {
			return s
		}
		errs = append(errs, err)
		if !strings.Contains(s.log.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("server did not start: %v", errors.Join(errs...))
	return nil
}

// startTiers starts one ROLE=api process and n ROLE=worker processes on one
// fresh redis-server, all with env.
func startTiers(t *testing.T, n int, env map[string]string) (*Server, []*Server) {
	t.Helper()
	rs := redistest.Start(t)
	apiEnv := map[string]string{"ROLE": "api"}
	for k, v := range env {
		apiEnv[k] = v
	}
	a := startOn(t, rs, apiEnv)
	var ws []*Server
	for range n {
		ws = append(ws, a.startWorker(t, env))
	}
	return a, ws
}

// startWorker starts a ROLE=worker process on s's Redis with env.
func (s *Server) startWorker(t *testing.T, env map[string]string) *Server {
	t.Helper()
	e := map[string]string{"REDIS_URL": s.RedisURL}
	for k, v := range env {
		e[k] = v
	}
	e["ROLE"] = "worker"
	w := startOn(t, s.Redis, e)
	w.Redis = s.Redis
	return w
}

// startAPI starts a ROLE=api process on s's Redis with env.
func (s *Server) startAPI(t *testing.T, env map[string]string) *Server {
	t.Helper()
	e := map[string]string{"REDIS_URL": s.RedisURL}
	for k, v := range env {
		e[k] = v
	}
	e["ROLE"] = "api"
	a := startOn(t, s.Redis, e)
	a.Redis = s.Redis
	return a
}

func launch(t *testing.T, rs *redistest.Server, env map[string]string) (*Server, error) {
	s := &Server{Role: env["ROLE"], Redis: rs, RedisURL: env["REDIS_URL"], t: t,
		log: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(serverBin)
	cmd.Env = environ(env)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("start %s: %w", serverBin, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if !s.isStopped() {
			if err := s.stop(); err != nil {
				t.Errorf("%s server (pid %d): %v", s.Role, cmd.Process.Pid, err)
			}
		}
		if t.Failed() {
			t.Logf("--- %s server (pid %d, %s) log ---\n%s\n--- end ---", s.Role, cmd.Process.Pid,
				env["ADDR"], lastLines(s.log.String(), 400))
		}
	})
	var err error
	s.URL = "http://" + env["ADDR"]
	if s.Role == "worker" {
		// A worker serves no API, only /healthz, /readyz and /metrics:
		// wait until it has read its configuration and connected. Jobs
		// wait for it in Redis meanwhile.
		err = s.waitLog("offload starting", readyTimeout)
	} else {
		err = s.waitReady()
	}
	if err != nil {
		// The caller may try again on another port: this process is done.
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		_ = cmd.Process.Kill()
		<-s.done
	}
	return s, err
}

func environ(env map[string]string) []string {
	out := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(configVars, k)
	})
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// waitReady polls /readyz until it answers 200.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	c := &http.Client{Timeout: time.Second}
	var last string
	for {
		select {
		case <-s.done:
			return fmt.Errorf("server exited before it was ready (%v)", s.waitErr)
		default:
		}
		resp, err := c.Get(s.URL + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz did not answer 200 within %v: %s", readyTimeout, last)
		}
		time.Sleep(pollEvery)
	}
}

// waitLog waits until the process has logged a line containing msg.
func (s *Server) waitLog(msg string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.log.String(), msg) {
		select {
		case <-s.done:
			return fmt.Errorf("server exited before logging %q (%v)", msg, s.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not log %q within %v", msg, timeout)
		}
		time.Sleep(pollEvery)
	}
	return nil
}

func (s *Server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// stop sends SIGTERM and waits for the process to exit with status 0.
func (s *Server) stop() error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	select {
	case <-s.done:
		return s.waitErr
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-s.done:
		if s.waitErr != nil {
			return fmt.Errorf("exited after SIGTERM with %v", s.waitErr)
		}
		return nil
	case <-time.After(stopTimeout):
		// SIGQUIT makes the Go runtime print every goroutine's stack to
		// the log, which the cleanup shows: where the shutdown is stuck.
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		return fmt.Errorf("did not exit within %v of SIGTERM (goroutine dump in its log)", stopTimeout)
	}
}

// Stop sends SIGTERM and fails the test unless the process exits cleanly
// within 20s.
func (s *Server) Stop(t *testing.T) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("%s server: %v", s.Role, err)
	}
}

// Kill sends SIGKILL and waits for the process to die.
func (s *Server) Kill(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s server did not die of SIGKILL", s.Role)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a concurrency-safe bytes.Buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// logLines returns the JSON log lines of the process that have the given
// "message".
func (s *Server) logLines(message string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == message {
			out = append(out, m)
		}
	}
	return out
}

// --- HTTP ------------------------------------------------------------------

// httpClient never follows redirects, so that 303s are seen and asserted.
var httpClient = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

var (
	specMu     sync.Mutex
	specRouter routers.Router
)

// router returns the router of the /openapi.yaml the server serves, loaded
// from the first server that asks.
func router(t *testing.T, base string) routers.Router {
	t.Helper()
	specMu.Lock()
	defer specMu.Unlock()
	if specRouter != nil {
		return specRouter
	}
	resp, err := httpClient.Get(base + "/openapi.yaml")
	if err != nil {
		t.Fatalf("GET /openapi.yaml: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %s %v", resp.Status, err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("served /openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("served /openapi.yaml is not valid: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("served /openapi.yaml: router: %v", err)
	}
	specRouter = r
	return r
}

// do sends req, reads the whole answer (the returned response's body can be
// read again with body) and validates it against the served OpenAPI
// document: a status, header or body the document does not describe fails
// the test. It fails the test (t.Errorf, so it is safe from any goroutine)
// and returns nil when the request itself fails.
func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	base := req.URL.Scheme + "://" + req.URL.Host
	rt := router(t, base)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL.RequestURI(), err)
		return nil
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Errorf("%s %s: reading body: %v", req.Method, req.URL.RequestURI(), err)
		return nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if err := validateResponse(rt, req, resp.StatusCode, resp.Header, data); err != nil {
		t.Errorf("%s %s answered %s, which the OpenAPI document does not describe: %v\nheaders: %v\nbody: %s",
			req.Method, req.URL.RequestURI(), resp.Status, err, resp.Header, truncate(data, 2000))
	}
	return resp
}

// validateResponse checks an answer to req against the operation req
// targets in the document of rt.
func validateResponse(rt routers.Router, req *http.Request, status int, header http.Header, data []byte) error {
	route, params, err := rt.FindRoute(req)
	if err != nil {
		return fmt.Errorf("no such operation: %w", err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  status,
		Header:  header,
		Body:    io.NopCloser(bytes.NewReader(data)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return errors.Join(openapi3filter.ValidateResponse(req.Context(), in), undeclaredHeaders(route, status, header))
}

// transportHeaders are the response headers that no operation declares:
// those of HTTP itself (framing, the date; Content-Type is the response's
// content), and X-Request-Id, which every answer carries (the document's
// description says so, once for all).
var transportHeaders = map[string]bool{"Date": true, "Content-Length": true, "Content-Type": true,
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "X-Request-Id": true}

// undeclaredHeaders names the headers of an answer that the operation's
// response for status (or its default) does not declare: openapi3filter
// checks the declared ones, not the others.
func undeclaredHeaders(route *routers.Route, status int, header http.Header) error {
	resp := route.Operation.Responses.Status(status)
	if resp == nil {
		resp = route.Operation.Responses.Default()
	}
	if resp == nil || resp.Value == nil {
		return nil // ValidateResponse reports the status
	}
	var missing []string
	for name := range header {
		if transportHeaders[name] {
			continue
		}
		declared := false
		for h := range resp.Value.Headers {
			if http.CanonicalHeaderKey(h) == name {
				declared = true
				break
			}
		}
		if !declared {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("headers not declared for %d: %s", status, strings.Join(missing, ", "))
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// body returns the bytes of resp's body, leaving it readable again.
func body(resp *http.Response) []byte {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// request sends method path with body (nil for none) and the given headers
// ("Name", "value", ...). It fails the test when no answer came.
func (s *Server) request(t *testing.T, method, path string, payload []byte, headers ...string) *http.Response {
	t.Helper()
	return s.requestCtx(t, context.Background(), method, path, payload, headers...)
}

func (s *Server) requestCtx(t *testing.T, ctx context.Context, method, path string, payload []byte, headers ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp := do(t, req)
	if resp == nil {
		t.FailNow()
	}
	return resp
}

func (s *Server) get(t *testing.T, path string) *http.Response {
	t.Helper()
	return s.request(t, http.MethodGet, path, nil)
}

func (s *Server) del(t *testing.T, path string) *http.Response {
	t.Helper()
	return s.request(t, http.MethodDelete, path, nil)
}

func (s *Server) post(t *testing.T, path string) *http.Response {
	t.Helper()
	return s.request(t, http.MethodPost, path, nil)
}

// postJSON POSTs v, encoded as JSON (a []byte or string is sent as is).
func (s *Server) postJSON(t *testing.T, path string, v any) *http.Response {
	t.Helper()
	return s.request(t, http.MethodPost, path, jsonBytes(t, v), "Content-Type", "application/json")
}

func jsonBytes(t *testing.T, v any) []byte {
	t.Helper()
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// decode decodes resp's JSON body into a T, failing the test if it is not.
func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body(resp), &v); err != nil {
		t.Fatalf("%s: body is not a %T: %v: %s", resp.Request.URL.Path, v, err, body(resp))
	}
	return v
}

// expectStatus fails the test unless resp has the status.
func expectStatus(t *testing.T, resp *http.Response, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL.RequestURI(),
			resp.StatusCode, status, truncate(body(resp), 2000))
	}
}

// expectProblem asserts that resp is a problem document with status, whose
// "status" member equals it, and whose "errors" name every one of fields.
func expectProblem(t *testing.T, resp *http.Response, status int, fields ...string) api.Problem {
	t.Helper()
	expectStatus(t, resp, status)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, api.ProblemContentType) {
		t.Errorf("%s %s: Content-Type %q, want %s", resp.Request.Method, resp.Request.URL.RequestURI(), ct, api.ProblemContentType)
	}
	p := decode[api.Problem](t, resp)
	if p.Status != status {
		t.Errorf("%s %s: problem status %d, HTTP status %d", resp.Request.Method, resp.Request.URL.RequestURI(), p.Status, status)
	}
	if p.Type == "" || p.Title == "" {
		t.Errorf("problem without type or title: %s", body(resp))
	}
	for _, f := range fields {
		if !slices.ContainsFunc(p.Errors, func(e api.FieldError) bool { return e.Field == f }) {
			t.Errorf("%s %s: problem errors %+v do not name %q", resp.Request.Method, resp.Request.URL.RequestURI(), p.Errors, f)
		}
	}
	return p
}

// --- jobs ------------------------------------------------------------------

// submit POSTs a job and asserts the 202 contract: Location and
// Content-Location name the status resource, Retry-After is a number of
// seconds, and the body is its status document.
func (s *Server) submit(t *testing.T, req any) api.Job {
	t.Helper()
	resp := s.postJSON(t, "/v1/jobs", req)
	expectStatus(t, resp, http.StatusAccepted)
	job := decode[api.Job](t, resp)
	self := "/v1/jobs/" + job.ID
	if job.ID == "" {
		t.Fatalf("202 without a job id: %s", body(resp))
	}
	if got := resp.Header.Get("Location"); got != self {
		t.Errorf("Location %q, want %q", got, self)
	}
	if got := resp.Header.Get("Content-Location"); got != self {
		t.Errorf("Content-Location %q, want %q", got, self)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 0 {
		t.Errorf("Retry-After %q is not a number of seconds", resp.Header.Get("Retry-After"))
	}
	if job.Done || job.Links.Self != self {
		t.Errorf("202 document: done %v, links.self %q", job.Done, job.Links.Self)
	}
	return job
}

// poll GETs the status resource of job id every 20ms until until returns
// true, and returns that answer. It fails the test after timeout.
func (s *Server) poll(t *testing.T, id string, timeout time.Duration, what string, until func(*http.Response) bool) *http.Response {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp := s.get(t, "/v1/jobs/"+id)
		if until(resp) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: not %s within %v; last answer %s: %s", id, what, timeout, resp.Status, body(resp))
		}
		time.Sleep(pollEvery)
	}
}

// waitState polls job id until its document says state, and returns it. It
// fails at once if the job reaches another final state.
func (s *Server) waitState(t *testing.T, id, state string, timeout time.Duration) api.Job {
	t.Helper()
	var job api.Job
	s.poll(t, id, timeout, state, func(resp *http.Response) bool {
		if resp.StatusCode == http.StatusSeeOther {
			t.Fatalf("job %s: 303 while waiting for state %s: %s", id, state, body(resp))
		}
		expectStatus(t, resp, http.StatusOK)
		job = decode[api.Job](t, resp)
		if job.State != state && api.Terminal(job.State) {
			t.Fatalf("job %s reached %s while waiting for %s: %s", id, job.State, state, body(resp))
		}
		return job.State == state
	})
	return job
}

// waitSeeOther polls job id until it answers 303 and returns that answer.
func (s *Server) waitSeeOther(t *testing.T, id string, timeout time.Duration) *http.Response {
	t.Helper()
	return s.poll(t, id, timeout, "303 See Other", func(resp *http.Response) bool {
		if resp.StatusCode == http.StatusSeeOther {
			return true
		}
		expectStatus(t, resp, http.StatusOK)
		if job := decode[api.Job](t, resp); job.Done {
			t.Fatalf("job %s ended %s instead of redirecting: %s", id, job.State, body(resp))
		}
		return false
	})
}
