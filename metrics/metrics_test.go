package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestRequestLabels checks that the labels of the HTTP request metrics are
// bounded: invented methods count as "other", and a 405 is labelled with the
// route pattern of its path.
func TestRequestLabels(t *testing.T) {
	t.Parallel()
	m := New(nil, nil)
	r := chi.NewRouter()
	r.Use(m.Middleware)
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	r.Get("/v1/jobs/{id}", ok)
	r.Delete("/v1/jobs/{id}", ok)
	r.With(func(next http.Handler) http.Handler { return next }).Post("/v1/jobs/{id}/retry", ok)
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/jobs/a"},
		{"HEAD", "/v1/jobs/a"},
		{"FOO1", "/v1/jobs/a"},
		{"FOO2", "/v1/jobs/b"},
		{"PUT", "/v1/jobs/c"},
		{"GET", "/v1/jobs/c/retry"},
		{"GET", "/nope"},
		{"FOO3", "/nope"},
	} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "offload_http_requests_total{") {
			lines = append(lines, l)
		}
	}
	got := strings.Join(lines, "\n")
	want := strings.Join([]string{
		`offload_http_requests_total{method="GET",route="/v1/jobs/{id}",status="200"} 1`,
		`offload_http_requests_total{method="GET",route="/v1/jobs/{id}/retry",status="405"} 1`,
		`offload_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`offload_http_requests_total{method="HEAD",route="/v1/jobs/{id}",status="405"} 1`,
		`offload_http_requests_total{method="PUT",route="/v1/jobs/{id}",status="405"} 1`,
		`offload_http_requests_total{method="other",route="/v1/jobs/{id}",status="405"} 2`,
		// chi answers 405 to a method it does not know, on any path.
		`offload_http_requests_total{method="other",route="unmatched",status="405"} 1`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
