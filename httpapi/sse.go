package httpapi

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cairn/api"
)

// Server-Sent Events streams that outlive their handler.
//
// A long-lived SSE watch served inside net/http's handler keeps the
// connection's read and write buffers (8 KiB), the response's (2 KiB), the
// request, and two goroutines (the handler's, deep in the middleware
// stack, and net/http's background reader) for as long as the browser stays.
// With Options.Streams set, the handler instead writes and flushes the
// headers, hijacks the connection and hands it to one small goroutine that
// writes the chunked SSE body itself; the handler returns, and everything
// else is freed. That goroutine is the only one per SSE watcher.
//
// Nothing reads the connection any more, so a client that goes away would
// only be noticed at the next write. Instead one goroutine for all streams
// peeks at every connection every probeInterval (a non-blocking
// recv(MSG_PEEK) on Unix) and ends the streams whose client closed.

// Streams tracks the SSE streams handed off by the handler. Close ends
// them; the server calls it at shutdown after closing the watch hub and
// before closing storage (a catching-up stream reads the history).
type Streams struct {
	mu      sync.Mutex
	conns   map[net.Conn]*stream
	closing chan struct{}
	closed  bool
	probing bool
	wg      sync.WaitGroup
	n       atomic.Int64
}

// stream is one handed-off connection's state.
type stream struct {
	gone     chan struct{} // closed when the client went away
	goneOnce sync.Once
}

func (st *stream) markGone() { st.goneOnce.Do(func() { close(st.gone) }) }

// probeInterval is how often handed-off connections are checked for a
// client that went away.
const probeInterval = 2 * time.Second

// NewStreams returns an empty set of streams.
func NewStreams() *Streams {
	return &Streams{conns: map[net.Conn]*stream{}, closing: make(chan struct{})}
}

// Len is the number of streams running.
func (s *Streams) Len() int { return int(s.n.Load()) }

func (s *Streams) add(c net.Conn) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	st := &stream{gone: make(chan struct{})}
	s.conns[c] = st
	s.wg.Add(1)
	s.n.Add(1)
	if !s.probing && canProbe(c) {
		s.probing = true
		s.wg.Add(1)
		go s.probe()
	}
	return st
}

// probe ends the streams whose client went away, until Close.
func (s *Streams) probe() {
	defer s.wg.Done()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	type entry struct {
		c  net.Conn
		st *stream
	}
	var batch []entry
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		batch = batch[:0]
		s.mu.Lock()
		for c, st := range s.conns {
			batch = append(batch, entry{c, st})
		}
		s.mu.Unlock()
		for _, e := range batch {
			if peerGone(e.c) {
				e.st.markGone()
			}
		}
		clear(batch)
	}
}

func (s *Streams) done(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.n.Add(-1)
	s.wg.Done()
}

// Close tells every stream to finish, gives them grace to write their end,
// then closes whatever connections are left (a client that stopped
// reading) and waits for every stream goroutine to return.
func (s *Streams) Close(grace time.Duration) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return
	case <-time.After(grace):
	}
	s.mu.Lock()
	for c, st := range s.conns {
		st.markGone()
		_ = c.Close()
	}
	s.mu.Unlock()
	<-finished
}

var (
	chunkEnd  = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// writeChunk writes payload as one HTTP/1.1 chunk (and the last chunk
// after it with last), in one write.
func writeChunk(conn net.Conn, payload []byte, last bool) error {
	b := getBuf()
	defer putBuf(b)
	appendChunk(b, payload)
	if last {
		b.Write(lastChunk)
	}
	_, err := conn.Write(b.Bytes())
	return err
}

func appendChunk(b *bytes.Buffer, payload []byte) {
	var size [18]byte
	b.Write(strconv.AppendUint(size[:0], uint64(len(payload)), 16))
	b.Write(chunkEnd)
	b.Write(payload)
	b.Write(chunkEnd)
}

// handOffSSE hands an SSE watch to a stream goroutine. It reports false,
// having written nothing, when it cannot (no Streams, not HTTP/1.1, or the
// connection cannot be hijacked); the handler then serves the stream.
func (rt *router) handOffSSE(w http.ResponseWriter, r *http.Request, wa Watcher) bool {
	s := rt.opt.Streams
	if s == nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return false
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false // nothing was written: serve it in the handler
	}
	// The response head, as net/http would write it for a flushed
	// response of unknown length: chunked, with a Date.
	h := w.Header()
	rt.setWatchHeaders(h, true, wa.StartIndex())
	h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	h["Transfer-Encoding"] = hvChunked
	b := getBuf()
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(b)
	b.WriteString("\r\n")
	_, err = conn.Write(b.Bytes())
	putBuf(b)
	st := s.add(conn)
	if err != nil || st == nil {
		wa.Remove()
		if st != nil {
			s.done(conn)
		} else if err == nil {
			_, _ = conn.Write(lastChunk)
		}
		_ = conn.Close()
		return true
	}
	go rt.streamSSE(s, st, conn, wa)
	return true
}

var hvChunked = []string{"chunked"}

// streamSSE writes the chunked SSE body of a handed-off watch until the
// watch ends, a write fails, or the server closes the streams.
func (rt *router) streamSSE(s *Streams, st *stream, conn net.Conn, wa Watcher) {
	defer s.done(conn)
	defer conn.Close()
	defer wa.Remove()
	defer func() {
		if v := recover(); v != nil {
			rt.log.Error("panic serving an SSE stream", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	hb := time.NewTicker(rt.opt.SSEHeartbeat)
	defer hb.Stop()
	for {
		ok, more := rt.writeReady(conn, wa)
		if !ok {
			return
		}
		if more {
			continue // a full batch: there may be more without a new signal
		}
		select {
		case <-s.closing:
			_, _ = conn.Write(lastChunk)
			return
		case <-st.gone:
			return
		case <-wa.Ready():
		case <-hb.C:
			if writeChunk(conn, sseHeartbeat, false) != nil {
				return
			}
		}
	}
}

// writeReady writes, as one chunk, the events the watcher has ready (up to
// a batch), and reports whether the stream goes on and whether the batch
// was full. At the end of the watch it writes the final error event (for
// an *api.Error) and the last chunk.
func (rt *router) writeReady(conn net.Conn, wa Watcher) (ok, more bool) {
	b := getBuf()
	defer putBuf(b)
	n, events := 0, 0
	var single *api.Event // the batch's event when it has only one
	for ; n < 256; n++ {
		ev, err := wa.Next()
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) {
				appendSSEError(b, ae)
			}
			if b.Len() > 0 {
				_ = writeChunk(conn, b.Bytes(), true)
			} else {
				_, _ = conn.Write(lastChunk)
			}
			return false, false
		}
		if ev == nil {
			break
		}
		if !ev.Refresh {
			rt.appendSSEFrame(b, ev)
			events++
			single = ev
		}
	}
	if b.Len() == 0 {
		return true, n == 256
	}
	if events == 1 {
		// The common case on a busy prefix: the same event to every
		// watcher. Its whole chunk is rendered once and shared.
		if c := rt.cachedChunk(single); c != nil {
			_, err := conn.Write(c)
			return err == nil, n == 256
		}
	}
	return writeChunk(conn, b.Bytes(), false) == nil, n == 256
}

// sseFrameCache keeps the rendered frames of the newest events: every
// watcher of a busy prefix renders the same event at about the same time.
// Only events without a TTL are cached (a TTL's rendering depends on the
// clock).
type sseFrameCache struct {
	slots [64]atomic.Pointer[sseFrameEntry]
}

type sseFrameEntry struct {
	ev    *api.Event
	frame []byte
	chunk atomic.Pointer[[]byte] // frame as one HTTP/1.1 chunk, made on first use
}

// cachedChunk returns ev's frame as one chunk when ev is in the cache.
func (rt *router) cachedChunk(ev *api.Event) []byte {
	e := rt.frames.slots[ev.Index%uint64(len(rt.frames.slots))].Load()
	if e == nil || e.ev != ev {
		return nil
	}
	if c := e.chunk.Load(); c != nil {
		return *c
	}
	var b bytes.Buffer
	appendChunk(&b, e.frame)
	c := b.Bytes()
	e.chunk.Store(&c)
	return c
}

// appendSSEFrame appends ev's SSE frame, from the cache when it can.
func (rt *router) appendSSEFrame(b *bytes.Buffer, ev *api.Event) {
	if !timeless(ev) {
		appendSSEEvent(b, ev, rt.now())
		return
	}
	slot := &rt.frames.slots[ev.Index%uint64(len(rt.frames.slots))]
	if e := slot.Load(); e != nil && e.ev == ev {
		b.Write(e.frame)
		return
	}
	start := b.Len()
	appendSSEEvent(b, ev, rt.now())
	slot.Store(&sseFrameEntry{ev: ev, frame: bytes.Clone(b.Bytes()[start:])})
}

// timeless reports whether ev renders the same at any time: it has no TTL,
// or its TTLs are shown as of its own time.
func timeless(ev *api.Event) bool {
	return ev.At != 0 || !ev.HasTTL()
}
