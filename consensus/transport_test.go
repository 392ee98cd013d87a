package consensus

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

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/raft/v3/raftpb"

	"cairn/storage"
)

const testClusterID = 0xc1

// httpMember is a member whose peers talk to it over the real HTTP
// transport on a loopback listener.
type httpMember struct {
	*member
	url string
	tr  *HTTPTransport
	srv *http.Server
	ln  net.Listener
}

// listenLoopback opens a listener on addr ("127.0.0.1:0" for a new port),
// retrying briefly when the port of a stopped member is not free yet.
func listenLoopback(t *testing.T, addr string) net.Listener {
	t.Helper()
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen %s: %v", addr, err)
	return nil
}

// startHTTPMember starts a member on fs serving its transport on ln. peers
// maps every other member's ID to its URL.
func startHTTPMember(t *testing.T, fs vfs.FS, ln net.Listener, cfg Config, peers map[uint64]string, opts ...func(*TransportConfig)) *httpMember {
	t.Helper()
	tcfg := TransportConfig{ID: cfg.ID, ClusterID: testClusterID, ProbeInterval: 50 * time.Millisecond}
	for _, o := range opts {
		o(&tcfg)
	}
	tr, err := NewHTTPTransport(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	for id, u := range peers {
		tr.AddPeer(id, []string{u})
	}
	mux := http.NewServeMux()
	mux.Handle(RaftPrefix, tr.Handler())
	srv := &http.Server{Handler: mux, ErrorLog: nil}
	go func() { _ = srv.Serve(ln) }()
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 5 * time.Millisecond
	}
	cfg.Transport = tr
	m := openMember(t, fs, cfg)
	tr.Attach(m.node)
	return &httpMember{member: m, url: "http://" + ln.Addr().String(), tr: tr, srv: srv, ln: ln}
}

// stop shuts the member down in server order: listener, raft, transport,
// engine.
func (h *httpMember) stop() {
	h.t.Helper()
	_ = h.srv.Close()
	h.node.Stop()
	_ = h.tr.Close()
	if err := h.eng.Close(); err != nil {
		h.t.Errorf("close engine: %v", err)
	}
}

func memberRecord(id uint64, url string) storage.Member {
	return storage.Member{ID: id, Name: fmt.Sprintf("m%d", id), PeerURLs: []string{url}}
}

// startHTTPCluster starts n members (IDs 1..n) over loopback HTTP.
func startHTTPCluster(t *testing.T, n int, opts ...func(*Config)) ([]*httpMember, []vfs.FS) {
	t.Helper()
	lns := make([]net.Listener, n)
	var initial []storage.Member
	for i := range lns {
		lns[i] = listenLoopback(t, "127.0.0.1:0")
		initial = append(initial, memberRecord(uint64(i+1), "http://"+lns[i].Addr().String()))
	}
	fss := make([]vfs.FS, n)
	ms := make([]*httpMember, n)
	for i := range ms {
		peers := map[uint64]string{}
		for _, m := range initial {
			peers[m.ID] = m.PeerURLs[0]
		}
		cfg := Config{ID: uint64(i + 1), InitialMembers: initial}
		for _, o := range opts {
			o(&cfg)
		}
		fss[i] = vfs.NewMem()
		ms[i] = startHTTPMember(t, fss[i], lns[i], cfg, peers)
	}
	return ms, fss
}

func members(hs []*httpMember) []*member {
	out := make([]*member, 0, len(hs))
	for _, h := range hs {
		if h != nil {
			out = append(out, h.member)
		}
	}
	return out
}

// TestHTTPCluster runs three members over the real HTTP transport on
// loopback: writes on every member, quorum reads on followers, member
// records replicated from the bootstrap entries, stats, and a member that
// comes back after the others compacted their logs catches up by a
// snapshot streamed over HTTP.
func TestHTTPCluster(t *testing.T) {
	hs, fss := startHTTPCluster(t, 3, func(c *Config) { c.SnapshotCount = 40; c.SnapshotCatchUpEntries = 10 })
	defer func() {
		for _, h := range hs {
			if h != nil {
				h.stop()
			}
		}
	}()
	lead := waitLeader(t, members(hs))
	ctx := ctxTimeout(t, 60*time.Second)
	// Every member has opened its message stream to every other one (the
	// first batches may have gone as POSTs before that).
	waitFor(t, 5*time.Second, "every peer stream attached", func() bool {
		for _, h := range hs {
			for _, o := range hs {
				if o.id != h.id && h.tr.peer(o.id).out.Load() == nil {
					return false
				}
			}
		}
		return true
	})

	var wg sync.WaitGroup
	errs := make(chan error, 3*4)
	for _, h := range hs {
		for w := range 4 {
			wg.Go(func() {
				for i := range 15 {
					key := fmt.Sprintf("/m%d/w%d/%d", h.id, w, i)
					if _, err := h.node.Propose(ctx, set(key, key)); err != nil {
						errs <- fmt.Errorf("member %d %s: %w", h.id, key, err)
						return
					}
					if i%5 == 0 {
						if err := h.node.ReadBarrier(ctx); err != nil {
							errs <- fmt.Errorf("member %d read barrier: %w", h.id, err)
							return
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitConverged(t, members(hs))

	// Every member knows every member's record from the bootstrap entries.
	for _, h := range hs {
		got := h.node.Members()
		if len(got) != 3 {
			t.Fatalf("member %d knows %d members: %+v", h.id, len(got), got)
		}
		for i, m := range got {
			if m.ID != uint64(i+1) || m.Name != fmt.Sprintf("m%d", i+1) || len(m.PeerURLs) != 1 {
				t.Fatalf("member %d: record %d = %+v", h.id, i, m)
			}
		}
	}
	// The leader measured its followers; followers received appends.
	var leadHTTP *httpMember
	for _, h := range hs {
		if h.id == lead.id {
			leadHTTP = h
		}
	}
	ps := leadHTTP.tr.PeerStats()
	if len(ps) != 2 {
		t.Fatalf("leader peer stats: %+v", ps)
	}
	for id, p := range ps {
		if p.Success == 0 || p.Minimum > p.Maximum || p.Average <= 0 {
			t.Fatalf("leader's stats of %d: %+v", id, p)
		}
		if leadHTTP.tr.ActiveSince(id).IsZero() {
			t.Fatalf("leader: peer %d not active", id)
		}
	}
	if leadHTTP.tr.Stats().SendAppendRequestCnt == 0 {
		t.Fatal("leader sent no appends")
	}
	// Once the followers' streams were open, batches went over them.
	for id := range ps {
		var streamed, posted dto.Metric
		_ = leadHTTP.tr.met.batches.WithLabelValues(hexID(id), "stream").Write(&streamed)
		_ = leadHTTP.tr.met.batches.WithLabelValues(hexID(id), "post").Write(&posted)
		if s, p := streamed.GetCounter().GetValue(), posted.GetCounter().GetValue(); s <= p {
			t.Fatalf("leader to %d: %v batches on the stream, %v posted", id, s, p)
		}
	}

	// A follower goes down; the others write past two compactions; it
	// comes back on the same address and catches up by snapshot.
	var down int
	for i, h := range hs {
		if h.id != lead.id {
			down = i
			break
		}
	}
	addr := hs[down].ln.Addr().String()
	downID := hs[down].id
	hs[down].stop()
	hs[down] = nil
	for i := range 120 {
		if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/during/%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	peers := map[uint64]string{}
	for _, h := range hs {
		if h != nil {
			peers[h.id] = h.url
		}
	}
	hs[down] = startHTTPMember(t, fss[down], listenLoopback(t, addr), Config{ID: downID, SnapshotCount: 40, SnapshotCatchUpEntries: 10}, peers)
	waitConverged(t, members(hs))
	restored := hs[down].obs.restores()
	if restored == 0 {
		t.Fatal("the restarted member caught up without a snapshot")
	}
	hs[down].mustGet("/during/119", "v")
	if got := len(hs[down].node.Members()); got != 3 {
		t.Fatalf("after the snapshot the member knows %d members", got)
	}
	if _, err := hs[down].node.Propose(ctx, set("/after", "1")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, members(hs))
	for _, h := range hs {
		h.obs.check(t)
	}
}

// TestHTTPMembershipChanges adds a fourth member through a follower (it
// joins with no state and catches up from the leader), updates its peer
// URLs, then removes it and checks it stops, and checks the errors of
// refused changes.
func TestHTTPMembershipChanges(t *testing.T) {
	hs, _ := startHTTPCluster(t, 3, func(c *Config) { c.SnapshotCount = 30; c.SnapshotCatchUpEntries = 5 })
	defer func() {
		for _, h := range hs {
			if h != nil {
				h.stop()
			}
		}
	}()
	lead := waitLeader(t, members(hs))
	ctx := ctxTimeout(t, 60*time.Second)
	var follower *httpMember
	for _, h := range hs {
		if h.id != lead.id {
			follower = h
			break
		}
	}
	for i := range 50 {
		if _, err := follower.node.Propose(ctx, set(fmt.Sprintf("/before/%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}

	ln := listenLoopback(t, "127.0.0.1:0")
	newURL := "http://" + ln.Addr().String()
	if err := follower.node.AddMember(ctx, storage.Member{ID: 4, PeerURLs: []string{hs[0].url}}); !errors.Is(err, ErrPeerURLExists) {
		t.Fatalf("add with a taken peer URL: %v", err)
	}
	if err := follower.node.AddMember(ctx, storage.Member{ID: hs[0].id, PeerURLs: []string{newURL}}); !errors.Is(err, ErrIDExists) {
		t.Fatalf("add with a taken ID: %v", err)
	}
	if err := follower.node.AddMember(ctx, storage.Member{ID: 4, PeerURLs: []string{newURL}}); err != nil {
		t.Fatalf("add member 4: %v", err)
	}
	for _, h := range hs {
		waitFor(t, 5*time.Second, "member 4 in every member's records", func() bool { return len(h.node.Members()) == 4 })
	}
	peers := map[uint64]string{}
	for _, h := range hs {
		peers[h.id] = h.url
	}
	joined := startHTTPMember(t, vfs.NewMem(), ln, Config{ID: 4, Join: true, SnapshotCount: 30, SnapshotCatchUpEntries: 5}, peers)
	hs = append(hs, joined)
	waitConverged(t, members(hs))
	joined.mustGet("/before/49", "v")
	restored := joined.obs.restores()
	if restored == 0 {
		t.Fatal("the new member caught up without a snapshot (the log was compacted)")
	}
	if got := joined.node.Members(); len(got) != 4 || got[0].Name != "m1" {
		t.Fatalf("the new member's records: %+v", got)
	}
	if err := joined.node.PublishAttributes(ctx, "m4", []string{"http://client4"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		waitFor(t, 5*time.Second, "member 4's name everywhere", func() bool {
			ms := h.node.Members()
			return len(ms) == 4 && ms[3].Name == "m4" && len(ms[3].ClientURLs) == 1
		})
	}
	// It takes writes, and the cluster needs it: four voters.
	if _, err := joined.node.Propose(ctx, set("/from4", "x")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, members(hs))

	// Updating peer URLs: refused for a URL in use, accepted otherwise
	// (the transport follows; the new URL is not served, so use the old
	// one again right after).
	if err := lead.node.UpdateMember(ctx, 4, []string{hs[0].url}); !errors.Is(err, ErrPeerURLExists) {
		t.Fatalf("update to a taken URL: %v", err)
	}
	if err := lead.node.UpdateMember(ctx, 4, []string{newURL, "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "updated peer URLs", func() bool { return len(joined.node.Members()[3].PeerURLs) == 2 })

	// Remove it: it applies its own removal and stops.
	if err := follower.node.RemoveMember(ctx, 4); err != nil {
		t.Fatal(err)
	}
	select {
	case <-joined.node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the removed member did not stop")
	}
	if !errors.Is(joined.node.Err(), ErrRemoved) {
		t.Fatalf("removed member's Err: %v", joined.node.Err())
	}
	joined.srv.Close()
	_ = joined.tr.Close()
	_ = joined.eng.Close()
	hs = hs[:3]
	if err := lead.node.RemoveMember(ctx, 4); !errors.Is(err, ErrIDRemoved) {
		t.Fatalf("second removal: %v", err)
	}
	if err := lead.node.AddMember(ctx, storage.Member{ID: 4, PeerURLs: []string{newURL}}); !errors.Is(err, ErrIDRemoved) {
		t.Fatalf("re-adding a removed ID: %v", err)
	}
	if err := lead.node.RemoveMember(ctx, 99); !errors.Is(err, ErrIDNotFound) {
		t.Fatalf("removing an unknown ID: %v", err)
	}
	for _, h := range hs {
		waitFor(t, 5*time.Second, "member 4 removed everywhere", func() bool {
			return h.node.IsRemoved(4) && len(h.node.Members()) == 3
		})
	}
	// Three members still make progress.
	if _, err := follower.node.Propose(ctx, set("/after", "1")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, members(hs))
}

// fakeReceiver records what a transport delivers.
type fakeReceiver struct {
	mu          sync.Mutex
	steps       []*raftpb.Message
	unreachable atomic.Int64
	snapshots   []bool
	removed     map[uint64]bool
	gotRemoved  atomic.Bool
}

func (f *fakeReceiver) Step(_ context.Context, m *raftpb.Message) error {
	f.mu.Lock()
	f.steps = append(f.steps, m)
	f.mu.Unlock()
	return nil
}
func (f *fakeReceiver) ReportUnreachable(uint64) { f.unreachable.Add(1) }
func (f *fakeReceiver) ReportSnapshot(_ uint64, failed bool) {
	f.mu.Lock()
	f.snapshots = append(f.snapshots, failed)
	f.mu.Unlock()
}
func (f *fakeReceiver) IsRemoved(id uint64) bool { return f.removed[id] }
func (f *fakeReceiver) ReportRemoved()           { f.gotRemoved.Store(true) }

// checkInOrder fails unless the i-th message stepped carries commit i:
// none lost, none reordered.
func (f *fakeReceiver) checkInOrder(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.steps {
		if m.GetCommit() != uint64(i) {
			t.Fatalf("message %d arrived as %d: lost or reordered", i, m.GetCommit())
		}
	}
}

func (f *fakeReceiver) stepped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.steps)
}

// transportPair is a sender (ID 1) and a receiving transport (ID 2,
// cluster clusterB) behind a loopback server.
func transportPair(t *testing.T, clusterB uint64, removed map[uint64]bool, opts ...func(*TransportConfig)) (*HTTPTransport, *fakeReceiver, *fakeReceiver) {
	t.Helper()
	acfg := TransportConfig{ID: 1, ClusterID: testClusterID, ProbeInterval: 20 * time.Millisecond}
	for _, o := range opts {
		o(&acfg)
	}
	a, err := NewHTTPTransport(acfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewHTTPTransport(TransportConfig{ID: 2, ClusterID: clusterB})
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := &fakeReceiver{}, &fakeReceiver{removed: removed}
	a.Attach(ra)
	b.Attach(rb)
	ln := listenLoopback(t, "127.0.0.1:0")
	srv := &http.Server{Handler: b.Handler()}
	go func() { _ = srv.Serve(ln) }()
	a.AddPeer(2, []string{"http://" + ln.Addr().String()})
	t.Cleanup(func() {
		_ = a.Close()
		_ = srv.Close()
		_ = b.Close()
	})
	return a, ra, rb
}

func heartbeat(to uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(to), Term: new(uint64(1))}
}

func TestTransportDeliversBatchesAndSnapshots(t *testing.T) {
	a, ra, rb := transportPair(t, testClusterID, nil)
	for i := range 100 {
		m := heartbeat(2)
		m.Commit = new(uint64(i))
		a.Send([]*raftpb.Message{m})
	}
	waitFor(t, 5*time.Second, "100 messages delivered", func() bool { return rb.stepped() == 100 })
	rb.checkInOrder(t)
	data := []byte(strings.Repeat("snapshot data ", 200_000)) // ~2.8 MB: several chunks
	a.Send([]*raftpb.Message{{Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(1)),
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}}})
	waitFor(t, 10*time.Second, "snapshot delivered and reported", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.snapshots) == 1
	})
	ra.mu.Lock()
	failed := ra.snapshots[0]
	ra.mu.Unlock()
	if failed {
		t.Fatal("snapshot reported as failed")
	}
	rb.mu.Lock()
	got := rb.steps[len(rb.steps)-1]
	rb.mu.Unlock()
	if got.GetType() != raftpb.MsgSnap || string(got.GetSnapshot().GetData()) != string(data) {
		t.Fatal("snapshot data differs")
	}
	if a.ActiveSince(2).IsZero() {
		t.Fatal("peer not active after deliveries")
	}
	// Unknown peers: dropped and reported, never blocking.
	a.Send([]*raftpb.Message{heartbeat(9)})
	if ra.unreachable.Load() == 0 {
		t.Fatal("a message to an unknown peer was not reported unreachable")
	}
}

func TestTransportRefusesOtherCluster(t *testing.T) {
	a, ra, rb := transportPair(t, 0xdead, nil)
	a.Send([]*raftpb.Message{heartbeat(2)})
	waitFor(t, 5*time.Second, "the refused batch reported unreachable", func() bool { return ra.unreachable.Load() > 0 })
	if rb.stepped() != 0 {
		t.Fatal("a message from another cluster was stepped")
	}
	if !a.ActiveSince(2).IsZero() {
		t.Fatal("a peer of another cluster counts as active")
	}
	// The answer names both clusters.
	req, _ := http.NewRequest(http.MethodPost, a.peer(2).url()+raftMessagePath, nil)
	req.Header.Set(headerClusterID, "c1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPreconditionFailed || !strings.Contains(string(body), "cluster ID mismatch") || !strings.Contains(string(body), "dead") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// TestTransportFilter: a filter that refuses a link fails every request on
// it (messages and probes) without sending, and reports the peer
// unreachable; letting it through again resumes delivery.
func TestTransportFilter(t *testing.T) {
	var cut atomic.Bool
	cut.Store(true)
	var asked atomic.Int64
	a, ra, rb := transportPair(t, testClusterID, nil, func(c *TransportConfig) {
		c.Filter = func(from, to uint64) bool {
			asked.Add(1)
			return from != 1 || to != 2 || !cut.Load()
		}
	})
	a.Send([]*raftpb.Message{heartbeat(2)})
	waitFor(t, 5*time.Second, "the cut link reported unreachable", func() bool { return ra.unreachable.Load() > 0 })
	time.Sleep(50 * time.Millisecond) // a probe or two
	if rb.stepped() != 0 {
		t.Fatal("a message crossed a cut link")
	}
	if !a.ActiveSince(2).IsZero() {
		t.Fatal("a cut peer counts as active")
	}
	cut.Store(false)
	a.Send([]*raftpb.Message{heartbeat(2)})
	waitFor(t, 5*time.Second, "delivery after healing", func() bool { return rb.stepped() == 1 })
	if asked.Load() < 2 {
		t.Fatalf("the filter was asked %d times", asked.Load())
	}
}

func TestTransportRemovedMemberIsTold(t *testing.T) {
	a, ra, rb := transportPair(t, testClusterID, map[uint64]bool{1: true})
	a.Send([]*raftpb.Message{heartbeat(2)})
	waitFor(t, 5*time.Second, "the removed member told", ra.gotRemoved.Load)
	if rb.stepped() != 0 {
		t.Fatal("a removed member's message was stepped")
	}
}

// TestTransportSendNeverBlocks: with the peer stalled, Send returns at once
// and the overflow is dropped and reported.
func TestTransportSendNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	ln := listenLoopback(t, "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	a, err := NewHTTPTransport(TransportConfig{ID: 1, ClusterID: testClusterID, QueueSize: 8, MessageTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ra := &fakeReceiver{}
	a.Attach(ra)
	a.AddPeer(2, []string{"http://" + ln.Addr().String()})
	start := time.Now()
	for range 1000 {
		a.Send([]*raftpb.Message{heartbeat(2)})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Send blocked: 1000 sends took %v", d)
	}
	// The sender drains the queue into its (stalled) batch while Send
	// fills it, so not every overflow is exact; most must be reported.
	if ra.unreachable.Load() < 100 {
		t.Fatalf("only %d drops reported", ra.unreachable.Load())
	}
	close(release)
	_ = a.Close()
	_ = srv.Close()
}

// TestTransportStream: once the peer has opened its stream, batches go over
// it in order instead of one POST each; when the stream is cut, delivery
// falls back to POSTs at once and the peer opens a new stream.
func TestTransportStream(t *testing.T) {
	a, err := NewHTTPTransport(TransportConfig{ID: 1, ClusterID: testClusterID})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewHTTPTransport(TransportConfig{ID: 2, ClusterID: testClusterID})
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := &fakeReceiver{}, &fakeReceiver{}
	a.Attach(ra)
	b.Attach(rb)
	lnA, lnB := listenLoopback(t, "127.0.0.1:0"), listenLoopback(t, "127.0.0.1:0")
	srvA, srvB := &http.Server{Handler: a.Handler()}, &http.Server{Handler: b.Handler()}
	go func() { _ = srvA.Serve(lnA) }()
	go func() { _ = srvB.Serve(lnB) }()
	t.Cleanup(func() {
		_ = a.Close()
		_ = b.Close()
		_ = srvA.Close()
		_ = srvB.Close()
	})
	a.AddPeer(2, []string{"http://" + lnB.Addr().String()})
	b.AddPeer(1, []string{"http://" + lnA.Addr().String()})
	waitFor(t, 5*time.Second, "member 2's stream attached at member 1", func() bool { return a.peer(2).out.Load() != nil })

	via := func(way string) float64 {
		var m dto.Metric
		if err := a.met.batches.WithLabelValues("2", way).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			m := heartbeat(2)
			m.Commit = new(uint64(i))
			a.Send([]*raftpb.Message{m})
		}
	}
	send(0, 100)
	waitFor(t, 5*time.Second, "100 messages delivered", func() bool { return rb.stepped() == 100 })
	waitFor(t, 5*time.Second, "a batch counted", func() bool { return via("stream")+via("post") > 0 })
	if via("stream") == 0 || via("post") != 0 {
		t.Fatalf("batches: %v on the stream, %v posted; want all on the stream", via("stream"), via("post"))
	}

	// Cut the stream from member 1's side: its handler returns, member 2's
	// reader sees the end and dials again; meanwhile nothing is lost.
	a.CloseStreams()
	waitFor(t, 5*time.Second, "the stream detached", func() bool { return a.peer(2).out.Load() == nil })
	send(100, 100)
	waitFor(t, 5*time.Second, "200 messages delivered", func() bool { return rb.stepped() == 200 })
	rb.checkInOrder(t)
	// (The sender counts a batch after the receiver stepped it.)
	waitFor(t, 5*time.Second, "a batch posted after the stream was closed", func() bool { return via("post") > 0 })
	if ra.unreachable.Load() != 0 {
		t.Fatalf("peer reported unreachable %d times although every batch was delivered", ra.unreachable.Load())
	}

	// A stream from a member this one does not know is refused.
	req, _ := http.NewRequest(http.MethodGet, "http://"+lnA.Addr().String()+raftStreamPath, nil)
	req.Header.Set(headerClusterID, hexID(testClusterID))
	req.Header.Set(headerFrom, "9")
	req.Header.Set(headerTo, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stream from an unknown member: %d, want 404", resp.StatusCode)
	}
}
