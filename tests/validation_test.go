package tests

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/offload-dev/offload/api"
)

// badInput is one request that must be refused with a problem document.
type badInput struct {
	name   string
	method string
	path   string
	ctype  string // Content-Type; "" sends none
	body   string
	status int
	// fields are the fields (JSON Pointers, or header and parameter names)
	// that the problem's errors must name.
	fields []string
}

func badInputs(t *testing.T) []badInput {
	img := testPNG(t, 8, 8)
	const j = "application/json"
	return []badInput{
		{"malformed JSON", "POST", "/v1/jobs", j, `{"kind": "sleep", "args": {`, 400, []string{"/"}},
		{"not JSON at all", "POST", "/v1/jobs", j, `kind=sleep`, 400, nil},
		{"empty body", "POST", "/v1/jobs", j, ``, 400, nil},
		{"two JSON values", "POST", "/v1/jobs", j, `{"kind":"sleep"} {"kind":"sleep"}`, 400, nil},
		{"trailing garbage", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1}} xyz`, 400, nil},
		{"wrong media type", "POST", "/v1/jobs", "text/plain", `{"kind":"sleep","args":{"ms":1}}`, 415, []string{"Content-Type"}},
		{"form media type", "POST", "/v1/jobs", "application/x-www-form-urlencoded", `kind=sleep`, 415, []string{"Content-Type"}},
		{"latin-1 charset", "POST", "/v1/jobs", j + "; charset=iso-8859-1", `{"kind":"sleep","args":{"ms":1}}`, 415, []string{"Content-Type"}},
		{"no media type", "POST", "/v1/jobs", "", `{"kind":"sleep","args":{"ms":1}}`, 415, nil},
		{"unknown kind", "POST", "/v1/jobs", j, `{"kind":"resize","args":{}}`, 422, []string{"/kind"}},
		{"missing kind", "POST", "/v1/jobs", j, `{"args":{}}`, 422, []string{"/kind"}},
		{"thumbnail width 0", "POST", "/v1/jobs", j,
			`{"kind":"thumbnail","args":{"image":"` + img + `","width":0,"format":"png"}}`, 422, []string{"/args/width"}},
		{"thumbnail bad format", "POST", "/v1/jobs", j,
			`{"kind":"thumbnail","args":{"image":"` + img + `","width":4,"format":"gif"}}`, 422, []string{"/args/format"}},
		{"thumbnail image not base64", "POST", "/v1/jobs", j, `{"kind":"thumbnail","args":{"image":"abc","width":4,"format":"png"}}`, 422, []string{"/args/image"}},
		{"thumbnail image base64url", "POST", "/v1/jobs", j,
			`{"kind":"thumbnail","args":{"image":"` + strings.NewReplacer("+", "-", "/", "_").Replace(img) + `_-","width":4,"format":"png"}}`, 422, []string{"/args/image"}},
		{"body not UTF-8", "POST", "/v1/jobs", j, "{\"kind\":\"sleep\",\"args\":{\"result\":\"\xff\xfe\"}}", 400, []string{"/"}},
		{"sleep ms fractional", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1.5}}`, 422, []string{"/args/ms"}},
		{"priority fractional", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"priority":1.5}`, 422, []string{"/priority"}},
		{"thumbnail missing image", "POST", "/v1/jobs", j, `{"kind":"thumbnail","args":{"width":4,"format":"png"}}`, 422, []string{"/args/image"}},
		{"sleep ms -1", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":-1}}`, 422, []string{"/args/ms"}},
		{"sleep ms not a number", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":"ten"}}`, 422, []string{"/args/ms"}},
		{"sleep ms too large", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":3600001}}`, 422, []string{"/args/ms"}},
		{"unknown args property", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1,"bogus":true}}`, 422, []string{"/args/bogus"}},
		{"args not an object", "POST", "/v1/jobs", j, `{"kind":"sleep","args":"ms=1"}`, 422, []string{"/args"}},
		{"report missing group_by", "POST", "/v1/jobs", j, `{"kind":"report","args":{"csv":"a,b\n1,2\n"}}`, 422, []string{"/args/group_by"}},
		{"unknown top-level field", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"colour":"red"}`, 422, []string{"/colour"}},
		{"bad queue name", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"queue":"Bad Queue!"}`, 422, []string{"/queue"}},
		{"priority out of range", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"priority":10}`, 422, []string{"/priority"}},
		{"max_attempts 0", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"max_attempts":0}`, 422, []string{"/max_attempts"}},
		{"negative delay", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"delay":-5}`, 422, []string{"/delay"}},
		{"bad run_at", "POST", "/v1/jobs", j, `{"kind":"sleep","args":{"ms":1},"run_at":"tomorrow"}`, 422, []string{"/run_at"}},
		{"run_at and delay", "POST", "/v1/jobs", j,
			`{"kind":"sleep","args":{"ms":1},"run_at":"2999-01-01T00:00:00Z","delay":5}`, 422, []string{"/delay"}},
		{"body is an array", "POST", "/v1/jobs", j, `[{"kind":"sleep"}]`, 422, nil},
		{"body is null", "POST", "/v1/jobs", j, `null`, 422, nil},
		{"list limit 0", "GET", "/v1/jobs?limit=0", "", "", 400, []string{"limit"}},
		{"list limit not a number", "GET", "/v1/jobs?limit=ten", "", "", 400, []string{"limit"}},
		{"list limit too large", "GET", "/v1/jobs?limit=201", "", "", 400, []string{"limit"}},
		{"list bad state", "GET", "/v1/jobs?state=sleeping", "", "", 400, []string{"state"}},
		{"list bad queue", "GET", "/v1/jobs?queue=Not%20A%20Queue", "", "", 400, []string{"queue"}},
		{"list bad cursor", "GET", "/v1/jobs?cursor=not-a-cursor", "", "", 400, []string{"cursor"}},
		{"list cursor of garbage base64", "GET", "/v1/jobs?cursor=%21%21%21", "", "", 400, []string{"cursor"}},
		{"pause bad queue name", "POST", "/v1/queues/BAD%20NAME/pause", "", "", 400, []string{"name"}},
	}
}

func sendBad(t *testing.T, s *Server, b badInput) *http.Response {
	t.Helper()
	var payload []byte
	if b.body != "" || b.method == "POST" && b.path == "/v1/jobs" {
		payload = []byte(b.body)
	}
	var hdr []string
	if b.ctype != "" {
		hdr = []string{"Content-Type", b.ctype}
	}
	return s.request(t, b.method, b.path, payload, hdr...)
}

// TestBadInput sends every kind of bad input and expects its problem
// document; then a storm of them alongside good jobs must cost no job and
// cause no 5xx.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	inputs := badInputs(t)
	for _, b := range inputs {
		t.Run(b.name, func(t *testing.T) {
			expectProblem(t, sendBad(t, s, b), b.status, b.fields...)
		})
	}

	// The one charset JSON has is accepted when it is named.
	t.Run("utf-8 charset", func(t *testing.T) {
		resp := s.request(t, http.MethodPost, "/v1/jobs", []byte(`{"kind":"sleep","args":{"ms":1}}`),
			"Content-Type", "application/json; charset=UTF-8")
		expectStatus(t, resp, http.StatusAccepted)
	})

	// A compressed body is refused as such (RFC 9110 §15.5.16), not as
	// malformed JSON, and the answer says which coding is taken.
	t.Run("gzip content coding", func(t *testing.T) {
		resp := s.request(t, http.MethodPost, "/v1/jobs", []byte("\x1f\x8b\x08\x00"),
			"Content-Type", "application/json", "Content-Encoding", "gzip")
		if got := resp.Header.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("Accept-Encoding %q, want identity", got)
		}
		expectProblem(t, resp, http.StatusUnsupportedMediaType, "Content-Encoding")
	})

	t.Run("body over the limit", func(t *testing.T) {
		t.Parallel()
		small := startServer(t, map[string]string{"BODY_LIMIT": "2048"})
		big := `{"kind":"sleep","args":{"ms":1,"result":"` + strings.Repeat("x", 4096) + `"}}`
		expectProblem(t, small.postJSON(t, "/v1/jobs", big), http.StatusRequestEntityTooLarge)
		// Just under the limit is fine.
		fits := `{"kind":"sleep","args":{"ms":1,"result":"` + strings.Repeat("x", 1900) + `"}}`
		job := small.submit(t, fits)
		small.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
	})

	t.Run("storm", func(t *testing.T) {
		existing := map[string]bool{}
		for _, j := range decode[api.JobList](t, s.get(t, "/v1/jobs?limit=200")).Jobs {
			existing[j.ID] = true
		}
		// A job running while the storm rages, and one submitted during it.
		before := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 300, "result": "before"}})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var worst int
		for w := range 8 {
			wg.Go(func() {
				for round := range 5 {
					for i, b := range inputs {
						if (i+w+round)%2 == 0 {
							continue
						}
						var payload []byte
						if b.method == "POST" && b.path == "/v1/jobs" {
							payload = []byte(b.body)
						}
						req, err := http.NewRequest(b.method, s.URL+b.path, strings.NewReader(string(payload)))
						if err != nil {
							t.Error(err)
							return
						}
						if payload == nil {
							req.Body = nil
						}
						if b.ctype != "" {
							req.Header.Set("Content-Type", b.ctype)
						}
						resp := do(t, req)
						if resp == nil {
							continue
						}
						if resp.StatusCode != b.status {
							t.Errorf("storm: %s: status %d, want %d", b.name, resp.StatusCode, b.status)
						}
						mu.Lock()
						worst = max(worst, resp.StatusCode)
						mu.Unlock()
					}
				}
			})
		}
		during := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 10, "result": "during"}})
		wg.Wait()
		if worst >= 500 {
			t.Errorf("the storm got a %d answer", worst)
		}
		after := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 10, "result": "after"}})
		for _, j := range []api.Job{before, during, after} {
			got := s.waitState(t, j.ID, api.StateSucceeded, jobTimeout)
			if got.Attempt != 1 || len(got.AttemptErrors) != 0 {
				t.Errorf("job %s: attempt %d, attempt_errors %v", j.ID, got.Attempt, got.AttemptErrors)
			}
		}
		// Nothing from the storm was enqueued: only the three good jobs are new.
		list := decode[api.JobList](t, s.get(t, "/v1/jobs?limit=200"))
		for _, j := range list.Jobs {
			if !existing[j.ID] && j.ID != before.ID && j.ID != during.ID && j.ID != after.ID {
				t.Errorf("bad input enqueued job %s (%s %s)", j.ID, j.Kind, j.State)
			}
		}
	})
}

// TestUnknownJob expects 404 problems for ids nobody issued.
func TestUnknownJob(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	for _, id := range []string{
		"default.01ARZ3NDEKTSV4RRFFQ69G5FAV", // well formed, unknown
		"nosuchqueue.01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"not-an-id",
		"default.short",
		"Default.01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"default.01ARZ3NDEKTSV4RRFFQ69G5FAV.extra",
		"%2e%2e",
	} {
		t.Run(id, func(t *testing.T) {
			expectProblem(t, s.get(t, "/v1/jobs/"+id), http.StatusNotFound)
			expectProblem(t, s.del(t, "/v1/jobs/"+id), http.StatusNotFound)
			expectProblem(t, s.post(t, "/v1/jobs/"+id+"/retry"), http.StatusNotFound)
			expectProblem(t, s.get(t, "/v1/images/"+id), http.StatusNotFound)
			expectProblem(t, s.get(t, "/v1/reports/"+id), http.StatusNotFound)
		})
	}
	// A job that exists but created no image has no image.
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
	s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
	expectProblem(t, s.get(t, "/v1/images/"+job.ID), http.StatusNotFound)
	expectProblem(t, s.get(t, "/v1/queues/nosuchqueue"), http.StatusNotFound)
}
