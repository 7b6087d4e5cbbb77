package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
)

// testPNG returns a w x h PNG with a gradient, base64-encoded.
func testPNG(t *testing.T, w, h int) string {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{R: uint8(x * 255 / w), G: uint8(y * 255 / h), B: 128, A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func TestThumbnail(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	src := testPNG(t, 64, 48)
	for _, tc := range []struct {
		format, ctype string
		decode        func(*bytes.Reader) (image.Image, error)
	}{
		{"png", "image/png", func(r *bytes.Reader) (image.Image, error) { return png.Decode(r) }},
		{"jpeg", "image/jpeg", func(r *bytes.Reader) (image.Image, error) { return jpeg.Decode(r) }},
	} {
		t.Run(tc.format, func(t *testing.T) {
			job := s.submit(t, map[string]any{"kind": "thumbnail",
				"args": map[string]any{"image": src, "width": 16, "format": tc.format}})
			if job.State != api.StateQueued || job.Kind != "thumbnail" || job.Queue != "default" {
				t.Errorf("202 document: state %q kind %q queue %q, want queued thumbnail default", job.State, job.Kind, job.Queue)
			}
			resp := s.waitSeeOther(t, job.ID, jobTimeout)
			target := "/v1/images/" + job.ID
			if got := resp.Header.Get("Location"); got != target {
				t.Fatalf("303 Location %q, want %q", got, target)
			}
			if red := decode[api.Redirect](t, resp); red.Location != target || red.ID != job.ID || red.State != api.StateSucceeded {
				t.Errorf("303 body %+v", red)
			}

			img := s.get(t, target)
			expectStatus(t, img, http.StatusOK)
			if ct := img.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
			}
			m, err := tc.decode(bytes.NewReader(body(img)))
			if err != nil {
				t.Fatalf("the thumbnail does not decode as %s: %v", tc.format, err)
			}
			if b := m.Bounds(); b.Dx() != 16 || b.Dy() != 12 {
				t.Errorf("thumbnail is %dx%d, want 16x12 (width 16, aspect ratio kept)", b.Dx(), b.Dy())
			}
			// The image never changes: a client that has it revalidates
			// with its ETag and gets 304 with no body.
			etag := img.Header.Get("ETag")
			if etag == "" {
				t.Fatal("image: no ETag")
			}
			again := s.request(t, http.MethodGet, target, nil, "If-None-Match", etag)
			expectStatus(t, again, http.StatusNotModified)
			if n := len(body(again)); n != 0 || again.Header.Get("ETag") != etag {
				t.Errorf("304: %d body bytes, ETag %q (want none and %q)", n, again.Header.Get("ETag"), etag)
			}
		})
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	// A retention under an hour: the report may not be cached past it.
	s := startServer(t, map[string]string{"RETENTION": "10m"})
	csv := "region,amount,units\nnorth,10,1\nsouth,5,2\nnorth,2.5,3\neast,7,4\nsouth,1,5\nnorth,0.5,6\n"
	job := s.submit(t, map[string]any{"kind": "report",
		"args": map[string]any{"csv": csv, "group_by": "region", "sum": []string{"amount", "units"}}})
	resp := s.waitSeeOther(t, job.ID, jobTimeout)
	target := "/v1/reports/" + job.ID
	if got := resp.Header.Get("Location"); got != target {
		t.Fatalf("303 Location %q, want %q", got, target)
	}
	rep := s.get(t, target)
	expectStatus(t, rep, http.StatusOK)
	if ct := rep.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	cc := rep.Header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
	if err != nil || age > 600 || age < 540 {
		t.Errorf("Cache-Control %q, want private, max-age= at most the 600s left of the report's retention", cc)
	}
	type group struct {
		Key   string             `json:"key"`
		Count int                `json:"count"`
		Sums  map[string]float64 `json:"sums"`
	}
	got := decode[struct {
		GroupBy string   `json:"group_by"`
		Sum     []string `json:"sum"`
		Rows    int      `json:"rows"`
		Groups  []group  `json:"groups"`
	}](t, rep)
	want := []group{
		{"east", 1, map[string]float64{"amount": 7, "units": 4}},
		{"north", 3, map[string]float64{"amount": 13, "units": 10}},
		{"south", 2, map[string]float64{"amount": 6, "units": 7}},
	}
	if got.GroupBy != "region" || got.Rows != 6 || len(got.Groups) != len(want) {
		t.Fatalf("report %+v, want group_by region, 6 rows, groups %+v", got, want)
	}
	for i, g := range want {
		gg := got.Groups[i]
		if gg.Key != g.Key || gg.Count != g.Count || len(gg.Sums) != len(g.Sums) ||
			gg.Sums["amount"] != g.Sums["amount"] || gg.Sums["units"] != g.Sums["units"] {
			t.Errorf("group %d = %+v, want %+v", i, gg, g)
		}
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)

	t.Run("result", func(t *testing.T) {
		result := map[string]any{"hello": "world", "n": 3.5, "list": []any{1.0, "two", nil}}
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 50, "result": result}})
		got := s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		if !got.Done || got.Attempt != 1 || len(got.AttemptErrors) != 0 || got.Error != nil {
			t.Errorf("succeeded document: done %v attempt %d attempt_errors %v error %v", got.Done, got.Attempt, got.AttemptErrors, got.Error)
		}
		var echoed map[string]any
		if err := json.Unmarshal(got.Result, &echoed); err != nil {
			t.Fatalf("result %s: %v", got.Result, err)
		}
		if want, _ := json.Marshal(result); string(must(json.Marshal(echoed))) != string(want) {
			t.Errorf("result %s, want %s", got.Result, want)
		}
		if got.FinishedAt == nil || got.ExpiresAt == nil || got.Links.Cancel != "" {
			t.Errorf("finished document: finished_at %v expires_at %v links.cancel %q", got.FinishedAt, got.ExpiresAt, got.Links.Cancel)
		}
	})

	t.Run("caching", func(t *testing.T) {
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1000}})
		s.waitState(t, job.ID, api.StateRunning, jobTimeout)
		path := "/v1/jobs/" + job.ID
		resp := s.get(t, path)
		expectStatus(t, resp, http.StatusOK)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("running job: Cache-Control %q, want no-store", cc)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 0 {
			t.Errorf("running job: Retry-After %q", resp.Header.Get("Retry-After"))
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("running job: no ETag")
		}
		if r := s.request(t, http.MethodGet, path, nil, "If-None-Match", etag); r.StatusCode != http.StatusNotModified && r.StatusCode != http.StatusOK {
			t.Errorf("If-None-Match on a running job: %s", r.Status)
		}

		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		resp = s.get(t, path)
		etag = resp.Header.Get("ETag")
		if cc := resp.Header.Get("Cache-Control"); etag == "" || cc == "no-store" {
			t.Errorf("finished job: ETag %q, Cache-Control %q", etag, cc)
		}
		if resp.Header.Get("Retry-After") != "" {
			t.Errorf("finished job: Retry-After %q", resp.Header.Get("Retry-After"))
		}
		expectStatus(t, s.request(t, http.MethodGet, path, nil, "If-None-Match", etag), http.StatusNotModified)
		expectStatus(t, s.request(t, http.MethodGet, path, nil, "If-None-Match", `"other"`), http.StatusOK)
		// A list of tags, weak ones included, matches when any tag does.
		expectStatus(t, s.request(t, http.MethodGet, path, nil, "If-None-Match", `"other", W/`+etag), http.StatusNotModified)
	})

	t.Run("retry", func(t *testing.T) {
		job := s.submit(t, map[string]any{"kind": "sleep", "max_attempts": 3,
			"args": map[string]any{"ms": 10, "fail_times": 1, "result": "second time lucky"}})
		if job.MaxAttempts != 3 {
			t.Errorf("max_attempts %d, want 3", job.MaxAttempts)
		}
		got := s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		if got.Attempt != 2 {
			t.Errorf("succeeded on attempt %d, want 2", got.Attempt)
		}
		if len(got.AttemptErrors) != 1 || got.AttemptErrors[0].Attempt != 1 || got.AttemptErrors[0].Error == "" {
			t.Errorf("attempt_errors %+v, want one entry for attempt 1", got.AttemptErrors)
		} else if at := got.AttemptErrors[0].At; !at.Equal(at.Truncate(time.Millisecond)) {
			t.Errorf("attempt_errors[0].at %s: want milliseconds, as every time of a job", at.Format(time.RFC3339Nano))
		}
		if string(got.Result) != `"second time lucky"` {
			t.Errorf("result %s", got.Result)
		}
	})

	// The log's outcome of each attempt says what happened: the last
	// attempt of a retryable failure is "failed", not a retry.
	t.Run("attempt outcomes in the log", func(t *testing.T) {
		retried := s.submit(t, map[string]any{"kind": "sleep", "max_attempts": 2,
			"args": map[string]any{"ms": 1, "fail_times": 1}})
		failed := s.submit(t, map[string]any{"kind": "sleep", "max_attempts": 1,
			"args": map[string]any{"ms": 1, "fail_times": 1}})
		s.waitState(t, retried.ID, api.StateSucceeded, jobTimeout)
		s.waitState(t, failed.ID, api.StateFailed, jobTimeout)
		want := map[string][]string{retried.ID: {"retried", "succeeded"}, failed.ID: {"failed"}}
		var got map[string][]string
		// The line is written just after the outcome is recorded.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			got = map[string][]string{}
			for _, l := range s.logLines("job attempt") {
				if id, _ := l["job_id"].(string); want[id] != nil {
					got[id] = append(got[id], fmt.Sprint(l["outcome"]))
				}
			}
			if len(got[retried.ID]) == 2 && len(got[failed.ID]) == 1 {
				break
			}
		}
		for id, w := range want {
			if !slices.Equal(got[id], w) {
				t.Errorf("job %s: logged outcomes %q, want %q", id, got[id], w)
			}
		}
	})

	// Integers written as floats (Python's json.dumps writes 2.0), which
	// JSON Schema counts as integers: accepted, and run as the integers they
	// are, in the request's fields and in the kind's arguments.
	t.Run("integral numbers", func(t *testing.T) {
		payload := []byte(`{"kind":"sleep","priority":1.0,"max_attempts":2.0,"args":{"ms":1.0,"fail_times":1e0,"result":2.50e1}}`)
		resp := s.request(t, http.MethodPost, "/v1/jobs", payload, "Content-Type", "application/json")
		expectStatus(t, resp, http.StatusAccepted)
		job := decode[api.Job](t, resp)
		if job.Priority != 1 || job.MaxAttempts != 2 {
			t.Errorf("priority %d max_attempts %d, want 1 and 2", job.Priority, job.MaxAttempts)
		}
		got := s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		if got.Attempt != 2 || string(got.Result) != "25" {
			t.Errorf("succeeded on attempt %d with result %s, want attempt 2 and 25", got.Attempt, got.Result)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
