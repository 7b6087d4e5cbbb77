package expectconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "expectconn test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv := &http.Server{Handler: http.HandlerFunc(echo), TLSConfig: cfg, ErrorLog: quietLog}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewTLSListener(raw, cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	url := "https://" + raw.Addr().String() + "/v1/jobs"

	post := func(tr *http.Transport, expect string) (*http.Response, string) {
		t.Helper()
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", url, strings.NewReader(jobJSON))
		req.Header.Set("Expect", expect)
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}

	// A client offering h2 gets HTTP/2 (the *tls.Conn went to http.Server),
	// which passes Expect through.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	res, body := post(h2, "200-ok")
	want := echoLine("HTTP/2.0", "POST", "/v1/jobs", "200-ok", []byte(jobJSON), "", true)
	if res.ProtoMajor != 2 || res.TLS.NegotiatedProtocol != "h2" || body != want {
		t.Errorf("h2: got %s (ALPN %q) %q, want HTTP/2.0 %q", res.Proto, res.TLS.NegotiatedProtocol, body, want)
	}

	// A client offering only HTTP/1.1 goes through the rewriting
	// connection, and the handler still sees Request.TLS.
	h1 := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	for _, expect := range []string{"200-ok", "202-accepted"} {
		res, body = post(h1, expect)
		want = echoLine("HTTP/1.1", "POST", "/v1/jobs", expect, []byte(jobJSON), "", true)
		if res.ProtoMajor != 1 || res.StatusCode != 200 || body != want {
			t.Errorf("HTTP/1.1: got %s %d %q, want HTTP/1.1 200 %q", res.Proto, res.StatusCode, body, want)
		}
	}

	// Plaintext HTTP on the TLS port gets net/http's 400.
	c := dialRaw(t, raw.Addr().String())
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if all, _ := io.ReadAll(c.br); !strings.HasPrefix(string(all), "HTTP/1.0 400 Bad Request") {
		t.Errorf("plaintext request: got %q, want a 400", all)
	}

	// Closing the listener ends Serve.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want a closed-listener error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	srv.Close()
}

// TestTLSSlowHandshake checks that a client stalling its handshake does not
// hold up others.
func TestTLSSlowHandshake(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	srv := &http.Server{Handler: http.HandlerFunc(echo), ErrorLog: quietLog}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(NewTLSListener(raw, cfg))
	defer srv.Close()

	stalled, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "https://"+raw.Addr().String()+"/v1/jobs", strings.NewReader(jobJSON))
	req.Header.Set("Expect", "201-created")
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := echoLine("HTTP/1.1", "POST", "/v1/jobs", "201-created", []byte(jobJSON), "", true); string(body) != want {
		t.Fatalf("got %q, want %q", body, want)
	}
}
