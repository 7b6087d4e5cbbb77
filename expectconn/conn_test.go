package expectconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

// readUntilErr reads c until an error and returns what it read and the
// error.
func readUntilErr(t *testing.T, c net.Conn, size int) ([]byte, error) {
	t.Helper()
	var out []byte
	buf := make([]byte, size)
	for i := 0; i < 1<<20; i++ {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
		if n == 0 {
			t.Fatal("Read returned 0, nil")
		}
	}
	t.Fatal("no error after many reads")
	return nil, nil
}

func TestRewriteSimple(t *testing.T) {
	in := "POST /v1/jobs HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi" +
		"GET / HTTP/1.1\r\nHost: a\r\nEXPECT:\t204-no-content \r\n\r\n"
	want := "POST /v1/jobs HTTP/1.1\r\nHost: a\r\nOffload-Expect: 200-ok\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi" +
		"GET / HTTP/1.1\r\nHost: a\r\nOffload-Expect:\t204-no-content \r\n\r\n"
	for _, inner := range [][]int{nil, {1}, {3, 1, 7}} {
		for _, outer := range [][]int{nil, {1}, {2, 600}, {16}} {
			got := readAllSizes(t, NewConn(&chunkConn{data: []byte(in), sizes: inner}), outer, 10000)
			if string(got) != want {
				t.Errorf("inner %v outer %v:\ngot  %q\nwant %q", inner, outer, got, want)
			}
		}
	}
}

// TestTimeoutWhileHolding checks that a deadline expiring inside a header
// section loses nothing: the Read fails, and the next ones carry on.
func TestTimeoutWhileHolding(t *testing.T) {
	inner := &scriptConn{steps: []step{
		{data: []byte("POST / HTTP/1.1\r\nHost: a\r\nExp")},
		{err: timeoutError{}},
		{data: []byte("ect: 200-ok\r\nContent-Length: 2\r\n\r\nhi")},
	}}
	c := NewConn(inner)
	got, err := readUntilErr(t, c, 4096)
	if !errors.Is(err, timeoutError{}) || len(got) != 0 {
		t.Fatalf("first reads: %q, %v; want nothing and the timeout", got, err)
	}
	got, err = readUntilErr(t, c, 4096)
	want := "POST / HTTP/1.1\r\nHost: a\r\nOffload-Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi"
	if err != io.EOF || string(got) != want {
		t.Fatalf("after the timeout: %q, %v; want %q and EOF", got, err, want)
	}
}

// TestEOFWhileHolding checks that a stream ending inside a header section is
// delivered as it is.
func TestEOFWhileHolding(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n"
	for _, size := range []int{1, 4096} {
		got, err := readUntilErr(t, NewConn(&chunkConn{data: []byte(in)}), size)
		if err != io.EOF || string(got) != in {
			t.Fatalf("got %q, %v; want %q and EOF", got, err, in)
		}
	}
}

// TestNoHold checks that what net/http rejects before the end of a header
// section, or what is not HTTP/1.x, is delivered without waiting for more:
// the inner connection's next Read times out, so anything held would be
// missing.
func TestNoHold(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1 x\r\n",
		"GET /\x00 HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\n Host: a\r\n",
		"GET / HTTP/1.1\r\n\tHost: a",
		"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n",
		"GET / HTTP/1.1\r\nHo st\x01: a\r\n",
		"PRI * HTTP/2.0\r\n",
		"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeadBytes) + "\r\n",
		strings.Repeat("x", maxHeadBytes+1),
	} {
		c := NewConn(&scriptConn{steps: []step{{data: []byte(in)}, {err: timeoutError{}}}})
		got, err := readUntilErr(t, c, 4096)
		if !errors.Is(err, timeoutError{}) || string(got) != in {
			t.Errorf("%.40q: got %d bytes, %v; want all %d and the timeout", in, len(got), err, len(in))
		}
	}
}

// TestBigHeader checks renames in a header section larger than the pooled
// buffer.
func TestBigHeader(t *testing.T) {
	pad := "X-Pad: " + strings.Repeat("p", 20000) + "\r\n"
	in := "GET / HTTP/1.1\r\nExpect: a\r\n" + pad + "Expect: b\r\n\r\nGET / HTTP/1.1\r\nexpect: c\r\n\r\n"
	want := "GET / HTTP/1.1\r\nOffload-Expect: a\r\n" + pad + "Offload-Expect: b\r\n\r\nGET / HTTP/1.1\r\nOffload-Expect: c\r\n\r\n"
	for _, inner := range [][]int{nil, {1}, {5000}} {
		for _, outer := range [][]int{nil, {1}, {7, 1500}} {
			got := readAllSizes(t, NewConn(&chunkConn{data: []byte(in), sizes: inner}), outer, 1<<20)
			if string(got) != want {
				t.Errorf("inner %v outer %v: rewritten stream differs", inner, outer)
			}
		}
	}
}

// TestPassThrough checks that nothing is rewritten after the HTTP/2
// preface, a CONNECT or an upgrade.
func TestPassThrough(t *testing.T) {
	next := "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"
	for _, first := range []string{
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
	} {
		in := first + next
		got := readAllSizes(t, NewConn(&chunkConn{data: []byte(in)}), nil, 1000)
		if string(got) != in {
			t.Errorf("got %q, want it unchanged", got)
		}
	}
}

func TestPlainConnHasNoConnectionState(t *testing.T) {
	c := NewConn(&scriptConn{})
	if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		t.Fatal("a plaintext connection must not look like TLS to net/http")
	}
}

// TestManyRenames checks header sections with more renames than the room
// the direct path keeps for them.
func TestManyRenames(t *testing.T) {
	var in, want strings.Builder
	for i := range 6 {
		in.WriteString("POST /v1/jobs HTTP/1.1\r\nHost: a\r\n")
		want.WriteString("POST /v1/jobs HTTP/1.1\r\nHost: a\r\n")
		for j := range 3 + 4*i {
			in.WriteString("Expect: e" + strings.Repeat("x", j) + "\r\n")
			want.WriteString("Offload-Expect: e" + strings.Repeat("x", j) + "\r\n")
		}
		in.WriteString("Content-Length: 3\r\n\r\nabc")
		want.WriteString("Content-Length: 3\r\n\r\nabc")
	}
	for _, inner := range [][]int{nil, {1}, {100, 3}} {
		for _, outer := range [][]int{nil, {600}, {1, 1500}} {
			got := readAllSizes(t, NewConn(&chunkConn{data: []byte(in.String()), sizes: inner}), outer, 1<<20)
			if string(got) != want.String() {
				t.Errorf("inner %v outer %v:\ngot  %q\nwant %q", inner, outer, got, want.String())
			}
		}
	}
}
