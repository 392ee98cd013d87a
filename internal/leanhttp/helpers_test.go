package leanhttp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// servedBy is the response header the test servers use to say which of
// them ran the handler: "std" (net/http alone), "lean" (leanhttp itself)
// or "fallback" (net/http behind leanhttp, after a hand-off).
const servedBy = "X-Served-By"

// ioTimeout bounds every read and write a test client does.
const ioTimeout = 10 * time.Second

// tag runs h after recording in the response who serves it.
func tag(who string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(servedBy, who)
		h.ServeHTTP(w, r)
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startStd serves h with net/http alone and returns its address.
func startStd(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: tag("std", h), ErrorLog: quietLog()}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// leanServer is a running leanhttp.Server.
type leanServer struct {
	*Server
	addr     string
	done     chan struct{} // closed when Serve returned
	serveErr error         // what Serve returned
	log      *syncBuffer   // its ErrorLog
}

// served waits for Serve to return and returns its error.
func (ls *leanServer) served(t testing.TB) error {
	t.Helper()
	select {
	case <-ls.done:
		return ls.serveErr
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// startLean serves h with a leanhttp.Server whose fallback is a net/http
// server of the same handler; configure, when not nil, adjusts the server
// before Serve. The server is closed when the test ends.
func startLean(t testing.TB, h http.Handler, configure func(*Server)) *leanServer {
	t.Helper()
	ln := listen(t)
	logs := new(syncBuffer)
	s := &Server{
		Handler:  tag("lean", h),
		Fallback: &http.Server{Handler: tag("fallback", h), ErrorLog: quietLog()},
		ErrorLog: log.New(logs, "", 0),
	}
	if configure != nil {
		configure(s)
	}
	ls := &leanServer{Server: s, addr: ln.Addr().String(), done: make(chan struct{}), log: logs}
	go func() {
		defer close(ls.done)
		ls.serveErr = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case <-ls.done:
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after Close")
		}
	})
	return ls
}

// startBoth serves h with net/http alone and with leanhttp (refusing, if
// plain is not nil, what plain refuses) and returns their addresses.
func startBoth(t testing.TB, h http.Handler, plain func(*http.Request) bool) (std, lean string) {
	t.Helper()
	ls := startLean(t, h, func(s *Server) { s.Plain = plain })
	return startStd(t, h), ls.addr
}

// client is one raw TCP connection to a test server.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// send writes raw to the connection.
func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendAsync writes raw from another goroutine, for bodies the server may
// never read; the write error is ignored.
func (c *client) sendAsync(raw string) {
	go func() { _, _ = io.WriteString(c.nc, raw) }()
}

// reply is a response read off the wire.
type reply struct {
	*http.Response
	body    []byte
	bodyErr error // from reading the body
	infos   int   // 1xx responses skipped before it
}

func (r *reply) who() string { return r.Header.Get(servedBy) }

// next reads the next final response (to a request of method method),
// skipping 1xx answers, and its whole body.
func (c *client) next(method string) (*reply, error) {
	r := new(reply)
	for {
		resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 {
			r.Response = resp
			break
		}
		r.infos++
	}
	r.body, r.bodyErr = io.ReadAll(r.Body)
	_ = r.Body.Close()
	return r, nil
}

// do sends raw and reads one response per method in methods.
func (c *client) do(raw string, methods ...string) []*reply {
	c.t.Helper()
	c.send(raw)
	var rs []*reply
	for i, m := range methods {
		r, err := c.next(m)
		if err != nil {
			c.t.Fatalf("response %d of %q: %v", i, abbrev(raw), err)
		}
		rs = append(rs, r)
	}
	return rs
}

// alive reports whether the connection still serves requests: it sends
// a GET /ping and reports whether a pong came back, and who served it.
// A closed connection fails at once (EOF or reset), not by timing out.
func (c *client) alive() (ok bool, who string) {
	_, _ = io.WriteString(c.nc, "GET /ping HTTP/1.1\r\nHost: example.com\r\n\r\n")
	r, err := c.next(http.MethodGet)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("probe timed out: the connection neither answered nor closed")
		}
		return false, ""
	}
	return r.StatusCode == http.StatusOK && string(r.body) == "pong", r.who()
}

// eof reports whether the server closes the connection (without sending
// anything) within d.
func (c *client) eof(d time.Duration) bool {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout)) }()
	b, err := c.br.ReadByte()
	if err == nil {
		c.t.Fatalf("unexpected byte %q from the server", b)
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func abbrev(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// req builds a raw HTTP/1.1 request with a Host header, the given header
// lines, and body with its Content-Length when body is not empty.
func req(method, target string, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: example.com\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// pattern returns n bytes of lower-case letters.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// app is the handler both servers run in the tests; paths select
// behaviours.
func app() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodOptions {
			w.Header().Set("Allow", "GET, PUT, OPTIONS")
			return
		}
		switch r.URL.Path {
		case "/ping":
			_, _ = io.WriteString(w, "pong")
		case "/text", "/refused":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "hello, world\n")
		case "/sniff":
			_, _ = io.WriteString(w, "<html><body>sniffed</body></html>")
		case "/empty":
		case "/head-cl": // a HEAD handler that states the length it would send
			w.Header().Set("Content-Length", "5")
			if r.Method != http.MethodHead {
				_, _ = io.WriteString(w, "12345")
			}
		case "/form":
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = fmt.Fprintf(w, "a=%q b=%q", r.PostFormValue("a"), r.PostFormValue("b"))
		case "/req":
			writeRequestView(w, r)
		case "/ignore": // answers without reading the body
			_, _ = io.WriteString(w, "ignored")
		case "/status":
			if q.Has("ct") {
				w.Header().Set("Content-Type", "text/plain")
			}
			if q.Has("cl") {
				w.Header().Set("Content-Length", q.Get("cl"))
			}
			w.Header().Set("ETag", `"v1"`)
			code, _ := strconv.Atoi(q.Get("code"))
			w.WriteHeader(code)
			_, _ = io.WriteString(w, q.Get("body"))
		case "/big": // n bytes, in writes of w bytes (one write if 0)
			n, _ := strconv.Atoi(q.Get("n"))
			size, _ := strconv.Atoi(q.Get("w"))
			if q.Has("cl") {
				w.Header().Set("Content-Length", strconv.Itoa(n))
			}
			body := pattern(n)
			if size <= 0 {
				size = n
			}
			for len(body) > 0 {
				k := min(size, len(body))
				if _, err := w.Write(body[:k]); err != nil {
					return
				}
				body = body[k:]
			}
		case "/crlf": // header values that would split the head
			w.Header().Set("X-Evil", "a\r\nInjected: yes")
			w.Header()["X-Evil2"] = []string{"b\nInjected2: yes\r", "c\rd"}
			_, _ = io.WriteString(w, "ok")
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/headers":
			w.Header().Add("X-Multi", "1")
			w.Header().Add("X-Multi", "2")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Set-Cookie", "a=b; Path=/")
			_, _ = io.WriteString(w, "h")
		case "/date":
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
			_, _ = io.WriteString(w, "d")
		case "/short": // promises more than it writes
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abc")
		case "/late-cl": // sets Content-Length after the head is decided
			_, _ = io.WriteString(w, "abc")
			w.Header().Set("Content-Length", "10")
		case "/gzip": // an encoded body is not sniffed
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
		default:
			http.NotFound(w, r)
		}
	})
}

// writeRequestView answers with what the handler sees of r, so that the
// two servers can be compared on it too.
func writeRequestView(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "method=%s uri=%s url=%s host=%s proto=%s/%d.%d\n", r.Method, r.RequestURI, r.URL, r.Host, r.Proto, r.ProtoMajor, r.ProtoMinor)
	fmt.Fprintf(&b, "contentLength=%d close=%v body=%q err=%v\n", r.ContentLength, r.Close, body, err)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Header {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s: %q\n", k, r.Header[k])
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// compareReplies fails t unless lean's reply is what a client of std's
// gets: status, body, a Date, Connection: close, and every header
// but Date, the framing and X-Served-By; the framing may differ only where
// net/http chunks a body leanhttp sends with a Content-Length.
func compareReplies(t testing.TB, std, lean *reply) {
	t.Helper()
	if std.Status != lean.Status {
		t.Errorf("status: std %q, lean %q", std.Status, lean.Status)
	}
	if !bytes.Equal(std.body, lean.body) {
		t.Errorf("body: std %q, lean %q", abbrev(string(std.body)), abbrev(string(lean.body)))
	}
	if (std.bodyErr == nil) != (lean.bodyErr == nil) {
		t.Errorf("body read error: std %v, lean %v", std.bodyErr, lean.bodyErr)
	}
	if std.Close != lean.Close {
		t.Errorf("Connection: close: std %v, lean %v", std.Close, lean.Close)
	}
	if (std.Header.Get("Date") == "") != (lean.Header.Get("Date") == "") {
		t.Errorf("Date: std %q, lean %q", std.Header.Get("Date"), lean.Header.Get("Date"))
	} else if d := lean.Header.Get("Date"); d != "" {
		if _, err := http.ParseTime(d); err != nil {
			t.Errorf("bad Date %q", d)
		}
	}
	stdChunked := slices.Contains(std.TransferEncoding, "chunked")
	leanChunked := slices.Contains(lean.TransferEncoding, "chunked")
	stdCL, stdHasCL := std.Header["Content-Length"]
	leanCL, leanHasCL := lean.Header["Content-Length"]
	switch {
	case leanChunked && !stdChunked:
		t.Errorf("lean chunks a body net/http does not")
	case stdChunked && leanHasCL:
		if leanCL[0] != strconv.Itoa(len(lean.body)) {
			t.Errorf("lean Content-Length %v for a body of %d bytes", leanCL, len(lean.body))
		}
	case stdChunked:
		if !leanChunked {
			t.Errorf("lean has neither chunks nor a Content-Length where net/http chunks")
		}
	case stdHasCL != leanHasCL || !slices.Equal(stdCL, leanCL):
		t.Errorf("Content-Length: std %v (present %v), lean %v (present %v)", stdCL, stdHasCL, leanCL, leanHasCL)
	}
	strip := func(h http.Header) http.Header {
		h = h.Clone()
		for _, k := range []string{"Date", "Content-Length", "Transfer-Encoding", servedBy} {
			delete(h, k)
		}
		return h
	}
	if sh, lh := strip(std.Header), strip(lean.Header); !equalHeader(sh, lh) {
		t.Errorf("headers differ:\nstd  %v\nlean %v", sh, lh)
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
