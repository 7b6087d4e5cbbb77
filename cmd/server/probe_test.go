package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProbe: the container health check asks /healthz over the scheme the
// server serves, so that a server with TLS_CERT is not reported unhealthy.
func TestProbe(t *testing.T) {
	healthz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	plain := httptest.NewServer(healthz)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(healthz)
	defer tlsSrv.Close()
	plainAddr := strings.TrimPrefix(plain.URL, "http://")
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	for _, c := range []struct {
		name   string
		addr   string
		useTLS bool
		want   int
	}{
		{"plain", plainAddr, false, 0},
		{"tls", tlsAddr, true, 0},
		{"plain probe of a TLS server", tlsAddr, false, 1},
		{"port form", ":" + strings.Split(plainAddr, ":")[1], false, 0},
	} {
		if got := probe(c.addr, c.useTLS); got != c.want {
			t.Errorf("%s: probe(%s, %v) = %d, want %d", c.name, c.addr, c.useTLS, got, c.want)
		}
	}
}
