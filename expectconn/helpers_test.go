package expectconn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

// scriptConn is a net.Conn whose reads are scripted: each Read returns the
// next step, cut to len(p). Writes are discarded.
type scriptConn struct {
	steps []step
}

type step struct {
	data []byte
	err  error
}

func (c *scriptConn) Read(p []byte) (int, error) {
	for len(c.steps) > 0 {
		s := &c.steps[0]
		if len(s.data) > 0 {
			n := copy(p, s.data)
			s.data = s.data[n:]
			if len(s.data) == 0 && s.err == nil {
				c.steps = c.steps[1:]
			}
			return n, nil
		}
		err := s.err
		c.steps = c.steps[1:]
		if err != nil {
			return 0, err
		}
	}
	return 0, io.EOF
}

func (c *scriptConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *scriptConn) Close() error                       { return nil }
func (c *scriptConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// chunkConn is a net.Conn reading data in pieces whose sizes cycle through
// sizes (0 meaning as much as asked for).
type chunkConn struct {
	scriptConn
	data  []byte
	sizes []int
	i     int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if len(c.sizes) > 0 {
		if n := c.sizes[c.i%len(c.sizes)]; n > 0 && n < len(p) {
			p = p[:n]
		}
		c.i++
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// readAllSizes reads c to EOF with reads whose buffer sizes cycle through
// sizes (0 meaning 4096). It fails the test on an error other than EOF, on a
// Read returning nothing without an error, or if it seems stuck.
func readAllSizes(t testing.TB, c net.Conn, sizes []int, limit int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		if i > limit {
			t.Fatalf("no EOF after %d reads", i)
		}
		n := 4096
		if len(sizes) > 0 && sizes[i%len(sizes)] > 0 {
			n = sizes[i%len(sizes)]
		}
		m, err := c.Read(buf[:n])
		out = append(out, buf[:m]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if m == 0 {
			t.Fatalf("Read returned 0, nil")
		}
	}
}

// echo is the test handler: it reports what reached it.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	fmt.Fprintf(w, "%s %s %s expect=%q body=%x len=%d trailer=%q tls=%t",
		r.Proto, r.Method, r.URL.Path, FromRequest(r), sum[:6], len(body),
		r.Trailer.Get("X-Checksum"), r.TLS != nil)
}

// echoLine is what echo answers for a request.
func echoLine(proto, method, path, expect string, body []byte, trailer string, tls bool) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%s %s %s expect=%q body=%x len=%d trailer=%q tls=%t",
		proto, method, path, expect, sum[:6], len(body), trailer, tls)
}

var quietLog = log.New(io.Discard, "", 0)

// serve starts srv on a loopback listener, wrapped by NewListener if wrap,
// and returns its address.
func serve(t testing.TB, srv *http.Server, wrap bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Handler == nil {
		srv.Handler = http.HandlerFunc(echo)
	}
	srv.ErrorLog = quietLog
	var l net.Listener = ln
	if wrap {
		l = NewListener(ln)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// rawConn is a client connection speaking HTTP/1.1 by hand.
type rawConn struct {
	t testing.TB
	net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response and returns its status code and body.
func (c *rawConn) response() (int, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("reading response body: %v", err)
	}
	return res.StatusCode, string(bytes.TrimSpace(body))
}
