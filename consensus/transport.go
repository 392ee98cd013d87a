package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Paths of the peer transport, mounted under /raft/ on the peer listener.
const (
	RaftPrefix       = "/raft/"
	raftMessagePath  = "/raft/message"
	raftSnapshotPath = "/raft/snapshot"
	raftProbingPath  = "/raft/probing"
)

// Headers of every transport request.
const (
	headerClusterID = "X-Etcd-Cluster-Id" // sender's cluster ID, lowercase hex
	headerFrom      = "X-Server-From"     // sender's member ID, hex
	headerTo        = "X-Raft-To"         // receiver's member ID, hex
	contentType     = "application/x-cairn-raft"
)

// Receiver is what the transport delivers to: satisfied by *Node.
type Receiver interface {
	Step(ctx context.Context, m *raftpb.Message) error
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, failed bool)
	// IsRemoved reports whether id was removed from the cluster: its
	// traffic is refused with 410 Gone.
	IsRemoved(id uint64) bool
	// ReportRemoved is called when a peer refuses this member's traffic
	// because it was removed.
	ReportRemoved()
}

// TransportConfig configures NewHTTPTransport.
type TransportConfig struct {
	// ID and ClusterID identify this member; every request carries both
	// and the receiver refuses a cluster ID other than its own.
	ID, ClusterID uint64
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the transport's metrics; may be nil.
	Registerer prometheus.Registerer
	// QueueSize bounds each peer's queue of messages; past it messages
	// are dropped and the peer reported unreachable. 0 means 4096.
	QueueSize int
	// MaxBatchBytes bounds one POST of messages; 0 means 4 MiB.
	MaxBatchBytes int
	// DialTimeout; 0 means 1 s.
	DialTimeout time.Duration
	// MessageTimeout bounds one POST of messages; 0 means 5 s.
	MessageTimeout time.Duration
	// SnapshotTimeout bounds one snapshot transfer; 0 means 10 min.
	SnapshotTimeout time.Duration
	// MaxSnapshotBytes bounds a received snapshot; 0 means 4 GiB.
	MaxSnapshotBytes int64
	// SnapshotStage, when set, receives snapshots into files instead of
	// memory; Config.SnapshotStage of the member must be the same.
	SnapshotStage *SnapshotStage
	// ProbeInterval: a peer that saw no successful request for this long
	// is probed (GET /raft/probing), so that ActiveSince is meaningful
	// between followers too. 0 means 1 s.
	ProbeInterval time.Duration
	// RoundTripper overrides the HTTP client transport (tests).
	RoundTripper http.RoundTripper
	// Filter is a test seam for partitions, off by default (nil lets
	// everything through). When set, it is asked before every request to
	// a peer — message batches, snapshots, probes, stream dials — and
	// before every batch written to the peer's stream, with this member's
	// ID and the peer's; false fails the request at once, as if the peer
	// were unreachable. Cutting both directions of a link takes both
	// members' filters (messages go sender → receiver).
	Filter func(from, to uint64) bool
}

func (c *TransportConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = time.Second
	}
	if c.MessageTimeout <= 0 {
		c.MessageTimeout = 5 * time.Second
	}
	if c.SnapshotTimeout <= 0 {
		c.SnapshotTimeout = 10 * time.Minute
	}
	if c.MaxSnapshotBytes <= 0 {
		c.MaxSnapshotBytes = 4 << 30
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
	}
}

// HTTPTransport carries raft messages between members over HTTP on their
// peer URLs. Each peer has one sender goroutine with a bounded queue: Send
// never blocks, it drops (and reports the peer unreachable) when the
// queue is full. The sender takes everything queued at once and sends it
// as one batch of length-prefixed protobuf frames: on the stream the peer
// keeps open to this member (stream.go) when there is one, else as a POST
// over a keep-alive connection; a failed POST reports the peer
// unreachable. Snapshots go
// through their own goroutine, streamed in chunks, and their outcome is
// reported with ReportSnapshot.
//
// The receiving side (Handler) refuses requests from another cluster
// (412, with both IDs in the text), for another member (412), and from a
// removed member (410, which stops that member), and steps everything
// else into the Receiver without blocking.
type HTTPTransport struct {
	cfg    TransportConfig
	log    *slog.Logger
	client *http.Client
	recv   atomic.Pointer[receiverBox]
	met    *transportMetrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// streamsCtx ends the streams peers opened to this member (stream.go).
	streamsCtx    context.Context
	streamsCancel context.CancelFunc

	mu     sync.Mutex
	peers  map[uint64]*peer
	closed bool

	sendApp, recvApp statsQueue // MsgApp traffic for /v2/stats/self
	sendAppCount     atomic.Uint64
	recvAppCount     atomic.Uint64
}

type receiverBox struct{ r Receiver }

// NewHTTPTransport returns a transport with no peers; Attach a receiver,
// mount Handler on the peer listener, and add peers.
func NewHTTPTransport(cfg TransportConfig) (*HTTPTransport, error) {
	cfg.setDefaults()
	met, err := newTransportMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consensus: register transport metrics: %w", err)
	}
	rt := cfg.RoundTripper
	if rt == nil {
		rt = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.SnapshotTimeout,
			DisableCompression:    true,
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	streamsCtx, streamsCancel := context.WithCancel(ctx)
	return &HTTPTransport{
		cfg:           cfg,
		log:           cfg.Logger,
		client:        &http.Client{Transport: rt},
		met:           met,
		ctx:           ctx,
		cancel:        cancel,
		streamsCtx:    streamsCtx,
		streamsCancel: streamsCancel,
		peers:         make(map[uint64]*peer),
	}, nil
}

// Attach sets the receiver of incoming messages and of delivery reports.
// Until then incoming requests get 503 and reports are dropped.
func (t *HTTPTransport) Attach(r Receiver) { t.recv.Store(&receiverBox{r}) }

func (t *HTTPTransport) receiver() Receiver {
	if b := t.recv.Load(); b != nil {
		return b.r
	}
	return nil
}

func (t *HTTPTransport) reportUnreachable(id uint64) {
	if r := t.receiver(); r != nil {
		r.ReportUnreachable(id)
	}
}

func (t *HTTPTransport) reportSnapshot(id uint64, failed bool) {
	if r := t.receiver(); r != nil {
		r.ReportSnapshot(id, failed)
	}
}

// Send queues msgs for their peers. It never blocks.
func (t *HTTPTransport) Send(msgs []*raftpb.Message) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			t.SendSnapshot(m, nil)
			continue
		}
		if closed {
			continue
		}
		to := m.GetTo()
		p := t.peer(to)
		if p == nil {
			t.log.Debug("message to an unknown peer dropped", "type", m.GetType().String(), "to", hexID(to))
			t.reportUnreachable(to)
			continue
		}
		select {
		case p.queue <- m:
		default:
			t.met.dropped.WithLabelValues(p.hex).Inc()
			p.stats.fail(1)
			t.reportUnreachable(to)
		}
	}
}

// SendSnapshot sends a MsgSnap in the peer's snapshot goroutine. With src,
// its data is still to be exported from src, in that goroutine rather than
// the caller's; nil src means m carries its data (Send passes those). It
// never blocks; src is released once the snapshot was sent or dropped.
func (t *HTTPTransport) SendSnapshot(m *raftpb.Message, src *SnapshotSource) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	to := m.GetTo()
	p := t.peer(to)
	if closed || p == nil {
		if src != nil {
			src.Release()
		}
		t.reportSnapshot(to, true)
		if !closed {
			t.log.Debug("snapshot to an unknown peer dropped", "to", hexID(to))
			t.reportUnreachable(to)
		}
		return
	}
	p.sendSnapshot(m, src)
}

func (t *HTTPTransport) peer(id uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id]
}

// AddPeer starts sending to member id at urls (the first that answers).
// Adding a known peer updates its URLs. This member itself is ignored.
func (t *HTTPTransport) AddPeer(id uint64, urls []string) {
	if id == t.cfg.ID || id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setURLs(urls)
		return
	}
	p := newPeer(t, id, urls)
	t.peers[id] = p
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		p.run()
	}()
	go func() {
		defer t.wg.Done()
		p.readStreams()
	}()
	t.log.Debug("peer added", "peer", p.hex, "urls", urls)
}

// UpdatePeer replaces the URLs of peer id (adding it if unknown).
func (t *HTTPTransport) UpdatePeer(id uint64, urls []string) { t.AddPeer(id, urls) }

// RemovePeer stops sending to id; queued messages are dropped.
func (t *HTTPTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if ok {
		p.stop()
		t.met.forget(p.hex)
		t.log.Debug("peer removed", "peer", p.hex)
	}
}

// ActiveSince is when the current run of successful requests to id began;
// zero when the last request failed or none was made.
func (t *HTTPTransport) ActiveSince(id uint64) time.Time {
	if p := t.peer(id); p != nil {
		return p.activeSince()
	}
	return time.Time{}
}

// Close stops every sender, aborts requests in flight and waits for the
// goroutines. Safe to call more than once.
func (t *HTTPTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	peers := t.peers
	t.peers = make(map[uint64]*peer)
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.streamsCancel()
	t.cancel()
	t.wg.Wait()
	t.client.CloseIdleConnections()
	return nil
}

// TransportStats are the counters of /v2/stats/self.
type TransportStats struct {
	RecvAppendRequestCnt uint64
	RecvPkgRate          float64
	RecvBandwidthRate    float64
	SendAppendRequestCnt uint64
	SendPkgRate          float64
	SendBandwidthRate    float64
}

// Stats returns the append-message counters and recent rates.
func (t *HTTPTransport) Stats() TransportStats {
	var s TransportStats
	now := time.Now()
	s.RecvAppendRequestCnt = t.recvAppCount.Load()
	s.RecvPkgRate, s.RecvBandwidthRate = t.recvApp.rate(now)
	s.SendAppendRequestCnt = t.sendAppCount.Load()
	s.SendPkgRate, s.SendBandwidthRate = t.sendApp.rate(now)
	return s
}

// PeerLatency is one follower's entry of /v2/stats/leader: the round trip
// of message batches in milliseconds, and messages delivered or lost.
type PeerLatency struct {
	Current, Average, StandardDeviation, Minimum, Maximum float64
	Fail, Success                                         uint64
}

// PeerStats returns every peer's latency and counts.
func (t *HTTPTransport) PeerStats() map[uint64]PeerLatency {
	t.mu.Lock()
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	out := make(map[uint64]PeerLatency, len(peers))
	for _, p := range peers {
		out[p.id] = p.stats.snapshot()
	}
	return out
}

// Handler serves the transport's paths (mount it at RaftPrefix).
func (t *HTTPTransport) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(raftMessagePath, t.serveMessages)
	mux.HandleFunc(raftStreamPath, t.serveStream)
	mux.HandleFunc(raftSnapshotPath, t.serveSnapshot)
	mux.HandleFunc(raftProbingPath, t.serveProbing)
	return mux
}

// checkRequest applies the identity checks every transport request goes
// through and returns the sender's ID.
func (t *HTTPTransport) checkRequest(w http.ResponseWriter, r *http.Request, method string) (uint64, Receiver, bool) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return 0, nil, false
	}
	from, _ := strconv.ParseUint(r.Header.Get(headerFrom), 16, 64)
	if got := r.Header.Get(headerClusterID); got != hexID(t.cfg.ClusterID) {
		msg := fmt.Sprintf("cluster ID mismatch: member %s belongs to cluster %s, the request from member %s came from cluster %q",
			hexID(t.cfg.ID), hexID(t.cfg.ClusterID), hexID(from), got)
		t.log.Warn("refused peer request from another cluster", "from", hexID(from), "remote-cluster", got, "local-cluster", hexID(t.cfg.ClusterID), "remote-addr", r.RemoteAddr)
		http.Error(w, msg, http.StatusPreconditionFailed)
		return 0, nil, false
	}
	if to := r.Header.Get(headerTo); to != "" && to != hexID(t.cfg.ID) {
		msg := fmt.Sprintf("member ID mismatch: the request is for member %s, this is member %s", to, hexID(t.cfg.ID))
		http.Error(w, msg, http.StatusPreconditionFailed)
		return 0, nil, false
	}
	recv := t.receiver()
	if recv == nil {
		http.Error(w, "raft member not started", http.StatusServiceUnavailable)
		return 0, nil, false
	}
	if from != 0 && recv.IsRemoved(from) {
		http.Error(w, fmt.Sprintf("member %s was removed from the cluster", hexID(from)), http.StatusGone)
		return 0, nil, false
	}
	return from, recv, true
}

func (t *HTTPTransport) serveMessages(w http.ResponseWriter, r *http.Request) {
	from, recv, ok := t.checkRequest(w, r, http.MethodPost)
	if !ok {
		return
	}
	var bytesIn int
	err := readMessages(r.Body, func(m *raftpb.Message) error {
		n, err := t.stepFrom(r.Context(), recv, from, m)
		bytesIn += n
		return err
	})
	t.met.received.WithLabelValues(hexID(from)).Add(float64(bytesIn))
	switch {
	case errors.Is(err, ErrStopped):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case err != nil:
		t.log.Warn("bad peer message batch", "from", hexID(from), "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (t *HTTPTransport) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	from, recv, ok := t.checkRequest(w, r, http.MethodPost)
	if !ok {
		return
	}
	start := time.Now()
	stage := t.cfg.SnapshotStage
	m, size, err := readSnapshot(r.Body, t.cfg.MaxSnapshotBytes, stage)
	if err == nil && (m.GetTo() != t.cfg.ID || (from != 0 && m.GetFrom() != from)) {
		err = fmt.Errorf("%w: snapshot from %s to %s on a connection from %s", errBadFrame, hexID(m.GetFrom()), hexID(m.GetTo()), hexID(from))
		stage.drop(m.GetSnapshot().GetData())
	}
	if err != nil {
		t.log.Warn("bad snapshot from peer", "from", hexID(from), "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t.met.received.WithLabelValues(hexID(from)).Add(float64(size))
	t.log.Info("received snapshot", "from", hexID(from), "index", m.GetSnapshot().GetMetadata().GetIndex(), "bytes", size,
		"staged", stage != nil, "took", time.Since(start))
	if err := recv.Step(r.Context(), m); err != nil {
		stage.drop(m.GetSnapshot().GetData())
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *HTTPTransport) serveProbing(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := t.checkRequest(w, r, http.MethodGet); !ok {
		return
	}
	b, _ := json.Marshal(struct {
		OK  bool
		Now time.Time
	}{true, time.Now()})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// peer is one remote member: its queue, sender goroutine and statistics.
type peer struct {
	t     *HTTPTransport
	id    uint64
	hex   string
	queue chan *raftpb.Message
	ctx   context.Context
	stopc context.CancelFunc

	mu        sync.Mutex
	urls      []string
	urlIdx    int
	active    time.Time // start of the current run of successes; zero after a failure
	lastOK    time.Time
	lastProbe time.Time
	failing   bool
	lastWarn  time.Time

	snapBusy atomic.Bool
	stats    latencyStats
	out      atomic.Pointer[outStream] // the stream the peer opened to this member, if any
}

func newPeer(t *HTTPTransport, id uint64, urls []string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	p := &peer{t: t, id: id, hex: hexID(id), queue: make(chan *raftpb.Message, t.cfg.QueueSize), ctx: ctx, stopc: cancel}
	p.stats.init()
	p.setURLs(urls)
	return p
}

func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls = slices.Clone(urls)
	p.urlIdx = 0
}

func (p *peer) url() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.urls) == 0 {
		return ""
	}
	return p.urls[p.urlIdx%len(p.urls)]
}

func (p *peer) stop() { p.stopc() }

func (p *peer) activeSince() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// succeeded records a successful request.
func (p *peer) succeeded() {
	p.mu.Lock()
	now := time.Now()
	if p.active.IsZero() {
		p.active = now
	}
	p.lastOK = now
	recovered := p.failing
	p.failing = false
	p.mu.Unlock()
	if recovered {
		p.t.log.Info("peer reachable again", "peer", p.hex)
	}
}

// failed records a failed request: the next one tries the next URL. The
// first failure of a run is logged as a warning, later ones at most every
// 30 s.
func (p *peer) failed(err error) {
	p.mu.Lock()
	p.active = time.Time{}
	p.urlIdx++
	now := time.Now()
	warn := !p.failing || now.Sub(p.lastWarn) > 30*time.Second
	p.failing = true
	if warn {
		p.lastWarn = now
	}
	p.mu.Unlock()
	if p.ctx.Err() != nil {
		return // stopping: not worth a word
	}
	if warn {
		p.t.log.Warn("peer unreachable", "peer", p.hex, "err", err)
	} else {
		p.t.log.Debug("peer unreachable", "peer", p.hex, "err", err)
	}
}

// run is the sender goroutine: it takes everything queued and sends it as
// one batch, on the peer's stream when it has one and as a POST otherwise,
// and repeats. It probes the peer every ProbeInterval while it is idle or
// on the stream (whose writes measure no round trip).
func (p *peer) run() {
	cfg := &p.t.cfg
	probe := time.NewTicker(cfg.ProbeInterval)
	defer probe.Stop()
	var batch []*raftpb.Message
	var buf []byte
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-probe.C:
			p.mu.Lock()
			due := time.Since(p.lastOK) >= cfg.ProbeInterval || time.Since(p.lastProbe) >= cfg.ProbeInterval
			p.mu.Unlock()
			if due {
				p.probe()
			}
			continue
		case m := <-p.queue:
			batch = append(batch[:0], m)
		}
		size := 0
	drain:
		for size < cfg.MaxBatchBytes {
			select {
			case m := <-p.queue:
				batch = append(batch, m)
				size += proto.Size(m)
			default:
				break drain
			}
		}
		buf = buf[:0]
		n, apps, appBytes := 0, 0, 0
		for i, m := range batch {
			before := len(buf)
			var err error
			buf, err = appendFrame(buf, m)
			if err != nil {
				p.t.log.Error("message not sent", "peer", p.hex, "err", err)
			} else {
				n++
				if m.GetType() == raftpb.MsgApp {
					apps++
					appBytes += len(buf) - before - 4
				}
			}
			batch[i] = nil
		}
		if n == 0 {
			continue
		}
		if !p.writeStream(buf) {
			start := time.Now()
			if err := p.post(buf); err != nil {
				p.failed(err)
				p.stats.fail(uint64(n))
				p.t.met.failures.WithLabelValues(p.hex).Inc()
				p.t.reportUnreachable(p.id)
				continue
			}
			p.stats.succeed(time.Since(start), uint64(n))
			p.t.met.batches.WithLabelValues(p.hex, "post").Inc()
		} else {
			p.stats.count(uint64(n))
			p.t.met.batches.WithLabelValues(p.hex, "stream").Inc()
		}
		p.succeeded()
		p.t.met.sent.WithLabelValues(p.hex).Add(float64(len(buf)))
		if apps > 0 {
			p.t.sendAppCount.Add(uint64(apps))
			p.t.sendApp.add(time.Now(), appBytes)
		}
		if cap(buf) > 4*cfg.MaxBatchBytes {
			buf = nil // do not keep a huge buffer around
		}
	}
}

// allowed asks TransportConfig.Filter whether traffic to the peer may go.
func (p *peer) allowed() bool {
	f := p.t.cfg.Filter
	return f == nil || f(p.t.cfg.ID, p.id)
}

// errFiltered fails a request that TransportConfig.Filter refused.
var errFiltered = errors.New("traffic to this peer is cut by the transport filter")

// errRemoved marks a 410 answer.
var errRemoved = errors.New("this member was removed from the cluster")

// post sends one batch of frames.
func (p *peer) post(body []byte) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.MessageTimeout)
	defer cancel()
	return p.do(ctx, http.MethodPost, raftMessagePath, bytes.NewReader(body))
}

// writeStream sends a batch on the peer's stream and reports whether it
// did; a failed write drops the stream (the caller falls back to a POST).
func (p *peer) writeStream(buf []byte) bool {
	s := p.out.Load()
	if s == nil {
		return false
	}
	if !p.allowed() {
		return false // the POST fails the same way
	}
	if err := s.write(buf, p.t.cfg.MessageTimeout); err != nil {
		p.detachStream(s)
		p.t.log.Debug("peer stream dropped; sending single batches", "peer", p.hex, "err", err)
		return false
	}
	return true
}

// probe asks the peer for /raft/probing; its round trip is the latency of
// /v2/stats/leader while batches go over the stream.
func (p *peer) probe() {
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.ProbeInterval+p.t.cfg.DialTimeout)
	defer cancel()
	start := time.Now()
	p.mu.Lock()
	p.lastProbe = start
	p.mu.Unlock()
	if err := p.do(ctx, http.MethodGet, raftProbingPath, nil); err != nil {
		p.failed(err)
		return
	}
	p.stats.succeed(time.Since(start), 0)
	p.succeeded()
}

// do sends one request to the peer's current URL and interprets the
// answer: 2xx is success, 410 means this member was removed (reported),
// 412 a cluster or member mismatch (logged as an error: a configuration
// mistake), anything else a failure.
func (p *peer) do(ctx context.Context, method, path string, body io.Reader) error {
	if !p.allowed() {
		return errFiltered
	}
	base := p.url()
	if base == "" {
		return errors.New("no peer URL")
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	p.setHeaders(req)
	resp, err := p.t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
		return nil
	}
	return p.refusal(resp, base)
}

// setHeaders sets the identity headers of a request to the peer.
func (p *peer) setHeaders(req *http.Request) {
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(headerClusterID, hexID(p.t.cfg.ClusterID))
	req.Header.Set(headerFrom, hexID(p.t.cfg.ID))
	req.Header.Set(headerTo, p.hex)
}

// refusal interprets a non-2xx answer of the peer at base: 410 means this
// member was removed (reported), 412 a cluster or member mismatch (logged
// as an error: a configuration mistake).
func (p *peer) refusal(resp *http.Response, base string) error {
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	switch {
	case resp.StatusCode == http.StatusGone:
		p.t.log.Error("a peer says this member was removed from the cluster", "peer", p.hex, "answer", string(bytes.TrimSpace(text)))
		if r := p.t.receiver(); r != nil {
			r.ReportRemoved()
		}
		return errRemoved
	case resp.StatusCode == http.StatusPreconditionFailed:
		err := fmt.Errorf("peer %s at %s refused this member: %s", p.hex, base, bytes.TrimSpace(text))
		p.t.log.Error("peer belongs to another cluster or member: check --initial-cluster and --initial-cluster-token", "peer", p.hex, "err", err)
		return err
	default:
		return fmt.Errorf("peer %s at %s answered %s: %s", p.hex, base, resp.Status, bytes.TrimSpace(text))
	}
}

// sendSnapshot streams m in its own goroutine (at most one per peer at a
// time) and reports the outcome to raft. With src, the goroutine first
// exports the data into m and releases src.
func (p *peer) sendSnapshot(m *raftpb.Message, src *SnapshotSource) {
	if !p.snapBusy.CompareAndSwap(false, true) {
		if src != nil {
			src.Release()
		}
		p.t.reportSnapshot(p.id, true)
		return
	}
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		defer p.snapBusy.Store(false)
		start := time.Now()
		size, err := p.postSnapshot(m, src)
		if src != nil {
			src.Release() // postSnapshot returns once the export has stopped
		}
		if err != nil {
			p.failed(err)
			p.t.log.Warn("snapshot not delivered", "peer", p.hex, "index", m.GetSnapshot().GetMetadata().GetIndex(), "err", err)
			p.t.reportUnreachable(p.id)
			p.t.reportSnapshot(p.id, true)
			return
		}
		p.succeeded()
		p.t.met.sent.WithLabelValues(p.hex).Add(float64(size))
		p.t.log.Info("snapshot delivered", "peer", p.hex, "index", m.GetSnapshot().GetMetadata().GetIndex(), "bytes", size, "took", time.Since(start))
		p.t.reportSnapshot(p.id, false)
	}()
}

// postSnapshot sends m, its data exported from src as it goes out when src
// is set, and returns the data's length. It returns only once the export
// has stopped, so the caller may release src.
func (p *peer) postSnapshot(m *raftpb.Message, src *SnapshotSource) (int64, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.SnapshotTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	type written struct {
		n   int64
		err error
	}
	done := make(chan written, 1)
	go func() {
		n, err := writeSnapshot(pw, m, src)
		pw.CloseWithError(err)
		done <- written{n, err}
	}()
	err := p.do(ctx, http.MethodPost, raftSnapshotPath, pr)
	_ = pr.CloseWithError(errors.New("snapshot request ended"))
	w := <-done
	if err == nil {
		err = w.err
	}
	return w.n, err
}

// latencyStats is one peer's entry of /v2/stats/leader (etcd's
// FollowerStats): batch round trips in milliseconds.
type latencyStats struct {
	mu                 sync.Mutex
	current, min, max  float64
	sum, sumSq, rounds float64
	success, failures  uint64
}

func (s *latencyStats) init() { s.min = math.MaxInt64 }

func (s *latencyStats) succeed(d time.Duration, msgs uint64) {
	ms := float64(d) / float64(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.success += msgs
	s.current = ms
	s.min = min(s.min, ms)
	s.max = max(s.max, ms)
	s.sum += ms
	s.sumSq += ms * ms
	s.rounds++
}

// count records msgs delivered without a round trip to measure (stream).
func (s *latencyStats) count(msgs uint64) {
	s.mu.Lock()
	s.success += msgs
	s.mu.Unlock()
}

func (s *latencyStats) fail(msgs uint64) {
	s.mu.Lock()
	s.failures += msgs
	s.mu.Unlock()
}

func (s *latencyStats) snapshot() PeerLatency {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := PeerLatency{Current: s.current, Minimum: s.min, Maximum: s.max, Success: s.success, Fail: s.failures}
	if s.rounds > 0 {
		l.Average = s.sum / s.rounds
		l.StandardDeviation = math.Sqrt(max(s.sumSq/s.rounds-l.Average*l.Average, 0))
	}
	return l
}

// statsQueue keeps the last statsQueueLen requests (time, size) and
// derives etcd's package and bandwidth rates from them: zero when the
// last one is older than a second.
type statsQueue struct {
	mu    sync.Mutex
	ring  [statsQueueLen]sample
	next  int
	count int
	total int
}

const statsQueueLen = 200

type sample struct {
	at   time.Time
	size int
}

func (q *statsQueue) add(at time.Time, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count == statsQueueLen {
		q.total -= q.ring[q.next].size
	} else {
		q.count++
	}
	q.ring[q.next].at, q.ring[q.next].size = at, size
	q.total += size
	q.next = (q.next + 1) % statsQueueLen
}

func (q *statsQueue) rate(now time.Time) (pkgs, bytes float64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count == 0 {
		return 0, 0
	}
	back := q.ring[(q.next+statsQueueLen-1)%statsQueueLen].at
	front := q.ring[(q.next+statsQueueLen-q.count)%statsQueueLen].at
	if now.Sub(back) > time.Second {
		return 0, 0
	}
	span := back.Sub(front)
	if span <= 0 {
		return 0, 0
	}
	sec := span.Seconds()
	return float64(q.count) / sec, float64(q.total) / sec
}

type transportMetrics struct {
	sent, received, failures, dropped *prometheus.CounterVec
	batches                           *prometheus.CounterVec
}

func newTransportMetrics(reg prometheus.Registerer) (*transportMetrics, error) {
	m := &transportMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "network", Name: "peer_sent_bytes_total",
			Help: "Bytes of raft messages and snapshots delivered to each peer.",
		}, []string{"To"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "network", Name: "peer_received_bytes_total",
			Help: "Bytes of raft messages and snapshots received from each peer.",
		}, []string{"From"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "network", Name: "peer_sent_failures_total",
			Help: "Failed message batches to each peer.",
		}, []string{"To"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "network", Name: "peer_dropped_messages_total",
			Help: "Messages dropped because a peer's send queue was full.",
		}, []string{"To"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "network", Name: "peer_sent_batches_total",
			Help: "Message batches delivered to each peer, by way: on the peer's stream, or as a single POST.",
		}, []string{"To", "Via"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.received, m.failures, m.dropped, m.batches} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *transportMetrics) forget(hex string) {
	m.sent.DeleteLabelValues(hex)
	m.failures.DeleteLabelValues(hex)
	m.dropped.DeleteLabelValues(hex)
	m.received.DeleteLabelValues(hex)
	m.batches.DeletePartialMatch(prometheus.Labels{"To": hex})
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
