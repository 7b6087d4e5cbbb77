package handlers

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
