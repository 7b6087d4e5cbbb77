package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/offload-dev/offload/queue"
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

// depths is a Depths over fixed stats, or one that fails like an
// unreachable Redis.
type depths struct {
	stats []queue.Stats
	err   error
}

func (d depths) Names(context.Context) ([]string, error) {
	var names []string
	for _, s := range d.stats {
		names = append(names, s.Name)
	}
	return names, d.err
}

func (d depths) Stats(_ context.Context, name string) (queue.Stats, error) {
	for _, s := range d.stats {
		if s.Name == name {
			return s, nil
		}
	}
	return queue.Stats{}, d.err
}

// TestScrapeDuringRedisOutage: with Redis unreachable, /metrics still
// serves the process's own metrics, and says Redis is down, instead of
// failing the whole scrape.
func TestScrapeDuringRedisOutage(t *testing.T) {
	t.Parallel()
	scrape := func(d Depths) (int, string) {
		m := New(d, nil)
		m.Enqueued("sleep", "default")
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Code, rec.Body.String()
	}
	code, body := scrape(depths{err: errors.New("dial tcp 127.0.0.1:6379: connection refused")})
	if code != 200 || !strings.Contains(body, "offload_redis_up 0") ||
		!strings.Contains(body, `offload_jobs_enqueued_total{kind="sleep",queue="default"} 1`) ||
		strings.Contains(body, "offload_queue_jobs{") {
		t.Errorf("Redis down: %d\n%s", code, body)
	}
	code, body = scrape(depths{stats: []queue.Stats{{Name: "default", Counts: map[string]int{"queued": 3}}}})
	if code != 200 || !strings.Contains(body, "offload_redis_up 1") ||
		!strings.Contains(body, `offload_queue_jobs{queue="default",state="queued"} 3`) ||
		!strings.Contains(body, `offload_queue_paused{queue="default"} 0`) {
		t.Errorf("Redis up: %d\n%s", code, body)
	}
}

// TestLeasesExpired: the reaped leases add up per queue.
func TestLeasesExpired(t *testing.T) {
	t.Parallel()
	m := New(nil, nil)
	m.LeasesExpired("default", 2)
	m.LeasesExpired("default", 1)
	m.LeasesExpired("mail", 1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`offload_leases_expired_total{queue="default"} 3`,
		`offload_leases_expired_total{queue="mail"} 1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in the scrape:\n%s", want, body)
		}
	}
}
