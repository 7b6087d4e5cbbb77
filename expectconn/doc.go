// Package expectconn owns getting HTTP/1.x requests that carry an Expect
// header other than 100-continue past net/http to a handler. Go's HTTP/1.x
// server answers 417 Expectation Failed to those itself, before any handler
// runs; this package wraps the server's connections so that, in each
// request's header section, every Expect field whose value lacks the
// 100-continue token arrives renamed to Header ("Offload-Expect"), value
// untouched, and the handler reads the expectation with FromRequest. It owns
// nothing of what an expectation means: answering 200-ok, 202-accepted or an
// unknown one (with a 417 problem) is the handler's job.
//
// # The rewrite
//
// A field is renamed when its value, as net/http reads it (an empty one
// included), does not contain the token 100-continue in the sense net/http
// uses: case-insensitive, separated by spaces, tabs or commas. So "Expect:
// 100-continue" stays and net/http still sends 100 Continue; a combined
// "Expect: 100-continue, 200-ok" also stays, so net/http still does
// 100-continue and the handler sees the whole value through FromRequest.
// Each field is judged on its own; net/http then sees only 100-continue
// ones. Nothing else is added, removed or reordered: the only bytes that
// change are the six of a field name, which become Header. The renamed name
// is eight bytes longer and counts against the server's MaxHeaderBytes.
//
// To find the header sections the connection frames the stream the way
// net/http does: request line and header fields by net/textproto's rules,
// then the body by Content-Length or chunked coding, chunk extensions and
// trailers included, so that the next pipelined request is found. A header
// section is held until its blank line and then delivered at once, as is a
// trailer section (net/http acts on neither before it is complete); body
// bytes are delivered as they arrive. Wherever net/http would reject the stream
// (malformed request line or field, conflicting Content-Length, an unsupported
// Transfer-Encoding, bad chunk framing, a header section over about 1 MiB,
// and so on) the connection stops framing and passes the rest through
// untouched, so that net/http gives its own answer. It also passes the rest
// through after the HTTP/2 preface ("PRI * HTTP/2.0", h2c with prior
// knowledge), after a CONNECT request or one with an Upgrade field (h2c
// upgrade, WebSocket), and after a trailer section that ends in a bare LF,
// whose acceptance by net/http depends on bytes that follow it. A handler
// that hijacks a connection for another protocol without such a request is
// not supported: the connection would keep looking for requests in it.
//
// HTTP/2 needs none of this: it passes Expect through to handlers, which is
// why FromRequest falls back to Expect. A client may also send Header itself;
// it means the same as Expect.
//
// # TLS
//
// The rewrite must see plaintext, so it goes inside TLS, and then net/http
// no longer sees a *tls.Conn and cannot negotiate HTTP/2 by ALPN. Neither
// tls.NewListener(NewListener(raw), cfg), which would rewrite ciphertext,
// nor NewListener(tls.NewListener(raw, cfg)), which loses HTTP/2, is right;
// NewTLSListener completes each handshake itself and hands http.Server the
// *tls.Conn when h2 was negotiated and a rewriting connection that still
// reports its TLS state otherwise. Serve it with http.Server.Serve, not
// ServeTLS.
package expectconn

import (
	"net/http"
	"strings"
)

// Header is the name under which a request's Expect field reaches the
// handler when its value is not 100-continue.
const Header = "Offload-Expect"

// FromRequest returns the expectations a request carries, as one
// comma-separated list trimmed of spaces: every Header field (what HTTP/1.x
// requests deliver through this package's connections) and every Expect
// field (what HTTP/2 delivers, and HTTP/1.x for 100-continue). Several field
// lines make one list, as RFC 9110 §5.3 has it. It returns "" if there is
// none. A handler should treat 100-continue as no expectation: net/http has
// already dealt with it.
func FromRequest(r *http.Request) string {
	vs := append(append([]string(nil), r.Header[Header]...), r.Header.Values("Expect")...)
	return strings.TrimSpace(strings.Join(vs, ", "))
}
