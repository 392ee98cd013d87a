package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"cairn/storage"
)

// wire collects what SimCores send, for the test to deliver.
type wire struct{ q []*raftpb.Message }

type wireTransport struct{ w *wire }

func (t wireTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		t.w.q = append(t.w.q, proto.Clone(m).(*raftpb.Message))
	}
}
func (t wireTransport) Close() error { return nil }

// TestSimCore drives three SimCores by hand, as internal/testcluster does
// with a seeded source: they elect a leader, a proposal on a follower is
// acknowledged, applied everywhere, and visible after a read barrier; a
// member that stops fails what waits on it.
func TestSimCore(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	w := &wire{}
	peers := []uint64{1, 2, 3}
	cores := make(map[uint64]*SimCore)
	trees := make(map[uint64]*storage.Tree)
	for _, id := range peers {
		eng, err := storage.Open("data", storage.Options{FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		tree, err := storage.OpenTree(eng)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := NewSimCore(Config{ID: id, Peers: peers, Engine: eng, SM: tree, Transport: wireTransport{w}}, now)
		if err != nil {
			t.Fatal(err)
		}
		cores[id], trees[id] = sc, tree
	}
	drain := func(sc *SimCore) {
		t.Helper()
		for sc.HasReady() {
			if err := sc.HandleReady(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// settle delivers everything in flight, then ticks member 1 until done
	// says so.
	settle := func(what string, done func() bool) {
		t.Helper()
		for i := 0; i < 1000; i++ {
			for len(w.q) > 0 {
				m := w.q[0]
				w.q = w.q[1:]
				cores[m.GetTo()].Step(m)
				drain(cores[m.GetTo()])
			}
			if done() {
				return
			}
			clock = clock.Add(10 * time.Millisecond)
			cores[1].Tick()
			drain(cores[1])
		}
		t.Fatalf("%s: not after 1000 ticks", what)
	}
	for _, sc := range cores {
		drain(sc)
	}
	settle("leader", func() bool { return cores[2].Status().Leader == 1 && cores[3].Status().Leader == 1 })
	if st := cores[1].Status(); st.Role != "StateLeader" || st.Term == 0 {
		t.Fatalf("member 1: %+v", st)
	}

	p := cores[2].Propose(set("/a", "1"))
	drain(cores[2])
	settle("proposal", func() bool { done, _, _ := p.Result(); return done })
	if _, ev, err := p.Result(); err != nil || ev == nil || ev.Node.Value != "1" {
		t.Fatalf("proposal: event %+v, error %v", ev, err)
	}
	applied := cores[2].Status().Applied
	settle("apply everywhere", func() bool {
		return cores[1].Status().Applied == applied && cores[3].Status().Applied == applied
	})

	r := cores[3].ReadBarrier()
	drain(cores[3])
	settle("read barrier", func() bool { done, _ := r.Result(); return done })
	if _, err := r.Result(); err != nil {
		t.Fatal(err)
	}
	if ev, aerr := trees[3].Get("/a", false, false); aerr != nil || ev.Node.Value != "1" {
		t.Fatalf("member 3 after the barrier: %+v %v", ev, aerr)
	}
	if synced, err := cores[3].SyncedCommits(); err != nil || synced == 0 {
		t.Fatalf("member 3 synced commits: %d, %v", synced, err)
	}
	if first, last, err := cores[1].LogIndexes(); err != nil || first > last || last < applied {
		t.Fatalf("member 1 log [%d, %d] (applied %d): %v", first, last, applied, err)
	}

	// Reads while ReadIndex requests are out: at most maxReadsInflight go
	// out, the others queue and then share one request; all complete.
	const nReads = 6
	if maxReadsInflight >= nReads-1 {
		t.Fatalf("maxReadsInflight = %d: reads are hardly batched", maxReadsInflight)
	}
	var reads []*SimRead
	for range nReads {
		reads = append(reads, cores[1].ReadBarrier())
		drain(cores[1])
	}
	if out, queued := len(cores[1].c.readInflight), len(cores[1].c.readQueue); out != maxReadsInflight || queued != nReads-maxReadsInflight {
		t.Fatalf("read requests out %d (want %d), waiters queued %d (want %d)", out, maxReadsInflight, queued, nReads-maxReadsInflight)
	}
	settle("batched reads", func() bool {
		for _, r := range reads {
			if done, _ := r.Result(); !done {
				return false
			}
		}
		return true
	})
	for i, r := range reads {
		if _, err := r.Result(); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if out, queued := len(cores[1].c.readInflight), len(cores[1].c.readQueue); out != 0 || queued != 0 {
		t.Fatalf("after the reads: %d requests out, %d waiters queued", out, queued)
	}

	// A proposal on a member that then stops fails with ErrStopped.
	cores[1].ReportUnreachable(3)
	p2 := cores[3].Propose(set("/b", "2"))
	cores[3].Stop()
	if done, _, err := p2.Result(); !done || !errors.Is(err, ErrStopped) {
		t.Fatalf("proposal on a stopped member: done %v, error %v", done, err)
	}
}
