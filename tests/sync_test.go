package tests

// End-to-end tests of the synchronous forms of POST /v1/jobs (Expect and
// Prefer) over real connections: raw TCP (keep-alive, pipelining, chunked
// bodies, 100-continue), the curl binary (HTTP/1.1 and h2c), Go's h2c client,
// and several processes on one Redis. Every answer is validated against the
// served OpenAPI document, whichever client received it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/offload-dev/offload/api"
)

// Tests that start a long job wait for it to finish before the test ends, so
// that no job runs when the server gets SIGTERM: shutdown then has nothing to
// wait for and the harness's 20s stop bound is never at stake. (A worker that
// ran a job at SIGTERM used to sleep a third of LEASE, 10s, in its heartbeat
// loop before exiting, however soon the job ended.)

// sleepJob is the body of a sleep job of ms milliseconds echoing result
// (none when nil).
func sleepJob(ms int, result any) []byte {
	args := map[string]any{"ms": ms}
	if result != nil {
		args["result"] = result
	}
	b, err := json.Marshal(map[string]any{"kind": "sleep", "args": args})
	if err != nil {
		panic(err)
	}
	return b
}

// postSync POSTs body to /v1/jobs with the given headers through the
// harness's client (do validates the answer against the OpenAPI document).
func (s *Server) postSync(t *testing.T, body []byte, headers ...string) *http.Response {
	t.Helper()
	return s.request(t, http.MethodPost, "/v1/jobs", body, append([]string{"Content-Type", "application/json"}, headers...)...)
}

// expectResult asserts that data is a succeeded status document of a job
// whose result is want, and returns the document.
func expectResult(t *testing.T, data []byte, want any) api.Job {
	t.Helper()
	var job api.Job
	if err := json.Unmarshal(data, &job); err != nil {
		t.Fatalf("body is not a status document: %v: %s", err, truncate(data, 2000))
	}
	if job.State != api.StateSucceeded || !job.Done {
		t.Errorf("job %s: state %q done %v, want succeeded: %s", job.ID, job.State, job.Done, truncate(data, 2000))
	}
	if w := must(json.Marshal(want)); !jsonEqual(job.Result, w) {
		t.Errorf("job %s: result %s, want %s", job.ID, job.Result, w)
	}
	return job
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return string(must(json.Marshal(x))) == string(must(json.Marshal(y)))
}

// expectSyncHeaders asserts the headers of a 200 of a job without target:
// X-Job-Id and Content-Location name the job.
func expectSyncHeaders(t *testing.T, h http.Header, job api.Job) {
	t.Helper()
	if got := h.Get("X-Job-Id"); got != job.ID {
		t.Errorf("X-Job-Id %q, want %q", got, job.ID)
	}
	if got, want := h.Get("Content-Location"), "/v1/jobs/"+job.ID; got != want {
		t.Errorf("Content-Location %q, want %q", got, want)
	}
}

// countJobs returns how many jobs the server lists, all states and queues.
func (s *Server) countJobs(t *testing.T) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		path := "/v1/jobs?limit=200"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		resp := s.get(t, path)
		expectStatus(t, resp, http.StatusOK)
		page := decode[api.JobList](t, resp)
		n += len(page.Jobs)
		if page.NextCursor == "" {
			return n
		}
		cursor = page.NextCursor
	}
}

// waitSlots waits until the live workers s lists drain queue with at least
// slots worker slots in all, so that a synchronous job is admitted.
func (s *Server) waitSlots(t *testing.T, queue string, slots int) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		resp := s.get(t, "/v1/workers")
		expectStatus(t, resp, http.StatusOK)
		n := 0
		for _, w := range decode[api.WorkerList](t, resp).Workers {
			for _, q := range w.Queues {
				if q == queue {
					n += w.Concurrency
				}
			}
		}
		if n >= slots {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d live worker slots on queue %q within %v (have %d)", slots, queue, readyTimeout, n)
		}
		time.Sleep(pollEvery)
	}
}

// conform validates an answer that did not come through do (raw TCP, curl,
// h2c) against the served OpenAPI document, as do does.
func conform(t *testing.T, s *Server, method, path string, resp *http.Response, data []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	route, params, err := router(t, s.URL).FindRoute(req)
	if err != nil {
		t.Errorf("%s %s: the OpenAPI document has no such operation: %v", method, path, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Body:    io.NopCloser(bytes.NewReader(data)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %s, which the OpenAPI document does not describe: %v\nheaders: %v\nbody: %s",
			method, path, resp.Status, err, resp.Header, truncate(data, 2000))
	}
}

// --- raw TCP -----------------------------------------------------------------

// rawConn is one TCP connection to a server, spoken to byte by byte.
type rawConn struct {
	s  *Server
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{s: s, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) write(t *testing.T, data string) {
	t.Helper()
	if _, err := io.WriteString(rc.c, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// read reads the next answer, to a request method path, whole, and validates
// it against the OpenAPI document (interim 1xx answers excepted).
func (rc *rawConn) read(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, rc.s.URL+path, nil)
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		t.Fatalf("reading the answer to %s %s: %v", method, path, err)
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body of the answer to %s %s: %v", method, path, err)
	}
	if resp.StatusCode >= 200 {
		conform(t, rc.s, method, path, resp, data)
	}
	return resp, data
}

// rawPost is an HTTP/1.1 POST /v1/jobs with a Content-Length body and the
// given header lines ("Name: value").
func rawPost(host string, body []byte, lines ...string) string {
	var b strings.Builder
	b.WriteString("POST /v1/jobs HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.String()
}

func rawGet(host, path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
}

func TestSyncRawTCP(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)
	host := strings.TrimPrefix(s.URL, "http://")

	t.Run("content-length", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(t, rawPost(host, sleepJob(10, "raw"), "Expect: 200-ok"))
		resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Expect: 200-ok answered %s: %s", resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, "raw"))
	})

	t.Run("keep-alive", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(t, rawPost(host, sleepJob(10, "first"), "Expect: 200-ok"))
		resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("first answer %s (close %v): %s", resp.Status, resp.Close, data)
		}
		first := expectResult(t, data, "first")

		rc.write(t, rawPost(host, sleepJob(10, "second")))
		resp, data = rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusAccepted || resp.Close {
			t.Fatalf("second answer %s (close %v): %s", resp.Status, resp.Close, data)
		}
		if id := resp.Header.Get("X-Job-Id"); id == "" || id == first.ID {
			t.Errorf("second answer X-Job-Id %q (first job %s)", id, first.ID)
		}

		rc.write(t, rawGet(host, "/v1/jobs/"+first.ID))
		resp, data = rc.read(t, http.MethodGet, "/v1/jobs/"+first.ID)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("third answer %s: %s", resp.Status, data)
		}
		if got := expectResult(t, data, "first"); got.ID != first.ID {
			t.Errorf("GET answered job %s, want %s", got.ID, first.ID)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(t, rawPost(host, sleepJob(10, "pipe-1"), "Expect: 200-ok")+
			rawPost(host, sleepJob(10, "pipe-2"), "Expect: 200-ok"))
		var ids []string
		for _, want := range []string{"pipe-1", "pipe-2"} {
			resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("pipelined answer for %s: %s: %s", want, resp.Status, data)
			}
			job := expectResult(t, data, want)
			expectSyncHeaders(t, resp.Header, job)
			ids = append(ids, job.ID)
		}
		if ids[0] == ids[1] {
			t.Errorf("both pipelined requests answered job %s", ids[0])
		}
	})

	t.Run("chunked", func(t *testing.T) {
		rc := dialRaw(t, s)
		body := string(sleepJob(10, "chunked"))
		half := len(body) / 2
		// Two chunks (one with an extension), a trailer, then a pipelined
		// GET: the rewrite must frame the body to find the next request.
		rc.write(t, "POST /v1/jobs HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
			"Expect: 200-ok\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"+
			fmt.Sprintf("%x;part=1\r\n%s\r\n", half, body[:half])+
			fmt.Sprintf("%x\r\n%s\r\n", len(body)-half, body[half:])+
			"0\r\nX-Checksum: 1234\r\n\r\n"+
			rawGet(host, "/healthz"))
		resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chunked Expect: 200-ok answered %s: %s", resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, "chunked"))
		resp, data = rc.read(t, http.MethodGet, "/healthz")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the request after the chunked one answered %s: %s", resp.Status, data)
		}
	})

	t.Run("100-continue", func(t *testing.T) {
		rc := dialRaw(t, s)
		body := sleepJob(10, "continued")
		req := rawPost(host, body, "Expect: 100-continue")
		rc.write(t, strings.TrimSuffix(req, string(body))) // the header section only
		resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("Expect: 100-continue answered %s before the body, want 100 Continue: %s", resp.Status, data)
		}
		rc.write(t, string(body))
		resp, data = rc.read(t, http.MethodPost, "/v1/jobs")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("after 100 Continue and the body: %s, want 202: %s", resp.Status, data)
		}
		var job api.Job
		if err := json.Unmarshal(data, &job); err != nil || job.ID == "" || job.Kind != "sleep" {
			t.Fatalf("202 body %s (%v)", data, err)
		}
		got := s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		if string(got.Result) != `"continued"` {
			t.Errorf("result %s: the body sent after 100 Continue was not the job's", got.Result)
		}
	})
}

// --- curl --------------------------------------------------------------------

// curl runs the curl binary with args (plus -sS -i and a time bound),
// feeding it stdin, and returns the parsed final answer, validated against
// the OpenAPI document.
func curl(t *testing.T, s *Server, method, path string, stdin []byte, args ...string) (*http.Response, []byte) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("these tests run the curl binary itself, and it is not on PATH (Debian/Ubuntu: apt-get install -y curl): %v", err)
	}
	full := append([]string{"-sS", "-i", "--max-time", "60", "-X", method}, args...)
	full = append(full, s.URL+path)
	cmd := exec.Command(bin, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", strings.Join(full, " "), err, stderr.String())
	}
	// net/http parses HTTP/1.x status lines only; curl writes "HTTP/2 200".
	if rest, ok := bytes.CutPrefix(out, []byte("HTTP/2 ")); ok {
		out = append([]byte("HTTP/2.0 "), rest...)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("curl output is not an HTTP answer: %v:\n%s", err, truncate(out, 2000))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("curl output: body: %v", err)
	}
	conform(t, s, method, path, resp, data)
	return resp, data
}

func TestSyncCurl(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)
	jsonCT := []string{"-H", "Content-Type: application/json", "--data-binary", "@-"}

	t.Run("200-ok", func(t *testing.T) {
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", sleepJob(10, map[string]any{"via": "curl"}),
			append(jsonCT, "-H", "Expect: 200-ok")...)
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
			t.Fatalf("curl Expect: 200-ok: %s %s: %s", resp.Proto, resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, map[string]any{"via": "curl"}))
	})

	t.Run("201-created", func(t *testing.T) {
		job := jsonBytes(t, map[string]any{"kind": "thumbnail",
			"args": map[string]any{"image": testPNG(t, 32, 24), "width": 16, "format": "png"}})
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", job, append(jsonCT, "-H", "Expect: 201-created")...)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("curl Expect: 201-created: %s: %s", resp.Status, data)
		}
		var doc api.Job
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("201 body: %v: %s", err, data)
		}
		target := "/v1/images/" + doc.ID
		if got := resp.Header.Get("Location"); got != target || doc.Target != target {
			t.Errorf("201 Location %q, document target %q, want %q", got, doc.Target, target)
		}
		if got := resp.Header.Get("Content-Location"); got != "/v1/jobs/"+doc.ID {
			t.Errorf("201 Content-Location %q, want /v1/jobs/%s", got, doc.ID)
		}
		if doc.State != api.StateSucceeded || resp.Header.Get("X-Job-Id") != doc.ID {
			t.Errorf("201: state %q, X-Job-Id %q, id %q", doc.State, resp.Header.Get("X-Job-Id"), doc.ID)
		}
		img := s.get(t, target)
		expectStatus(t, img, http.StatusOK)
		if _, err := png.Decode(bytes.NewReader(body(img))); err != nil {
			t.Errorf("the Location of the 201 is not a PNG: %v", err)
		}
	})

	t.Run("201-created without target", func(t *testing.T) {
		before := s.countJobs(t)
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", sleepJob(10, nil), append(jsonCT, "-H", "Expect: 201-created")...)
		expectCurlProblem(t, resp, data, http.StatusExpectationFailed, "creates no resource")
		if after := s.countJobs(t); after != before {
			t.Errorf("a refused Expect: 201-created enqueued a job: %d jobs, were %d", after, before)
		}
	})

	// A job scheduled past the longest wait cannot finish in time: refused
	// at once, before anything is enqueued, instead of after the wait.
	t.Run("scheduled past the wait", func(t *testing.T) {
		before := s.countJobs(t)
		job := []byte(`{"kind":"sleep","args":{"ms":1},"delay":3600}`)
		start := time.Now()
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", job, append(jsonCT, "-H", "Expect: 200-ok")...)
		expectCurlProblem(t, resp, data, http.StatusExpectationFailed, "after the longest synchronous wait")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the 417 took %v: the request waited", d)
		}
		if after := s.countJobs(t); after != before {
			t.Errorf("a refused scheduled Expect: 200-ok enqueued a job: %d jobs, were %d", after, before)
		}
	})

	t.Run("unknown expectation", func(t *testing.T) {
		before := s.countJobs(t)
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", sleepJob(10, nil), append(jsonCT, "-H", "Expect: bogus")...)
		expectCurlProblem(t, resp, data, http.StatusExpectationFailed, "bogus")
		if after := s.countJobs(t); after != before {
			t.Errorf("Expect: bogus enqueued a job: %d jobs, were %d", after, before)
		}
	})

	// Two Expect lines are one list, as a comma-separated line is: both
	// expectations cannot be met at once.
	t.Run("two expect lines", func(t *testing.T) {
		before := s.countJobs(t)
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", sleepJob(10, nil),
			append(jsonCT, "-H", "Expect: 200-ok", "-H", "Expect: 204-no-content")...)
		expectCurlProblem(t, resp, data, http.StatusExpectationFailed, "200-ok, 204-no-content")
		if after := s.countJobs(t); after != before {
			t.Errorf("two expectations enqueued a job: %d jobs, were %d", after, before)
		}
	})

	t.Run("http2 prior knowledge", func(t *testing.T) {
		resp, data := curl(t, s, http.MethodPost, "/v1/jobs", sleepJob(10, "h2"),
			append(jsonCT, "--http2-prior-knowledge", "-H", "Expect: 200-ok")...)
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("curl --http2-prior-knowledge Expect: 200-ok: %s %s: %s", resp.Proto, resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, "h2"))
	})
}

// expectCurlProblem asserts that an answer is a problem document of status
// whose detail mentions detail.
func expectCurlProblem(t *testing.T, resp *http.Response, data []byte, status int, detail string) api.Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %s, want %d: %s", resp.Status, status, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, api.ProblemContentType) {
		t.Errorf("Content-Type %q, want %s", ct, api.ProblemContentType)
	}
	var p api.Problem
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("not a problem document: %v: %s", err, data)
	}
	if p.Status != status || (status == http.StatusExpectationFailed && p.Type != api.TypeExpectation) {
		t.Errorf("problem %+v", p)
	}
	if !strings.Contains(p.Detail, detail) {
		t.Errorf("problem detail %q does not mention %q", p.Detail, detail)
	}
	return p
}

// --- h2c ---------------------------------------------------------------------

// h2cClient speaks HTTP/2 with prior knowledge over plain TCP (h2c), and
// nothing else: an http:// URL is never answered over HTTP/1.1. It is
// net/http's own HTTP/2 client (the golang.org/x/net/http2 code bundled in
// the standard library), configured with Protocols, which is what
// http2.Transport{AllowHTTP: true, DialTLSContext: <plain dial>} does without
// a dependency on golang.org/x/net, which go.mod does not require.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

func TestSyncH2C(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)
	c := h2cClient()
	t.Cleanup(c.CloseIdleConnections)
	post := func(t *testing.T, body []byte, headers ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/jobs", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("h2c POST: %v", err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("h2c body: %v", err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
		}
		conform(t, s, http.MethodPost, "/v1/jobs", resp, data)
		return resp, data
	}

	t.Run("200-ok", func(t *testing.T) {
		resp, data := post(t, sleepJob(10, "h2c"), "Expect", "200-ok")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("h2c Expect: 200-ok: %s: %s", resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, "h2c"))
	})

	t.Run("prefer wait", func(t *testing.T) {
		resp, data := post(t, sleepJob(10, "h2c-prefer"), "Prefer", "wait=5")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("h2c Prefer: wait=5: %s: %s", resp.Status, data)
		}
		expectSyncHeaders(t, resp.Header, expectResult(t, data, "h2c-prefer"))
		if got := resp.Header.Get("Preference-Applied"); got != "wait=5" {
			t.Errorf("Preference-Applied %q, want wait=5", got)
		}
		if got := resp.Header.Values("Vary"); !containsToken(got, "Prefer") {
			t.Errorf("Vary %q does not name Prefer", got)
		}
	})
}

func containsToken(values []string, token string) bool {
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// --- Go client: every status of the contract ---------------------------------

func TestSyncStatuses(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)

	t.Run("200-ok without target", func(t *testing.T) {
		resp := s.postSync(t, sleepJob(10, []any{1.0, "two"}), "Expect", "200-ok")
		expectStatus(t, resp, http.StatusOK)
		expectSyncHeaders(t, resp.Header, expectResult(t, body(resp), []any{1.0, "two"}))
	})

	t.Run("200-ok image", func(t *testing.T) {
		job := jsonBytes(t, map[string]any{"kind": "thumbnail",
			"args": map[string]any{"image": testPNG(t, 40, 20), "width": 20, "format": "png"}})
		resp := s.postSync(t, job, "Expect", "200-ok")
		expectStatus(t, resp, http.StatusOK)
		id := resp.Header.Get("X-Job-Id")
		if got := resp.Header.Get("Content-Location"); id == "" || got != "/v1/images/"+id {
			t.Errorf("Content-Location %q, X-Job-Id %q: want the image", got, id)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Errorf("Content-Type %q, want image/png", ct)
		}
		m, err := png.Decode(bytes.NewReader(body(resp)))
		if err != nil {
			t.Fatalf("the 200 body is not a PNG: %v", err)
		}
		if b := m.Bounds(); b.Dx() != 20 || b.Dy() != 10 {
			t.Errorf("thumbnail %dx%d, want 20x10", b.Dx(), b.Dy())
		}
		// The same bytes as the resource.
		img := s.get(t, "/v1/images/"+id)
		expectStatus(t, img, http.StatusOK)
		if !bytes.Equal(body(img), body(resp)) {
			t.Errorf("the 200 body (%d bytes) differs from /v1/images/%s (%d bytes)", len(body(resp)), id, len(body(img)))
		}
	})

	t.Run("200-ok report", func(t *testing.T) {
		job := jsonBytes(t, map[string]any{"kind": "report",
			"args": map[string]any{"csv": "region,amount\nnorth,10\nsouth,5\nnorth,2.5\n", "group_by": "region", "sum": []string{"amount"}}})
		resp := s.postSync(t, job, "Expect", "200-ok")
		expectStatus(t, resp, http.StatusOK)
		id := resp.Header.Get("X-Job-Id")
		if got := resp.Header.Get("Content-Location"); id == "" || got != "/v1/reports/"+id {
			t.Errorf("Content-Location %q, X-Job-Id %q: want the report", got, id)
		}
		var rep struct {
			Rows   int `json:"rows"`
			Groups []struct {
				Key  string             `json:"key"`
				Sums map[string]float64 `json:"sums"`
			} `json:"groups"`
		}
		if err := json.Unmarshal(body(resp), &rep); err != nil || rep.Rows != 3 || len(rep.Groups) != 2 ||
			rep.Groups[0].Key != "north" || rep.Groups[0].Sums["amount"] != 12.5 {
			t.Errorf("the 200 body is not the report: %s (%v)", body(resp), err)
		}
	})

	t.Run("201-created", func(t *testing.T) {
		job := jsonBytes(t, map[string]any{"kind": "thumbnail",
			"args": map[string]any{"image": testPNG(t, 16, 16), "width": 8, "format": "jpeg"}})
		resp := s.postSync(t, job, "Expect", "201-created")
		expectStatus(t, resp, http.StatusCreated)
		doc := decode[api.Job](t, resp)
		if got := resp.Header.Get("Location"); got != "/v1/images/"+doc.ID {
			t.Errorf("Location %q, want /v1/images/%s", got, doc.ID)
		}
		img := s.get(t, resp.Header.Get("Location"))
		expectStatus(t, img, http.StatusOK)
		if ct := img.Header.Get("Content-Type"); ct != "image/jpeg" {
			t.Errorf("the created resource is %q, want image/jpeg", ct)
		}
	})

	t.Run("204-no-content", func(t *testing.T) {
		resp := s.postSync(t, sleepJob(10, "quiet"), "Expect", "204-no-content")
		expectStatus(t, resp, http.StatusNoContent)
		id := resp.Header.Get("X-Job-Id")
		if got := resp.Header.Get("Content-Location"); id == "" || got != "/v1/jobs/"+id {
			t.Errorf("204 Content-Location %q, X-Job-Id %q", got, id)
		}
		if len(body(resp)) != 0 {
			t.Errorf("204 with a body: %q", body(resp))
		}
		got := decode[api.Job](t, s.get(t, "/v1/jobs/"+id))
		if got.State != api.StateSucceeded || string(got.Result) != `"quiet"` {
			t.Errorf("after 204 the job is %s with result %s", got.State, got.Result)
		}
	})

	t.Run("202-accepted", func(t *testing.T) {
		start := time.Now()
		resp := s.postSync(t, sleepJob(2000, nil), "Expect", "202-accepted")
		expectStatus(t, resp, http.StatusAccepted)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Expect: 202-accepted took %v", d)
		}
		job := decode[api.Job](t, resp)
		if job.Done {
			t.Errorf("202 document of a done job: %+v", job)
		}
		// Nothing left running at shutdown (see the note at the top of this file).
		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
	})

	t.Run("case-insensitive", func(t *testing.T) {
		resp := s.postSync(t, sleepJob(10, "upper"), "Expect", "200-OK")
		expectStatus(t, resp, http.StatusOK)
		expectResult(t, body(resp), "upper")
	})
}

// --- admission: 417 before anything is enqueued ------------------------------

func TestSyncNoWorker(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"ROLE": "api"})
	for _, tc := range []struct {
		expect string
		job    []byte
	}{
		{"200-ok", sleepJob(10, nil)},
		{"204-no-content", sleepJob(10, nil)},
		{"201-created", jsonBytes(t, map[string]any{"kind": "thumbnail",
			"args": map[string]any{"image": testPNG(t, 8, 8), "width": 4, "format": "png"}})},
	} {
		start := time.Now()
		resp := s.postSync(t, tc.job, "Expect", tc.expect)
		p := expectProblem(t, resp, http.StatusExpectationFailed)
		if p.Type != api.TypeExpectation || !strings.Contains(p.Detail, "no live worker") || p.JobID != "" {
			t.Errorf("Expect: %s without workers: %+v", tc.expect, p)
		}
		if resp.Header.Get("X-Job-Id") != "" || resp.Header.Get("Link") != "" {
			t.Errorf("a refused request names a job: X-Job-Id %q Link %q", resp.Header.Get("X-Job-Id"), resp.Header.Get("Link"))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Expect: %s without workers took %v; it is decided before enqueueing", tc.expect, d)
		}
	}
	if n := s.countJobs(t); n != 0 {
		t.Errorf("refused synchronous requests created %d jobs", n)
	}
	// Without Expect the job is accepted and waits for a worker.
	s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
	if n := s.countJobs(t); n != 1 {
		t.Errorf("%d jobs after one accepted submission", n)
	}
}

func TestSyncBacklog(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CONCURRENCY": "1", "SYNC_MAX_BACKLOG": "1"})
	s.waitSlots(t, "default", 1)
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/default/pause")); !q.Paused {
		t.Fatalf("pause answered %+v", q)
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1, "result": i}}).ID)
	}
	before := s.countJobs(t)
	if before != 3 {
		t.Fatalf("%d jobs listed, want 3", before)
	}
	resp := s.postSync(t, sleepJob(1, nil), "Expect", "200-ok")
	p := expectProblem(t, resp, http.StatusExpectationFailed)
	if p.Type != api.TypeExpectation || !strings.Contains(p.Detail, "3 jobs ahead") || p.JobID != "" {
		t.Errorf("417 does not explain the backlog: %+v", p)
	}
	if after := s.countJobs(t); after != before {
		t.Errorf("a request refused for backlog enqueued a job: %d jobs, were %d", after, before)
	}

	// Once the backlog drains the same request is admitted.
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/default/resume")); q.Paused {
		t.Fatalf("resume answered %+v", q)
	}
	for _, id := range ids {
		s.waitState(t, id, api.StateSucceeded, jobTimeout)
	}
	resp = s.postSync(t, sleepJob(1, "admitted"), "Expect", "200-ok")
	expectStatus(t, resp, http.StatusOK)
	expectResult(t, body(resp), "admitted")
}

// --- admitted, then too slow or failed ---------------------------------------

func TestSyncOverrun(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SYNC_WAIT_MAX": "1s"})
	s.waitSlots(t, "default", 1)
	start := time.Now()
	resp := s.postSync(t, sleepJob(3000, "late"), "Expect", "200-ok")
	elapsed := time.Since(start)
	p := expectProblem(t, resp, http.StatusExpectationFailed)
	if elapsed < 900*time.Millisecond || elapsed > 2900*time.Millisecond {
		t.Errorf("the 417 came after %v, want about SYNC_WAIT_MAX (1s)", elapsed)
	}
	if p.JobID == "" || p.Type != api.TypeExpectation {
		t.Fatalf("417 of an overrun without job_id: %+v", p)
	}
	if got, want := resp.Header.Get("Link"), "</v1/jobs/"+p.JobID+`>; rel="monitor"`; got != want {
		t.Errorf("Link %q, want %q", got, want)
	}
	if got := resp.Header.Get("X-Job-Id"); got != p.JobID {
		t.Errorf("X-Job-Id %q, want %q", got, p.JobID)
	}
	// The job kept running.
	got := s.waitState(t, p.JobID, api.StateSucceeded, jobTimeout)
	if string(got.Result) != `"late"` {
		t.Errorf("result %s", got.Result)
	}
}

func TestSyncJobFailed(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)
	notAnImage := base64.StdEncoding.EncodeToString([]byte("this is not an image at all"))
	job := jsonBytes(t, map[string]any{"kind": "thumbnail",
		"args": map[string]any{"image": notAnImage, "width": 10, "format": "png"}})
	resp := s.postSync(t, job, "Expect", "200-ok")
	p := expectProblem(t, resp, http.StatusUnprocessableEntity)
	if p.Type != api.TypeJobFailed || p.JobID == "" || !strings.Contains(p.Detail, "thumbnail") {
		t.Errorf("failed synchronous job answered %+v", p)
	}
	if got, want := resp.Header.Get("Link"), "</v1/jobs/"+p.JobID+`>; rel="monitor"`; got != want {
		t.Errorf("Link %q, want %q", got, want)
	}
	if got := resp.Header.Get("X-Job-Id"); got != p.JobID {
		t.Errorf("X-Job-Id %q, want %q", got, p.JobID)
	}
	doc := decode[api.Job](t, s.get(t, "/v1/jobs/"+p.JobID))
	if doc.State != api.StateFailed || doc.Error == nil || doc.Error.Detail != p.Detail {
		t.Errorf("status resource of the failed job: state %s error %+v; the 422 said %q", doc.State, doc.Error, p.Detail)
	}

	// A retryable failure answers 500 once the attempts are exhausted.
	resp = s.postSync(t, jsonBytes(t, map[string]any{"kind": "sleep", "max_attempts": 1,
		"args": map[string]any{"ms": 1, "fail_times": 5}}), "Expect", "200-ok")
	p = expectProblem(t, resp, http.StatusInternalServerError)
	if p.Type != api.TypeJobFailed || p.JobID == "" || resp.Header.Get("X-Job-Id") != p.JobID {
		t.Errorf("retryable failure answered %+v (X-Job-Id %q)", p, resp.Header.Get("X-Job-Id"))
	}
}

// --- Prefer ------------------------------------------------------------------

func TestSyncPrefer(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)

	t.Run("respond-async", func(t *testing.T) {
		start := time.Now()
		resp := s.postSync(t, sleepJob(10, nil), "Prefer", "respond-async")
		expectStatus(t, resp, http.StatusAccepted)
		if d := time.Since(start); d > time.Second {
			t.Errorf("respond-async took %v", d)
		}
		if got := resp.Header.Get("Preference-Applied"); got != "respond-async" {
			t.Errorf("Preference-Applied %q, want respond-async", got)
		}
		if !containsToken(resp.Header.Values("Vary"), "Prefer") {
			t.Errorf("Vary %q does not name Prefer", resp.Header.Values("Vary"))
		}
	})

	t.Run("wait runs out", func(t *testing.T) {
		start := time.Now()
		resp := s.postSync(t, sleepJob(3000, "slow"), "Prefer", "wait=1")
		elapsed := time.Since(start)
		expectStatus(t, resp, http.StatusAccepted)
		if elapsed < 900*time.Millisecond || elapsed > 2900*time.Millisecond {
			t.Errorf("Prefer: wait=1 answered after %v, want about 1s", elapsed)
		}
		if got := resp.Header.Get("Preference-Applied"); got != "wait=1" {
			t.Errorf("Preference-Applied %q, want wait=1", got)
		}
		if !containsToken(resp.Header.Values("Vary"), "Prefer") {
			t.Errorf("Vary %q does not name Prefer", resp.Header.Values("Vary"))
		}
		job := decode[api.Job](t, resp)
		if job.Done || resp.Header.Get("Location") != "/v1/jobs/"+job.ID {
			t.Errorf("202 after the wait: done %v, Location %q", job.Done, resp.Header.Get("Location"))
		}
		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
	})

	t.Run("wait in time", func(t *testing.T) {
		resp := s.postSync(t, sleepJob(10, map[string]any{"quick": true}), "Prefer", "wait=10")
		expectStatus(t, resp, http.StatusOK)
		expectSyncHeaders(t, resp.Header, expectResult(t, body(resp), map[string]any{"quick": true}))
		if got := resp.Header.Get("Preference-Applied"); got != "wait=10" {
			t.Errorf("Preference-Applied %q, want wait=10", got)
		}
		if !containsToken(resp.Header.Values("Vary"), "Prefer") {
			t.Errorf("Vary %q does not name Prefer", resp.Header.Values("Vary"))
		}
	})

	t.Run("unparseable", func(t *testing.T) {
		start := time.Now()
		resp := s.postSync(t, sleepJob(2000, nil), "Prefer", "wait=abc")
		expectStatus(t, resp, http.StatusAccepted)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("an unparseable wait was not ignored: %v", d)
		}
		if got := resp.Header.Get("Preference-Applied"); got != "" {
			t.Errorf("Preference-Applied %q for an ignored preference", got)
		}
		s.waitState(t, decode[api.Job](t, resp).ID, api.StateSucceeded, jobTimeout)
	})

	t.Run("Expect wins", func(t *testing.T) {
		start := time.Now()
		resp := s.postSync(t, sleepJob(2000, nil), "Expect", "202-accepted", "Prefer", "wait=10")
		expectStatus(t, resp, http.StatusAccepted)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Expect: 202-accepted with Prefer: wait=10 waited %v", d)
		}
		if got := resp.Header.Get("Preference-Applied"); got != "" {
			t.Errorf("Preference-Applied %q although Expect won", got)
		}
		s.waitState(t, decode[api.Job](t, resp).ID, api.StateSucceeded, jobTimeout)
	})
}

// --- processes and waiters ---------------------------------------------------

// TestSyncCrossProcess: the API process has no worker; the completion travels
// from the worker process through Redis pub/sub to the waiting request.
func TestSyncCrossProcess(t *testing.T) {
	t.Parallel()
	a, _ := startTiers(t, 1, nil)
	a.waitSlots(t, "default", 1)
	for i := range 3 {
		resp := a.postSync(t, sleepJob(10, map[string]any{"hop": i}), "Expect", "200-ok")
		expectStatus(t, resp, http.StatusOK)
		expectSyncHeaders(t, resp.Header, expectResult(t, body(resp), map[string]any{"hop": i}))
	}
	// 200-ok for a target too: its bytes come from Redis, written by the worker.
	job := jsonBytes(t, map[string]any{"kind": "thumbnail",
		"args": map[string]any{"image": testPNG(t, 10, 10), "width": 5, "format": "png"}})
	resp := a.postSync(t, job, "Expect", "200-ok")
	expectStatus(t, resp, http.StatusOK)
	if _, err := png.Decode(bytes.NewReader(body(resp))); err != nil {
		t.Errorf("cross-process 200-ok thumbnail is not a PNG: %v", err)
	}
}

func TestSyncManyWaiters(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CONCURRENCY": "50"})
	s.waitSlots(t, "default", 50)
	const n = 200
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := map[string]any{"waiter": i, "tag": fmt.Sprintf("w-%03d", i)}
			req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/jobs", bytes.NewReader(sleepJob(10, want)))
			if err != nil {
				t.Errorf("request: %v", err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Expect", "200-ok")
			resp := do(t, req)
			if resp == nil {
				return
			}
			data := body(resp)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("waiter %d: %s: %s", i, resp.Status, truncate(data, 500))
				return
			}
			var job api.Job
			if err := json.Unmarshal(data, &job); err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			if !jsonEqual(job.Result, must(json.Marshal(want))) || resp.Header.Get("X-Job-Id") != job.ID {
				t.Errorf("waiter %d got job %s with result %s, want %v", i, job.ID, job.Result, want)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent Expect: 200-ok answered in %v", n, time.Since(start))
}

// --- 100-continue together with Expect or Prefer ---------------------------

// TestSyncContinueCombined: Expect is a list (RFC 9110: Expect =
// #expectation). 100-continue in it is net/http's business (it sends the
// interim answer); the handler acts on the rest, whether it comes in the same
// field or in another one.
func TestSyncContinueCombined(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.waitSlots(t, "default", 1)
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"one field", []string{"Expect: 100-continue, 200-ok"}},
		{"two fields", []string{"Expect: 100-continue", "Expect: 200-ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, s)
			body := sleepJob(10, tc.name)
			req := rawPost(host, body, tc.lines...)
			rc.write(t, strings.TrimSuffix(req, string(body)))
			resp, data := rc.read(t, http.MethodPost, "/v1/jobs")
			if resp.StatusCode != http.StatusContinue {
				t.Fatalf("answered %s before the body, want 100 Continue: %s", resp.Status, data)
			}
			rc.write(t, string(body))
			resp, data = rc.read(t, http.MethodPost, "/v1/jobs")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%q answered %s, want 200: %s", tc.lines, resp.Status, data)
			}
			expectSyncHeaders(t, resp.Header, expectResult(t, data, tc.name))
		})
	}

	// Expect: 100-continue asks for nothing but the interim answer: a
	// Prefer: wait=N on the same request is honoured. (net/http's client does
	// the 100-continue handshake itself.)
	t.Run("with Prefer", func(t *testing.T) {
		resp := s.postSync(t, sleepJob(10, "continued"), "Expect", "100-continue", "Prefer", "wait=10")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Expect: 100-continue with Prefer: wait=10 answered %s, want 200 (the job takes 10ms): %s",
				resp.Status, body(resp))
		}
		expectResult(t, body(resp), "continued")
		if got := resp.Header.Get("Preference-Applied"); got != "wait=10" {
			t.Errorf("Preference-Applied %q, want wait=10", got)
		}
	})
}

// --- bugs: these fail until the server is fixed -----------------------------

// TestExpectBugPausedQueue: a paused queue has live workers but none drains
// it, so a synchronous job in it cannot finish within the wait bound. Like a
// queue without workers, that must be refused with 417 before anything is
// enqueued. The server admits the job, holds the request for SYNC_WAIT_MAX,
// answers 417 with a Link, and leaves a queued job behind.
func TestExpectBugPausedQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SYNC_WAIT_MAX": "3s"})
	s.waitSlots(t, "default", 1)
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/default/pause")); !q.Paused {
		t.Fatalf("pause answered %+v", q)
	}
	start := time.Now()
	resp := s.postSync(t, sleepJob(1, nil), "Expect", "200-ok")
	elapsed := time.Since(start)
	p := expectProblem(t, resp, http.StatusExpectationFailed)
	if p.JobID != "" || elapsed > time.Second {
		t.Errorf("Expect: 200-ok on a paused queue was admitted (job %q) and answered after %v; want 417 before enqueueing: %s",
			p.JobID, elapsed, p.Detail)
	}
	if n := s.countJobs(t); n != 0 {
		t.Errorf("a synchronous request on a paused queue left %d job(s) behind", n)
	}
}
