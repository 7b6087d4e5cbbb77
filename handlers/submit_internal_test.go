package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
)

// TestSubmitWithoutValidator: behind a router without the OpenAPI validator,
// submit itself refuses a body that is not UTF-8 or holds trailing data,
// before it needs anything else.
func TestSubmitWithoutValidator(t *testing.T) {
	a := &service{}
	for body, status := range map[string]int{
		"{\"kind\":\"sleep\",\"args\":{\"result\":\"\xff\"}}": http.StatusBadRequest,
		`{"kind":"sleep"} {"kind":"sleep"}`:                   http.StatusBadRequest,
		`{"kind":"sleep","priority":"high"}`:                  http.StatusUnprocessableEntity,
	} {
		err := a.submit(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(body)))
		var p *api.Problem
		if !errors.As(err, &p) || p.Status != status {
			t.Errorf("%q: %v, want a %d problem", body, err, status)
		}
	}
}

// TestDecodeRequest: integers written as floats decode as integers; a
// fraction is a field error naming the field.
func TestDecodeRequest(t *testing.T) {
	var req api.JobRequest
	if err := decodeRequest([]byte(`{"kind":"sleep","priority":9.0,"max_attempts":2e0}`), &req); err != nil ||
		req.Priority != 9 || req.MaxAttempts != 2 || req.Kind != "sleep" {
		t.Fatalf("got %+v, %v", req, err)
	}
	err := decodeRequest([]byte(`{"kind":"sleep","priority":9.5}`), &req)
	var p *api.Problem
	if !errors.As(err, &p) || p.Status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != "/priority" {
		t.Fatalf("priority 9.5: %v", err)
	}
}

// redisErr is an error as Redis answers it (go-redis's redis.Error).
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestUnavailableRedisAnswers: what Redis answers while it cannot serve (a
// cluster with a slot uncovered, a failover, a dataset loading) is a 503
// that tells when to try again, not a 500.
func TestUnavailableRedisAnswers(t *testing.T) {
	for _, msg := range []string{"CLUSTERDOWN The cluster is down", "TRYAGAIN Multiple keys request during rehashing of slot",
		"MASTERDOWN Link with MASTER is down", "LOADING Redis is loading the dataset in memory"} {
		err := fmt.Errorf("enqueue x: %w", redisErr(msg))
		if p := problemFor(err); p.Status != http.StatusServiceUnavailable || p.Type != api.TypeUnavailable {
			t.Errorf("%q: problem %d %s, want 503 unavailable", msg, p.Status, p.Type)
		}
		rec := httptest.NewRecorder()
		handle(zerolog.Nop(), func(http.ResponseWriter, *http.Request) error { return err })(rec, httptest.NewRequest("GET", "/v1/queues", nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%q: answered %d with Retry-After %q, want 503 and 1", msg, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if p := problemFor(redisErr("ERR unknown command")); p.Status != http.StatusInternalServerError {
		t.Errorf("another Redis error: %d, want 500", p.Status)
	}
}
