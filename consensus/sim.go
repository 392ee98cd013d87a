package consensus

import (
	"fmt"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/raft/v3/raftpb"

	"cairn/api"
	"cairn/storage"
)

// SimCore is the testing seam for deterministic cluster simulation
// (internal/testcluster). It is one member's loop body — the same core a
// running Node drives — without the Node around it: no goroutine, no
// inbox, no ticker. The caller is the loop: it ticks, steps messages in,
// proposes, and processes Readys one at a time, all on one goroutine, with
// the clock it injected. Everything the member sends goes to cfg.Transport
// (in a simulation, one that only collects the messages).
//
// Production code never uses SimCore; it exists so that a simulation can
// choose every interleaving with a seeded random source.
type SimCore struct {
	c   *core
	ids *idGenerator
}

// NewSimCore opens a member on cfg.Engine and cfg.SM exactly as Start does
// (loading the raft log, or bootstrapping a new cluster from cfg.Peers),
// but processes no Ready: call HandleReady while HasReady reports one.
// now is the member's clock (the leader's "elected at" time, request IDs
// and read contexts are taken from it).
func NewSimCore(cfg Config, now func() time.Time) (*SimCore, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consensus: register metrics: %w", err)
	}
	c, err := newCore(&cfg, newWaitRegistry(), &published{leaderChange: newNotifier()}, met, now)
	if err != nil {
		return nil, err
	}
	c.syncPeers(nil)
	c.maybeCampaign()
	return &SimCore{c: c, ids: newIDGenerator(cfg.ID, now().UnixMilli())}, nil
}

// Tick advances the member's logical clock by one tick.
func (s *SimCore) Tick() { s.c.tick() }

// Step hands a message from a peer to raft (what Node.Step queues).
func (s *SimCore) Step(m *raftpb.Message) { s.c.step(m) }

// ReportUnreachable tells raft that a message to id was not delivered.
func (s *SimCore) ReportUnreachable(id uint64) { s.c.report(report{id: id}) }

// ReportSnapshot tells raft how sending a snapshot to id ended. Every
// MsgSnap the member sent must be reported, delivered or not.
func (s *SimCore) ReportSnapshot(id uint64, failed bool) {
	s.c.report(report{id: id, snapshot: true, failed: failed})
}

// SimProposal is one proposal made through SimCore.Propose.
type SimProposal struct {
	ID uint64 // the request ID carried in the entry's envelope
	ch <-chan result
	r  *result
}

// Result reports, without blocking, whether the proposal has an answer
// yet, and the answer: the command's event, or its error (an *api.Error
// for a committed command that failed, ErrStopped when the member
// stopped, ErrProposalDropped when raft refused it).
func (p *SimProposal) Result() (done bool, ev *api.Event, err error) {
	if p.r == nil {
		select {
		case r := <-p.ch:
			p.r = &r
		default:
			return false, nil, nil
		}
	}
	return true, p.r.ev, p.r.err
}

// Propose proposes cmd as Node.Propose would (held until a leader is
// known), without waiting. Its outcome appears in the SimProposal once a
// HandleReady applied it on this member.
func (s *SimCore) Propose(cmd storage.Cmd) *SimProposal {
	id := s.ids.id()
	ch := s.c.waits.register(id)
	s.c.propose([]proposal{{id: id, data: appendEnvelope(nil, id, &cmd)}})
	return &SimProposal{ID: id, ch: ch}
}

// SimRead is one read barrier issued through SimCore.ReadBarrier.
type SimRead struct {
	w   *readWaiter
	err error
	ok  bool
}

// Result reports, without blocking, whether the barrier was released, and
// with what: nil once this member applied everything committed before the
// barrier was issued, ErrStopped when the member stopped.
func (r *SimRead) Result() (done bool, err error) {
	if !r.ok {
		select {
		case r.err = <-r.w.done:
			r.ok = true
		default:
			return false, nil
		}
	}
	return true, r.err
}

// ReadBarrier issues a linearizable read barrier (one ReadIndex), as
// Node.ReadBarrier would, without waiting.
func (s *SimCore) ReadBarrier() *SimRead {
	w := &readWaiter{done: make(chan error, 1)}
	s.c.readIndex([]*readWaiter{w})
	s.c.issueReads()
	return &SimRead{w: w}
}

// HasReady reports whether raft has a Ready to process.
func (s *SimCore) HasReady() bool { return s.c.rn.HasReady() }

// HandleReady processes one Ready exactly as the loop does (persist, send,
// apply, answer, Advance). An error stops the member: a Node would exit.
func (s *SimCore) HandleReady() error { return s.c.handleReady() }

// Status is the member's state now: raft's own view of the leader, term,
// role and commit index (including changes a Ready has not yet reported),
// and the index applied to the state machine and committed to Pebble.
func (s *SimCore) Status() Status {
	st := s.c.rn.BasicStatus()
	return Status{
		ID:          s.c.id,
		Leader:      st.Lead,
		Term:        st.GetTerm(),
		Commit:      st.GetCommit(),
		Applied:     s.c.applied,
		Role:        st.RaftState.String(),
		LeaderSince: s.c.leaderSince,
	}
}

// LogIndexes are the first and last index of the raft log in memory
// (first-1 is the last compaction point).
func (s *SimCore) LogIndexes() (first, last uint64, err error) {
	if first, err = s.c.ms.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("consensus: first log index: %w", err)
	}
	if last, err = s.c.ms.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("consensus: last log index: %w", err)
	}
	return first, last, nil
}

// SyncedCommits is how many synced (fsynced) Pebble commits this member
// made: each makes every earlier write of the member durable, applied
// indexes included.
func (s *SimCore) SyncedCommits() (uint64, error) {
	var m dto.Metric
	if err := s.c.met.fsyncDuration.Write(&m); err != nil {
		return 0, fmt.Errorf("consensus: read the fsync histogram: %w", err)
	}
	return m.GetHistogram().GetSampleCount(), nil
}

// Stop answers everything waiting on this member with ErrStopped, as a
// stopping Node does. The engine is the caller's to close.
func (s *SimCore) Stop() { s.c.failAll(ErrStopped) }
