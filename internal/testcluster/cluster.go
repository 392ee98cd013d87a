// Package testcluster is Cairn's deterministic cluster simulation: N raft
// members (consensus.SimCore over storage.Tree) in one process and one
// goroutine, each on its own crashable in-memory Pebble filesystem, joined
// by a simulated network. One seeded random source picks every step — tick
// a member, deliver a message (possibly late, out of order, twice, or not
// at all), propose, issue a read barrier, change the partition, crash a
// member and restart it from what its disk kept — so a seed replays a run.
// A Checker watches the safety invariants throughout; after the network
// heals and the cluster settles, every member must hold every acknowledged
// write and the same state.
package testcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"runtime/debug"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"

	"cairn/consensus"
	"cairn/storage"
)

// Options configure one simulated run.
type Options struct {
	// Seed picks every step of the run, and raft's election timeouts.
	Seed uint64
	// Members is the cluster size; 0 means 3.
	Members int
	// Steps is how many random steps run before the network heals; 0 means
	// 3000.
	Steps int
	// SnapshotCount and SnapshotCatchUpEntries are the members' log
	// compaction settings; small (0 means 30 and 10) so that compaction,
	// and snapshots sent to members that fell behind, happen in every run.
	SnapshotCount, SnapshotCatchUpEntries uint64
	// LeaderCompactEvery is the leader's eager compaction step; 0 means 7,
	// so that it interleaves with the SnapshotCount rule.
	LeaderCompactEvery uint64
	// Logf receives a summary line; nil discards it.
	Logf func(format string, args ...any)
	// Tracef, when set, receives a line for every step (for replaying a
	// failing seed).
	Tracef func(format string, args ...any)

	// corrupt, when set, may change a command before a member applies it,
	// after its apply was recorded: the package's tests use it to show
	// that the state checks see a member diverge.
	corrupt func(member, index uint64, cmd *storage.Cmd)
}

// Result describes a run.
type Result struct {
	Acked      int    // writes acknowledged to their proposer
	Crashes    int    // crashes (each followed by a restart)
	Partitions int    // partition changes, heals included
	Applied    uint64 // the applied index every member reached at the end
	// Trace is a hash of every step taken and every message delivered:
	// two runs of one seed have the same.
	Trace uint64
}

// tickInterval is how far the clock moves per tick: the members'
// nominal tick (their leader timestamps and request IDs come from it).
const tickInterval = 10 * time.Millisecond

// digestEvery is how often (in steps) the members' states are digested and
// compared at equal applied indexes.
const digestEvery = 100

// Run builds a cluster for opts, runs it and checks it. The error is the
// first violation (or a failure to run), prefixed with the seed and size.
// Run seeds crypto/rand for the test (raft draws its randomized election
// timeouts from it), so t must not be parallel.
func Run(t *testing.T, opts Options) (Result, error) {
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Steps == 0 {
		opts.Steps = 3000
	}
	if opts.SnapshotCount == 0 {
		opts.SnapshotCount = 30
	}
	if opts.LeaderCompactEvery == 0 {
		opts.LeaderCompactEvery = 7
	}
	if opts.SnapshotCatchUpEntries == 0 {
		opts.SnapshotCatchUpEntries = 10
	}
	if opts.Members < 1 || opts.Steps < 0 {
		return Result{}, fmt.Errorf("testcluster: %d members and %d steps: need at least one member and no negative step count", opts.Members, opts.Steps)
	}
	cryptotest.SetGlobalRandom(t, opts.Seed)
	c := newCluster(opts)
	err := c.runRecovering()
	if cerr := c.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c.result(), fmt.Errorf("seed %d, %d members: %w", opts.Seed, opts.Members, err)
	}
	if opts.Logf != nil {
		opts.Logf("seed %d, %d members: %s; %d proposals, %d read barriers checked, %d snapshots delivered, %d crashes, %d partition changes, applied %d",
			opts.Seed, opts.Members, c.check.Summary(), c.keys, c.readsChecked, c.snapshots, c.crashes, c.partitions, c.members[0].core.Status().Applied)
	}
	return c.result(), nil
}

// member is one simulated member and its disk, across restarts.
type member struct {
	id          uint64
	fs          *vfs.MemFS // crashable: a crash keeps what was synced and, at random, some of the rest
	eng         *storage.Engine
	tree        *storage.Tree
	core        *consensus.SimCore
	up          bool
	incarnation uint64 // restarts so far
	synced      uint64 // the core's synced commits at the last look
}

type pendingProposal struct {
	m          *member
	key, value string
	p          *consensus.SimProposal
}

type pendingRead struct {
	m     *member
	inc   uint64
	acked int // writes acknowledged when the barrier was issued
	r     *consensus.SimRead
}

type cluster struct {
	opts    Options
	rng     *rand.Rand
	clock   time.Time
	net     *network
	check   *Checker
	ids     []uint64
	members []*member // members[i].id == i+1
	trace   hash.Hash64

	step                int
	keys                int
	crashes, partitions int
	snapshots           int // MsgSnap delivered
	readsChecked        int // read barriers released and checked
	proposals           []pendingProposal
	reads               []pendingRead
}

// transport is a member incarnation's consensus.Transport: it puts what
// the member sends on the simulated wire.
type transport struct {
	net *network
	inc uint64
}

func (t transport) Send(msgs []*raftpb.Message) { t.net.send(t.inc, msgs) }
func (t transport) Close() error                { return nil }

func newCluster(opts Options) *cluster {
	c := &cluster{
		opts:  opts,
		rng:   rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed_c1a5)),
		clock: time.Unix(1_700_000_000, 0),
		check: NewChecker(),
		trace: fnv.New64a(),
	}
	for i := range opts.Members {
		c.ids = append(c.ids, uint64(i+1))
		c.members = append(c.members, &member{id: uint64(i + 1), fs: vfs.NewCrashableMem()})
	}
	c.net = newNetwork(c.rng, c.ids)
	return c
}

func (c *cluster) now() time.Time { return c.clock }

func (c *cluster) result() Result {
	r := Result{Acked: c.check.AckedCount(), Crashes: c.crashes, Partitions: c.partitions, Trace: c.trace.Sum64()}
	if m := c.members[0]; m.up {
		r.Applied = m.core.Status().Applied
	}
	return r
}

// record adds one event of the run to the trace hash, and logs it when
// tracing.
func (c *cluster) record(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	c.trace.Write([]byte(line))
	c.trace.Write([]byte{'\n'})
	if c.opts.Tracef != nil {
		c.opts.Tracef("step %d: %s", c.step, line)
	}
}

func (c *cluster) byID(id uint64) *member {
	if id == 0 || id > uint64(len(c.members)) {
		return nil
	}
	return c.members[id-1]
}

// open (re)starts m's current incarnation from its filesystem.
func (c *cluster) open(m *member) error {
	eng, err := storage.Open("data", storage.Options{FS: m.fs})
	if err != nil {
		return fmt.Errorf("member %d: open engine (restart %d): %w", m.id, m.incarnation, err)
	}
	tree, err := storage.OpenTree(eng)
	if err != nil {
		_ = eng.Close()
		return fmt.Errorf("member %d: open tree (restart %d): %w", m.id, m.incarnation, err)
	}
	id := m.id
	sm := &recordingSM{Tree: tree, record: func(index uint64, digest string) { c.check.Apply(id, index, digest) }}
	if c.opts.corrupt != nil {
		sm.corrupt = func(index uint64, cmd *storage.Cmd) { c.opts.corrupt(id, index, cmd) }
	}
	core, err := consensus.NewSimCore(consensus.Config{
		ID:                     m.id,
		Peers:                  c.ids,
		Engine:                 eng,
		SM:                     sm,
		Transport:              transport{net: c.net, inc: m.incarnation},
		SnapshotCount:          c.opts.SnapshotCount,
		SnapshotCatchUpEntries: c.opts.SnapshotCatchUpEntries,
		LeaderCompactEvery:     c.opts.LeaderCompactEvery,
	}, c.now)
	if err != nil {
		_ = eng.Close()
		return fmt.Errorf("member %d: start (restart %d): %w", m.id, m.incarnation, err)
	}
	synced, err := core.SyncedCommits()
	if err != nil {
		_ = eng.Close()
		return err
	}
	m.eng, m.tree, m.core, m.up, m.synced = eng, tree, core, true, synced
	return nil
}

// drain processes m's Readys until raft has none, watching the applied
// index, what is synced, and who leads.
func (c *cluster) drain(m *member) error {
	for i := 0; m.core.HasReady(); i++ {
		if i == 10_000 {
			return fmt.Errorf("member %d: raft keeps producing Readys", m.id)
		}
		before := m.core.Status().Applied
		if err := m.core.HandleReady(); err != nil {
			return fmt.Errorf("member %d: handle ready: %w", m.id, err)
		}
		synced, err := m.core.SyncedCommits()
		if err != nil {
			return err
		}
		// A synced commit makes every earlier write durable, the unsynced
		// apply batches included: Pebble syncs its WAL up to that commit.
		if synced > m.synced {
			c.check.Durable(m.id, before)
			m.synced = synced
		}
		st := m.core.Status()
		c.check.AppliedIndex(m.id, st.Applied)
		if st.Role == "StateLeader" {
			c.check.Leader(st.Term, m.id)
		}
	}
	return nil
}

// runRecovering is run with raft's panics (its own invariant checks, such
// as a follower asked to commit entries it lost) turned into the run's
// error, so that they too are reported with the seed.
func (c *cluster) runRecovering() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %d: panic: %v\n%s", c.step, r, debug.Stack())
		}
	}()
	return c.run()
}

func (c *cluster) run() error {
	for _, m := range c.members {
		if err := c.open(m); err != nil {
			return err
		}
	}
	for _, m := range c.members {
		if err := c.drain(m); err != nil {
			return err
		}
	}
	for c.step = 0; c.step < c.opts.Steps; c.step++ {
		c.net.step = c.step
		err := c.randomStep()
		if err == nil {
			err = c.afterStep()
		}
		if err == nil && c.check.Failed() {
			err = c.check.Err()
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", c.step, err)
		}
	}
	if err := c.heal(); err != nil {
		return fmt.Errorf("after healing: %w", err)
	}
	return nil
}

// randomStep takes one step, chosen by the seeded source.
func (c *cluster) randomStep() error {
	var up, down []*member
	for _, m := range c.members {
		if m.up {
			up = append(up, m)
		} else {
			down = append(down, m)
		}
	}
	r := c.rng.IntN(100)
	if len(up) == 0 {
		r = 95 // everyone is down: restart someone
	}
	switch {
	case r < 40 && len(c.net.pool) > 0:
		e, ok := c.net.next()
		if ok {
			return c.deliver(e)
		}
		return c.tick(up[c.rng.IntN(len(up))])
	case r < 70:
		return c.tick(up[c.rng.IntN(len(up))])
	case r < 84:
		return c.propose(up[c.rng.IntN(len(up))])
	case r < 88:
		return c.read(up[c.rng.IntN(len(up))])
	case r < 91:
		c.partitions++
		c.record("partition: %s", c.net.repartition())
		return nil
	case r < 92:
		return c.crash(up[c.rng.IntN(len(up))])
	case r < 96 && len(down) > 0:
		return c.restart(down[c.rng.IntN(len(down))])
	default:
		// Messages due now are delivered in a burst, as a busy network
		// would: a step of pure delivery without ticking.
		for range 1 + c.rng.IntN(8) {
			e, ok := c.net.next()
			if !ok {
				break
			}
			if err := c.deliver(e); err != nil {
				return err
			}
		}
		return nil
	}
}

func (c *cluster) tick(m *member) error {
	c.record("tick member %d", m.id)
	c.clock = c.clock.Add(tickInterval)
	m.core.Tick()
	return c.drain(m)
}

func (c *cluster) propose(m *member) error {
	c.keys++
	key, value := fmt.Sprintf("/k%d", c.keys), fmt.Sprintf("%d@%d.%d", c.keys, m.id, m.incarnation)
	c.record("propose %s=%s on member %d", key, value, m.id)
	p := m.core.Propose(storage.Cmd{Op: storage.OpSet, Path: key, Value: value})
	c.proposals = append(c.proposals, pendingProposal{m: m, key: key, value: value, p: p})
	return c.drain(m)
}

func (c *cluster) read(m *member) error {
	c.record("read barrier on member %d", m.id)
	r := m.core.ReadBarrier()
	c.reads = append(c.reads, pendingRead{m: m, inc: m.incarnation, acked: c.check.AckedCount(), r: r})
	return c.drain(m)
}

// deliver hands e to its receiver, unless the network or the receiver's
// state loses it.
func (c *cluster) deliver(e envelope) error {
	msg := e.msg
	from, to := c.byID(msg.GetFrom()), c.byID(msg.GetTo())
	if to == nil || from == nil {
		return fmt.Errorf("message %s from %d to %d: no such member", msg.GetType(), msg.GetFrom(), msg.GetTo())
	}
	c.record("deliver %s %d→%d term %d index %d", msg.GetType(), msg.GetFrom(), msg.GetTo(), msg.GetTerm(), msg.GetIndex())
	if !to.up {
		return c.lost(e, true) // connection refused
	}
	switch c.net.fate(e) {
	case lostSilently:
		c.record("  lost")
		return c.lost(e, false)
	case lostToCut:
		c.record("  lost to the partition")
		return c.lost(e, true)
	case duplicate:
		c.record("  duplicated")
	}
	to.core.Step(msg)
	if err := c.drain(to); err != nil {
		return err
	}
	if msg.GetType() != raftpb.MsgSnap {
		return nil
	}
	c.snapshots++
	if from.up && from.incarnation == e.fromInc {
		from.core.ReportSnapshot(to.id, false)
		return c.drain(from)
	}
	return nil
}

// lost tells the sender of a lost message what its transport would have
// noticed: every snapshot's outcome, and a failed connection when noticed.
func (c *cluster) lost(e envelope, noticed bool) error {
	from := c.byID(e.msg.GetFrom())
	if !from.up || from.incarnation != e.fromInc {
		return nil
	}
	switch {
	case e.msg.GetType() == raftpb.MsgSnap:
		from.core.ReportSnapshot(e.msg.GetTo(), true)
	case noticed:
		from.core.ReportUnreachable(e.msg.GetTo())
	default:
		return nil
	}
	return c.drain(from)
}

// crash simulates a power loss on m: its disk keeps what was synced and,
// half the time, a random share of what was not; everything waiting on it
// fails and the messages on their way to it are lost (those it sent are on
// the wire and may still arrive). It restarts in a later step.
func (c *cluster) crash(m *member) error {
	c.collect() // answers that arrived before the crash stand
	pct := 0
	if c.rng.IntN(2) == 0 {
		pct = c.rng.IntN(101)
	}
	c.crashes++
	c.record("crash member %d, keeping %d%% of its unsynced data", m.id, pct)
	crashed := m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(c.rng.Uint64(), c.rng.Uint64()))})
	m.core.Stop()
	err := m.eng.Close()
	m.fs, m.eng, m.tree, m.up = crashed, nil, nil, false
	if err != nil {
		return fmt.Errorf("member %d: close before the crash: %w", m.id, err)
	}
	c.collect()
	for _, e := range c.net.dropTo(m.id) {
		if err := c.lost(e, true); err != nil {
			return err
		}
	}
	return nil
}

// restart starts m's next incarnation from its crashed disk.
func (c *cluster) restart(m *member) error {
	m.incarnation++
	if err := c.open(m); err != nil {
		return err
	}
	applied := m.core.Status().Applied
	c.record("restart member %d at applied index %d", m.id, applied)
	c.check.Restarted(m.id, applied)
	return c.drain(m)
}

// collect records the answered proposals and read barriers: acknowledged
// writes, and the check that a released barrier sees every write
// acknowledged before it was issued.
func (c *cluster) collect() {
	kept := c.proposals[:0]
	for _, p := range c.proposals {
		done, _, err := p.p.Result()
		switch {
		case !done:
			kept = append(kept, p)
		case err == nil:
			c.record("acked %s", p.key)
			c.check.Acked(p.key, p.value)
		}
	}
	clear(c.proposals[len(kept):])
	c.proposals = kept

	keptReads := c.reads[:0]
	for _, r := range c.reads {
		done, err := r.r.Result()
		switch {
		case !done:
			keptReads = append(keptReads, r)
		case err == nil && r.m.up && r.m.incarnation == r.inc:
			c.readsChecked++
			c.check.HasAcked(r.m.id, r.acked, "read barrier", getter(r.m))
		}
	}
	clear(c.reads[len(keptReads):])
	c.reads = keptReads
}

// getter reads a key from m's tree.
func getter(m *member) func(string) (string, bool) {
	return func(key string) (string, bool) {
		ev, aerr := m.tree.Get(key, false, false)
		if aerr != nil || ev.Node == nil {
			return "", false
		}
		return ev.Node.Value, true
	}
}

// digest is a hash of m's key tree (its exported image).
func digest(m *member) (string, error) {
	h := sha256.New()
	if err := m.tree.Export(h); err != nil {
		return "", fmt.Errorf("member %d: export: %w", m.id, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// afterStep runs the cheap checks on every live member.
func (c *cluster) afterStep() error {
	c.collect()
	for _, m := range c.members {
		if !m.up {
			continue
		}
		st := m.core.Status()
		if st.Role == "StateLeader" {
			c.check.Leader(st.Term, m.id)
		}
		if c.step%digestEvery == 0 {
			d, err := digest(m)
			if err != nil {
				return err
			}
			c.check.StateDigest(m.id, st.Applied, d)
		}
	}
	return nil
}

// heal restarts every member that is down, heals the network and turns
// its faults off, then delivers everything and ticks every member while
// the network is quiet, until the members agree on a leader and applied
// everything it has. Then every member must hold every acknowledged write
// and the same state.
func (c *cluster) heal() error {
	c.net.calm = true
	clear(c.net.cut)
	c.record("healing")
	for _, m := range c.members {
		if !m.up {
			if err := c.restart(m); err != nil {
				return err
			}
		}
	}
	// Bounded by rounds and by wall time: a cluster that cannot settle
	// fails the run instead of hanging it.
	const maxRounds, maxWall = 50_000, 2 * time.Minute
	start := time.Now()
	settled := false
	for i := 0; i < maxRounds && !settled && time.Since(start) < maxWall; i++ {
		c.step++
		c.net.step = c.step
		if e, ok := c.net.next(); ok {
			if err := c.deliver(e); err != nil {
				return err
			}
			continue
		}
		if err := c.afterStep(); err != nil {
			return err
		}
		if c.check.Failed() {
			return c.check.Err()
		}
		var err error
		if settled, err = c.settled(); err != nil {
			return err
		} else if settled {
			break
		}
		c.clock = c.clock.Add(tickInterval)
		for _, m := range c.members {
			m.core.Tick()
			if err := c.drain(m); err != nil {
				return err
			}
		}
	}
	if !settled {
		return fmt.Errorf("the cluster did not settle within %d rounds or %v after the network healed", maxRounds, maxWall)
	}
	c.collect()
	if c.check.AckedCount() == 0 {
		return errors.New("no write was acknowledged: the run checked nothing")
	}
	for _, m := range c.members {
		c.check.HasAcked(m.id, c.check.AckedCount(), "after healing", getter(m))
		d, err := digest(m)
		if err != nil {
			return err
		}
		c.check.StateDigest(m.id, m.core.Status().Applied, d)
	}
	return c.check.Err()
}

// settled reports whether the network is empty and every member follows
// one leader and has applied its whole log.
func (c *cluster) settled() (bool, error) {
	if len(c.net.pool) > 0 {
		return false, nil
	}
	lead := c.members[0].core.Status().Leader
	if lead == 0 {
		return false, nil
	}
	ls := c.byID(lead).core.Status()
	_, last, err := c.byID(lead).core.LogIndexes()
	if err != nil {
		return false, err
	}
	if ls.Commit != last {
		return false, nil
	}
	for _, m := range c.members {
		st := m.core.Status()
		if st.Leader != lead || st.Commit != ls.Commit || st.Applied != ls.Commit {
			return false, nil
		}
	}
	return true, nil
}

// close stops every member and closes its engine.
func (c *cluster) close() error {
	var errs []error
	for _, m := range c.members {
		if m.core != nil && m.up {
			m.core.Stop()
		}
		if m.eng != nil {
			if err := m.eng.Close(); err != nil {
				errs = append(errs, fmt.Errorf("member %d: close engine: %w", m.id, err))
			}
			m.eng = nil
		}
	}
	return errors.Join(errs...)
}
