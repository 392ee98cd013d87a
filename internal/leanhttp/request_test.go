package leanhttp

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// head builds a request head from lines, each ended by CRLF, and the
// blank line.
func head(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

// TestParseRequest protects what a handler sees of a plain request and
// which heads leanhttp refuses (leaving them to net/http).
func TestParseRequest(t *testing.T) {
	type want struct {
		method, uri, path, query, host string
		contentLength                  int64
		close                          bool
		header                         http.Header
	}
	accepted := []struct {
		name string
		head []byte
		want want
	}{
		{"minimal GET", head("GET / HTTP/1.1", "Host: example.com"),
			want{method: "GET", uri: "/", path: "/", host: "example.com", header: http.Header{}}},
		{"query and escapes", head("GET /v2/keys/a%2Fb?recursive=true&x=%20 HTTP/1.1", "Host: 127.0.0.1:2379"),
			want{method: "GET", uri: "/v2/keys/a%2Fb?recursive=true&x=%20", path: "/v2/keys/a/b", query: "recursive=true&x=%20", host: "127.0.0.1:2379", header: http.Header{}}},
		{"IPv6 host with zone", head("HEAD /x HTTP/1.1", "Host: [fe80::1%25eth0]:80"),
			want{method: "HEAD", uri: "/x", path: "/x", host: "[fe80::1%25eth0]:80", header: http.Header{}}},
		{"Content-Length", head("PUT /k HTTP/1.1", "Host: h", "Content-Length: 0042", "Content-Type: application/x-www-form-urlencoded"),
			want{method: "PUT", uri: "/k", path: "/k", host: "h", contentLength: 42, header: http.Header{
				"Content-Length": {"0042"}, "Content-Type": {"application/x-www-form-urlencoded"}}}},
		{"canonical names and trimmed values", head("POST /k HTTP/1.1", "host: h", "content-type: \t a/b \t", "x-my-header:v", "ACCEPT-encoding: gzip", "X_under: u"),
			want{method: "POST", uri: "/k", path: "/k", host: "h", header: http.Header{
				"Content-Type": {"a/b"}, "X-My-Header": {"v"}, "Accept-Encoding": {"gzip"}, "X_under": {"u"}}}},
		{"duplicates in order", head("GET / HTTP/1.1", "X-A: 1", "Host: h", "x-a: 2", "Cookie: c=1", "X-A: 3", "cookie: c=2"),
			want{method: "GET", uri: "/", path: "/", host: "h", header: http.Header{
				"X-A": {"1", "2", "3"}, "Cookie": {"c=1", "c=2"}}}},
		{"empty value", head("DELETE /k HTTP/1.1", "Host: h", "X-Empty:", "X-Blank:   "),
			want{method: "DELETE", uri: "/k", path: "/k", host: "h", header: http.Header{"X-Empty": {""}, "X-Blank": {""}}}},
		{"Connection close", head("GET / HTTP/1.1", "Host: h", "Connection: close"),
			want{method: "GET", uri: "/", path: "/", host: "h", close: true, header: http.Header{"Connection": {"close"}}}},
		{"Connection close in a list, any case", head("GET / HTTP/1.1", "Host: h", "Connection: keep-alive ,\tClOsE"),
			want{method: "GET", uri: "/", path: "/", host: "h", close: true, header: http.Header{"Connection": {"keep-alive ,\tClOsE"}}}},
		{"Connection keep-alive", head("GET / HTTP/1.1", "Host: h", "Connection: keep-alive", "connection: closed"),
			want{method: "GET", uri: "/", path: "/", host: "h", header: http.Header{"Connection": {"keep-alive", "closed"}}}},
		{"Pragma no-cache implies Cache-Control", head("GET / HTTP/1.1", "Host: h", "Pragma: no-cache"),
			want{method: "GET", uri: "/", path: "/", host: "h", header: http.Header{"Pragma": {"no-cache"}, "Cache-Control": {"no-cache"}}}},
		{"value with obs-text and tab", head("OPTIONS /k HTTP/1.1", "Host: h", "X-V: a\tb \xe9"),
			want{method: "OPTIONS", uri: "/k", path: "/k", host: "h", header: http.Header{"X-V": {"a\tb \xe9"}}}},
		{"PATCH", head("PATCH /k HTTP/1.1", "Host: h"),
			want{method: "PATCH", uri: "/k", path: "/k", host: "h", header: http.Header{}}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := parseRequest(tc.head)
			if !ok {
				t.Fatalf("refused %q", tc.head)
			}
			got := want{method: r.Method, uri: r.RequestURI, path: r.URL.Path, query: r.URL.RawQuery, host: r.Host,
				contentLength: r.ContentLength, close: r.Close, header: r.Header}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if r.Proto != "HTTP/1.1" || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
				t.Errorf("proto %q %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
			}
			if _, ok := r.Header["Host"]; ok {
				t.Error("Host in Header")
			}
			// Interned: the method is the table's string, not a copy.
			if unsafe.StringData(r.Method) != unsafe.StringData(methods[r.Method]) {
				t.Error("method not interned")
			}
			// Nothing may point into the head: the buffer is reused.
			for i := range tc.head {
				tc.head[i] = '#'
			}
			if got.uri != tc.want.uri || r.Host != tc.want.host || !reflect.DeepEqual(r.Header, tc.want.header) || r.URL.Path != tc.want.path {
				t.Error("the request changed with its head buffer")
			}
		})
	}

	refused := []struct {
		name string
		head []byte
	}{
		{"HTTP/1.0", head("GET / HTTP/1.0", "Host: h")},
		{"HTTP/2.0", head("GET / HTTP/2.0", "Host: h")},
		{"lower-case version", head("GET / http/1.1", "Host: h")},
		{"no version", head("GET /", "Host: h")},
		{"unknown method", head("FOO / HTTP/1.1", "Host: h")},
		{"CONNECT", head("CONNECT h:443 HTTP/1.1", "Host: h:443")},
		{"lower-case method", head("get / HTTP/1.1", "Host: h")},
		{"absolute form", head("GET http://h/ HTTP/1.1", "Host: h")},
		{"asterisk form", head("OPTIONS * HTTP/1.1", "Host: h")},
		{"empty target", head("GET  HTTP/1.1", "Host: h")},
		{"double space", head("GET  / HTTP/1.1", "Host: h")},
		{"space in target", head("GET /a b HTTP/1.1", "Host: h")},
		{"control in target", head("GET /a\x01 HTTP/1.1", "Host: h")},
		{"non-ASCII target", head("GET /\xc3\xa9 HTTP/1.1", "Host: h")},
		{"trailing space", head("GET / HTTP/1.1 ", "Host: h")},
		{"bad escape", head("GET /%zz HTTP/1.1", "Host: h")},
		{"leading blank line", head("", "GET / HTTP/1.1", "Host: h")},
		{"no Host", head("GET / HTTP/1.1", "Accept: */*")},
		{"two Hosts", head("GET / HTTP/1.1", "Host: a", "Host: a")},
		{"empty Host", head("GET / HTTP/1.1", "Host: ")},
		{"Host with a slash", head("GET / HTTP/1.1", "Host: a/b")},
		{"Host with a space", head("GET / HTTP/1.1", "Host: a b")},
		{"Content-Length not a number", head("PUT / HTTP/1.1", "Host: h", "Content-Length: 1x")},
		{"Content-Length negative", head("PUT / HTTP/1.1", "Host: h", "Content-Length: -1")},
		{"Content-Length signed", head("PUT / HTTP/1.1", "Host: h", "Content-Length: +1")},
		{"Content-Length empty", head("PUT / HTTP/1.1", "Host: h", "Content-Length:")},
		{"Content-Length list", head("PUT / HTTP/1.1", "Host: h", "Content-Length: 1, 1")},
		{"Content-Length too long", head("PUT / HTTP/1.1", "Host: h", "Content-Length: 1234567890123456789")},
		{"two Content-Lengths", head("PUT / HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 1")},
		{"Transfer-Encoding", head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")},
		{"Transfer-Encoding identity", head("POST / HTTP/1.1", "Host: h", "transfer-encoding: identity")},
		{"Expect", head("PUT / HTTP/1.1", "Host: h", "Expect: 100-continue", "Content-Length: 1")},
		{"Upgrade", head("GET / HTTP/1.1", "Host: h", "Upgrade: websocket")},
		{"Trailer", head("GET / HTTP/1.1", "Host: h", "Trailer: x")},
		{"TE", head("GET / HTTP/1.1", "Host: h", "TE: trailers")},
		{"no colon", head("GET / HTTP/1.1", "Host: h", "NoColon")},
		{"empty name", head("GET / HTTP/1.1", "Host: h", ": v")},
		{"space before colon", head("GET / HTTP/1.1", "Host: h", "X-A : v")},
		{"folded line", head("GET / HTTP/1.1", "Host: h", "X-A: v", " w")},
		{"folded with tab", head("GET / HTTP/1.1", "Host: h", "X-A: v", "\tw")},
		{"non-token name", head("GET / HTTP/1.1", "Host: h", "X(A): v")},
		{"NUL in value", head("GET / HTTP/1.1", "Host: h", "X-A: a\x00b")},
		{"DEL in value", head("GET / HTTP/1.1", "Host: h", "X-A: a\x7fb")},
		{"bare CR in value", head("GET / HTTP/1.1", "Host: h", "X-A: a\rb")},
		{"bare LF in value", head("GET / HTTP/1.1", "Host: h", "X-A: a\nb")},
		{"bare LF in request line", head("GET / HTTP/1.1\nHost: h")},
		{"no request line end", []byte("GET / HTTP/1.1")},
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			if r, ok := parseRequest(tc.head); ok {
				t.Errorf("accepted %q as %s %s host %q", tc.head, r.Method, r.RequestURI, r.Host)
			}
		})
	}
}

// TestHeadEnd protects the framing of a head in the read buffer: it ends
// at the first CRLF CRLF, and a bare LF (which net/http accepts as a line
// end) makes it not plain rather than unfinished, so that such a client is
// answered by net/http instead of waiting for a CRLF CRLF that never comes.
func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n\r\n", 27},
		{"\r\n\r\n", 4},
		{"GET / HTTP/1.1\r\nHost: h\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r", -1},
		{"", -1},
		{"GET / HTTP/1.1\nHost: h\n\n", -2},
		{"GET / HTTP/1.1\r\nHost: h\n", -2},
		{"\n", -2},
	} {
		if got := headEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("headEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
		// readHead resumes the scan 3 bytes before the end of what it
		// scanned, a prefix without a whole head: the result is the same.
		for p := range len(tc.in) {
			if headEnd([]byte(tc.in[:p]), 0) != -1 {
				break
			}
			if got := headEnd([]byte(tc.in), max(p-3, 0)); got != tc.want {
				t.Errorf("headEnd(%q, %d) = %d, want %d", tc.in, max(p-3, 0), got, tc.want)
			}
		}
	}
}

// FuzzParseRequest protects the agreement with net/http: a head
// parseRequest accepts must be one net/http's server accepts too, parsed
// to the same method, target, URL, host, length, Close and header map
// (both keep Host out of the header map); and nothing it returns may
// alias the buffer, which is reused for the next request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /v2/keys/foo?wait=true&recursive=true HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		"PUT /v2/keys/message HTTP/1.1\r\nHost: localhost:2379\r\nContent-Length: 15\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nvalue=Hello+wor",
		"POST /v2/keys/queue HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
		"DELETE /v2/keys/dir?dir=true HTTP/1.1\r\nHost: [::1]:2379\r\nAuthorization: Basic cm9vdDpwYXNz\r\n\r\n",
		"HEAD /version HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=b\r\ncookie: c=d\r\n\r\n",
		"OPTIONS /v2/keys HTTP/1.1\r\nHost: h\r\nOrigin: http://x\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
		"PATCH /x HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nConnection: keep-alive, Close\r\n\r\n",
		"GET /%7e?a=%zz HTTP/1.1\r\nHost: h\r\nX-V: \t v \xe9 \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: cloſe\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headEnd(data, 0)
		if want := specHeadEnd(data); end != want {
			t.Fatalf("headEnd(%q) = %d, want %d", data, end, want)
		}
		if p := len(data) / 2; headEnd(data[:p], 0) == -1 {
			if got := headEnd(data, max(p-3, 0)); got != end {
				t.Fatalf("headEnd(%q) resumed at %d = %d, want %d", data, max(p-3, 0), got, end)
			}
		}
		if end < 0 {
			return
		}
		h := bytes.Clone(data[:end])
		r, ok := parseRequest(h)
		if !ok {
			return
		}
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:end])))
		if err != nil {
			t.Fatalf("parseRequest accepts %q, net/http: %v", data[:end], err)
		}
		// What net/http's server checks beyond ReadRequest (which refuses
		// two Host lines and deletes Host from the header map, as its
		// server does): a Host line, valid, and valid names and values.
		if std.Host == "" || !validHostHeader(std.Host) {
			t.Fatalf("net/http's server refuses Host %q", std.Host)
		}
		for k, vs := range std.Header {
			if !isToken([]byte(k)) {
				t.Fatalf("net/http's server refuses header name %q", k)
			}
			for _, v := range vs {
				if !fieldValue([]byte(v)) {
					t.Fatalf("net/http's server refuses header value %q", v)
				}
			}
		}
		if std.ProtoMajor != 1 || std.ProtoMinor != 1 || std.Proto != r.Proto {
			t.Fatalf("proto: net/http %s, lean %s", std.Proto, r.Proto)
		}
		got := []any{r.Method, r.RequestURI, *r.URL, r.Host, r.ContentLength, r.Close, r.Header}
		want := []any{std.Method, std.RequestURI, *std.URL, std.Host, std.ContentLength, std.Close, std.Header}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("%q:\nlean     %#v\nnet/http %#v", data[:end], got[i], want[i])
			}
		}
		for i := range h {
			h[i] = 0
		}
		if again := []any{r.Method, r.RequestURI, *r.URL, r.Host, r.ContentLength, r.Close, r.Header}; !reflect.DeepEqual(again, want) {
			t.Fatalf("%q: the request changed with its head buffer", data[:end])
		}
	})
}

// specHeadEnd is what headEnd must return: the end of the first CRLF CRLF,
// unless a bare LF comes first (-2); -1 when there is neither.
func specHeadEnd(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') && (end < 0 || i < end) {
			return -2
		}
	}
	if end < 0 {
		return -1
	}
	return end + 4
}

// validHostHeader is net/http's server check of a Host value
// (golang.org/x/net/http/httpguts.ValidHostHeader).
func validHostHeader(h string) bool {
	const ok = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!$%&()*+,-.:;=[]'_~"
	for i := 0; i < len(h); i++ {
		if !strings.Contains(ok, h[i:i+1]) {
			return false
		}
	}
	return true
}
