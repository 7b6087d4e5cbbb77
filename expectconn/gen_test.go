package expectconn

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzRewriteGen is FuzzRewrite on streams built from HTTP pieces rather
// than raw bytes: data picks request lines, fields, bodies and line endings
// from vocabularies close to net/http's edge cases, so that far more of the
// random inputs are requests worth comparing.
func FuzzRewriteGen(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, []byte{1})
	f.Add([]byte("\x03\x00\x07\x02\x05\x01\x09\x04\x08\x06\x0a\x0b"), []byte{0x11, 3})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		checkRewrite(t, []byte(generate(data)), sizes)
	})
}

var (
	genMethods  = []string{"GET", "POST", "PUT", "HEAD", "DELETE", "CONNECT", "PRI", "OPTIONS", "G T", "post"}
	genTargets  = []string{"/", "/v1/jobs", "*", "http://a/b", "/a%2Fb", "/a%zz", "/a?%zz", "a:b", "", "/\x7f", "//x", "example.com:443"}
	genVersions = []string{"HTTP/1.1", "HTTP/1.0", "HTTP/0.0", "HTTP/2.0", "HTTP/1.2", "HTTP/11", "http/1.1"}
	genNames    = []string{"Expect", "expect", "EXPECT", "eXpEcT", "Expect ", "Content-Length", "content-length",
		"Transfer-Encoding", "transfer-encoding", "Host", "Upgrade", "Trailer", "Connection", "Offload-Expect",
		"X-Pad", "", "Ex pect", "Expect\t", "\x80x"}
	genValues = []string{"200-ok", "100-continue", "100-Continue, 200-ok", "201-created", "", " ", "100-continue\t",
		"x,100-continue", "100-continuex", "100-continue;q=1", "chunked", "CHUNKED", "gzip", "gzip, chunked", "0", "3", "03", "+3", " 5 ",
		"18446744073709551616", "a", "websocket", "Upgrade", "X, content-length", "trailer", "a\rb", "\x80\xff", "\x01"}
	genLengths = []string{"N", "N", "N", "+N", "0N", " N ", "N, N", "N N", "-N", "N\t"}
	genTEs     = []string{"chunked", "chunked", "Chunked", "chunked ", "chunked, chunked", "gzip, chunked", "identity"}
	genEOLs    = []string{"\r\n", "\n", "\r\r\n", "\r"}
	genChunks  = []string{"0", "1", "3", "a", "A", "0000000000000003", "00000000000000003", "3 ", "3;x", "3 ;x",
		"3;\x00", " 3", "", "zz", "ffffffffffffffff", "3\t"}
	genTrailers = []string{"\r\n", "X: 1\r\n\r\n", "X: 1\r\n  2\r\n\r\n", "\n", "X: 1\n\n", "X: 1\n\r\n", " X: 1\r\n\r\n",
		"X 1\r\n\r\n", "Expect: 200-ok\r\n\r\n", "X: " + strings.Repeat("t", 4086) + "\r\n\r\n",
		"X: " + strings.Repeat("t", 4087) + "\r\n\r\n"}
)

// genReader hands out choices from data, then zeros.
type genReader struct{ data []byte }

func (g *genReader) next(n int) int {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b) % n
}

func (g *genReader) pick(list []string) string { return list[g.next(len(list))] }

// generate builds a stream of up to six requests from data.
func generate(data []byte) string {
	g := &genReader{data: data}
	var b strings.Builder
	for req := 0; req < 6 && len(g.data) > 0; req++ {
		eol := "\r\n"
		if g.next(8) == 0 {
			eol = g.pick(genEOLs)
		}
		if g.next(6) == 0 {
			b.WriteString(strings.Repeat("\r\n", g.next(6)))
		}
		if g.next(4) == 0 {
			b.WriteString(g.pick(genMethods) + " " + g.pick(genTargets) + " " + g.pick(genVersions) + eol)
		} else {
			b.WriteString([]string{"GET", "POST"}[g.next(2)] + " /v1/jobs HTTP/1.1" + eol)
		}
		body := ""
		chunked := false
		for range g.next(7) {
			name, value := g.pick(genNames), g.pick(genValues)
			switch g.next(6) {
			case 0:
				name = "Content-Length"
				body = strings.Repeat("b", g.next(8))
				n := len(body)
				if g.next(3) == 0 {
					n += g.next(5) - 2
				}
				value = strings.ReplaceAll(g.pick(genLengths), "N", strconv.Itoa(n))
			case 1:
				name, value, chunked = "Transfer-Encoding", g.pick(genTEs), true
			case 2:
				name = "Expect"
			}
			sep := ": "
			if g.next(6) == 0 {
				sep = ":"
			}
			b.WriteString(name + sep + value)
			if g.next(8) == 0 {
				b.WriteString(eol + []string{" ", "\t", "  "}[g.next(3)] + g.pick(genValues))
			}
			b.WriteString(eol)
		}
		b.WriteString(eol)
		if chunked {
			for range g.next(4) {
				size := g.pick(genChunks)
				ext := ""
				if g.next(4) == 0 {
					ext = ";" + strings.Repeat("e", g.next(4)*1400)
				}
				n, err := strconv.ParseUint(strings.TrimSpace(strings.Split(size, ";")[0]), 16, 64)
				if err != nil || n > 16 {
					n = uint64(g.next(4))
				}
				b.WriteString(size + ext + "\r\n" + strings.Repeat("c", int(n)) + g.pick(genEOLs))
			}
			b.WriteString("0" + []string{"", ";x", " "}[g.next(3)] + "\r\n" + g.pick(genTrailers))
		} else {
			b.WriteString(body)
		}
		if g.next(10) == 0 {
			b.WriteString(g.pick(genValues))
		}
	}
	return b.String()
}
