package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRequestID: a sensible client X-Request-Id is echoed; a long or odd one
// is replaced by a fresh id rather than echoed and logged.
func TestRequestID(t *testing.T) {
	e := setup(t)
	for in, echoed := range map[string]bool{
		"abc-123":                  true,
		strings.Repeat("x", 128):   true,
		strings.Repeat("x", 10000): false,
		"two words":                false,
		"tab\there":                false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		r.Header.Set("X-Request-Id", in)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		got := w.Header().Get("X-Request-Id")
		if w.Code != http.StatusOK || got == "" {
			t.Fatalf("%.20q: %d, X-Request-Id %q", in, w.Code, got)
		}
		if echoed != (got == in) || len(got) > 128 {
			t.Errorf("%.20q: answered X-Request-Id %.40q (echo wanted: %v)", in, got, echoed)
		}
	}
}
