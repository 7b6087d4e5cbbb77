package expectconn

import (
	"bytes"
	"net/url"
)

// This file holds the byte-level rules the framer shares with net/http. Each
// one mirrors a named function of the standard library (Go 1.26) so that the
// framer accepts a request exactly when http.ReadRequest does.

// byteClass bits.
const (
	classToken = 1 << iota // tchar: validHeaderFieldByte in net/textproto
	classValue             // validHeaderValueByte in net/textproto
	classHex               // a hex digit
)

var classes = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0 {
			t[c] |= classToken
		}
		if b == '\t' || b >= 0x20 && b != 0x7f {
			t[c] |= classValue
		}
		if '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' {
			t[c] |= classHex
		}
	}
	return t
}()

// isToken reports whether s is a non-empty RFC 9110 token, like net/http's
// validMethod.
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if classes[c]&classToken == 0 {
			return false
		}
	}
	return true
}

// validKey mirrors canonicalMIMEHeaderKey's acceptance in net/textproto: a
// non-empty run of token bytes, where spaces are tolerated (but then the key
// is not canonicalized). It also reports whether a space was present.
func validKey(k []byte) (ok, spaced bool) {
	if len(k) == 0 {
		return false, false
	}
	for _, c := range k {
		if classes[c]&classToken != 0 {
			continue
		}
		if c != ' ' {
			return false, false
		}
		spaced = true
	}
	return true, spaced
}

// validValue mirrors the validHeaderValueByte loop of readMIMEHeader.
func validValue(v []byte) bool {
	for _, c := range v {
		if classes[c]&classValue == 0 {
			return false
		}
	}
	return true
}

// trimOWS mirrors trim in net/textproto: it removes leading and trailing
// spaces and tabs.
func trimOWS(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// trimSpace mirrors textproto.TrimString (ASCII space, tab, CR and LF).
func trimSpace(s []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// equalFold reports whether s equals the lower-case ASCII string t, ignoring
// ASCII case only.
func equalFold(s []byte, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}

// hasToken mirrors hasToken in net/http: whether token (lower case) appears
// in v, ASCII case-insensitively, bounded by space, tab, comma or the ends.
func hasToken(v []byte, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if equalFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// parseVersion mirrors http.ParseHTTPVersion.
func parseVersion(v []byte) (major, minor int, ok bool) {
	switch string(v) {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	if len(v) != len("HTTP/X.Y") || string(v[:5]) != "HTTP/" || v[6] != '.' {
		return 0, 0, false
	}
	if v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// validRequestURI reports whether http.ReadRequest accepts uri as the target
// of a request with the given method: url.ParseRequestURI must succeed, after
// net/http prefixes "http://" to a CONNECT authority. The common origin-form
// path is checked without allocating.
func validRequestURI(uri []byte, connect bool) bool {
	if connect && (len(uri) == 0 || uri[0] != '/') {
		_, err := url.ParseRequestURI("http://" + string(uri))
		return err == nil
	}
	if len(uri) == 0 || uri[0] != '/' {
		_, err := url.ParseRequestURI(string(uri))
		return err == nil
	}
	for _, c := range uri {
		if c < ' ' || c == 0x7f {
			return false // "invalid control character in URL"
		}
		if c == '%' {
			_, err := url.ParseRequestURI(string(uri))
			return err == nil
		}
	}
	return true
}

// parseContentLength mirrors parseContentLength in net/http for a value
// already passed through textproto.TrimString: decimal digits only, at most
// 1<<63-1.
func parseContentLength(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// forbiddenTrailer reports whether a Trailer field value names a field that
// fixTrailer in net/http refuses to announce as a trailer.
func forbiddenTrailer(v []byte) bool {
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			elem, v = v, nil
		}
		elem = trimSpace(elem)
		if equalFold(elem, "transfer-encoding") || equalFold(elem, "trailer") ||
			equalFold(elem, "content-length") {
			return true
		}
	}
	return false
}
