package expectconn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// HandshakeTimeout bounds each TLS handshake NewTLSListener performs.
const HandshakeTimeout = 10 * time.Second

// NewTLSListener returns a listener that accepts connections from raw,
// completes a TLS handshake with cfg on each (concurrently, so a slow client
// does not hold up the others) and returns:
//
//   - the *tls.Conn itself when ALPN negotiated "h2", which http.Server needs
//     to serve HTTP/2 and which needs no rewriting;
//   - otherwise the *tls.Conn wrapped by NewConn, with a ConnectionState
//     method so that http.Server still fills in Request.TLS.
//
// cfg.NextProtos decides what ALPN offers: list "h2" (before "http/1.1")
// only if the server is set up for HTTP/2, for example by a Server.TLSConfig
// whose NextProtos lists it, or a client negotiating h2 finds no one to talk
// to. Connections whose handshake fails or takes longer than
// HandshakeTimeout are closed; like http.Server, a plaintext HTTP request
// gets a 400 first. Serve the listener with http.Server.Serve.
func NewTLSListener(raw net.Listener, cfg *tls.Config) net.Listener {
	return &tlsListener{
		Listener: raw,
		cfg:      cfg,
		conns:    make(chan net.Conn),
		errs:     make(chan error),
		failed:   make(chan struct{}),
		done:     make(chan struct{}),
	}
}

type tlsListener struct {
	net.Listener
	cfg       *tls.Config
	conns     chan net.Conn // handshaken connections
	errs      chan error    // temporary errors of raw's Accept
	failed    chan struct{} // closed when raw's Accept fails for good
	failErr   error         // that failure; written before failed closes
	done      chan struct{} // closed by Close
	start     sync.Once
	closeOnce sync.Once
	closeErr  error
}

// Accept returns the next connection whose handshake has completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.failed:
		return nil, l.failErr
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes raw; connections still in their handshake are closed.
func (l *tlsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// acceptLoop accepts from raw and starts a handshake for each connection.
// It hands raw's temporary errors to Accept one at a time, so a caller that
// backs off on them (http.Server does) paces it, and stops at the first
// error that is not temporary, which Accept then keeps returning.
func (l *tlsListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			go l.handshake(c)
			continue
		}
		var ne interface{ Temporary() bool }
		if !errors.As(err, &ne) || !ne.Temporary() {
			l.failErr = err
			close(l.failed)
			return
		}
		select {
		case l.errs <- err:
		case <-l.done:
			return
		}
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	go func() {
		// Abandon the handshake if the listener closes meanwhile.
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		c.Close()
		return
	}
	var out net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		out = &tlsConn{conn: conn{Conn: tc}, tc: tc}
	}
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
}

// looksLikeHTTP mirrors tlsRecordHeaderLooksLikeHTTP in net/http.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// tlsConn is a rewriting connection over TLS. Its ConnectionState makes
// http.Server set Request.TLS, as it does for a *tls.Conn.
type tlsConn struct {
	conn
	tc *tls.Conn
}

// ConnectionState returns the state of the TLS connection.
func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
