package expectconn

import (
	"strings"
	"testing"
)

// edgeCases are streams at the edges of net/http's framing rules, each
// checked against the FuzzRewrite oracle and each followed by a request whose
// Expect field is renamed only if the framer kept track of the stream.
var edgeCases = []string{
	// Content-Length forms
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0003\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 \r\nContent-Length:3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\ncontent-length : 3\r\n\r\nabc",
	// Transfer-Encoding forms
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\nContent-Length: 99\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n",
	"POST / HTTP/0.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab",
	"POST / HTTP/2.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
	// chunk lines
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \t\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 ;x\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;\x00\xff\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n\r0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;" + strings.Repeat("e", 4090) + "\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;" + strings.Repeat("e", 4091) + "\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("e", 100)+"\r\nx\r\n", 200) + "0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("e", 100)+"\r\nx\r\n", 162) + "0;" + strings.Repeat("e", 3000) + "\r\n\r\n",
	// trailers
	"POST / HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X, trailer \r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n  2\r\nExpect: 200-ok\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n X: 1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX 1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("t", 4086) + "\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("t", 4087) + "\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
	// header fields
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\t\r\nExpect: 100-continuex\r\nExpect: x,100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: \x80\xff\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\x80: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
	"GET / HTTP/1.1\r\n \r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n   \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\t100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade:\r\n\r\n",
	// request lines
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
	"GET / HTTP/3.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
	"GET / http/1.1\r\nHost: a\r\n\r\n",
	"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET a:b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT /rpc HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT [::1 HTTP/1.1\r\nHost: a\r\n\r\n",
	"PRI / HTTP/1.1\r\nHost: a\r\n\r\n",
	// after a POST
	"POST / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\n\r\n\n\n\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\n\r\n\r",
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n",
}

func TestEdgeCases(t *testing.T) {
	next := "GET /next HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"
	for _, c := range edgeCases {
		for _, sizes := range []string{"", "\x01", "\x03\x0a\x15\x3f\x22"} {
			checkRewrite(t, []byte(c+next), []byte(sizes))
			checkRewrite(t, []byte(c), []byte(sizes))
		}
	}
}
