package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/handlers"
	"github.com/offload-dev/offload/metrics"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/workers"
)

type env struct {
	srv *httptest.Server
	h   http.Handler
	q   *queue.Queue
	mr  *miniredis.Miniredis
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupWith(t, func(*handlers.Config) {})
}

// setupWith is setup with a configuration changed by edit.
func setupWith(t *testing.T, edit func(*handlers.Config)) *env {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	q := queue.New(rdb, queue.Options{})
	reg := workers.NewRegistry()
	if err := workers.RegisterBuiltins(reg); err != nil {
		t.Fatal(err)
	}
	cfg := handlers.Config{BodyLimit: 4096, Logger: zerolog.Nop(), Metrics: metrics.New(q, nil),
		Ready: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }}
	edit(&cfg)
	h, err := handlers.New(cfg, q, statusstore.New(rdb), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{srv: srv, h: h, q: q, mr: mr}
}

func (e *env) do(t *testing.T, method, path, ctype, body string) (*http.Response, []byte) {
	t.Helper()
	if ctype == "" {
		return request(t, method, e.srv.URL+path, body)
	}
	return request(t, method, e.srv.URL+path, body, "Content-Type", ctype)
}

// request sends method url with body and headers ("Name", "value", ...),
// following no redirect, and returns the answer with its body read.
func request(t *testing.T, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// doHeader sends a bodiless request with the given headers ("Name",
// "value", ...), following no redirect.
func (e *env) doHeader(t *testing.T, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	return request(t, method, e.srv.URL+path, "", header...)
}

// TestRoutesMatchOpenAPI fails when the router serves a route the document
// lacks, or the document describes one the router does not serve.
func TestRoutesMatchOpenAPI(t *testing.T) {
	e := setup(t)
	spec, err := api.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	err = chi.Walk(e.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		// The dashboard's fragments and assets serve its own pages, not
		// API clients: the document describes the pages, not their parts.
		if strings.HasPrefix(route, "/ui/") || strings.HasPrefix(route, "/static/") {
			return nil
		}
		served = append(served, method+" "+strings.TrimSuffix(route, "/*"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range spec.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	if strings.Join(served, "\n") != strings.Join(documented, "\n") {
		t.Errorf("router and openapi.yaml disagree\nserved:\n%s\n\ndocumented:\n%s",
			strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
}

func TestSubmitAccepted(t *testing.T) {
	e := setup(t)
	resp, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{"ms":5},"priority":3}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var job api.Job
	if err := json.Unmarshal(body, &job); err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/jobs/"+job.ID || resp.Header.Get("Content-Location") != loc {
		t.Errorf("Location %q Content-Location %q, id %s", loc, resp.Header.Get("Content-Location"), job.ID)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if job.State != api.StateQueued || job.Priority != 3 || job.Kind != "sleep" || job.Queue != "default" {
		t.Errorf("job %+v", job)
	}
	// The record exists and reads back the same.
	resp, body = e.do(t, "GET", "/v1/jobs/"+job.ID, "", "")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"state":"queued"`)) {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("ETag") == "" {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestScheduledRetryAfter(t *testing.T) {
	e := setup(t)
	resp, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"delay":120}`)
	if resp.StatusCode != http.StatusAccepted || !bytes.Contains(body, []byte(`"state":"scheduled"`)) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "120" && ra != "119" {
		t.Errorf("Retry-After %q, want about 120", ra)
	}
}

func TestBadInput(t *testing.T) {
	e := setup(t)
	big := `{"kind":"sleep","args":{"result":"` + strings.Repeat("x", 5000) + `"}}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		field                           string
	}{
		{"malformed json", "POST", "/v1/jobs", "application/json", `{"kind":`, 400, "/"},
		{"empty body", "POST", "/v1/jobs", "application/json", ``, 400, "/"},
		{"wrong media type", "POST", "/v1/jobs", "text/plain", `{"kind":"sleep"}`, 415, "Content-Type"},
		{"too large", "POST", "/v1/jobs", "application/json", big, 413, ""},
		{"unknown kind", "POST", "/v1/jobs", "application/json", `{"kind":"nope","args":{}}`, 422, "/kind"},
		{"missing kind", "POST", "/v1/jobs", "application/json", `{"args":{}}`, 422, "/kind"},
		{"bad args", "POST", "/v1/jobs", "application/json", `{"kind":"thumbnail","args":{"image":"aGk=","width":0,"format":"png"}}`, 422, "/args/width"},
		{"unknown arg", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{"zzz":1}}`, 422, "/args/zzz"},
		{"negative sleep", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{"ms":-1}}`, 422, "/args/ms"},
		{"unknown field", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"zzz":1}`, 422, "/zzz"},
		{"bad queue", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"queue":"Bad Queue"}`, 422, "/queue"},
		{"bad priority", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"priority":99}`, 422, "/priority"},
		{"run_at and delay", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"delay":5,"run_at":"2030-01-01T00:00:00Z"}`, 422, "/delay"},
		{"run_at and delay 0", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"delay":0,"run_at":"2030-01-01T00:00:00Z"}`, 422, "/delay"},
		{"ordering key and delay 0", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"delay":0,"ordering_key":"k"}`, 422, "/ordering_key"},
		{"leap second", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"run_at":"2026-12-31T23:59:60Z"}`, 422, "/run_at"},
		{"run_at beyond a year", "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"run_at":"9999-12-31T23:59:59Z"}`, 422, "/run_at"},
		{"repeated filter", "GET", "/v1/jobs?state=queued&state=failed", "", "", 400, "state"},
		{"repeated limit", "GET", "/v1/jobs?limit=5&limit=6", "", "", 400, "limit"},
		{"bad limit", "GET", "/v1/jobs?limit=0", "", "", 400, "limit"},
		{"bad state", "GET", "/v1/jobs?state=nope", "", "", 400, "state"},
		{"bad cursor", "GET", "/v1/jobs?cursor=!!", "", "", 400, "cursor"},
		{"unknown job", "GET", "/v1/jobs/default.01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "", 404, ""},
		{"malformed id", "GET", "/v1/jobs/nope", "", "", 404, ""},
		{"cancel unknown", "DELETE", "/v1/jobs/nope", "", "", 404, ""},
		{"retry unknown", "POST", "/v1/jobs/default.01ARZ3NDEKTSV4RRFFQ69G5FAV/retry", "", "", 404, ""},
		{"unknown route", "GET", "/v2/nope", "", "", 404, ""},
		{"unknown method on unknown route", "FOO1", "/v2/nope", "", "", 404, ""},
		{"unknown image", "GET", "/v1/images/default.01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, tt.method, tt.path, tt.ctype, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != api.ProblemContentType {
				t.Fatalf("Content-Type %q", ct)
			}
			var p api.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.status || p.Type == "" || p.Title == "" {
				t.Errorf("problem %+v", p)
			}
			if tt.field == "" {
				return
			}
			for _, f := range p.Errors {
				if f.Field == tt.field {
					return
				}
			}
			t.Errorf("no error names %q: %s", tt.field, body)
		})
	}
	// None of it cost a job or left one behind.
	_, body := e.do(t, "GET", "/v1/jobs", "", "")
	if !bytes.Contains(body, []byte(`"jobs":[]`)) {
		t.Errorf("bad input left jobs: %s", body)
	}
}

func TestCancelAndRetry(t *testing.T) {
	e := setup(t)
	_, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{}}`)
	var job api.Job
	_ = json.Unmarshal(body, &job)
	resp, body := e.do(t, "DELETE", "/v1/jobs/"+job.ID, "", "")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"state":"canceled"`)) {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "DELETE", "/v1/jobs/"+job.ID, "", "")
	if resp.StatusCode != 409 {
		t.Fatalf("second cancel: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "POST", "/v1/jobs/"+job.ID+"/retry", "", "")
	if resp.StatusCode != 202 || !bytes.Contains(body, []byte(`"state":"queued"`)) {
		t.Fatalf("retry: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.do(t, "POST", "/v1/jobs/"+job.ID+"/retry", "", "")
	if resp.StatusCode != 409 {
		t.Fatalf("retry of queued: %d", resp.StatusCode)
	}
}

func TestRunToCompletion(t *testing.T) {
	e := setup(t)
	rdb := redis.NewClient(&redis.Options{Addr: e.mr.Addr()})
	defer rdb.Close()
	reg := workers.NewRegistry()
	_ = workers.RegisterBuiltins(reg)
	pool := workers.NewPool(e.q, reg, workers.PoolConfig{Concurrency: 2, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pool.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	report := `{"kind":"report","args":{"csv":"k,v\na,1\nb,2\na,3\n","group_by":"k","sum":["v"]}}`
	_, body := e.do(t, "POST", "/v1/jobs", "application/json", report)
	var job api.Job
	_ = json.Unmarshal(body, &job)
	sub := rdb.Subscribe(ctx, queue.ChannelDone)
	defer sub.Close()
	deadline := time.After(10 * time.Second)
	for {
		resp, body := e.do(t, "GET", "/v1/jobs/"+job.ID, "", "")
		if resp.StatusCode == http.StatusSeeOther {
			target := "/v1/reports/" + job.ID
			if loc := resp.Header.Get("Location"); loc != target {
				t.Fatalf("Location %q", loc)
			}
			// A 303 is not a 2xx: If-None-Match does not apply to it
			// (RFC 9110 §13.2.1), even with the 303's own ETag.
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Error("303: no ETag")
			}
			for _, inm := range []string{etag, "*", "W/" + etag} {
				again, _ := e.doHeader(t, "GET", "/v1/jobs/"+job.ID, "If-None-Match", inm)
				if again.StatusCode != http.StatusSeeOther || again.Header.Get("Location") != target {
					t.Errorf("If-None-Match %s on a 303: %d, Location %q; want 303 to %s",
						inm, again.StatusCode, again.Header.Get("Location"), target)
				}
			}
			break
		}
		if resp.StatusCode != 200 || bytes.Contains(body, []byte(`"done":true`)) {
			t.Fatalf("unexpected %d %s", resp.StatusCode, body)
		}
		select {
		case <-sub.Channel():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("report did not finish")
		}
	}
	resp, body := e.do(t, "GET", "/v1/reports/"+job.ID, "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var rep workers.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 3 || len(rep.Groups) != 2 || rep.Groups[0].Key != "a" || rep.Groups[0].Sums["v"] != 4 {
		t.Errorf("report %+v", rep)
	}
}

func TestHealth(t *testing.T) {
	e := setup(t)
	if resp, _ := e.do(t, "GET", "/healthz", "", ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/readyz", "", ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	e.mr.Close()
	if resp, body := e.do(t, "GET", "/readyz", "", ""); resp.StatusCode != 503 {
		t.Fatal(resp.StatusCode, string(body))
	}
	resp, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{}}`)
	if resp.StatusCode != 503 || !bytes.Contains(body, []byte("unavailable")) {
		t.Fatalf("submit with Redis down: %d %s", resp.StatusCode, body)
	}
}

func TestMetrics(t *testing.T) {
	e := setup(t)
	e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{}}`)
	e.do(t, "GET", "/v1/jobs/default.01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "")
	resp, body := e.do(t, "GET", "/metrics", "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	for _, want := range []string{
		`offload_jobs_enqueued_total{kind="sleep",queue="default"} 1`,
		`offload_queue_jobs{queue="default",state="queued"} 1`,
		`offload_http_requests_total{method="GET",route="/v1/jobs/{id}",status="404"} 1`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHeadAnswersLikeGet sends HEAD and GET to every GET route the router
// serves: HEAD must answer with GET's status and headers and no body (RFC
// 9110 §9.1), including where the OpenAPI validator refuses the GET.
func TestHeadAnswersLikeGet(t *testing.T) {
	e := setup(t)
	_, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{}}`)
	var job api.Job
	if err := json.Unmarshal(body, &job); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{id}", job.ID, "{name}", "default", "*", "app.css")
	paths := []string{"/v1/jobs?limit=0", "/v1/jobs/nope", "/v2/nope"}
	err := chi.Walk(e.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method == http.MethodGet {
			paths = append(paths, fill.Replace(route))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Headers that differ between any two answers.
	volatile := map[string]bool{"Date": true, "X-Request-Id": true, "Content-Length": true}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			// The same Accept-Encoding both times: Go's transport asks
			// for gzip on its own, but not for HEAD.
			get, _ := e.doHeader(t, "GET", path, "Accept-Encoding", "gzip")
			head, hb := e.doHeader(t, "HEAD", path, "Accept-Encoding", "gzip")
			if head.StatusCode != get.StatusCode {
				t.Fatalf("HEAD %d, GET %d", head.StatusCode, get.StatusCode)
			}
			if len(hb) != 0 {
				t.Errorf("HEAD has a body: %q", hb)
			}
			for name := range mergeKeys(get.Header, head.Header) {
				if volatile[name] {
					continue
				}
				if g, h := get.Header.Values(name), head.Header.Values(name); strings.Join(g, "\n") != strings.Join(h, "\n") {
					t.Errorf("%s: GET %q, HEAD %q", name, g, h)
				}
			}
			// HEAD may omit Content-Length; if it sends one, it is GET's.
			if head.ContentLength >= 0 && get.ContentLength >= 0 && head.ContentLength != get.ContentLength {
				t.Errorf("Content-Length: GET %d, HEAD %d", get.ContentLength, head.ContentLength)
			}
		})
	}
}

func mergeKeys(hs ...http.Header) map[string]bool {
	keys := map[string]bool{}
	for _, h := range hs {
		for k := range h {
			keys[k] = true
		}
	}
	return keys
}

func TestOpsHead(t *testing.T) {
	h := handlers.Ops(handlers.Config{Logger: zerolog.Nop()})
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("HEAD %s: %d", path, rec.Code)
		}
	}
}

// TestMethodNotAllowed checks that a 405 lists the methods its path serves
// in Allow and in its detail, and matches the documented MethodNotAllowed
// response.
func TestMethodNotAllowed(t *testing.T) {
	e := setup(t)
	spec, err := api.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	ref := spec.Components.Responses["MethodNotAllowed"]
	if ref == nil {
		t.Fatal("openapi.yaml documents no MethodNotAllowed response")
	}
	responses := openapi3.NewResponses(openapi3.WithStatus(405, ref))
	route := &routers.Route{Spec: spec, Operation: &openapi3.Operation{Responses: responses}}
	const id = "default.01ARZ3NDEKTSV4RRFFQ69G5FAV"
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/healthz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"DELETE", "/v1/jobs", "GET, HEAD, POST"},
		{"FOO1", "/v1/jobs", "GET, HEAD, POST"},
		{"POST", "/v1/jobs/" + id, "GET, HEAD, DELETE"},
		{"GET", "/v1/jobs/" + id + "/retry", "POST"},
		{"PATCH", "/v1/queues/default", "GET, HEAD"},
		{"GET", "/ui/queues/default/pause", "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := e.do(t, tc.method, tc.path, "", "")
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Values("Allow"); len(got) != 1 || got[0] != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			var p api.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != api.TypeMethod || !strings.Contains(p.Detail, tc.allow) {
				t.Errorf("problem %+v does not name %s", p, tc.allow)
			}
			req := httptest.NewRequest(tc.method, tc.path, nil)
			err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route},
				Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
				Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
			})
			if err != nil {
				t.Errorf("the answer does not match the documented MethodNotAllowed: %v", err)
			}
		})
	}
}

// TestCrossOrigin checks that the API's unsafe operations refuse requests a
// browser sends from a page of another origin with a documented 403, before
// anything is done, and still answer non-browser clients, same-origin pages
// and trusted origins.
func TestCrossOrigin(t *testing.T) {
	e := setupWith(t, func(c *handlers.Config) { c.TrustedOrigins = []string{"https://ui.example.com"} })
	spec, err := api.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, body := e.do(t, "POST", "/v1/jobs", "application/json", `{"kind":"sleep","args":{},"delay":3600}`)
	var job api.Job
	if err := json.Unmarshal(body, &job); err != nil {
		t.Fatal(err)
	}
	type op struct{ method, path, ctype, body string }
	ops := []op{
		{"POST", "/v1/jobs", "text/plain", `{"kind":"sleep","args":{}}`},
		{"POST", "/v1/queues/default/pause", "text/plain", ""},
		{"POST", "/v1/queues/default/resume", "", ""},
		{"POST", "/v1/jobs/" + job.ID + "/retry", "", ""},
		{"DELETE", "/v1/jobs/" + job.ID, "", ""},
	}
	send := func(o op, header ...string) (*http.Response, []byte) {
		t.Helper()
		if o.ctype != "" {
			header = append([]string{"Content-Type", o.ctype}, header...)
		}
		return request(t, o.method, e.srv.URL+o.path, o.body, header...)
	}

	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"cross-site", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}},
		{"same-site other origin", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://other." + e.srv.Listener.Addr().String()}},
		{"old browser, other origin", []string{"Origin", "http://evil.example"}},
	} {
		for _, o := range ops {
			t.Run(tc.name+" "+o.method+" "+o.path, func(t *testing.T) {
				resp, body := send(o, tc.header...)
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != api.ProblemContentType {
					t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				var p api.Problem
				if err := json.Unmarshal(body, &p); err != nil || p.Type != api.TypeCrossOrigin || p.Status != 403 {
					t.Errorf("problem %s (%v)", body, err)
				}
				req := httptest.NewRequest(o.method, o.path, nil)
				route, params, err := rt.FindRoute(req)
				if err != nil {
					t.Fatal(err)
				}
				err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
					RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
					Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
					Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
				})
				if err != nil {
					t.Errorf("the 403 is not documented: %v", err)
				}
			})
		}
	}
	// Nothing was done.
	if _, body := e.do(t, "GET", "/v1/jobs/"+job.ID, "", ""); !bytes.Contains(body, []byte(`"state":"scheduled"`)) {
		t.Errorf("a refused request changed the job: %s", body)
	}
	if _, body := e.do(t, "GET", "/v1/queues/default", "", ""); !bytes.Contains(body, []byte(`"paused":false`)) {
		t.Errorf("a refused request paused the queue: %s", body)
	}
	if _, body := e.do(t, "GET", "/v1/jobs", "", ""); bytes.Count(body, []byte(`"id"`)) != 1 {
		t.Errorf("a refused request submitted a job: %s", body)
	}
	// curl, a same-origin page and a trusted origin pass; a cross-site GET is safe.
	pause := op{"POST", "/v1/queues/default/pause", "", ""}
	for _, header := range [][]string{
		nil,
		{"Sec-Fetch-Site", "same-origin", "Origin", e.srv.URL},
		{"Origin", e.srv.URL},
		{"Sec-Fetch-Site", "none"},
		{"Sec-Fetch-Site", "cross-site", "Origin", "https://ui.example.com"},
	} {
		if resp, body := send(pause, header...); resp.StatusCode != http.StatusOK {
			t.Errorf("%q: %d %s", header, resp.StatusCode, body)
		}
	}
	if resp, body := send(op{"GET", "/v1/queues/default", "", ""}, "Sec-Fetch-Site", "cross-site",
		"Origin", "http://evil.example"); resp.StatusCode != http.StatusOK {
		t.Errorf("cross-site GET: %d %s", resp.StatusCode, body)
	}
}

func TestCrossOriginBadTrustedOrigin(t *testing.T) {
	if _, err := handlers.CrossOrigin(zerolog.Nop(), "ui.example.com/path"); err == nil {
		t.Error("a trusted origin that is not an origin was accepted")
	}
}

// TestNoDashboard: an embedding program can leave the dashboard out and keep
// the API, the contract and health.
func TestNoDashboard(t *testing.T) {
	e := setupWith(t, func(c *handlers.Config) { c.NoDashboard = true })
	for _, path := range []string{"/", "/ui/jobs", "/docs", "/static/app.css"} {
		if resp, _ := e.do(t, http.MethodGet, path, "", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d with NoDashboard, want 404", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/v1/queues", "/openapi.yaml", "/healthz", "/readyz"} {
		if resp, _ := e.do(t, http.MethodGet, path, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d with NoDashboard, want 200", path, resp.StatusCode)
		}
	}
	// Without the option the same paths answer.
	e = setup(t)
	for _, path := range []string{"/ui/jobs", "/docs"} {
		if resp, _ := e.do(t, http.MethodGet, path, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestDocumentedCursorWorks: the next_cursor of listJobs' example is one
// the API takes, so that "Try it out" in the docs does not answer 400.
func TestDocumentedCursorWorks(t *testing.T) {
	spec, err := api.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	ex := spec.Paths.Find("/v1/jobs").Get.Responses.Status(200).Value.Content.Get("application/json").Examples["page"]
	cursor, _ := ex.Value.Value.(map[string]any)["next_cursor"].(string)
	if cursor == "" {
		t.Fatal("the listJobs example has no next_cursor")
	}
	e := setup(t)
	if resp, body := e.do(t, http.MethodGet, "/v1/jobs?cursor="+cursor, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/jobs?cursor=<documented> = %d: %s", resp.StatusCode, body)
	}
}

// TestDashboardUnknownState: the dashboard's job list, over the real status
// store, answers 400 naming an unknown state instead of an empty list that
// reads as "no such jobs" (the JSON API's validator refuses it before).
func TestDashboardUnknownState(t *testing.T) {
	e := setup(t)
	for _, hdr := range [][]string{nil, {"HX-Request", "true"}} {
		path := "/ui/jobs?state=bogus"
		if hdr != nil {
			path = "/ui/partials/jobs?state=bogus"
		}
		resp, body := e.doHeader(t, http.MethodGet, path, hdr...)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("Invalid state")) ||
			!bytes.Contains(body, []byte("bogus")) {
			t.Errorf("GET %s: %d\n%s", path, resp.StatusCode, body)
		}
	}
	if resp, _ := e.do(t, http.MethodGet, "/ui/jobs?state=failed", "", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("a known state: %d", resp.StatusCode)
	}
}
