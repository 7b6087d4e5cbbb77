package handlers

import (
	"net/http"

	"github.com/go-chi/chi/v5/middleware"
)

// maxRequestID bounds the X-Request-Id a client may choose.
const maxRequestID = 128

// requestID gives every request an id (chi's middleware.RequestID): the
// client's X-Request-Id when it is a sensible one, 1 to 128 visible ASCII
// characters, else a fresh one. A client's id is echoed and logged, so a
// long or odd one (a 10 KB header, control characters) is not taken.
func requestID(next http.Handler) http.Handler {
	gen := middleware.RequestID(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(middleware.RequestIDHeader); id != "" && !visibleASCII(id, maxRequestID) {
			r.Header.Del(middleware.RequestIDHeader)
		}
		gen.ServeHTTP(w, r)
	})
}

// visibleASCII reports whether s is 1 to max characters of visible ASCII.
func visibleASCII(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
