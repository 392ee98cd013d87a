package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"cairn/api"
	"cairn/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recObserver records what the loop reports and checks that the applied
// index never goes backwards.
type recObserver struct {
	mu        sync.Mutex
	last      uint64
	calls     int
	events    int
	restored  []uint64
	backwards error
}

// restores is how many snapshots the member restored.
func (o *recObserver) restores() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.restored)
}

// compactedTo is the index the member's raft log on disk is compacted to.
func (m *member) compactedTo() uint64 {
	m.t.Helper()
	rl, err := m.eng.LoadRaftLog()
	if err != nil {
		m.t.Fatal(err)
	}
	return rl.Snapshot.GetIndex()
}

func (o *recObserver) Applied(index uint64, events []*api.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if index <= o.last && o.backwards == nil {
		o.backwards = fmt.Errorf("applied index went from %d to %d", o.last, index)
	}
	o.last = index
	o.calls++
	o.events += len(events)
}

func (o *recObserver) Restored(index uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.restored = append(o.restored, index)
	o.last = index
}

func (o *recObserver) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.backwards != nil {
		t.Fatal(o.backwards)
	}
}

// member is one node with its own engine, tree and registry.
type member struct {
	t    *testing.T
	id   uint64
	fs   vfs.FS
	eng  *storage.Engine
	tree *storage.Tree
	reg  *prometheus.Registry
	obs  *recObserver
	node *Node
}

// openMember opens the engine and tree on fs and starts the node. cfg's
// ID, Engine, SM, Observer and Registerer are filled in.
func openMember(t *testing.T, fs vfs.FS, cfg Config) *member {
	t.Helper()
	if cfg.ID == 0 {
		cfg.ID = 1
	}
	eng, err := storage.Open("data", storage.Options{FS: fs})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	tree, err := storage.OpenTree(eng)
	if err != nil {
		_ = eng.Close()
		t.Fatalf("open tree: %v", err)
	}
	m := &member{t: t, id: cfg.ID, fs: fs, eng: eng, tree: tree, reg: prometheus.NewRegistry(), obs: &recObserver{}}
	cfg.Engine, cfg.Observer, cfg.Registerer = eng, m.obs, m.reg
	if cfg.SM == nil {
		cfg.SM = tree
	}
	m.node, err = Start(cfg)
	if err != nil {
		_ = eng.Close()
		t.Fatalf("start: %v", err)
	}
	return m
}

// startSingle starts a new single-member cluster on fs.
func startSingle(t *testing.T, fs vfs.FS, cfg Config) *member {
	t.Helper()
	if cfg.Peers == nil {
		cfg.Peers = []uint64{1}
	}
	return openMember(t, fs, cfg)
}

// close stops the node and closes the engine cleanly.
func (m *member) close() {
	m.t.Helper()
	m.node.Stop()
	if err := m.node.Err(); err != nil {
		m.t.Errorf("member %d stopped with %v", m.id, err)
	}
	if err := m.eng.Close(); err != nil {
		m.t.Errorf("close engine: %v", err)
	}
}

func set(key, value string) storage.Cmd {
	return storage.Cmd{Op: storage.OpSet, Path: key, Value: value}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustGet asserts key holds value in the member's tree.
func (m *member) mustGet(key, value string) {
	m.t.Helper()
	ev, aerr := m.tree.Get(key, false, false)
	if aerr != nil {
		m.t.Fatalf("member %d: get %s: %v", m.id, key, aerr)
	}
	if ev.Node == nil || ev.Node.Value != value {
		m.t.Fatalf("member %d: get %s: got %+v, want %q", m.id, key, ev.Node, value)
	}
}

// metric returns a counter's value or a histogram's sample count.
func (m *member) metric(name string) float64 {
	m.t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		m.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, x := range mf.GetMetric() {
			switch {
			case x.GetCounter() != nil:
				v += x.GetCounter().GetValue()
			case x.GetGauge() != nil:
				v += x.GetGauge().GetValue()
			case x.GetHistogram() != nil:
				v += float64(x.GetHistogram().GetSampleCount())
			}
		}
		return v
	}
	m.t.Fatalf("metric %s not registered", name)
	return 0
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v (%d polls) waiting for %s", d, i, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// chanNet delivers messages between in-process members by calling the
// target's Step (non-blocking) with a deep copy, as a network would. A
// member can be isolated: messages from or to it are dropped.
type chanNet struct {
	mu       sync.Mutex
	nodes    map[uint64]*Node
	isolated map[uint64]bool
	sent     int
	dropped  int

	// viewSnapshots makes the transports SnapshotSenders: a snapshot's
	// data is exported from a view in a goroutine of its own (counted in
	// snapshotViews; waited for by stopAll), as HTTPTransport does.
	viewSnapshots bool
	snapshotViews atomic.Int64
	exports       sync.WaitGroup
}

func newChanNet() *chanNet {
	return &chanNet{nodes: make(map[uint64]*Node), isolated: make(map[uint64]bool)}
}

func (n *chanNet) transport(from uint64) Transport {
	t := &chanTransport{net: n, from: from}
	if n.viewSnapshots {
		return &viewTransport{t}
	}
	return t
}

// stopAll stops the members, waits for the snapshot exports still running,
// and closes the members' engines.
func (n *chanNet) stopAll(ms []*member) {
	for _, m := range ms {
		m.node.Stop()
	}
	n.exports.Wait()
	closeAll(ms)
}

// viewTransport is a chanTransport that is also a SnapshotSender.
type viewTransport struct{ *chanTransport }

func (t *viewTransport) SendSnapshot(m *raftpb.Message, src *SnapshotSource) {
	n := t.net
	n.snapshotViews.Add(1)
	n.exports.Add(1)
	go func() {
		defer n.exports.Done()
		data, err := src.Data()
		src.Release()
		if err != nil {
			panic(fmt.Sprintf("export a snapshot view: %v", err))
		}
		m.Snapshot.Data = data
		t.Send([]*raftpb.Message{m})
	}()
}

func (n *chanNet) attach(id uint64, node *Node) {
	n.mu.Lock()
	n.nodes[id] = node
	n.mu.Unlock()
}

func (n *chanNet) isolate(id uint64, on bool) {
	n.mu.Lock()
	n.isolated[id] = on
	n.mu.Unlock()
}

type chanTransport struct {
	net  *chanNet
	from uint64
}

func (t *chanTransport) Send(msgs []*raftpb.Message) {
	n := t.net
	n.mu.Lock()
	from := n.nodes[t.from]
	type delivery struct {
		to *Node
		m  *raftpb.Message
	}
	var ds []delivery
	var unreachable []uint64
	for _, m := range msgs {
		to := n.nodes[m.GetTo()]
		if to == nil || n.isolated[t.from] || n.isolated[m.GetTo()] {
			n.dropped++
			unreachable = append(unreachable, m.GetTo())
			continue
		}
		n.sent++
		ds = append(ds, delivery{to, proto.Clone(m).(*raftpb.Message)})
	}
	n.mu.Unlock()
	for _, d := range ds {
		err := d.to.Step(context.Background(), d.m)
		if d.m.GetType() == raftpb.MsgSnap && from != nil {
			from.ReportSnapshot(d.m.GetTo(), err != nil)
		}
	}
	if from != nil {
		for _, id := range unreachable {
			from.ReportUnreachable(id)
		}
	}
}

func (t *chanTransport) Close() error { return nil }

// failingSM wraps a tree and fails Apply for one path with a storage error.
type failingSM struct {
	*storage.Tree
	failPath string
}

var errInjected = errors.New("injected storage failure")

func (f *failingSM) Apply(b *storage.Batch, idx uint64, c *storage.Cmd) (*api.Event, *api.Error, error) {
	if c.Path == f.failPath {
		return nil, nil, errInjected
	}
	return f.Tree.Apply(b, idx, c)
}
