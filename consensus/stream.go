package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Message streams.
//
// A POST per batch costs a whole HTTP request and answer on both members,
// and only one can be in flight per peer, so a write waits for the round
// trip of the batch before it. So, as etcd does, every member keeps one
// long-lived GET /raft/stream open to each peer; the peer answers 200 and
// from then on writes its message batches to that member as frames in the
// chunked response body, one flush per batch. The sender uses the stream
// whenever one is attached and falls back to POST /raft/message when none
// is (before the peer has connected, after a failed write). Snapshots
// always travel by POST /raft/snapshot.
//
// The stream carries the same frames as a message batch, and the reader
// applies the same checks: every message is to this member and from the
// peer the stream was opened to, and none is a snapshot.

const raftStreamPath = "/raft/stream"

// Redial delays of a stream reader after a failure: doubling from the
// first to the second.
const (
	streamRedialMin = 50 * time.Millisecond
	streamRedialMax = time.Second
)

var errStreamClosed = errors.New("consensus: peer stream closed")

// outStream is a stream a peer opened to this member. Its handler stays
// parked until the stream is replaced, a write fails, or shutdown; the
// peer's sender goroutine writes batches to it meanwhile.
type outStream struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	rc     *http.ResponseController
	closed bool // the handler returned or is returning: no more writes

	done     chan struct{} // closed to release the handler
	doneOnce sync.Once
}

// write sends one batch of frames and flushes it, within timeout (a peer
// that stopped reading must not hold the sender up forever).
func (s *outStream) write(b []byte, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStreamClosed
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write to peer stream: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush peer stream: %w", err)
	}
	return nil
}

// release lets the handler return.
func (s *outStream) release() { s.doneOnce.Do(func() { close(s.done) }) }

// finish is called by the handler before it returns: it waits for a write
// in progress and refuses every later one.
func (s *outStream) finish() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.release()
}

func (p *peer) attachStream(s *outStream) {
	if old := p.out.Swap(s); old != nil {
		old.release()
	}
}

func (p *peer) detachStream(s *outStream) {
	p.out.CompareAndSwap(s, nil)
	s.release()
}

// CloseStreams ends the streams peers opened to this member, so that an
// http.Server's Shutdown does not wait for their handlers; senders fall
// back to single requests. Register it with the peer server's
// RegisterOnShutdown. Close calls it too.
func (t *HTTPTransport) CloseStreams() { t.streamsCancel() }

// serveStream answers a peer's GET /raft/stream: after the identity checks
// it answers 200 at once and parks, lending the response to the sender of
// messages to that peer.
func (t *HTTPTransport) serveStream(w http.ResponseWriter, r *http.Request) {
	from, _, ok := t.checkRequest(w, r, http.MethodGet)
	if !ok {
		return
	}
	p := t.peer(from)
	if p == nil {
		http.Error(w, fmt.Sprintf("member %s does not know member %s (yet)", hexID(t.cfg.ID), hexID(from)), http.StatusNotFound)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	s := &outStream{w: w, rc: rc, done: make(chan struct{})}
	p.attachStream(s)
	t.log.Debug("peer stream opened", "peer", p.hex)
	select {
	case <-s.done:
	case <-r.Context().Done():
	case <-p.ctx.Done():
	case <-t.streamsCtx.Done():
	}
	s.finish()
	p.detachStream(s)
}

// readStreams keeps a stream open to the peer and steps what arrives on
// it, until the peer is removed or the transport closes.
func (p *peer) readStreams() {
	delay := streamRedialMin
	for p.ctx.Err() == nil && p.t.streamsCtx.Err() == nil {
		opened, err := p.readStream()
		if opened {
			delay = streamRedialMin
		} else {
			delay = min(2*delay, streamRedialMax)
		}
		if err != nil && p.ctx.Err() == nil {
			p.t.log.Debug("peer stream ended", "peer", p.hex, "err", err)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.t.streamsCtx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// readStream opens one stream and reads it to its end. opened reports
// whether the peer accepted it.
func (p *peer) readStream() (opened bool, err error) {
	t := p.t
	if !p.allowed() {
		return false, errFiltered
	}
	recv := t.receiver()
	if recv == nil {
		return false, errors.New("no receiver attached")
	}
	base := p.url()
	if base == "" {
		return false, errors.New("no peer URL")
	}
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stop := context.AfterFunc(t.streamsCtx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+raftStreamPath, nil)
	if err != nil {
		return false, err
	}
	p.setHeaders(req)
	resp, err := t.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, p.refusal(resp, base)
	}
	var bytesIn int
	defer func() { t.met.received.WithLabelValues(p.hex).Add(float64(bytesIn)) }()
	err = readMessages(resp.Body, func(m *raftpb.Message) error {
		n, err := t.stepFrom(ctx, recv, p.id, m)
		bytesIn += n
		return err
	})
	if err == nil {
		err = io.EOF // the peer ended the stream
	}
	return true, err
}

// stepFrom checks one message that arrived from member from (0: unknown)
// and steps it. It returns the message's size, and an error that ends the
// batch or stream: a message that does not belong on it, or a stopped
// member.
func (t *HTTPTransport) stepFrom(ctx context.Context, recv Receiver, from uint64, m *raftpb.Message) (int, error) {
	size := proto.Size(m)
	if m.GetTo() != t.cfg.ID || (from != 0 && m.GetFrom() != from) {
		return size, fmt.Errorf("%w: message from %s to %s on a connection from %s", errBadFrame, hexID(m.GetFrom()), hexID(m.GetTo()), hexID(from))
	}
	if m.GetType() == raftpb.MsgSnap {
		return size, fmt.Errorf("%w: a snapshot on the message path", errBadFrame)
	}
	if m.GetType() == raftpb.MsgApp {
		t.recvAppCount.Add(1)
		t.recvApp.add(time.Now(), size)
	}
	if err := recv.Step(ctx, m); err != nil {
		if errors.Is(err, ErrStopped) {
			return size, err
		}
		t.log.Debug("incoming message dropped", "from", hexID(m.GetFrom()), "type", m.GetType().String(), "err", err)
	}
	return size, nil
}
