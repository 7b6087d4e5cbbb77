package expectconn

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzRewrite checks the rewriting connection against net/http: the
// requests http.ReadRequest finds in the rewritten stream must be those it
// finds in the original, with the Expect values that are not 100-continue
// under Header; and the rewritten bytes must be the original ones with just
// those field names replaced. sizes picks how the stream is cut: the low
// three bits of each byte are the size of a read of the inner connection
// (0: as much as asked), the next three pick the size of a Read of the
// wrapper.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), []byte{1})
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		checkRewrite(t, stream, sizes)
	})
}

var outerSizes = [8]int{4096, 1, 2, 3, 7, 16, 600, 1500}

func checkRewrite(t *testing.T, stream, sizes []byte) {
	var inner, outer []int
	for _, b := range sizes {
		inner = append(inner, int(b&7))
		outer = append(outer, outerSizes[b>>3&7])
	}
	src := &chunkConn{data: stream, sizes: inner}
	got := readAllSizes(t, NewConn(src), outer, 4*len(stream)+100)

	orig := parseRequests(stream)
	wantRenames := expectedRenames(t, stream, orig)

	// The requests, as net/http reads them.
	rewritten := parseRequests(got)
	if len(rewritten) != len(orig) {
		t.Fatalf("original stream has %d requests, rewritten one %d\noriginal:  %q\nrewritten: %q",
			len(orig), len(rewritten), stream, got)
	}
	for i, o := range orig {
		g := rewritten[i]
		want := o.header
		if wantRenames[i] {
			want = renamedHeader(o.header)
		}
		if o.method != g.method || o.uri != g.uri || o.proto != g.proto || o.host != g.host ||
			!bytes.Equal(o.body, g.body) || o.bodyErr != g.bodyErr ||
			!reflect.DeepEqual(o.trailer, g.trailer) || !reflect.DeepEqual(o.te, g.te) ||
			!reflect.DeepEqual(sortedExpect(want), sortedExpect(g.header)) {
			t.Fatalf("request %d differs\noriginal:  %+v\nwant head: %v\nrewritten: %+v\nstream: %q\ngot:    %q",
				i, o, want, g, stream, got)
		}
	}

	// The bytes.
	var positions []int
	for i, o := range orig {
		if !wantRenames[i] {
			continue
		}
		starts := expectFieldStarts(stream[o.start:o.head])
		for j, v := range o.header["Expect"] {
			if !oracleHas100(v) {
				positions = append(positions, o.start+starts[j])
			}
		}
	}
	want := renameAt(stream, positions)
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("rewritten stream differs at byte %d\nstream: %q\nwant:   %q\ngot:    %q", n, stream, want, got)
	}
}

// parsed is a request as http.ReadRequest reads it, with its place in the
// stream: the header section is stream[start:head], the body ends at end.
type parsed struct {
	method, uri, proto, host string
	header, trailer          http.Header
	te                       []string
	body                     []byte
	bodyErr                  bool
	start, head, end         int
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// parseRequests reads requests from data the way http.Server does, until
// one fails: with a 4096-byte bufio.Reader, reading each body to its end,
// and dropping up to four CR or LF bytes after a POST.
func parseRequests(data []byte) []parsed {
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReaderSize(cr, 4096)
	pos := func() int { return cr.n - br.Buffered() }
	var out []parsed
	post := false
	for {
		if post {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		start := pos()
		req, err := http.ReadRequest(br)
		if err != nil {
			return out
		}
		p := parsed{
			method: req.Method, uri: req.RequestURI, proto: req.Proto, host: req.Host,
			header: req.Header, te: req.TransferEncoding, start: start, head: pos(),
		}
		p.body, err = io.ReadAll(req.Body)
		p.bodyErr = err != nil
		p.trailer = req.Trailer
		p.end = pos()
		out = append(out, p)
		if err != nil {
			return out
		}
		post = req.Method == "POST"
	}
}

// expectedRenames reports for each request whether its Expect fields are to
// be renamed: not from a PRI request on, nor after a CONNECT request, one
// with an Upgrade field, or a chunked body whose trailer does not end in
// CRLF CRLF.
func expectedRenames(t *testing.T, stream []byte, reqs []parsed) []bool {
	out := make([]bool, len(reqs))
	passed := false
	for i, r := range reqs {
		if r.method == "PRI" {
			passed = true
		}
		out[i] = !passed
		if starts := expectFieldStarts(stream[r.start:r.head]); len(starts) != len(r.header["Expect"]) {
			t.Fatalf("oracle: %d Expect lines for values %q in %q", len(starts), r.header["Expect"], stream[r.start:r.head])
		}
		if _, up := r.header["Upgrade"]; up || r.method == "CONNECT" {
			passed = true
		}
		if slices.Equal(r.te, []string{"chunked"}) && !bytes.HasSuffix(stream[r.head:r.end], []byte("\r\n\r\n")) {
			passed = true
		}
	}
	return out
}

// expectFieldStarts returns the offsets in a header section of the lines
// that start an Expect field.
func expectFieldStarts(sec []byte) []int {
	var out []int
	off := 0
	for first := true; off < len(sec); first = false {
		line := sec[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		if !first && len(line) > 6 && strings.EqualFold(string(line[:6]), "expect") && line[6] == ':' &&
			isASCII(line[:6]) {
			out = append(out, off)
		}
		off += len(line)
	}
	return out
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// oracleHas100 reports whether v lists 100-continue among its elements
// separated by spaces, tabs or commas.
func oracleHas100(v string) bool {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
		if len(f) == len("100-continue") && isASCII([]byte(f)) && strings.EqualFold(f, "100-continue") {
			return true
		}
	}
	return false
}

// renamedHeader returns h with the Expect values that are not 100-continue
// moved to Header.
func renamedHeader(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		return nil
	}
	delete(out, "Expect")
	for _, v := range h["Expect"] {
		k := Header
		if oracleHas100(v) {
			k = "Expect"
		}
		out[k] = append(out[k], v)
	}
	return out
}

// sortedExpect returns h with the values of Header sorted: their order
// relative to the fields already named so is not kept by a header map.
func sortedExpect(h http.Header) http.Header {
	out := h.Clone()
	if v := out[Header]; v != nil {
		slices.Sort(v)
	}
	return out
}

// renameAt replaces the six-byte field names at positions with Header.
func renameAt(stream []byte, positions []int) []byte {
	var out []byte
	last := 0
	for _, p := range positions {
		out = append(out, stream[last:p]...)
		out = append(out, Header...)
		last = p + len("Expect")
	}
	return append(out, stream[last:]...)
}
