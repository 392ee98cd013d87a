package leanhttp

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// methods are the methods served here, interned; any other goes to the
// fallback server (CONNECT and extension methods among them).
var methods = map[string]string{
	http.MethodGet:     http.MethodGet,
	http.MethodHead:    http.MethodHead,
	http.MethodPut:     http.MethodPut,
	http.MethodPost:    http.MethodPost,
	http.MethodDelete:  http.MethodDelete,
	http.MethodOptions: http.MethodOptions,
	http.MethodPatch:   http.MethodPatch,
}

// commonHeaders interns the canonical form of header names clients send,
// keyed by the spellings seen on the wire.
var commonHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "Keep-Alive",
		"Last-Event-Id", "Origin", "Pragma", "Referer", "User-Agent", "X-Forwarded-For",
		"Access-Control-Request-Method", "Access-Control-Request-Headers",
	} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	return m
}()

// parseRequest parses a request head (request line and header lines, the
// final blank line included) into a request with no body. ok is false for
// anything the lean server leaves to net/http: a version other than
// HTTP/1.1, a method not in methods, a target not in origin form, a
// malformed line, a missing or repeated Host, a Content-Length that is not
// one plain number, and any Transfer-Encoding, Expect, Upgrade or Trailer.
func parseRequest(head []byte) (req *http.Request, ok bool) {
	eol := bytes.Index(head, crlf)
	if eol < 0 {
		return nil, false
	}
	line := head[:eol]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, false
	}
	method, known := methods[string(line[:sp1])]
	if !known {
		return nil, false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return nil, false
	}
	target := rest[:sp2]
	if target[0] != '/' || !printable(target) {
		return nil, false
	}
	requestURI := string(target)
	u, err := url.ParseRequestURI(requestURI)
	if err != nil {
		return nil, false
	}

	lines := head[eol+2 : len(head)-2] // header lines, each ending in CRLF
	n := bytes.Count(lines, crlf)
	values := make([]string, n) // one backing array for single values
	h := make(http.Header, n)
	req = &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		RequestURI: requestURI,
	}
	hosts, lengths := 0, 0
	for i := 0; len(lines) > 0; i++ {
		eol := bytes.Index(lines, crlf)
		l := lines[:eol]
		lines = lines[eol+2:]
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !isToken(l[:colon]) {
			return nil, false // also a folded line, which starts with a blank
		}
		value := trimBlanks(l[colon+1:])
		if !fieldValue(value) {
			return nil, false
		}
		name, common := commonHeaders[string(l[:colon])]
		if !common {
			name = http.CanonicalHeaderKey(string(l[:colon]))
		}
		switch name {
		case "Host":
			hosts++
			req.Host = string(value)
			continue // net/http keeps Host out of Header as well
		case "Content-Length":
			lengths++
			cl, ok := contentLength(value)
			if !ok {
				return nil, false
			}
			req.ContentLength = cl
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Te":
			return nil, false
		case "Connection":
			if hasToken(value, "close") {
				req.Close = true
			}
		}
		if vs, dup := h[name]; dup {
			h[name] = append(vs, string(value))
			continue
		}
		values[i] = string(value)
		h[name] = values[i : i+1 : i+1]
	}
	if hosts != 1 || lengths > 1 || !validHost(req.Host) {
		return nil, false
	}
	// As net/http: Pragma: no-cache implies Cache-Control: no-cache.
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return req, true
}

var crlf = []byte("\r\n")

// printable reports whether b is visible ASCII (no blank, no control).
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// fieldValue reports whether b is a header value net/http accepts: no
// control byte but horizontal tab.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// contentLength parses a Content-Length of plain decimal digits.
func contentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds token, in any
// ASCII case (as net/http: not Unicode folding, under which "cloſe" is
// "close").
func hasToken(v []byte, token string) bool {
	for part := range bytes.SplitSeq(v, []byte(",")) {
		if asciiEqualFold(trimBlanks(part), token) {
			return true
		}
	}
	return false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if lower(c) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// validHost accepts the Host values net/http's own check accepts that a
// client of this port sends: a non-empty name or address with an optional
// port, made of the characters of a host name, an IPv6 literal or a
// percent-encoded zone.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}
