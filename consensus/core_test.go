package consensus

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"cairn/storage"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "seed for TestCoreDeterministic (0: a few fixed seeds)")
	seedsFlag = flag.Int("seeds", 0, "TestCoreDeterministic runs seeds 1..N (make soak); -seed wins")
)

// queueTransport collects sent messages for the test to deliver.
type queueTransport struct{ q *[]*raftpb.Message }

func (t queueTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		*t.q = append(*t.q, proto.Clone(m).(*raftpb.Message))
	}
}
func (t queueTransport) Close() error { return nil }

type simMember struct {
	id   uint64
	fs   *vfs.MemFS // crashable: a crash keeps only what was synced (and some of the rest)
	cfg  Config
	eng  *storage.Engine
	tree *storage.Tree
	c    *core
	obs  *recObserver

	// Kept across restarts.
	log            map[uint64]string // raft index → digest of what was applied there
	lastApplied    uint64            // applied index after the last step of this incarnation
	durableApplied uint64            // an applied index known to be synced to fs
	restarts       int
}

// TestCoreDeterministic drives three cores directly — no goroutines, no
// channels, no timers: one seeded RNG picks every step (tick a member,
// deliver, drop or duplicate a message, propose on a member, crash a member
// and restart it from what its crashable disk kept). This is the seam
// internal/testcluster builds on. Checks: at most one leader per term,
// every acknowledged write is on every member at the end (so none is lost
// to a crash), no two applies at one raft index differ (across members and
// restarts), a member's applied index never goes back except by a restart,
// and never below what was synced before the crash, and the members' trees
// are byte-identical.
func TestCoreDeterministic(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5}
	switch {
	case *seedFlag != 0:
		seeds = []uint64{*seedFlag}
	case *seedsFlag > 0:
		seeds = seeds[:0]
		for s := range uint64(*seedsFlag) {
			seeds = append(seeds, s+1)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runCoreSim(t, seed) })
	}
}

func runCoreSim(t *testing.T, seed uint64) {
	// raft draws its randomized election timeouts from crypto/rand.
	cryptotest.SetGlobalRandom(t, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	var queue []*raftpb.Message
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	peers := []uint64{1, 2, 3}
	ms := make(map[uint64]*simMember)
	defer func() {
		for _, m := range ms {
			if m.eng != nil {
				m.eng.Close()
			}
		}
	}()
	// firstApplied: raft index → the digest of the first apply seen at it,
	// on any member. Every later apply at that index, on any member or
	// after any restart, must match.
	firstApplied := make(map[uint64]string)
	firstBy := make(map[uint64]uint64)
	// open (re)builds m's engine, tree and core from m.fs.
	open := func(m *simMember) {
		eng, err := storage.Open("data", storage.Options{FS: m.fs})
		if err != nil {
			t.Fatalf("seed %d: member %d: open engine (restart %d): %v", seed, m.id, m.restarts, err)
		}
		tree, err := storage.OpenTree(eng)
		if err != nil {
			eng.Close()
			t.Fatalf("seed %d: member %d: open tree (restart %d): %v", seed, m.id, m.restarts, err)
		}
		m.eng, m.tree = eng, tree
		sm := &recordingSM{Tree: tree, record: func(index uint64, digest string) {
			if prev, ok := m.log[index]; ok && prev != digest {
				t.Fatalf("seed %d: member %d applied %q at %d, and %q there before its restart", seed, m.id, digest, index, prev)
			}
			m.log[index] = digest
			if first, ok := firstApplied[index]; ok && first != digest {
				t.Fatalf("seed %d: member %d applied %q at %d, member %d applied %q", seed, m.id, digest, index, firstBy[index], first)
			} else if !ok {
				firstApplied[index], firstBy[index] = digest, m.id
			}
		}}
		cfg := m.cfg
		cfg.Engine, cfg.SM = eng, sm
		if err := cfg.setDefaults(); err != nil {
			t.Fatal(err)
		}
		met, _ := newMetrics(nil)
		c, err := newCore(&cfg, newWaitRegistry(), &published{leaderChange: newNotifier()}, met, now)
		if err != nil {
			t.Fatalf("seed %d: member %d: new core (restart %d): %v", seed, m.id, m.restarts, err)
		}
		m.obs = &recObserver{}
		c.obs = m.obs
		m.c = c
	}
	for _, id := range peers {
		m := &simMember{id: id, fs: vfs.NewCrashableMem(), log: make(map[uint64]string)}
		m.cfg = Config{ID: id, Peers: peers, Transport: queueTransport{&queue}, SnapshotCount: 30, SnapshotCatchUpEntries: 10}
		open(m)
		ms[id] = m
	}
	ready := func(m *simMember) {
		for i := 0; m.c.rn.HasReady(); i++ {
			if i == 10_000 {
				t.Fatalf("seed %d: member %d: raft keeps producing Readys", seed, m.id)
			}
			before, synced := m.c.applied, syncedCommits(t, m.c)
			if err := m.c.handleReady(); err != nil {
				t.Fatalf("seed %d: member %d: %v", seed, m.id, err)
			}
			// A synced commit makes every earlier (unsynced) apply batch
			// durable too: pebble syncs its WAL up to that commit.
			if syncedCommits(t, m.c) > synced {
				m.durableApplied = max(m.durableApplied, before)
			}
			if m.c.applied < m.lastApplied {
				t.Fatalf("seed %d: member %d: applied index went back from %d to %d without a restart", seed, m.id, m.lastApplied, m.c.applied)
			}
			m.lastApplied = m.c.applied
		}
	}
	isolated := make(map[uint64]bool)
	deliver := func(msg *raftpb.Message) {
		to := ms[msg.GetTo()]
		if to == nil {
			return
		}
		if isolated[msg.GetTo()] || isolated[msg.GetFrom()] {
			if msg.GetType() == raftpb.MsgSnap {
				ms[msg.GetFrom()].c.report(report{id: msg.GetTo(), snapshot: true, failed: true})
				ready(ms[msg.GetFrom()])
			}
			return
		}
		to.c.step(msg)
		ready(to)
		if msg.GetType() == raftpb.MsgSnap {
			ms[msg.GetFrom()].c.report(report{id: msg.GetTo(), snapshot: true})
			ready(ms[msg.GetFrom()])
		}
	}
	// crash simulates a power loss on m and a restart: the disk keeps what
	// was synced and, with a random probability, some of what was not;
	// everything waiting on the member fails, the messages on their way to
	// it are lost (those it sent are on the wire and may still arrive),
	// and the member restarts from the crashed disk.
	crashes, rolledBack := 0, 0
	crash := func(m *simMember) {
		crashes++
		pct := 0
		if rng.IntN(2) == 0 {
			pct = rng.IntN(101)
		}
		crashed := m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))})
		m.c.failAll(ErrStopped)
		err := m.eng.Close()
		m.eng = nil
		if err != nil {
			t.Fatalf("seed %d: member %d: close before the crash: %v", seed, m.id, err)
		}
		kept := queue[:0]
		for _, msg := range queue {
			if msg.GetTo() != m.id {
				kept = append(kept, msg)
				continue
			}
			if msg.GetType() == raftpb.MsgSnap {
				ms[msg.GetFrom()].c.report(report{id: msg.GetTo(), snapshot: true, failed: true})
				ready(ms[msg.GetFrom()])
			}
		}
		clear(queue[len(kept):])
		queue = kept
		m.fs = crashed
		m.restarts++
		open(m)
		if m.c.applied < m.durableApplied {
			t.Fatalf("seed %d: member %d restarted (%d%% of unsynced data kept) at applied %d, below the synced applied %d", seed, m.id, pct, m.c.applied, m.durableApplied)
		}
		if m.c.applied < m.lastApplied {
			rolledBack++
		}
		m.lastApplied = m.c.applied
		ready(m)
	}
	leaders := make(map[uint64]uint64) // term → leader
	checkLeaders := func() {
		for _, m := range ms {
			st := m.c.rn.BasicStatus()
			if st.RaftState.String() != "StateLeader" {
				continue
			}
			if l, ok := leaders[st.GetTerm()]; ok && l != m.id {
				t.Fatalf("seed %d: two leaders in term %d: %d and %d", seed, st.GetTerm(), l, m.id)
			}
			leaders[st.GetTerm()] = m.id
		}
	}

	type pending struct {
		key string
		ch  <-chan result
	}
	var inflight []pending
	var acked []string
	collect := func() {
		kept := inflight[:0]
		for _, p := range inflight {
			select {
			case r := <-p.ch:
				if r.err == nil {
					acked = append(acked, p.key)
				}
			default:
				kept = append(kept, p)
			}
		}
		inflight = kept
	}

	next := uint64(0)
	const steps = 4000
	for step := range steps {
		ids := slices.Sorted(func(yield func(uint64) bool) {
			for id := range ms {
				if !yield(id) {
					return
				}
			}
		})
		m := ms[ids[rng.IntN(len(ids))]]
		switch r := rng.IntN(100); {
		case r < 30:
			clock = clock.Add(10 * time.Millisecond)
			m.c.tick()
		case r < 78 && len(queue) > 0:
			// Deliver one message, picked at random: reordering.
			i := rng.IntN(len(queue))
			msg := queue[i]
			queue = slices.Delete(queue, i, i+1)
			switch d := rng.IntN(100); {
			case d < 5 && step < steps*3/4: // drop (not in the healing tail)
				if msg.GetType() == raftpb.MsgSnap {
					// A transport reports every snapshot's outcome.
					ms[msg.GetFrom()].c.report(report{id: msg.GetTo(), snapshot: true, failed: true})
					ready(ms[msg.GetFrom()])
				}
				continue
			case d < 8: // duplicate
				queue = append(queue, proto.Clone(msg).(*raftpb.Message))
			}
			deliver(msg)
		case r < 92:
			next++
			key := fmt.Sprintf("/k%d", next)
			id := m.c.id<<48 | next
			ch := m.c.waits.register(id)
			cmd := set(key, key)
			m.c.propose([]proposal{{id: id, data: appendEnvelope(nil, id, &cmd)}})
			inflight = append(inflight, pending{key, ch})
		case r < 95 && step < steps*3/4:
			// Partition a member away, or heal it.
			isolated[m.id] = !isolated[m.id]
		case r < 96 && step < steps*3/4:
			crash(m)
		default:
			w := &readWaiter{done: make(chan error, 1)}
			m.c.readIndex([]*readWaiter{w})
			m.c.issueReads()
		}
		ready(m)
		checkLeaders()
		collect()
	}
	// Heal: no more drops or proposals; deliver everything, ticking when
	// the network is quiet, until all members agree on a leader and applied
	// the same index.
	converged := func() bool {
		l := ms[1].c.lead
		if l == 0 || len(queue) > 0 {
			return false
		}
		for _, id := range peers {
			c := ms[id].c
			if c.lead != l || c.applied != ms[l].c.applied || c.applied != ms[l].c.commit {
				return false
			}
		}
		li, _ := ms[l].c.ms.LastIndex()
		return ms[l].c.commit == li
	}
	clear(isolated)
	healed := false
	for i := 0; i < 200_000 && !healed; i++ {
		if len(queue) > 0 {
			msg := queue[0]
			queue = queue[1:]
			deliver(msg)
			continue
		}
		if healed = converged(); healed {
			break
		}
		clock = clock.Add(10 * time.Millisecond)
		for _, id := range peers {
			ms[id].c.tick()
			ready(ms[id])
		}
		checkLeaders()
	}
	if !healed {
		t.Errorf("seed %d: the cluster did not converge after healing", seed)
	}
	collect()
	for _, id := range peers {
		c := ms[id].c
		fi, _ := c.ms.FirstIndex()
		li, _ := c.ms.LastIndex()
		t.Logf("member %d: applied %d commit %d lead %d role %s term %d log [%d,%d] queue %d", id, c.applied, c.commit, c.lead, c.role, c.term, fi, li, len(queue))
	}
	if len(acked) == 0 {
		t.Fatalf("seed %d: no write acknowledged in %d steps", seed, steps)
	}
	var want bytes.Buffer
	if err := ms[1].tree.Export(&want); err != nil {
		t.Fatal(err)
	}
	for _, id := range peers {
		m := ms[id]
		for _, key := range acked {
			if _, aerr := m.tree.Get(key, false, false); aerr != nil {
				for _, id2 := range peers {
					ev, aerr2 := ms[id2].tree.Get(key, false, false)
					var mi uint64
					if ev != nil {
						mi = ev.Node.ModifiedIndex
					}
					t.Logf("member %d: %s modifiedIndex %d err %v restored %v store %d", id2, key, mi, aerr2, ms[id2].obs.restored, ms[id2].tree.StoreIndex())
				}
				t.Fatalf("seed %d: member %d lacks acknowledged %s: %v", seed, id, key, aerr)
			}
		}
		var got bytes.Buffer
		if err := m.tree.Export(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("seed %d: member %d's tree differs from member 1's (applied %d vs %d)", seed, id, m.c.applied, ms[1].c.applied)
		}
		m.c.failAll(ErrStopped)
	}
	t.Logf("seed %d: %d writes acknowledged, %d terms, %d crashes (%d restarted behind), %d indexes compared, applied %d", seed, len(acked), len(leaders), crashes, rolledBack, len(firstApplied), ms[1].c.applied)
}
