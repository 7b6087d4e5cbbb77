package expectconn

import (
	"errors"
	"io"
	"net"
	"sync"
)

const (
	// bufSize is the size of the pooled buffers that hold incomplete
	// header sections and rewritten ones.
	bufSize = 4096
	// directMin is the least room a caller's buffer must have left, after
	// any held bytes, for a Read to go straight into it instead of through
	// the connection's own buffer.
	directMin = 512
	// directMaxHeld bounds the held bytes copied into the caller's buffer
	// to take the direct path.
	directMaxHeld = 1024
	// directSlack is the room left free at the end of the caller's buffer
	// on the direct path, so that a few renames can be made in place.
	directSlack = 8 * grown
)

// grown is how much longer a renamed field name is than "Expect".
const grown = len(Header) - len("Expect")

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// NewListener returns a listener whose connections are those of inner,
// wrapped by NewConn. inner must yield plaintext connections; for TLS see
// NewTLSListener.
func NewListener(inner net.Listener) net.Listener {
	return &listener{Listener: inner}
}

type listener struct{ net.Listener }

// Accept waits for the next connection of the inner listener and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// NewConn wraps c so that reading from it yields c's bytes with every
// HTTP/1.x request's non-100-continue Expect fields renamed to Header (see
// the package documentation). Writes, deadlines and Close go to c. Like most
// connections, the result is not safe for concurrent Reads.
func NewConn(c net.Conn) net.Conn {
	return &conn{Conn: c}
}

// conn is the rewriting connection. Bytes read from the inner connection
// but not yet delivered live in buf: buf[r:pr] are final (rewritten where
// needed) and buf[pr:w] are an incomplete header or trailer section the
// framer is holding.
type conn struct {
	net.Conn
	f        framer
	buf      []byte
	pooled   *[]byte // buf's pool entry, if it came from the pool
	r, pr, w int
	rerr     error // an error of the inner Read, delivered once buf drains
}

// Read reads the rewritten stream.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r < c.pr {
			n := copy(p, c.buf[c.r:c.pr])
			c.r += n
			if c.r == c.w {
				c.release()
			}
			return n, nil
		}
		if c.rerr != nil {
			if c.pr < c.w && !isTimeout(c.rerr) {
				// The stream ended inside a held section:
				// deliver it as it is and let net/http judge.
				c.f.pass()
				c.pr = c.w
				continue
			}
			err := c.rerr
			c.rerr = nil
			return 0, err
		}
		if c.f.st == stPass {
			// Everything held was made final when the framer gave up.
			c.release()
			return c.Conn.Read(p)
		}
		held := c.w - c.pr
		if held <= directMaxHeld && len(p)-held-directSlack >= directMin {
			// Read straight into p, behind the held bytes, so that
			// complete requests are never copied.
			copy(p, c.buf[c.pr:c.w])
			c.release()
			n, err := c.Conn.Read(p[held : len(p)-directSlack])
			c.setErr(n, err)
			if d := c.scanInto(p, held+n); d > 0 {
				return d, nil
			}
			continue
		}
		c.fill()
		c.scanBuf()
	}
}

// setErr records the error of an inner Read that returned n bytes. A
// timeout that came with data is dropped: the caller will read again and
// see a fresh one if the deadline still holds.
func (c *conn) setErr(n int, err error) {
	if n > 0 && err != nil && isTimeout(err) {
		err = nil
	}
	c.rerr = err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// scanInto frames p[:n], whose leading bytes may be held ones just moved
// out of buf, rewriting header sections in place while p has room, and
// returns how many leading bytes of p are final. The rest is moved into buf.
func (c *conn) scanInto(p []byte, n int) int {
	i := 0
	for {
		done, rw := c.f.scan(p[i:n])
		i += done
		if !rw {
			break
		}
		if extra := len(c.f.renames) * grown; n+extra <= len(p) {
			n = rewriteSection(p, i, c.f.secLen, n, c.f.renames)
			i += c.f.secLen + extra
			c.f.renames = c.f.renames[:0]
			continue
		}
		// No room left in p: finish in buf.
		c.alloc(n - i)
		c.w = copy(c.buf, p[i:n])
		c.r, c.pr = 0, 0
		c.rewrite()
		c.scanBuf()
		return i
	}
	if i < n {
		c.alloc(n - i)
		c.w = copy(c.buf, p[i:n])
		c.r, c.pr = 0, 0
	}
	return i
}

// scanBuf frames the held bytes of buf, rewriting completed header sections
// that need it.
func (c *conn) scanBuf() {
	for c.pr < c.w {
		done, rw := c.f.scan(c.buf[c.pr:c.w])
		c.pr += done
		if !rw {
			return
		}
		c.rewrite()
	}
}

// rewrite renames the fields f.renames of the header section at buf[pr:]
// and moves pr past the section.
func (c *conn) rewrite() {
	extra := len(c.f.renames) * grown
	if c.w+extra > len(c.buf) {
		c.grow(c.w + extra - c.r)
	}
	c.w = rewriteSection(c.buf, c.pr, c.f.secLen, c.w, c.f.renames)
	c.pr += c.f.secLen + extra
	c.f.renames = c.f.renames[:0]
}

// rewriteSection renames to Header the fields at offsets renames of the
// header section b[s:s+secLen], moving b[s+secLen:w] up to make room, and
// returns the new end of data. b must have the room.
func rewriteSection(b []byte, s, secLen, w int, renames []int) int {
	extra := len(renames) * grown
	e := s + secLen
	copy(b[e+extra:w+extra], b[e:w])
	src, dst := e, e+extra
	for j := len(renames) - 1; j >= 0; j-- {
		name := s + renames[j]
		dst -= copy(b[dst-(src-name-len("Expect")):dst], b[name+len("Expect"):src])
		dst -= copy(b[dst-len(Header):dst], Header)
		src = name
	}
	return w + extra
}

// fill reads more of the inner connection into buf.
func (c *conn) fill() {
	if c.buf == nil {
		c.alloc(0)
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			n := copy(c.buf, c.buf[c.r:c.w])
			c.pr -= c.r
			c.w, c.r = n, 0
		} else {
			c.grow(2 * len(c.buf))
		}
	}
	n, err := c.Conn.Read(c.buf[c.w:])
	c.w += n
	c.setErr(n, err)
}

// alloc gives the empty conn a buffer of at least n bytes.
func (c *conn) alloc(n int) {
	if c.buf != nil && len(c.buf) >= n {
		return
	}
	c.release()
	if n <= bufSize {
		c.pooled = bufPool.Get().(*[]byte)
		c.buf = *c.pooled
		return
	}
	c.buf = make([]byte, n)
}

// grow makes buf at least n bytes long, moving its contents to the front.
func (c *conn) grow(n int) {
	nb := make([]byte, max(n, 2*len(c.buf)))
	m := copy(nb, c.buf[c.r:c.w])
	c.pr -= c.r
	c.w, c.r = m, 0
	if c.pooled != nil {
		bufPool.Put(c.pooled)
		c.pooled = nil
	}
	c.buf = nb
}

// release drops the empty buffer.
func (c *conn) release() {
	if c.pooled != nil {
		bufPool.Put(c.pooled)
		c.pooled = nil
	}
	c.buf = nil
	c.r, c.pr, c.w = 0, 0, 0
}

// ReadFrom lets io.Copy into the connection use the inner connection's
// ReadFrom (sendfile, splice) when it has one.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

type writerOnly struct{ io.Writer }

// CloseWrite shuts down the writing side of the inner connection, which
// net/http uses to finish a response before closing, if the inner
// connection supports it.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
