package tests

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/offload-dev/offload/api"
)

// TestResponsesAreValidated proves that the response validation every test
// relies on (do) refuses answers the served OpenAPI document does not
// describe, and accepts the server's own.
func TestResponsesAreValidated(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	rt := router(t, s.URL)
	const id = "default.01ARZ3NDEKTSV4RRFFQ69G5FAV"
	job := `{"id":"` + id + `","kind":"sleep","queue":"default","state":"queued","done":false,"priority":0,` +
		`"attempt":0,"max_attempts":3,"created_at":"2025-01-15T10:00:00Z","updated_at":"2025-01-15T10:00:00Z",` +
		`"progress":{"percent":0},"links":{"self":"/v1/jobs/` + id + `"}}`
	jsonHdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		valid              bool
	}{
		{"a good status document", "GET", "/v1/jobs/" + id, 200, jsonHdr("Retry-After", "1"), job, true},
		{"an undocumented status", "GET", "/healthz", 418, jsonHdr(), `{"status":"ok"}`, false},
		{"a document missing required members", "GET", "/v1/jobs/" + id, 200, jsonHdr(), `{"id":"x"}`, false},
		{"a state outside the enum", "GET", "/v1/jobs/" + id, 200, jsonHdr(),
			`{"id":"x","kind":"sleep","queue":"default","state":"sleeping","done":false,"priority":0,"attempt":0,` +
				`"max_attempts":3,"created_at":"2025-01-15T10:00:00Z","updated_at":"2025-01-15T10:00:00Z",` +
				`"progress":{"percent":0},"links":{"self":"/"}}`, false},
		{"a Retry-After that is not a number", "POST", "/v1/jobs", 202, jsonHdr("Retry-After", "soon"), job, false},
		{"a problem as plain JSON", "GET", "/v1/jobs/" + id, 404, jsonHdr(), `{"type":"x","title":"y"}`, false},
		{"an operation the document lacks", "PATCH", "/v1/jobs/" + id, 200, jsonHdr(), `{}`, false},
		{"an image of a type not offered", "GET", "/v1/images/" + id, 200,
			http.Header{"Content-Type": {"image/gif"}}, "GIF89a", false},
		{"any bytes as a PNG", "GET", "/v1/images/" + id, 200,
			http.Header{"Content-Type": {"image/png"}}, "\x89PNG\r\n\x1a\n\x00\xff", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, s.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = validateResponse(rt, req, tc.status, tc.header, []byte(tc.body))
			if tc.valid && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.valid && err == nil {
				t.Errorf("accepted")
			}
		})
	}

	// The system endpoints, through do.
	for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		expectStatus(t, s.get(t, path), http.StatusOK)
	}
}

// TestHead checks that HEAD answers like GET: the probes' documented HEAD
// operations through do, and an API resource, whose HEAD the document
// describes only as its GET without the body.
func TestHead(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp := s.request(t, http.MethodHead, path, nil)
		expectStatus(t, resp, http.StatusOK)
		if b := body(resp); len(b) != 0 {
			t.Errorf("HEAD %s: body %q", path, b)
		}
	}
	// Scheduled an hour ahead, so that its document does not change between the two.
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{}, "delay": 3600})
	get := s.get(t, "/v1/jobs/"+job.ID)
	req, err := http.NewRequest(http.MethodHead, s.URL+"/v1/jobs/"+job.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	head, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != get.StatusCode {
		t.Fatalf("HEAD %d, GET %d", head.StatusCode, get.StatusCode)
	}
	for _, h := range []string{"Content-Type", "ETag", "Cache-Control", "Retry-After"} {
		if head.Header.Get(h) != get.Header.Get(h) {
			t.Errorf("%s: HEAD %q, GET %q", h, head.Header.Get(h), get.Header.Get(h))
		}
	}
}

// TestCrossOrigin checks that a browser page of another origin cannot pause
// a queue or submit a job (a documented 403 problem, nothing done), while a
// trusted origin (TRUSTED_ORIGINS) and a client that is not a browser can.
func TestCrossOrigin(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"TRUSTED_ORIGINS": "https://ui.example.com"})
	for _, hdr := range [][]string{
		{"Origin", "http://evil.example", "Content-Type", "text/plain"},
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
	} {
		p := expectProblem(t, s.request(t, http.MethodPost, "/v1/queues/default/pause", nil, hdr...), http.StatusForbidden)
		if p.Type != api.TypeCrossOrigin {
			t.Errorf("problem type %q", p.Type)
		}
		expectProblem(t, s.request(t, http.MethodPost, "/v1/jobs",
			[]byte(`{"kind":"sleep","args":{}}`), append(hdr, "Content-Type", "application/json")...), http.StatusForbidden)
	}
	if q := decode[api.Queue](t, s.get(t, "/v1/queues/default")); q.Paused {
		t.Error("a refused request paused the queue")
	}
	if l := decode[api.JobList](t, s.get(t, "/v1/jobs")); len(l.Jobs) != 0 {
		t.Errorf("a refused request submitted %d jobs", len(l.Jobs))
	}
	expectStatus(t, s.request(t, http.MethodPost, "/v1/queues/default/pause", nil,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://ui.example.com"), http.StatusOK)
	expectStatus(t, s.post(t, "/v1/queues/default/resume"), http.StatusOK)
}

// TestProblemTypesDocumented: every problem type URI the code writes (a
// problem document's, or an error document's kept in a job) has its row in
// the problem-type table of openapi.yaml.
func TestProblemTypesDocumented(t *testing.T) {
	t.Parallel()
	spec, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	uri := regexp.MustCompile(`https://offload\.dev/problems/[a-z-]+`)
	found := map[string]string{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, u := range uri.FindAllString(string(src), -1) {
			found[u] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 10 {
		t.Fatalf("found only %d problem types in the Go sources: %v", len(found), found)
	}
	for u, path := range found {
		if !strings.Contains(string(spec), "| `"+u+"` |") {
			t.Errorf("%s (written in %s) has no row in openapi.yaml's table of problem types", u, path)
		}
	}
}
