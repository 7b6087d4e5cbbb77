package expectconn

import "bytes"

// state is where the framer is in the request stream.
type state uint8

const (
	stStart     state = iota // before a request; may skip CR/LF after a POST
	stHead                   // inside a request's header section (held)
	stBody                   // inside a Content-Length body
	stChunkSize              // inside a chunk-size line
	stChunkData              // inside chunk data
	stChunkCR                // expecting the CR after chunk data
	stChunkLF                // expecting the LF after chunk data
	stTrailer                // inside the trailer section after the last chunk (held)
	stPass                   // passing everything through for good
)

// Limits.
const (
	// maxHeadBytes bounds a held request header section. It is above what
	// a default http.Server accepts (DefaultMaxHeaderBytes plus its 4096
	// bytes of slack), so that anything such a server reads is rewritten;
	// beyond it the framer passes the stream through and net/http answers
	// 431 itself.
	maxHeadBytes = 1<<20 + 8192
	// maxTrailerBytes is the trailer net/http accepts: its
	// seeUpcomingDoubleCRLF peeks at most one 4096-byte bufio buffer.
	maxTrailerBytes = 4096
	// maxChunkLine is the longest chunk-size line, CRLF included, that
	// net/http's 4096-byte bufio.Reader returns from ReadSlice.
	maxChunkLine = 4096
	// maxChunkExcess is net/http's bound on chunk-framing overhead.
	maxChunkExcess = 16 * 1024
)

// Phases of a chunk-size line.
const (
	chDigits = iota // hex digits
	chSpace         // spaces and tabs after the digits
	chExt           // a chunk extension, after ';'
	chLF            // the LF after the CR
)

// Kinds of header fields the framer looks at.
const (
	kOther = iota
	kExpect
	kContentLength
	kTransferEncoding
	kHost
	kUpgrade
	kTrailer
)

// Results of section.
const (
	secMore = iota // incomplete: hold what there is and read more
	secDone        // complete: f.secLen bytes, f.renames to rewrite
	secPass        // unparsable: pass everything through
)

// framer follows the HTTP/1.x request framing of net/http over a byte
// stream. Header and trailer sections are scanned incrementally while the
// caller holds their bytes; body bytes are only counted.
type framer struct {
	st     state
	remain uint64 // stBody, stChunkData: bytes left
	skip   int    // stStart: leading CR/LF bytes net/http drops after a POST

	// chunk-size line
	chPhase  uint8
	chDigits int
	chLen    int
	chSize   uint64
	excess   int64

	// held section; offsets are relative to the section's first byte
	off       int // bytes scanned
	lineStart int // start of the line being scanned
	lines     int // complete lines so far
	fld       int // start of the field being continued, -1 if none
	fldKind   int // its kind
	secLen    int // length of the section just completed
	renames   []int
	scratch   []byte // a field's joined value
	cl        []byte // the first Content-Length value

	// the request whose header section is being read
	major, minor int
	post         bool
	connect      bool
	upgrade      bool
	hosts        int
	tes          int
	teChunked    bool
	cls          int
	clMismatch   bool
	trailerBad   bool
}

// pass switches to pass-through for the rest of the connection.
func (f *framer) pass() { f.st = stPass }

// beginSection starts a held header (st == stHead) or trailer section.
func (f *framer) beginSection(st state) {
	f.st = st
	f.off, f.lineStart, f.lines, f.fld, f.fldKind = 0, 0, 0, -1, kOther
	f.renames = f.renames[:0]
	if st == stHead {
		f.major, f.minor = 0, 0
		f.post, f.connect, f.upgrade = false, false, false
		f.hosts, f.tes, f.cls = 0, 0, 0
		f.teChunked, f.clMismatch, f.trailerBad = false, false, false
	}
}

// scan consumes b. In stHead and stTrailer b must begin with the held
// section's first byte. It returns how many leading bytes of b are final
// (may be delivered as they are). If rw is set, a completed header section of
// f.secLen bytes starts at b[done] and needs f.renames rewritten; the framer
// is already past it and scan must be called again for what follows it.
// Otherwise b[done:] is an incomplete section to be held.
func (f *framer) scan(b []byte) (done int, rw bool) {
	i := 0
	for i < len(b) {
		switch f.st {
		case stPass:
			return len(b), false
		case stStart:
			if f.skip > 0 && (b[i] == '\r' || b[i] == '\n') {
				f.skip--
				i++
				continue
			}
			f.skip = 0
			f.beginSection(stHead)
		case stHead, stTrailer:
			switch f.section(b[i:]) {
			case secMore:
				return i, false
			case secPass:
				f.pass()
				return len(b), false
			}
			if len(f.renames) > 0 {
				return i, true
			}
			i += f.secLen
		case stBody, stChunkData:
			n := uint64(len(b) - i)
			if n > f.remain {
				n = f.remain
			}
			i += int(n)
			f.remain -= n
			if f.remain == 0 {
				if f.st == stBody {
					f.st = stStart
				} else {
					f.st = stChunkCR
				}
			}
		case stChunkCR, stChunkLF:
			want := byte('\r')
			if f.st == stChunkLF {
				want = '\n'
			}
			if b[i] != want {
				f.pass()
				return len(b), false
			}
			i++
			if f.st == stChunkCR {
				f.st = stChunkLF
			} else {
				f.beginChunk()
			}
		case stChunkSize:
			if !f.chunkByte(b[i]) {
				f.pass()
				return len(b), false
			}
			i++
		}
	}
	return i, false
}

func (f *framer) beginChunk() {
	f.st = stChunkSize
	f.chPhase, f.chDigits, f.chLen, f.chSize = chDigits, 0, 0, 0
}

// chunkByte consumes one byte of a chunk-size line, mirroring readChunkLine,
// removeChunkExtension, parseHexUint and the overhead accounting of
// net/http/internal.chunkedReader. It reports false if net/http would fail.
func (f *framer) chunkByte(c byte) bool {
	f.chLen++
	if f.chLen > maxChunkLine {
		return false
	}
	switch f.chPhase {
	case chLF:
		if c != '\n' {
			return false
		}
		return f.endChunkLine()
	case chDigits, chSpace, chExt:
		if c == '\r' {
			if f.chDigits == 0 {
				return false // empty size, or a bare CR inside the line
			}
			f.chPhase = chLF
			return true
		}
		if c == '\n' {
			return false // bare LF
		}
	}
	switch f.chPhase {
	case chDigits:
		switch {
		case classes[c]&classHex != 0:
			f.chDigits++
			if f.chDigits > 16 {
				return false
			}
			f.chSize = f.chSize<<4 | uint64(hexVal(c))
		case c == ';' && f.chDigits > 0:
			f.chPhase = chExt
		case (c == ' ' || c == '\t') && f.chDigits > 0:
			f.chPhase = chSpace
		default:
			return false
		}
	case chSpace:
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func (f *framer) endChunkLine() bool {
	n := f.chSize
	f.excess += int64(f.chLen)
	f.excess -= 16 + (2 * int64(n))
	f.excess = max(f.excess, 0)
	if n == 0 {
		f.beginSection(stTrailer)
		return true
	}
	if f.excess > maxChunkExcess {
		return false
	}
	f.st, f.remain = stChunkData, n
	return true
}

// section scans the held section b from f.off on, a line at a time.
func (f *framer) section(b []byte) int {
	limit := maxHeadBytes
	if f.st == stTrailer {
		limit = maxTrailerBytes
	}
	for {
		if ls := f.lineStart; ls < len(b) && f.fld < 0 && (b[ls] == ' ' || b[ls] == '\t') &&
			(f.st == stTrailer || f.lines > 0) {
			// A first field line starting with a blank: net/http
			// fails without waiting for the rest of the line.
			return secPass
		}
		nl := bytes.IndexByte(b[f.off:], '\n')
		if nl < 0 {
			f.off = len(b)
			if f.off > limit {
				return secPass
			}
			return secMore
		}
		end := f.off + nl
		f.off = end + 1
		if f.off > limit {
			return secPass
		}
		ls := f.lineStart
		f.lineStart = f.off
		le := end
		if le > ls && b[le-1] == '\r' {
			le--
		}
		line := b[ls:le]
		if f.st == stHead && f.lines == 0 {
			f.lines++
			if !f.requestLine(line) {
				return secPass
			}
			continue
		}
		f.lines++
		if len(line) == 0 {
			if !f.endField(b, ls) {
				return secPass
			}
			f.secLen = f.off
			if f.st == stTrailer {
				return f.endTrailer(b)
			}
			return f.endHead()
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A continuation line; not allowed before the first field.
			if f.fld < 0 || !validValue(line) {
				return secPass
			}
			continue
		}
		if !f.endField(b, ls) {
			return secPass
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return secPass
		}
		ok, spaced := validKey(line[:colon])
		if !ok || !validValue(line[colon+1:]) {
			return secPass
		}
		f.fld, f.fldKind = ls, kOther
		if !spaced && f.st == stHead {
			f.fldKind = kindOf(line[:colon])
		}
	}
}

func kindOf(k []byte) int {
	switch len(k) {
	case 4:
		if equalFold(k, "host") {
			return kHost
		}
	case 6:
		if equalFold(k, "expect") {
			return kExpect
		}
	case 7:
		if equalFold(k, "upgrade") {
			return kUpgrade
		}
		if equalFold(k, "trailer") {
			return kTrailer
		}
	case 14:
		if equalFold(k, "content-length") {
			return kContentLength
		}
	case 17:
		if equalFold(k, "transfer-encoding") {
			return kTransferEncoding
		}
	}
	return kOther
}

// requestLine mirrors the request-line checks of readRequest in net/http.
func (f *framer) requestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	method, rest := line[:sp], line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return false
	}
	uri, proto := rest[:sp], rest[sp+1:]
	if !isToken(method) {
		return false
	}
	var ok bool
	if f.major, f.minor, ok = parseVersion(proto); !ok {
		return false
	}
	if string(method) == "PRI" {
		// The HTTP/2 connection preface, or something posing as it:
		// HTTP/2 from here on, or a handler taking the connection over.
		return false
	}
	f.connect = string(method) == "CONNECT"
	f.post = string(method) == "POST"
	return validRequestURI(uri, f.connect)
}

// endField finishes the field that started at f.fld now that the line at
// next does not continue it. It reports false if net/http would reject the
// request.
func (f *framer) endField(b []byte, next int) bool {
	if f.fld < 0 {
		return true
	}
	start, kind := f.fld, f.fldKind
	f.fld = -1
	if kind == kOther {
		return true
	}
	v := f.fieldValue(b[start:next])
	switch kind {
	case kExpect:
		if !hasToken(v, "100-continue") {
			f.renames = append(f.renames, start)
		}
	case kHost:
		f.hosts++
	case kUpgrade:
		f.upgrade = true
	case kTransferEncoding:
		f.tes++
		if f.tes == 1 {
			f.teChunked = equalFold(v, "chunked")
		}
	case kContentLength:
		v = trimSpace(v)
		if f.cls == 0 {
			f.cl = append(f.cl[:0], v...)
		} else if !bytes.Equal(f.cl, v) {
			f.clMismatch = true
		}
		f.cls++
	case kTrailer:
		if forbiddenTrailer(v) {
			f.trailerBad = true
		}
	}
	return true
}

// fieldValue returns a field's value as net/textproto stores it: the lines
// of raw (the field, continuation lines included) trimmed and joined by
// single spaces, and the part after the first colon with leading blanks
// removed.
func (f *framer) fieldValue(raw []byte) []byte {
	f.scratch = f.scratch[:0]
	first := true
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		line := raw[:i]
		raw = raw[i+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		line = trimOWS(line)
		if first {
			line = line[bytes.IndexByte(line, ':')+1:]
			first = false
		} else {
			f.scratch = append(f.scratch, ' ')
		}
		f.scratch = append(f.scratch, line...)
	}
	v := f.scratch
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	return v
}

// endHead applies the checks readRequest and readTransfer make once the
// header section is read and sets up the framing of the body.
func (f *framer) endHead() int {
	if f.hosts > 1 {
		return secPass // "too many Host headers"
	}
	major, minor := f.major, f.minor
	if major == 0 && minor == 0 {
		major, minor = 1, 1 // readTransfer's default
	}
	chunked := false
	if f.tes > 0 && (major > 1 || major == 1 && minor >= 1) {
		if f.tes != 1 || !f.teChunked {
			return secPass // net/http answers 501
		}
		chunked = true
	}
	var n uint64
	if f.cls > 0 {
		var ok bool
		if n, ok = parseContentLength(f.cl); f.clMismatch || !ok {
			return secPass
		}
	}
	if chunked && f.trailerBad {
		return secPass // "bad trailer key"
	}
	f.skip = 0
	if f.post {
		f.skip = 4
	}
	switch {
	case f.connect || f.upgrade:
		// The connection is about to carry another protocol.
		f.st = stPass
	case chunked:
		f.excess = 0
		f.beginChunk()
	case n > 0:
		f.st, f.remain = stBody, n
	default:
		f.st = stStart
	}
	return secDone
}

// endTrailer accepts a trailer section that net/http is sure to accept no
// matter what follows it: the bare CRLF, or fields ending in CRLF CRLF
// within the 4096 bytes net/http looks ahead. A trailer ending in a bare LF
// is only accepted by net/http if a CRLF CRLF follows within that window,
// possibly inside the next request; rather than look ahead, the framer gives
// up on such a connection.
func (f *framer) endTrailer(b []byte) int {
	sec := b[:f.off]
	if string(sec) != "\r\n" && !bytes.HasSuffix(sec, []byte("\r\n\r\n")) {
		return secPass
	}
	f.st = stStart
	return secDone
}
