package leanhttp

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// refusePath is the Plain function of the hand-off tests: it refuses
// /refused.
func refusePath(r *http.Request) bool { return r.URL.Path != "/refused" }

// TestHandOff protects the hand-off: every request leanhttp does not
// serve itself gets exactly net/http's answer, from the fallback server,
// and the connection then behaves as net/http's would: the request
// pipelined in the same write is not lost, and later requests are served
// (by the fallback) when net/http keeps the connection.
func TestHandOff(t *testing.T) {
	std, lean := startBoth(t, app(), refusePath)
	const ping = "GET /ping HTTP/1.1\r\nHost: example.com\r\n\r\n"
	cases := []struct {
		name   string
		raw    string
		method string
		alive  bool // net/http keeps the connection
	}{
		{name: "HTTP/1.0", raw: "GET /req HTTP/1.0\r\nHost: example.com\r\n\r\n", alive: false},
		{name: "HTTP/1.0 keep-alive", raw: "GET /text HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n", alive: true},
		{name: "HTTP/1.2", raw: "GET /req HTTP/1.2\r\nHost: example.com\r\n\r\n", alive: true},
		{name: "chunked body", raw: "POST /req HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", alive: true},
		{name: "Expect 100-continue", raw: req("PUT", "/req", "hello", "Expect: 100-continue"), alive: true},
		{name: "Upgrade", raw: req("GET", "/req", "", "Upgrade: websocket", "Connection: Upgrade"), alive: true},
		{name: "TE", raw: req("GET", "/req", "", "TE: trailers"), alive: true},
		{name: "Trailer", raw: req("GET", "/req", "", "Trailer: X-T"), alive: true},
		{name: "no Host", raw: "GET /req HTTP/1.1\r\nAccept: */*\r\n\r\n", alive: false},
		{name: "two Hosts", raw: req("GET", "/req", "", "Host: other.example.com"), alive: false},
		{name: "empty Host", raw: "GET /req HTTP/1.1\r\nHost:\r\n\r\n", alive: true},
		{name: "Host with odd bytes", raw: "GET /req HTTP/1.1\r\nHost: a!b\r\n\r\n", alive: true},
		{name: "bad Content-Length", raw: "POST /req HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1x\r\n\r\n1", alive: false},
		{name: "negative Content-Length", raw: "POST /req HTTP/1.1\r\nHost: example.com\r\nContent-Length: -1\r\n\r\n", alive: false},
		{name: "repeated equal Content-Length", raw: req("POST", "/req", "abc", "Content-Length: 3"), alive: true},
		{name: "6 KiB header", raw: req("GET", "/req", "", "X-Big: "+strings.Repeat("b", 6<<10)), alive: true},
		{name: "absolute-form target", raw: "GET http://example.com/req?q=1 HTTP/1.1\r\nHost: other.example.com\r\n\r\n", alive: true},
		{name: "asterisk OPTIONS", raw: "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", alive: true},
		{name: "CONNECT", raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", alive: true},
		{name: "method FOO", raw: req("FOO", "/req", ""), alive: true},
		{name: "lower-case method", raw: req("get", "/req", ""), alive: true},
		{name: "malformed header line", raw: req("GET", "/req", "", "NoColonHere"), alive: false},
		{name: "space before colon", raw: req("GET", "/req", "", "X-Foo : bar"), alive: false},
		{name: "NUL in a value", raw: req("GET", "/req", "", "X-Foo: a\x00b"), alive: false},
		{name: "folded header line", raw: req("GET", "/req", "", "X-Fold: a", " b"), alive: true},
		{name: "double space in request line", raw: "GET  /req HTTP/1.1\r\nHost: example.com\r\n\r\n", alive: false},
		{name: "bare LF line ends", raw: "GET /req HTTP/1.1\nHost: example.com\nX-A: 1\n\n", alive: true},
		{name: "bare LF after CRLF lines", raw: "GET /req HTTP/1.1\r\nHost: example.com\r\n\n", alive: true},
		{name: "Plain refuses", raw: req("GET", "/refused", ""), alive: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = strings.ToUpper(tc.raw[:strings.IndexByte(tc.raw, ' ')])
			}
			var first [2]*reply
			for i, addr := range []string{std, lean} {
				server := []string{"std", "lean"}[i]
				c := dial(t, addr)
				c.send(tc.raw + ping)
				r, err := c.next(method)
				if err != nil {
					t.Fatalf("%s: %v", server, err)
				}
				first[i] = r
				pong, err := c.next("GET")
				pipelined := err == nil && string(pong.body) == "pong"
				if pipelined != tc.alive {
					t.Errorf("%s: pipelined request answered = %v, want %v", server, pipelined, tc.alive)
				}
				if !pipelined {
					continue
				}
				later, who := c.alive()
				if !later {
					t.Errorf("%s: later request not answered", server)
				}
				if i == 1 && (pong.who() != "fallback" || who != "fallback") {
					t.Errorf("after the hand-off: served by %q then %q, want fallback", pong.who(), who)
				}
			}
			if std, lean := first[0].who(), first[1].who(); lean != "fallback" && (lean != "" || std != "") {
				t.Errorf("served by %q (net/http alone: %q), want the fallback", lean, std)
			}
			compareReplies(t, first[0], first[1])
			if first[0].infos != first[1].infos {
				t.Errorf("1xx answers: std %d, lean %d", first[0].infos, first[1].infos)
			}
			if (first[0].TransferEncoding == nil) != (first[1].TransferEncoding == nil) || first[0].ContentLength != first[1].ContentLength {
				t.Errorf("framing: std %q %d, lean %q %d", first[0].TransferEncoding, first[0].ContentLength, first[1].TransferEncoding, first[1].ContentLength)
			}
		})
	}
}

// TestHandOffMidConnection protects a hand-off after plain requests were
// served on the connection, in the middle of a pipeline: no request is
// lost, each is answered once, in order, and from the hand-off on by the
// fallback.
func TestHandOffMidConnection(t *testing.T) {
	std, lean := startBoth(t, app(), refusePath)
	raw := req("GET", "/req?1", "") +
		req("POST", "/req?2", "two") +
		"GET /req?3 HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n" +
		req("GET", "/req?4", "") +
		"POST /req?5 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfive\r\n0\r\n\r\n" +
		req("GET", "/refused", "") +
		req("GET", "/req?7", "")
	methods := []string{"GET", "POST", "GET", "GET", "POST", "GET", "GET"}
	wantBy := []string{"lean", "lean", "fallback", "fallback", "fallback", "fallback", "fallback"}
	var rs [2][]*reply
	for i, addr := range []string{std, lean} {
		c := dial(t, addr)
		// Split the pipeline across writes, the hand-off in the middle of one.
		cut := strings.Index(raw, "?3 HTTP/1.0") + 5
		c.send(raw[:cut])
		time.Sleep(20 * time.Millisecond)
		rs[i] = c.do(raw[cut:], methods...)
	}
	for i := range methods {
		compareReplies(t, rs[0][i], rs[1][i])
		if got := rs[1][i].who(); got != wantBy[i] {
			t.Errorf("request %d served by %q, want %q", i+1, got, wantBy[i])
		}
		if want := fmt.Sprintf("/req?%d ", i+1); i != 5 && !strings.Contains(string(rs[1][i].body), want) {
			t.Errorf("request %d answered with %q", i+1, rs[1][i].body)
		}
	}
}

// TestHeadSizeLimit protects the 4 KiB boundary: a head that fits the
// read buffer exactly is served by leanhttp, one byte more goes to the
// fallback, and both get the same answer.
func TestHeadSizeLimit(t *testing.T) {
	std, lean := startBoth(t, app(), nil)
	base := req("GET", "/req", "", "X-Pad: ")
	for _, tc := range []struct {
		size int
		by   string
	}{{readBufferSize, "lean"}, {readBufferSize + 1, "fallback"}} {
		raw := req("GET", "/req", "", "X-Pad: "+strings.Repeat("p", tc.size-len(base)))
		if len(raw) != tc.size {
			t.Fatalf("head of %d bytes, want %d", len(raw), tc.size)
		}
		a := dial(t, std).do(raw, "GET")[0]
		b := dial(t, lean).do(raw, "GET")[0]
		compareReplies(t, a, b)
		if b.who() != tc.by {
			t.Errorf("%d-byte head served by %q, want %q", tc.size, b.who(), tc.by)
		}
	}
}

// TestNoFallback protects a server without Fallback: a connection it
// would hand off is closed, and the server goes on serving others.
func TestNoFallback(t *testing.T) {
	ls := startLean(t, app(), func(s *Server) { s.Fallback = nil })
	c := dial(t, ls.addr)
	c.send("GET / HTTP/1.0\r\n\r\n")
	if !c.eof(5 * time.Second) {
		t.Error("connection not closed")
	}
	if ok, who := dial(t, ls.addr).alive(); !ok || who != "lean" {
		t.Errorf("other connection: alive %v, served by %q", ok, who)
	}
}

// TestBareLFHead protects a client ending its head's lines with a bare LF,
// which net/http accepts: it is answered (by the fallback) rather than
// left waiting for the CRLF CRLF leanhttp frames heads with.
func TestBareLFHead(t *testing.T) {
	std, lean := startBoth(t, app(), nil)
	for _, raw := range []string{
		"GET /req HTTP/1.1\nHost: example.com\n\n",
		"GET /req HTTP/1.1\r\nHost: example.com\r\n\n",
	} {
		var rs []*reply
		for _, addr := range []string{std, lean} {
			c := dial(t, addr)
			_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
			rs = append(rs, c.do(raw, "GET")...)
		}
		compareReplies(t, rs[0], rs[1])
		if rs[1].who() != "fallback" {
			t.Errorf("%q served by %q", raw, rs[1].who())
		}
	}
}

// TestReplayConn protects the bytes leanhttp read before a hand-off: the
// fallback reads them first, in as many reads as its buffer needs, then
// the connection; and the wrapper still half-closes the TCP connection.
func TestReplayConn(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- nc
	}()
	c := dial(t, ln.Addr().String())
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()
	_ = server.SetDeadline(time.Now().Add(ioTimeout))
	rc := &replayConn{Conn: server, pending: []byte("already read;")}
	c.send(" then the wire")
	_ = c.nc.(*net.TCPConn).CloseWrite()
	var got []byte
	buf := make([]byte, 4)
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "already read; then the wire" {
		t.Errorf("read %q", got)
	}
	if err := rc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if !c.eof(5 * time.Second) {
		t.Error("CloseWrite did not half-close the connection")
	}
	if _, err := rc.SyscallConn(); err != nil {
		t.Errorf("SyscallConn: %v", err)
	}
}
