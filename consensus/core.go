package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"cairn/api"
	"cairn/storage"
)

// StateMachine is the deterministic replicated state the log is applied to
// (satisfied by *storage.Tree). All methods are called on the loop goroutine
// only; Apply/ApplyExpire/SetApplied/Restore write their records and the
// applied index into the given batch, which the loop commits.
type StateMachine interface {
	// Apply applies one command at raftIndex. A semantic failure is the
	// *api.Error (still a consumed index); a non-nil error is a storage
	// failure and stops the member. Never called with OpExpire.
	Apply(b *storage.Batch, raftIndex uint64, c *storage.Cmd) (*api.Event, *api.Error, error)
	// ApplyExpire removes everything that expired at or before now (the
	// proposing leader's clock, carried in the entry).
	ApplyExpire(b *storage.Batch, raftIndex uint64, now int64) ([]*api.Event, error)
	// SetApplied records raftIndex as applied for entries without a command
	// (a new leader's empty entry, conf changes).
	SetApplied(b *storage.Batch, raftIndex uint64) error
	// AppliedIndex is the index of the last applied entry.
	AppliedIndex() uint64
	// Export writes a point-in-time image of the state (snapshot data).
	Export(w io.Writer) error
	// Restore replaces the state with an exported image taken at raftIndex.
	Restore(r io.Reader, b *storage.Batch, raftIndex uint64) error
}

// Viewer is a StateMachine that can hand out a point-in-time view of its
// committed state, to be exported off the loop (storage.Tree is one).
type Viewer interface {
	View() *storage.TreeView
}

// SnapshotSender is a Transport that fills in a MsgSnap's data itself, off
// the loop, from src (HTTPTransport is one). It never blocks, reports the
// outcome through Node.ReportSnapshot as Send does, and calls src.Release
// exactly once.
type SnapshotSender interface {
	SendSnapshot(m *raftpb.Message, src *SnapshotSource)
}

// SnapshotSource is the data of a MsgSnap still to be exported: the
// membership header and a view of the state at the snapshot's index.
type SnapshotSource struct {
	header []byte
	view   *storage.TreeView
}

// Data exports the snapshot data into memory (at most once, before
// Release).
func (s *SnapshotSource) Data() ([]byte, error) {
	var buf bytes.Buffer
	if err := s.writeTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeTo streams the snapshot data to w (at most once, before Release).
func (s *SnapshotSource) writeTo(w io.Writer) error {
	if _, err := w.Write(s.header); err != nil {
		return err
	}
	if err := s.view.Export(w); err != nil {
		return fmt.Errorf("export snapshot: %w", err)
	}
	return nil
}

// Release frees the view.
func (s *SnapshotSource) Release() { s.view.Close() }

// ApplyObserver learns about applied state, on the loop goroutine, after
// the apply batch is committed and the proposers were answered. It must not
// block (watchers.Hub and leases.Expirer do non-blocking hand-offs).
type ApplyObserver interface {
	// Applied reports that every entry up to index is applied; events are
	// the events of the entries applied since the previous call, in index
	// order (possibly none: empty entries, conf changes, failed commands).
	Applied(index uint64, events []*api.Event)
	// Restored reports that the state was replaced by a snapshot at index.
	Restored(index uint64)
}

// Transport carries raft messages to the other members.
type Transport interface {
	// Send queues msgs for delivery and never blocks; the transport owns the
	// messages afterwards. Undeliverable messages are dropped and reported
	// through Node.ReportUnreachable; a MsgSnap's outcome through
	// Node.ReportSnapshot.
	Send(msgs []*raftpb.Message)
	Close() error
}

// Status is a copy of the member's raft state, published by the loop.
type Status struct {
	ID      uint64
	Leader  uint64 // 0 when there is none
	Term    uint64
	Commit  uint64
	Applied uint64
	// Role is "StateLeader", "StateFollower", "StateCandidate" or "StatePreCandidate".
	Role string
	// LeaderSince is when this member last saw a leader elected (zero with no leader).
	LeaderSince time.Time
}

// published is what the loop shares with other goroutines.
type published struct {
	status       atomic.Pointer[Status]
	members      atomic.Pointer[memberView]
	leaderChange *notifier
}

// readRequest is one ReadIndex round trip shared by every ReadBarrier that
// was waiting when it was issued.
type readRequest struct {
	ctx     []byte
	waiters []*readWaiter
	issued  uint64 // tick count at the last (re)issue
}

// waiterResult is a proposer's result held until the apply batch commits.
type waiterResult struct {
	id uint64
	r  result
}

const (
	// readRetryTicks: a ReadIndex without an answer after this many ticks
	// (a dropped message, a leader change) is issued again.
	readRetryTicks = 5
	// maxReadsInflight bounds the ReadIndex requests out at once: reads
	// that arrive meanwhile queue and share the next one. On a cluster each
	// request costs the leader a heartbeat round to every follower, so
	// fewer, fuller rounds leave more CPU for the reads themselves (etcd
	// keeps one in flight). Two, so that a request whose messages were
	// lost does not hold every read up until its retry.
	maxReadsInflight = 2
	// prunePendingTicks: how often proposals held for a leader are checked
	// for abandoned waiters.
	prunePendingTicks = 10
)

// core is one member's raft state machine and the loop body, as plain
// methods (tick, step, propose, readIndex, handleReady). It owns the
// RawNode and must be used from one goroutine only; it holds no channels
// and no timers, so tests can drive it step by step. Node.run is the
// production driver.
type core struct {
	id  uint64
	rn  *raft.RawNode
	ms  *raft.MemoryStorage
	eng *storage.Engine
	sm  StateMachine
	obs ApplyObserver
	tr  Transport
	// stage holds received snapshots staged in files (nil: in memory).
	stage *SnapshotStage
	log   *slog.Logger
	met   *metrics
	now   func() time.Time

	waits *waitRegistry
	pub   *published

	snapshotCount  uint64
	catchUpEntries uint64
	eagerEvery     uint64 // Config.LeaderCompactEvery

	applied        uint64            // last index applied to sm and committed to pebble
	durableCommit  uint64            // commit index of the last HardState written to pebble
	confState      *raftpb.ConfState // as of applied
	lastCompaction uint64            // applied index at the last compaction (or the loaded snapshot)
	lastEagerCheck uint64            // applied index when eagerCompactIndex was last consulted

	members     *memberSet // replicated member records, as of applied
	removedSelf bool       // this member applied its own removal (or a peer said so)

	lead            uint64
	role            raft.StateType
	term, commit    uint64
	leaderSince     time.Time
	leaderAppeared  bool // a leader appeared in the last Ready: flush held work after Advance
	campaignPending bool

	held         []proposal // proposals held while no leader is known
	readQueue    []*readWaiter
	readInflight map[uint64]*readRequest
	readSeq      uint64
	appliedWaits appliedWaits
	ticks        uint64

	// per Ready: results is reused, events is handed to the observer
	results []waiterResult
	events  []*api.Event
}

// tick advances raft's logical clock by one tick (election and heartbeat
// timeouts are counted in ticks) and retries stalled reads.
func (c *core) tick() {
	c.ticks++
	c.rn.Tick()
	c.retryReads(false)
	if c.ticks%prunePendingTicks == 0 {
		c.pruneHeld()
	}
}

// step hands a message from a peer to raft. Messages raft refuses (from an
// unknown peer, local types) are dropped: raft tolerates message loss.
func (c *core) step(m *raftpb.Message) {
	if err := c.rn.Step(m); err != nil {
		c.log.Debug("raft step dropped a message", "type", m.GetType().String(), "from", m.GetFrom(), "err", err)
	}
}

// report passes transport feedback to raft.
func (c *core) report(r report) {
	if r.removed {
		c.removedSelf = true
		return
	}
	if !r.snapshot {
		c.rn.ReportUnreachable(r.id)
		return
	}
	st := raft.SnapshotFinish
	if r.failed {
		st = raft.SnapshotFailure
	}
	c.rn.ReportSnapshot(r.id, st)
}

// propose appends proposals to the raft log, all in one MsgProp (one
// append, one broadcast). Without a known leader they are held until one
// appears: a proposal then waits up to its caller's deadline, as in etcd.
func (c *core) propose(ps []proposal) {
	if len(ps) == 0 {
		return
	}
	if c.lead == raft.None {
		c.held = append(c.held, ps...)
		return
	}
	ents := make([]*raftpb.Entry, 0, len(ps))
	for _, p := range ps {
		if !c.waits.has(p.id) { // the proposer may have given up already
			continue
		}
		if p.promote != 0 {
			if err := c.learnerInSync(p.promote); err != nil {
				c.waits.trigger(p.id, result{err: err})
				continue
			}
		}
		e := &raftpb.Entry{Data: p.data}
		if p.confChange {
			e.Type = raftpb.EntryConfChange.Enum()
		}
		ents = append(ents, e)
	}
	if len(ents) == 0 {
		return
	}
	err := c.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(c.id), Entries: ents})
	if err != nil {
		c.log.Debug("proposals dropped", "count", len(ps), "err", err)
		for _, p := range ps {
			c.waits.trigger(p.id, result{err: ErrProposalDropped})
		}
	}
}

// pruneHeld forgets held proposals whose proposer gave up.
func (c *core) pruneHeld() {
	kept := c.held[:0]
	for _, p := range c.held {
		if c.waits.has(p.id) {
			kept = append(kept, p)
		}
	}
	clear(c.held[len(kept):])
	c.held = kept
}

// readIndex queues ReadBarrier waiters; every waiter queued before the
// next issue shares one ReadIndex request.
func (c *core) readIndex(ws []*readWaiter) {
	c.readQueue = append(c.readQueue, ws...)
}

// issueReads sends one ReadIndex for all queued waiters, when a leader is
// known (a follower without a leader drops the request) and fewer than
// maxReadsInflight are out; otherwise they wait for an answer to free one.
func (c *core) issueReads() {
	if len(c.readQueue) == 0 || c.lead == raft.None || len(c.readInflight) >= maxReadsInflight {
		return
	}
	c.readSeq++
	req := &readRequest{ctx: binary.BigEndian.AppendUint64(nil, c.readSeq), waiters: c.readQueue, issued: c.ticks}
	c.readQueue = nil
	c.readInflight[c.readSeq] = req
	c.rn.ReadIndex(req.ctx)
	c.met.readIndexes.Inc()
}

// retryReads re-issues ReadIndex requests that got no answer within
// readRetryTicks (or all of them when force is set, after a leader change),
// dropping waiters whose caller gave up. Re-issuing with the same context is
// safe: every answer is a read index obtained after all of the request's
// waiters arrived.
func (c *core) retryReads(force bool) {
	if len(c.readInflight) == 0 {
		return
	}
	// In request order, so that a driven core is deterministic.
	for _, seq := range slices.Sorted(maps.Keys(c.readInflight)) {
		req := c.readInflight[seq]
		if !force && c.ticks-req.issued < readRetryTicks {
			continue
		}
		kept := req.waiters[:0]
		for _, w := range req.waiters {
			if !w.abandoned() {
				kept = append(kept, w)
			}
		}
		req.waiters = kept
		if len(kept) == 0 {
			delete(c.readInflight, seq)
			continue
		}
		if c.lead != raft.None {
			req.issued = c.ticks
			c.rn.ReadIndex(req.ctx)
		}
	}
}

// handleReady processes one Ready, if raft has one, in the order raft
// requires: persist (snapshot + HardState + entries in one batch, synced
// when rd.MustSync: the only fsync), send (a leader sends first), apply
// (one unsynced batch), then answer proposers and readers, notify the
// observer, and Advance.
func (c *core) handleReady() error {
	if !c.rn.HasReady() {
		return nil
	}
	rd := c.rn.Ready()
	if rd.SoftState != nil {
		c.softState(rd.SoftState)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		c.term, c.commit = rd.HardState.GetTerm(), rd.HardState.GetCommit()
	}

	// A leader sends before its own fsync, so that the followers' fsyncs
	// run in parallel with it (raft thesis §10.2.1; etcd does the same):
	// raft counts the leader's own entries toward the commit quorum only
	// at Advance, after they are persisted. Any other member sends after
	// persisting: its votes and acknowledgements must be durable first.
	leaderSend := c.role == raft.StateLeader
	if leaderSend {
		if err := c.send(rd.Messages); err != nil {
			return err
		}
	}
	committed, err := c.applyStable(&rd)
	if err != nil {
		return err
	}
	carry, err := c.persist(&rd)
	if err != nil {
		return err
	}
	if !leaderSend {
		if err := c.send(rd.Messages); err != nil {
			if carry != nil {
				carry.Close()
			}
			return err
		}
	}
	if err := c.apply(committed, carry); err != nil {
		return err
	}
	c.readStates(rd.ReadStates)
	c.publish()
	c.rn.Advance(rd)

	if err := c.maybeCompact(); err != nil {
		return err
	}
	if c.leaderAppeared {
		c.leaderAppeared = false
		held := c.held
		c.held = nil
		c.propose(held)
		c.retryReads(true)
	}
	c.issueReads()
	c.maybeCampaign()
	return nil
}

// applyStable applies, before this Ready's fsync, the committed entries
// that earlier Readys already made durable, and returns the rest. Without
// it an entry would wait for the fsync of the entries proposed after it:
// on a leader, entries persisted in one Ready commit in the next, whose
// fsync of new entries would otherwise come first. The batch carries a
// HardState whose commit covers what it applies (raft refuses to restart
// with applied > commit), never more than the durable log.
func (c *core) applyStable(rd *raft.Ready) ([]*raftpb.Entry, error) {
	ents := rd.CommittedEntries
	if !rd.MustSync || !raft.IsEmptySnap(rd.Snapshot) || len(ents) == 0 {
		return ents, nil
	}
	lastStable, err := c.ms.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft storage last index: %w", err)
	}
	n := 0
	for n < len(ents) && ents[n].GetIndex() <= lastStable {
		n++
	}
	if n == 0 {
		return ents, nil
	}
	b := c.eng.NewBatch()
	if !raft.IsEmptyHardState(rd.HardState) {
		hs := proto.Clone(rd.HardState).(*raftpb.HardState)
		commit := max(min(hs.GetCommit(), ents[n-1].GetIndex()), c.durableCommit)
		hs.Commit = proto.Uint64(commit)
		if err := b.SaveRaftReady(hs, nil, nil, lastStable); err != nil {
			b.Close()
			return nil, fmt.Errorf("save hardstate before apply: %w", err)
		}
		c.durableCommit = commit
	}
	if err := c.apply(ents[:n], b); err != nil {
		return nil, err
	}
	return ents[n:], nil
}

// persist writes the Ready's snapshot, HardState and entries in one batch.
// When rd.MustSync (new entries, term or vote) or a snapshot is present the
// batch is committed with Sync and nil is returned. Otherwise (only the
// commit index moved) the batch is returned unsynced, to be committed
// together with the apply batch: one pebble commit for the Ready.
func (c *core) persist(rd *raft.Ready) (*storage.Batch, error) {
	hasSnap := !raft.IsEmptySnap(rd.Snapshot)
	if !hasSnap && raft.IsEmptyHardState(rd.HardState) && len(rd.Entries) == 0 {
		return nil, nil
	}
	lastIndex, err := c.ms.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft storage last index: %w", err)
	}
	var snapIndex uint64
	var data io.Reader
	sizeHint := 0 // of the batch: a restore's batch holds the whole key space
	if hasSnap {
		snapIndex = rd.Snapshot.GetMetadata().GetIndex()
		data = bytes.NewReader(rd.Snapshot.GetData())
		sizeHint = len(rd.Snapshot.GetData())
		f, staged, err := c.stage.open(rd.Snapshot.GetData())
		if err != nil {
			return nil, fmt.Errorf("restore snapshot at %d: %w", snapIndex, err)
		}
		if staged {
			defer f.Close()
			data = f
			if fi, err := f.Stat(); err == nil {
				sizeHint = int(min(fi.Size(), 1<<40))
			}
		}
	}
	// A batch grown by doubling to a key space's size would leave several
	// times that size to the garbage collector.
	b := c.eng.NewBatchWithSize(sizeHint + sizeHint/4)
	if err := b.SaveRaftReady(rd.HardState, rd.Entries, rd.Snapshot, lastIndex); err != nil {
		b.Close()
		return nil, fmt.Errorf("save ready: %w", err)
	}
	if hasSnap {
		r := bufio.NewReaderSize(data, 64<<10)
		members, removed, err := readSnapshotHeader(r)
		if err == nil {
			err = c.sm.Restore(r, b, snapIndex)
		}
		if err == nil {
			err = c.restoreMembers(b, members, removed)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("restore snapshot at %d: %w", snapIndex, err)
		}
	}
	if rd.MustSync || hasSnap {
		start := time.Now()
		err := c.eng.Commit(b, true)
		b.Close()
		if err != nil {
			return nil, fmt.Errorf("persist ready (%d entries): %w", len(rd.Entries), err)
		}
		c.met.fsyncDuration.Observe(time.Since(start).Seconds())
		if len(rd.Entries) > 0 {
			c.met.readyBatch.Observe(float64(len(rd.Entries)))
		}
		b = nil
	}
	if hasSnap {
		if err := c.ms.ApplySnapshot(rd.Snapshot); err != nil {
			return nil, fmt.Errorf("apply snapshot %d to raft storage: %w", snapIndex, err)
		}
		// Restored and synced: its staged file, and any older one raft
		// dropped, are no longer needed.
		c.stage.removeUpTo(snapIndex)
		c.applied = snapIndex
		c.lastCompaction = snapIndex
		c.confState = proto.Clone(raftpb.EnsureConfState(rd.Snapshot.GetMetadata().GetConfState())).(*raftpb.ConfState)
		c.met.snapshotsRestored.Inc()
		c.log.Info("restored snapshot", "index", snapIndex, "term", rd.Snapshot.GetMetadata().GetTerm())
		c.publish()
		if c.obs != nil {
			c.obs.Restored(snapIndex)
		}
	}
	err = nil
	if !raft.IsEmptyHardState(rd.HardState) {
		c.durableCommit = rd.HardState.GetCommit()
		err = c.ms.SetHardState(rd.HardState)
	}
	if err == nil {
		err = c.ms.Append(rd.Entries)
	}
	if err != nil {
		if b != nil {
			b.Close()
		}
		return nil, fmt.Errorf("raft memory storage: %w", err)
	}
	return b, nil
}

// send hands messages to the transport (after persisting, as raft
// requires). A MsgSnap gets its data here: see snapshotForFollower.
func (c *core) send(msgs []*raftpb.Message) error {
	if len(msgs) == 0 || c.tr == nil {
		return nil
	}
	out := msgs[:0]
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgSnap {
			out = append(out, m)
			continue
		}
		src, err := c.snapshotForFollower(m)
		if err != nil {
			return err
		}
		if src == nil {
			out = append(out, m)
			continue
		}
		c.tr.(SnapshotSender).SendSnapshot(m, src)
	}
	if len(out) > 0 {
		c.tr.Send(out)
	}
	return nil
}

// snapshotForFollower prepares a MsgSnap raft built from MemoryStorage's
// snapshot (which carries no data: compaction records only the metadata):
// its data is an image of the state machine as it is now, at the applied
// index, and its metadata is rewritten to match, as etcd does; the
// follower's MsgAppResp then moves its progress to the applied index.
//
// When the state machine offers views and the transport sends snapshots
// itself, only a view is taken here (a Pebble snapshot: nothing is copied)
// and returned; the transport's sender exports it off the loop, so a large
// key space does not stall this member. Otherwise the export is made here
// into m and nil is returned.
func (c *core) snapshotForFollower(m *raftpb.Message) (*SnapshotSource, error) {
	term, err := c.ms.Term(c.applied)
	if err != nil {
		return nil, fmt.Errorf("term of applied index %d for a snapshot: %w", c.applied, err)
	}
	m.Snapshot = &raftpb.Snapshot{
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(c.applied),
			Term:      new(term),
			ConfState: proto.Clone(c.confState).(*raftpb.ConfState),
		},
	}
	c.met.snapshotsSent.Inc()
	header := c.members.appendSnapshotHeader(nil)
	viewer, canView := c.sm.(Viewer)
	if _, canSend := c.tr.(SnapshotSender); canView && canSend {
		c.log.Info("sending snapshot", "to", m.GetTo(), "index", c.applied)
		return &SnapshotSource{header: header, view: viewer.View()}, nil
	}
	buf := bytes.NewBuffer(header)
	if err := c.sm.Export(buf); err != nil {
		return nil, fmt.Errorf("export snapshot at %d: %w", c.applied, err)
	}
	m.Snapshot.Data = buf.Bytes()
	c.log.Info("sending snapshot", "to", m.GetTo(), "index", c.applied, "bytes", buf.Len())
	return nil, nil
}

// readStates resolves answered ReadIndex requests: waiters are released
// now if the applied index already covers the read index, otherwise once
// it does.
func (c *core) readStates(rss []raft.ReadState) {
	for _, rs := range rss {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(rs.RequestCtx)
		req, ok := c.readInflight[seq]
		if !ok {
			continue // answer to a retry of a request already resolved
		}
		delete(c.readInflight, seq)
		if rs.Index <= c.applied {
			for _, w := range req.waiters {
				w.done <- nil
			}
			continue
		}
		c.appliedWaits.add(rs.Index, req.waiters)
	}
}

// softState tracks leader and role changes.
func (c *core) softState(ss *raft.SoftState) {
	if ss.Lead != c.lead {
		c.lead = ss.Lead
		if ss.Lead != raft.None {
			c.leaderSince = c.now()
			c.met.leaderChanges.Inc()
			c.met.hasLeader.Set(1)
			c.leaderAppeared = true
			c.log.Info("leader elected", "leader", ss.Lead, "term", c.rn.BasicStatus().GetTerm())
		} else {
			c.leaderSince = time.Time{}
			c.met.hasLeader.Set(0)
			c.log.Info("no leader")
		}
		c.pub.leaderChange.notify()
	}
	if ss.RaftState != c.role {
		c.role = ss.RaftState
		if c.role == raft.StateLeader {
			c.met.isLeader.Set(1)
		} else {
			c.met.isLeader.Set(0)
		}
	}
}

// publish makes the current status visible to Status(), allocating only
// when something changed.
func (c *core) publish() {
	s := Status{
		ID: c.id, Leader: c.lead, Term: c.term, Commit: c.commit, Applied: c.applied,
		Role: c.role.String(), LeaderSince: c.leaderSince,
	}
	if old := c.pub.status.Load(); old != nil && *old == s {
		return
	}
	c.pub.status.Store(&s)
}

// maybeCampaign makes a member whose configuration is itself alone campaign
// at once instead of after an election timeout: a single-member cluster is
// leader within milliseconds of Start. Raft refuses to campaign with
// committed but unapplied conf changes (a new cluster's bootstrap entries),
// so the attempt waits until everything committed is applied.
func (c *core) maybeCampaign() {
	if !c.campaignPending {
		return
	}
	st := c.rn.BasicStatus()
	if st.RaftState == raft.StateLeader {
		c.campaignPending = false
		return
	}
	if st.Applied < st.GetCommit() {
		return
	}
	c.campaignPending = false
	cs := c.confState
	if len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == c.id && len(cs.GetVotersOutgoing()) == 0 {
		if err := c.rn.Campaign(); err != nil {
			c.log.Warn("campaign", "err", err)
		}
	}
}

// maybeCompact compacts the raft log once SnapshotCount entries were
// applied since the last compaction, keeping catchUpEntries entries so that
// a slightly lagging follower catches up from the log, not a snapshot.
// MemoryStorage gets a snapshot point (metadata only, see
// snapshotForFollower) and drops the prefix; pebble records the same point
// and range-deletes the entries, unsynced (losing it in a crash only keeps
// entries that a restart skips).
//
// Between those, every eagerCompactEvery applied entries, a member also
// drops what it no longer needs (see eagerCompactIndex): the leader (or a
// member alone) what every other member already holds, a follower all but
// its last eagerCompactEvery entries. That keeps a log to a few thousand
// entries, so Pebble deletes them in the memtable where they were written
// instead of flushing them to sstables and compacting them later: about a
// fifth of the CPU of a write on one member
// (BenchmarkSteadyWrites64Clients). A follower keeps some entries because
// it may lead next, and a peer a few entries behind it should then catch
// up from the log, not from a snapshot.
func (c *core) maybeCompact() error {
	if c.snapshotCount == 0 {
		return nil
	}
	// The two rules keep their own clocks: an eager pass must never put off
	// the SnapshotCount rule, or a member that is down (holding the eager
	// point back) would let the leader's log grow without bound.
	var index uint64
	switch {
	case c.applied-c.lastCompaction >= c.snapshotCount:
		c.lastCompaction, c.lastEagerCheck = c.applied, c.applied
		if c.applied > c.catchUpEntries {
			index = c.applied - c.catchUpEntries
		}
		index = max(index, c.eagerCompactIndex())
	case c.applied-c.lastEagerCheck >= c.eagerEvery:
		c.lastEagerCheck = c.applied
		index = c.eagerCompactIndex()
	}
	if index == 0 {
		return nil
	}
	first, err := c.ms.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft storage first index: %w", err)
	}
	if index < first {
		return nil
	}
	snap, err := c.ms.CreateSnapshot(index, c.confState, nil)
	if err != nil {
		return fmt.Errorf("create snapshot point at %d: %w", index, err)
	}
	if err := c.ms.Compact(index); err != nil {
		return fmt.Errorf("compact raft storage to %d: %w", index, err)
	}
	b := c.eng.NewBatch()
	defer b.Close()
	if err := b.CompactRaftLog(snap.GetMetadata()); err != nil {
		return err
	}
	if err := c.eng.Commit(b, false); err != nil {
		return fmt.Errorf("compact raft log to %d: %w", index, err)
	}
	c.met.snapshots.Inc()
	c.log.Debug("compacted raft log", "index", index, "applied", c.applied)
	return nil
}

// eagerCompactEvery is how many applied entries apart the leader looks for
// entries every member holds (maybeCompact): well under what a 4 MiB
// memtable holds (about 4,000 writes), so most entries die in it.
const eagerCompactEvery = 1000

// eagerCompactIndex is the highest index this member's log no longer
// needs. On the leader (or a member alone): the highest applied index every
// other member (voters and learners) has in its log; raft sends a peer only
// what follows its match index. On any other member, which cannot see what
// the others hold: its applied index less eagerEvery entries, kept for the
// peers slightly behind it should it lead next.
func (c *core) eagerCompactIndex() uint64 {
	if c.role != raft.StateLeader {
		if c.applied > c.eagerEvery {
			return c.applied - c.eagerEvery
		}
		return 0
	}
	index := c.applied
	for id, pr := range c.rn.Status().Progress {
		if id != c.id {
			index = min(index, pr.Match)
		}
	}
	return index
}

// failAll answers everything that waits on this member with err.
func (c *core) failAll(err error) {
	c.waits.failAll(err)
	c.held = nil
	for _, w := range c.readQueue {
		w.done <- err
	}
	c.readQueue = nil
	for seq, req := range c.readInflight {
		for _, w := range req.waiters {
			w.done <- err
		}
		delete(c.readInflight, seq)
	}
	c.appliedWaits.failAll(err)
}
