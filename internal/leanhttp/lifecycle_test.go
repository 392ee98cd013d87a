package leanhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blocker is a handler for /block that signals entered and waits for
// release before answering "released"; other paths go to app.
type blocker struct {
	entered chan string // the RequestURI of each request that blocks
	release chan struct{}
	once    sync.Once
}

func newBlocker(t testing.TB) *blocker {
	b := &blocker{entered: make(chan string, 10), release: make(chan struct{})}
	t.Cleanup(b.free) // never leave a handler blocked
	return b
}

func (b *blocker) free() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/block") {
		app().ServeHTTP(w, r)
		return
	}
	b.entered <- r.RequestURI
	<-b.release
	_, _ = io.WriteString(w, "released")
}

// wait returns the RequestURI of the next request that blocks.
func (b *blocker) wait(t testing.TB) string {
	t.Helper()
	select {
	case uri := <-b.entered:
		return uri
	case <-time.After(ioTimeout):
		t.Fatal("handler not entered")
		return ""
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// shutdownAsync runs Shutdown and returns the channel of its result.
func shutdownAsync(ctx context.Context, s *Server) chan error {
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	return done
}

func waitErr(t testing.TB, ch chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(ioTimeout):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// notYet fails t if ch delivers within d.
func notYet(t testing.TB, ch chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(d):
	}
}

func refused(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = nc.Close()
	return false
}

// TestShutdownIdle protects Shutdown of an idle keep-alive connection:
// it is closed, Shutdown returns nil, Serve returns ErrServerClosed, new
// connections are refused, and Serve on another listener refuses at once.
func TestShutdownIdle(t *testing.T) {
	ls := startLean(t, app(), nil)
	c := dial(t, ls.addr)
	if ok, who := c.alive(); !ok || who != "lean" {
		t.Fatalf("alive %v by %q", ok, who)
	}
	if err := ls.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !c.eof(5 * time.Second) {
		t.Error("idle connection not closed")
	}
	if err := ls.served(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v, want ErrServerClosed", err)
	}
	if !refused(ls.addr) {
		t.Error("listener still accepts")
	}
	if err := ls.Serve(listen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownInFlight protects a request in flight during Shutdown: idle
// connections close at once, Shutdown waits for the handler, the client
// gets the whole answer, then the connection closes and Shutdown returns
// nil.
func TestShutdownInFlight(t *testing.T) {
	b := newBlocker(t)
	ls := startLean(t, b, nil)
	busy, idle := dial(t, ls.addr), dial(t, ls.addr)
	if ok, _ := idle.alive(); !ok {
		t.Fatal("idle connection does not work")
	}
	busy.send(req("GET", "/block", ""))
	b.wait(t)
	done := shutdownAsync(ctxTimeout(t, ioTimeout), ls.Server)
	if !idle.eof(5 * time.Second) {
		t.Error("idle connection not closed while a request is in flight")
	}
	notYet(t, done, 200*time.Millisecond, "Shutdown")
	if !refused(ls.addr) {
		t.Error("listener still accepts during Shutdown")
	}
	b.free()
	r, err := busy.next("GET")
	if err != nil {
		t.Fatalf("in-flight request lost: %v", err)
	}
	if r.StatusCode != 200 || string(r.body) != "released" || r.bodyErr != nil || r.who() != "lean" {
		t.Errorf("in-flight answer: %s %q %v by %q", r.Status, r.body, r.bodyErr, r.who())
	}
	if !busy.eof(5 * time.Second) {
		t.Error("connection not closed after its last answer")
	}
	if err := waitErr(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := ls.served(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestShutdownPipelined protects requests pipelined behind one in flight
// at Shutdown: the one in flight is answered with Connection: close, and
// the connection closes rather than serving the rest.
func TestShutdownPipelined(t *testing.T) {
	b := newBlocker(t)
	ls := startLean(t, b, nil)
	c := dial(t, ls.addr)
	c.send(req("GET", "/block", "") + req("GET", "/ping", ""))
	b.wait(t)
	done := shutdownAsync(ctxTimeout(t, ioTimeout), ls.Server)
	notYet(t, done, 100*time.Millisecond, "Shutdown")
	b.free()
	r, err := c.next("GET")
	if err != nil || string(r.body) != "released" || !r.Close {
		t.Fatalf("in-flight answer: %v %+v", err, r)
	}
	if _, err := c.next("GET"); err == nil {
		t.Error("pipelined request served after Shutdown")
	}
	if err := waitErr(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestShutdownTimeout protects Shutdown's bound: when a handler never
// finishes, Shutdown returns the context's error.
func TestShutdownTimeout(t *testing.T) {
	b := newBlocker(t)
	ls := startLean(t, b, nil)
	dial(t, ls.addr).send(req("GET", "/block", ""))
	b.wait(t)
	start := time.Now()
	err := ls.Shutdown(ctxTimeout(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("Shutdown returned after %v", d)
	}
}

// TestShutdownFallback protects Shutdown of connections handed off: an
// idle one is closed, one with a request in flight gets its answer, and
// Shutdown returns nil once the fallback is done.
func TestShutdownFallback(t *testing.T) {
	b := newBlocker(t)
	ls := startLean(t, b, nil)
	const keepAlive10 = "GET /text HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"
	idle := dial(t, ls.addr)
	if r := idle.do(keepAlive10, "GET")[0]; r.who() != "fallback" || r.Close {
		t.Fatalf("HTTP/1.0 keep-alive: %s by %q, close %v", r.Status, r.who(), r.Close)
	}
	busy := dial(t, ls.addr)
	busy.send("GET /block HTTP/1.0\r\nHost: example.com\r\n\r\n")
	b.wait(t)
	done := shutdownAsync(ctxTimeout(t, ioTimeout), ls.Server)
	if !idle.eof(5 * time.Second) {
		t.Error("idle handed-off connection not closed")
	}
	notYet(t, done, 200*time.Millisecond, "Shutdown")
	b.free()
	r, err := busy.next("GET")
	if err != nil || string(r.body) != "released" || r.who() != "fallback" {
		t.Fatalf("in-flight answer of the fallback: %v %+v", err, r)
	}
	if err := waitErr(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := ls.served(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestClose protects Close: every connection, idle, busy or handed off,
// is closed at once without an answer, and Serve returns ErrServerClosed.
func TestClose(t *testing.T) {
	b := newBlocker(t)
	ls := startLean(t, b, nil)
	idle := dial(t, ls.addr)
	if ok, _ := idle.alive(); !ok {
		t.Fatal("idle connection does not work")
	}
	handedOff := dial(t, ls.addr)
	if r := handedOff.do("GET /text HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "GET")[0]; r.who() != "fallback" {
		t.Fatalf("served by %q", r.who())
	}
	busy := dial(t, ls.addr)
	busy.send(req("GET", "/block", ""))
	b.wait(t)
	busyFallback := dial(t, ls.addr)
	busyFallback.send("GET /block2 HTTP/1.0\r\nHost: h\r\n\r\n")
	b.wait(t)
	if err := ls.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for name, c := range map[string]*client{"idle": idle, "handed off": handedOff, "busy": busy, "busy in fallback": busyFallback} {
		if !c.eof(5 * time.Second) {
			t.Errorf("%s connection not closed", name)
		}
	}
	if err := ls.served(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if !refused(ls.addr) {
		t.Error("listener still accepts")
	}
}

// TestPanic protects the server from a panicking handler: that connection
// is closed without an answer, the panic is logged (but not
// http.ErrAbortHandler), and other connections go on being served.
func TestPanic(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			_, _ = io.WriteString(w, "partial")
			panic("boom-1234")
		case "/abort":
			panic(http.ErrAbortHandler)
		default:
			app().ServeHTTP(w, r)
		}
	})
	ls := startLean(t, h, nil)
	other := dial(t, ls.addr)
	if ok, _ := other.alive(); !ok {
		t.Fatal("other connection does not work")
	}
	c := dial(t, ls.addr)
	c.send(req("GET", "/panic", "") + req("GET", "/ping", ""))
	if r, err := c.next("GET"); err == nil {
		t.Errorf("answer from a panicking handler: %s %q", r.Status, r.body)
	}
	if ok, who := other.alive(); !ok || who != "lean" {
		t.Errorf("other connection after the panic: %v by %q", ok, who)
	}
	if ok, _ := dial(t, ls.addr).alive(); !ok {
		t.Error("new connection after the panic does not work")
	}
	logs := ls.log.String()
	if !strings.Contains(logs, "boom-1234") || !strings.Contains(logs, "panic serving") || strings.Count(logs, "panic serving") != 1 {
		t.Errorf("log: %q", logs)
	}
	a := dial(t, ls.addr)
	a.send(req("GET", "/abort", ""))
	if !a.eof(5 * time.Second) {
		t.Error("connection of an aborted handler not closed")
	}
	if ok, _ := dial(t, ls.addr).alive(); !ok {
		t.Error("server stopped after ErrAbortHandler")
	}
	if n := strings.Count(ls.log.String(), "panic serving"); n != 1 {
		t.Errorf("ErrAbortHandler logged: %q", ls.log.String())
	}
}

// TestRequestBody protects the body a handler reads, on both servers:
// exactly Content-Length bytes then io.EOF, http.ErrBodyReadAfterClose
// after Close, and io.ErrUnexpectedEOF when the client sends less and
// closes.
func TestRequestBody(t *testing.T) {
	results := make(chan string, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, r.ContentLength+10)
		n, err := io.ReadFull(r.Body, buf[:r.ContentLength])
		res := fmt.Sprintf("read %q %v", buf[:n], err)
		if err == nil {
			n, err = r.Body.Read(buf)
			res += fmt.Sprintf("; then %d %v", n, err)
			_ = r.Body.Close()
			n, err = r.Body.Read(buf)
			res += fmt.Sprintf("; after Close %d %v", n, err)
		}
		results <- res
		_, _ = io.WriteString(w, res)
	})
	std, lean := startBoth(t, h, nil)
	for _, addr := range []string{std, lean} {
		body := strings.Repeat("0123456789", 700) // more than one read buffer
		r := dial(t, addr).do(req("PUT", "/", body), "PUT")[0]
		want := fmt.Sprintf("read %q <nil>; then 0 %v; after Close 0 %v", body, io.EOF, http.ErrBodyReadAfterClose)
		if got := <-results; got != want {
			t.Errorf("%s: handler saw %q", r.who(), abbrev(got))
		}

		c := dial(t, addr)
		c.send("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabcd")
		time.Sleep(20 * time.Millisecond) // the head is served before the end
		_ = c.nc.(*net.TCPConn).CloseWrite()
		select {
		case got := <-results:
			if want := fmt.Sprintf("read %q %v", "abcd", io.ErrUnexpectedEOF); got != want {
				t.Errorf("%s: short body: handler saw %q, want %q", addr, got, want)
			}
		case <-time.After(ioTimeout):
			t.Fatal("handler not run")
		}
	}
}

// TestUnexpectedEOFClosesConnection protects the connection when the
// client sent less than its Content-Length and stopped: the server closes it and
// serves others.
func TestUnexpectedEOFClosesConnection(t *testing.T) {
	ls := startLean(t, app(), nil)
	c := dial(t, ls.addr)
	c.send("POST /req HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort")
	_ = c.nc.(*net.TCPConn).CloseWrite()
	r, err := c.next("POST")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.body), "unexpected EOF") || !r.Close {
		t.Errorf("answer %q, close %v", r.body, r.Close)
	}
	if !c.eof(5 * time.Second) {
		t.Error("connection not closed")
	}
}

// TestReadHeaderTimeout protects ReadHeaderTimeout: a head that stalls
// half-way is closed after it (not handed off), a head arriving in pieces
// within it is served, and a connection idle between requests is left
// alone.
func TestReadHeaderTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var handedOff atomic.Int32
	ls := startLean(t, app(), func(s *Server) {
		s.ReadHeaderTimeout = timeout
		s.Fallback.ReadHeaderTimeout = timeout
		s.Fallback.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				handedOff.Add(1)
			}
		}
	})

	idle := dial(t, ls.addr)
	slow := dial(t, ls.addr)
	stalled := dial(t, ls.addr)
	start := time.Now()
	stalled.send("GET /ping HTTP/1.1\r\nHo")
	// A head arriving in pieces, each within the timeout, is served here.
	slow.send("GET /ping HTTP/1.1\r\n")
	time.Sleep(timeout / 6)
	slow.send("Host: h\r\n")
	time.Sleep(timeout / 6)
	if r := slow.do("\r\n", "GET")[0]; r.who() != "lean" || string(r.body) != "pong" {
		t.Errorf("slow head: %s by %q", r.Status, r.who())
	}

	// The stalled connection is closed once the timeout passed, not handed
	// to net/http, whose own timeout would start again.
	if !stalled.eof(5 * time.Second) {
		t.Fatal("stalled connection not closed")
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("stalled connection closed after %v, before the timeout", d)
	}

	time.Sleep(2 * timeout)
	for range 2 {
		if ok, who := idle.alive(); !ok || who != "lean" {
			t.Fatalf("idle connection: alive %v by %q", ok, who)
		}
		time.Sleep(2 * timeout)
	}
	if n := handedOff.Load(); n != 0 {
		t.Errorf("%d connections handed off, want none", n)
	}
}

// TestReadHeaderTimeoutNoFallback protects a server without Fallback: a
// stalled head is closed after ReadHeaderTimeout.
func TestReadHeaderTimeoutNoFallback(t *testing.T) {
	ls := startLean(t, app(), func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.Fallback = nil
	})
	c := dial(t, ls.addr)
	c.send("GET / HTTP/1.1\r\n")
	if !c.eof(5 * time.Second) {
		t.Error("stalled connection not closed")
	}
}

// TestPlainSeesRequest protects what Plain and the handler are given: the
// parsed request with RemoteAddr set, and for the handler a body.
func TestPlainSeesRequest(t *testing.T) {
	type seen struct{ method, path, host, remote, ua string }
	plainSaw := make(chan seen, 1)
	handlerSaw := make(chan seen, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		handlerSaw <- seen{r.Method, r.URL.Path, r.Host, r.RemoteAddr, string(b)}
	})
	ls := startLean(t, h, func(s *Server) {
		s.Plain = func(r *http.Request) bool {
			plainSaw <- seen{r.Method, r.URL.Path, r.Host, r.RemoteAddr, r.UserAgent()}
			return true
		}
	})
	c := dial(t, ls.addr)
	c.do(req("POST", "/a/b?c", "xyz", "User-Agent: ua/1"), "POST")
	local := c.nc.LocalAddr().String()
	if got, want := <-plainSaw, (seen{"POST", "/a/b", "example.com", local, "ua/1"}); got != want {
		t.Errorf("Plain saw %+v, want %+v", got, want)
	}
	if got, want := <-handlerSaw, (seen{"POST", "/a/b", "example.com", local, "xyz"}); got != want {
		t.Errorf("handler saw %+v, want %+v", got, want)
	}
}

// TestResponseWriterRules protects the ResponseWriter contract handlers
// rely on, as net/http's: a second WriteHeader is ignored, 1xx codes are
// not final, Write on a 204 fails with ErrBodyNotAllowed, Write past the
// Content-Length fails with ErrContentLength, and codes outside 100-999
// panic.
func TestResponseWriterRules(t *testing.T) {
	errs := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/twice":
			w.WriteHeader(103)
			w.WriteHeader(202)
			w.WriteHeader(500)
			_, _ = io.WriteString(w, "accepted")
		case "/204":
			w.WriteHeader(204)
			_, err := io.WriteString(w, "x")
			errs <- fmt.Sprint(err)
		case "/cl":
			w.Header().Set("Content-Length", "2")
			_, err := io.WriteString(w, "abc")
			errs <- fmt.Sprint(err)
		case "/badcode":
			defer func() { errs <- fmt.Sprint(recover() != nil) }()
			w.WriteHeader(1000)
		}
	})
	std, lean := startBoth(t, h, nil)
	for _, tc := range []struct{ path, err string }{
		{"/twice", ""},
		{"/204", http.ErrBodyNotAllowed.Error()},
		{"/cl", http.ErrContentLength.Error()},
		{"/badcode", "true"},
	} {
		var rs []*reply
		for _, addr := range []string{std, lean} {
			rs = append(rs, dial(t, addr).do(req("GET", tc.path, ""), "GET")...)
			if tc.err != "" {
				if got := <-errs; got != tc.err {
					t.Errorf("%s on %s: %q, want %q", tc.path, rs[len(rs)-1].who(), got, tc.err)
				}
			}
		}
		switch tc.path {
		case "/cl": // an answer cut short: see TestDifferential
		case "/twice": // net/http sends the 103; leanhttp does not
			if rs[1].StatusCode != 202 || string(rs[1].body) != "accepted" || rs[1].infos != 0 {
				t.Errorf("/twice: %s %q (%d 1xx)", rs[1].Status, rs[1].body, rs[1].infos)
			}
		default:
			compareReplies(t, rs[0], rs[1])
		}
	}
}
