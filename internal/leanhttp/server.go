// Package leanhttp serves the plain requests of an HTTP/1.1 port itself
// and hands every other connection to a net/http server.
//
// A plain request is a keep-alive HTTP/1.1 request in origin form whose
// head fits in one 4 KiB buffer, with at most a Content-Length body, and
// that the owner's Plain function accepts: for the client port, every
// request but watches, Server-Sent Events and the profiler. Its handler gets
// an http.ResponseWriter that buffers the answer (streaming it chunked past
// 64 KiB) and sends the head and a small body in one write. It cannot flush,
// hijack or notice the client leaving, and the request's context is never
// cancelled, so Plain must refuse every request whose handler needs one of
// those.
//
// Anything else (HTTP/1.0, a chunked or Expect: 100-continue body, an
// Upgrade, a malformed or oversized head, a request Plain refuses) hands the
// whole connection, with the bytes already read, to Fallback, which serves
// it from then on, errors included, exactly as net/http does.
//
// The point is CPU: per request, net/http starts a background read
// goroutine, clones and sorts the response header and arms two read
// deadlines. On two cores, with a load generator beside the server, that was
// a third of the server's CPU per GET.
package leanhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Sizes of a connection's buffers.
const (
	readBufferSize = 4096     // a request head must fit in it to be served here
	streamAfter    = 64 << 10 // a longer answer is streamed instead of buffered
	maxKeptWBuf    = 64 << 10 // a larger write buffer is not kept for the next request
	// maxDiscard is how much of an unread request body is drained to keep
	// the connection; past it the connection is closed (net/http's 256 KiB).
	maxDiscard = 256 << 10
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Server serves plain requests with Handler and hands the other
// connections to Fallback.
type Server struct {
	// Handler answers the plain requests.
	Handler http.Handler
	// Plain reports whether r may be answered here. nil accepts every
	// request that reaches it.
	Plain func(r *http.Request) bool
	// Fallback serves the connections handed off; Serve runs it on an
	// internal listener. Its Handler is normally the same as Handler.
	Fallback *http.Server
	// ReadHeaderTimeout bounds reading a request head once its first
	// byte has arrived (an idle connection waits without limit, as
	// net/http's with no IdleTimeout). 0 means no limit.
	ReadHeaderTimeout time.Duration
	// ErrorLog receives handler panics and accept errors; nil means the
	// log package's standard logger.
	ErrorLog *log.Logger

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	handoff    *handoffListener // the fallback server's; nil until it runs
	inShutdown atomic.Bool
}

// Serve accepts connections on ln until Shutdown or Close, and always
// returns a non-nil error: ErrServerClosed after those.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) {
				// As net/http: back off on a transient accept failure.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("leanhttp: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc)
		if c == nil {
			_ = nc.Close()
			continue
		}
		go c.serve()
	}
}

// track registers ln and starts the fallback server on first use; false
// once the server is shutting down.
func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
	s.listeners[ln] = struct{}{}
	if s.handoff == nil && s.Fallback != nil {
		s.handoff = newHandoffListener(ln.Addr())
		go func(l *handoffListener) {
			if err := s.Fallback.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logf("leanhttp: fallback server: %v", err)
			}
		}(s.handoff)
	}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc}
	c.state.Store(stateIdle)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handOff passes c's connection, with the bytes read but not consumed, to
// the fallback server; without one it closes the connection.
func (s *Server) handOff(c *conn, pending []byte) {
	s.forget(c)
	var nc net.Conn = c.nc
	if len(pending) > 0 {
		nc = &replayConn{Conn: c.nc, pending: append([]byte(nil), pending...)}
	}
	if s.handoff == nil || !s.handoff.push(nc) {
		_ = c.nc.Close()
	}
}

// Shutdown stops accepting, closes idle connections, waits for requests in
// flight to finish (here and in Fallback) and returns; or returns ctx's
// error when ctx ends first, leaving the rest to Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.closeListeners()
	fallbackErr := make(chan error, 1)
	if s.stopHandoffs() {
		go func() { fallbackErr <- s.Fallback.Shutdown(ctx) }()
	} else {
		fallbackErr <- nil
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for wait := time.Millisecond; ; {
		if s.closeIdle() {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			wait = min(2*wait, 100*time.Millisecond)
			tick.Reset(wait)
		}
	}
	select {
	case err := <-fallbackErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, here and in
// Fallback.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		_ = c.nc.Close()
		delete(s.conns, c)
	}
	s.mu.Unlock()
	if s.stopHandoffs() {
		return s.Fallback.Close()
	}
	return nil
}

// stopHandoffs closes the handoff listener (a connection handed off from
// now on is closed) and reports whether the fallback server was started.
func (s *Server) stopHandoffs() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handoff == nil {
		return false
	}
	_ = s.handoff.Close()
	return true
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
}

// closeIdle closes the idle connections and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			_ = c.nc.Close()
			delete(s.conns, c)
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Connection states: idle between requests (Shutdown may close it), active
// while a request is read and answered, closed once Shutdown or Close
// took it.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

type conn struct {
	s      *Server
	nc     net.Conn
	r      *bufio.Reader
	state  atomic.Int32
	remote string

	wbuf   []byte      // the body being buffered
	hbuf   []byte      // the head being built (and a small body after it)
	header http.Header // the response header, cleared after each request
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler { //nolint:errorlint // sentinel value of panic
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("leanhttp: panic serving %v: %v\n%s", c.remote, v, buf)
		}
		if !handedOff {
			_ = c.nc.Close()
			c.s.forget(c)
		}
	}()
	c.remote = c.nc.RemoteAddr().String()
	c.r = bufio.NewReaderSize(c.nc, readBufferSize)
	c.header = make(http.Header, 16)
	afterPost := false
	for {
		// Idle until the first byte of the next request; as net/http,
		// skip up to 4 CR or LF bytes that old clients send after a POST.
		for skip := 0; ; skip++ {
			b, err := c.r.Peek(1)
			if err != nil {
				return
			}
			if !afterPost || skip == 4 || b[0] != '\r' && b[0] != '\n' {
				break
			}
			_, _ = c.r.Discard(1)
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		head, n, err := c.readHead()
		if err != nil {
			return // the client stalled past ReadHeaderTimeout, or left
		}
		if head == nil {
			handedOff = true
			c.s.handOff(c, c.buffered())
			return
		}
		req, ok := parseRequest(head)
		if ok {
			req.RemoteAddr = c.remote
			ok = c.s.Plain == nil || c.s.Plain(req)
		}
		if !ok {
			handedOff = true
			c.s.handOff(c, c.buffered())
			return
		}
		_, _ = c.r.Discard(n)
		afterPost = req.Method == http.MethodPost
		if !c.serveRequest(req) {
			return
		}
		c.state.Store(stateIdle)
		if c.s.inShutdown.Load() && c.state.CompareAndSwap(stateIdle, stateClosed) {
			return
		}
	}
}

// buffered is what was read from the connection and not consumed.
func (c *conn) buffered() []byte {
	b, _ := c.r.Peek(c.r.Buffered())
	return b
}

// readHead waits until the buffer holds a whole request head and returns
// it with its length, the blank line included; a nil head when the head
// does not fit in the buffer or has a line ending net/http reads
// differently (the fallback server then answers it); an error when the
// connection fails or ReadHeaderTimeout passes first (the connection is
// then closed, as net/http closes it).
func (c *conn) readHead() (head []byte, n int, err error) {
	deadline := false
	defer func() {
		if deadline {
			_ = c.nc.SetReadDeadline(time.Time{})
		}
	}()
	for scanned := 0; ; {
		b, _ := c.r.Peek(c.r.Buffered())
		if i := headEnd(b, scanned); i >= 0 {
			return b[:i], i, nil
		} else if i == -2 {
			return nil, 0, nil
		}
		scanned = max(len(b)-3, 0)
		if len(b) >= readBufferSize {
			return nil, 0, nil
		}
		if !deadline && c.s.ReadHeaderTimeout > 0 {
			deadline = true
			_ = c.nc.SetReadDeadline(time.Now().Add(c.s.ReadHeaderTimeout))
		}
		if _, err := c.r.Peek(len(b) + 1); err != nil {
			return nil, 0, err
		}
	}
}

// headEnd returns the length of the head in b up to and including its
// "\r\n\r\n", searching from from; -1 if b holds no whole head yet, -2 if
// a line ends in a bare LF first (net/http takes it for a line end, and
// the CRLF CRLF looked for here may never come).
func headEnd(b []byte, from int) int {
	for i := from; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			return -2
		}
		if i >= 3 && b[i-2] == '\n' && b[i-3] == '\r' {
			return i + 1
		}
	}
}

// serveRequest runs the handler and sends its answer; false when the
// connection must close.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	w := &response{c: c, header: c.header, contentLength: -1}
	w.head = req.Method == http.MethodHead
	if req.ContentLength > 0 {
		w.body = body{r: c.r, remaining: req.ContentLength}
		req.Body = &w.body
	} else {
		req.Body = http.NoBody
	}
	w.closeAfter = req.Close
	c.s.Handler.ServeHTTP(w, req)
	w.finish()
	clear(c.header)
	if cap(c.wbuf) > maxKeptWBuf {
		c.wbuf = nil
	}
	if cap(c.hbuf) > maxKeptWBuf {
		c.hbuf = nil
	}
	if w.bodyLeft && w.err == nil {
		c.closeWriteAndWait()
	}
	return !w.closeAfter && w.err == nil
}

// closeWriteAndWait, as net/http does when a request body is left unread,
// sends FIN and waits a little before the connection is closed: a close
// with unread bytes sends RST, which can make the client's kernel drop the
// answer (a 413, say) before the client has read it.
func (c *conn) closeWriteAndWait() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.Sleep(closeWait)
}

// closeWait is net/http's rstAvoidanceDelay.
const closeWait = 500 * time.Millisecond

// body is a request body of known length read from the connection.
type body struct {
	r         *bufio.Reader
	remaining int64
	closed    bool
	err       error
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.Read(p)
	b.remaining -= int64(n)
	switch {
	case err == io.EOF && b.remaining > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && b.remaining == 0:
		err = io.EOF
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

// drain reads what the handler left of the body, up to maxDiscard; false
// when the connection cannot be reused.
func (b *body) drain() bool {
	if b.err != nil {
		return false
	}
	if b.remaining == 0 {
		return true
	}
	if b.remaining > maxDiscard {
		return false
	}
	n, err := b.r.Discard(int(b.remaining))
	b.remaining -= int64(n)
	return err == nil
}

// replayConn is a handed-off connection whose first reads return the bytes
// the lean server had already read.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection as it does a TCP one.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn exposes the socket to code that probes a hijacked connection.
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("leanhttp: %T has no file descriptor", c.Conn)
}

// handoffListener is the fallback server's listener: Accept returns the
// connections handed off.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands nc to the fallback server; false once the listener is closed.
func (l *handoffListener) push(nc net.Conn) bool {
	select {
	case l.conns <- nc:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
