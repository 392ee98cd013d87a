// Package consensus is Cairn's raft member: one goroutine owns a
// raft.RawNode, persists its log in the member's Pebble database, applies
// committed entries to the StateMachine and answers the proposers. See
// DESIGN.md for the loop's contract.
package consensus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"cairn/api"
	"cairn/storage"
)

// Config configures Start.
type Config struct {
	// ID is this member's raft ID (non-zero).
	ID uint64
	// Peers are the initial voters, this member included, for a new
	// cluster. Ignored when the engine already holds raft state (restart).
	Peers []uint64
	// InitialMembers are the records of a new cluster's members (ID, name,
	// peer URLs). When set, they are the initial voters (Peers may be
	// left empty) and each bootstrap conf change carries its record, so
	// every member — and any member that joins later and replays the
	// log — knows every member's record.
	InitialMembers []storage.Member
	// Join starts a member with no raft state and no peers: it was added
	// to a running cluster and waits for the leader to send it the log or
	// a snapshot (--initial-cluster-state existing).
	Join bool
	// Engine holds the raft log; the same engine as SM's.
	Engine *storage.Engine
	// SM is the replicated state machine (*storage.Tree).
	SM StateMachine
	// Observer learns about applied events and snapshot restores; may be nil.
	Observer ApplyObserver
	// Transport carries messages to the other members; nil for a single
	// member without network.
	Transport Transport
	// SnapshotStage, when set, is where the transport stages received
	// snapshots (TransportConfig.SnapshotStage); restores read them from
	// there. nil: snapshots arrive in memory.
	SnapshotStage *SnapshotStage
	// TickInterval is raft's logical clock period; 0 means 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks; 0 means 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks; 0 means 1.
	HeartbeatTicks int
	// SnapshotCount: the log is compacted when this many entries were
	// applied since the last compaction; 0 means 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many applied entries a compaction keeps
	// for slow followers; 0 means SnapshotCount/2, at most 5000.
	SnapshotCatchUpEntries uint64
	// LeaderCompactEvery is how many applied entries apart the leader drops
	// the entries every member holds (see maybeCompact); 0 means 1000.
	// Tests set it small, with SnapshotCount, to exercise both rules.
	LeaderCompactEvery uint64
	// Logger receives the member's and raft's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the member's metrics; may be nil.
	Registerer prometheus.Registerer
}

func (cfg *Config) setDefaults() error {
	if cfg.ID == 0 {
		return errors.New("consensus: member ID must be non-zero")
	}
	if cfg.Engine == nil || cfg.SM == nil {
		return errors.New("consensus: Engine and SM are required")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks <= 0 {
		cfg.HeartbeatTicks = 1
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = 10000
	}
	if cfg.SnapshotCatchUpEntries == 0 {
		cfg.SnapshotCatchUpEntries = min(cfg.SnapshotCount/2, 5000)
	}
	if cfg.LeaderCompactEvery == 0 {
		cfg.LeaderCompactEvery = eagerCompactEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, m := range cfg.InitialMembers {
		if !slices.Contains(cfg.Peers, m.ID) {
			cfg.Peers = append(cfg.Peers, m.ID)
		}
	}
	return nil
}

// Node is a running raft member. Its methods are safe for concurrent use;
// the raft state itself is owned by one goroutine (see DESIGN.md).
type Node struct {
	cfg   Config
	c     *core // owned by the loop goroutine after Start returns
	in    *inbox
	waits *waitRegistry
	ids   *idGenerator
	pub   *published
	met   *metrics
	log   *slog.Logger

	stopc    chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	err      error // set before done is closed
}

// Start opens the member: it loads the raft log from the engine (or
// bootstraps a new cluster from Peers when there is none), processes the
// first Readys — replaying committed entries the state machine has not
// applied yet and, for a single-member cluster, electing itself — and then
// starts the loop goroutine. A new or restarted single-member cluster has a
// leader when Start returns.
func Start(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consensus: register metrics: %w", err)
	}
	n := &Node{
		cfg:   cfg,
		in:    newInbox(),
		waits: newWaitRegistry(),
		ids:   newIDGenerator(cfg.ID, time.Now().UnixMilli()),
		pub:   &published{leaderChange: newNotifier()},
		met:   met,
		log:   cfg.Logger,
		stopc: make(chan struct{}),
		done:  make(chan struct{}),
	}
	c, err := newCore(&cfg, n.waits, n.pub, met, time.Now)
	if err != nil {
		return nil, err
	}
	n.c = c
	c.syncPeers(nil)
	c.maybeCampaign()
	for c.rn.HasReady() {
		if err := c.handleReady(); err != nil {
			return nil, fmt.Errorf("consensus: first ready: %w", err)
		}
	}
	if c.removedSelf {
		return nil, ErrRemoved
	}
	go n.run()
	return n, nil
}

// newCore builds the raft member from the persisted state without starting
// anything.
func newCore(cfg *Config, waits *waitRegistry, pub *published, met *metrics, now func() time.Time) (*core, error) {
	rl, err := cfg.Engine.LoadRaftLog()
	if err != nil {
		return nil, fmt.Errorf("consensus: load raft log: %w", err)
	}
	applied := cfg.SM.AppliedIndex()
	ms := raft.NewMemoryStorage()
	bootstrap := rl.Empty()
	if bootstrap && cfg.Join {
		bootstrap = false // the leader sends the log or a snapshot
		if applied != 0 {
			return nil, fmt.Errorf("consensus: state machine applied up to %d but the raft log is empty", applied)
		}
	} else if bootstrap {
		if len(cfg.Peers) == 0 {
			return nil, errors.New("consensus: no raft state and no initial peers")
		}
		if applied != 0 {
			return nil, fmt.Errorf("consensus: state machine applied up to %d but the raft log is empty", applied)
		}
	} else {
		snap, hs := rl.Snapshot, rl.HardState
		switch {
		case applied < snap.GetIndex():
			return nil, fmt.Errorf("consensus: state machine applied %d is behind the raft snapshot at %d", applied, snap.GetIndex())
		case applied > hs.GetCommit():
			return nil, fmt.Errorf("consensus: state machine applied %d is past the raft commit index %d", applied, hs.GetCommit())
		case hs.GetCommit() > rl.LastIndex():
			return nil, fmt.Errorf("consensus: raft commit index %d is past the last log entry %d", hs.GetCommit(), rl.LastIndex())
		}
		// The snapshot's ConfState is replaced by the one recorded at the
		// applied index: raft starts from the configuration the state
		// machine has reached and re-applies only later conf changes.
		err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: new(snap.GetIndex()), Term: new(snap.GetTerm()), ConfState: rl.ConfState,
		}})
		if err == nil {
			err = ms.SetHardState(hs)
		}
		if err == nil {
			err = ms.Append(rl.Entries)
		}
		if err != nil {
			return nil, fmt.Errorf("consensus: load raft storage: %w", err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   ms,
		Applied:                   applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  4 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    raftLogger{cfg.Logger},
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: new raft node: %w", err)
	}
	if bootstrap {
		// Every member of a new cluster must write identical bootstrap
		// entries: sort the peers.
		ids := slices.Clone(cfg.Peers)
		slices.SortFunc(ids, cmp.Compare)
		ids = slices.Compact(ids)
		peers := make([]raft.Peer, len(ids))
		for i, id := range ids {
			peers[i] = raft.Peer{ID: id}
			for _, m := range cfg.InitialMembers {
				if m.ID == id {
					rec := storage.Member{ID: id, Name: m.Name, PeerURLs: slices.Sorted(slices.Values(m.PeerURLs))}
					peers[i].Context = storage.AppendMember(nil, &rec)
				}
			}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("consensus: bootstrap: %w", err)
		}
	}
	members, err := loadMembers(cfg.Engine, rl.ConfState, cfg.InitialMembers)
	if err != nil {
		return nil, err
	}
	c := &core{
		id:              cfg.ID,
		members:         members,
		rn:              rn,
		ms:              ms,
		eng:             cfg.Engine,
		sm:              cfg.SM,
		obs:             cfg.Observer,
		tr:              cfg.Transport,
		stage:           cfg.SnapshotStage,
		log:             cfg.Logger,
		met:             met,
		now:             now,
		waits:           waits,
		pub:             pub,
		snapshotCount:   cfg.SnapshotCount,
		catchUpEntries:  cfg.SnapshotCatchUpEntries,
		eagerEvery:      cfg.LeaderCompactEvery,
		applied:         applied,
		confState:       proto.Clone(rl.ConfState).(*raftpb.ConfState),
		lastCompaction:  rl.Snapshot.GetIndex(),
		campaignPending: true,
		readInflight:    make(map[uint64]*readRequest),
		// Read contexts are unique across restarts, so a late answer to a
		// request of a previous incarnation cannot match a new one.
		readSeq: uint64(now().UnixNano()),
	}
	st := rn.BasicStatus()
	c.term, c.commit, c.role, c.lead = st.GetTerm(), st.GetCommit(), st.RaftState, st.Lead
	c.durableCommit = st.GetCommit()
	c.publish()
	c.publishMembers()
	return c, nil
}

// run is the loop goroutine: it waits for a tick or for input, hands the
// input to the core, then processes Readys until raft has none.
func (n *Node) run() {
	ticker := time.NewTicker(n.cfg.TickInterval)
	err := n.loop(ticker.C)
	ticker.Stop()
	switch {
	case errors.Is(err, ErrRemoved):
		n.err = err
		n.log.Warn("this member was removed from the cluster: stopping")
	case err != nil:
		n.err = err
		n.log.Error("raft member stopped on a failure", "err", err)
	}
	n.c.failAll(ErrStopped)
	rest := n.in.take()
	for _, p := range rest.props {
		n.waits.trigger(p.id, result{err: ErrStopped})
	}
	for _, r := range rest.reads {
		r.done <- ErrStopped
	}
	n.met.hasLeader.Set(0)
	n.met.isLeader.Set(0)
	close(n.done)
}

func (n *Node) loop(tickc <-chan time.Time) error {
	c := n.c
	for {
		select {
		case <-n.stopc:
			return nil
		case <-tickc:
			c.tick()
		case <-n.in.signal:
		}
		// Everything that arrived while the loop was busy (fsyncing, most
		// likely) goes into raft now, so that it shares the next Ready's
		// fsync: group commit.
		in := n.in.take()
		for _, m := range in.msgs {
			c.step(m)
		}
		for _, r := range in.reports {
			c.report(r)
		}
		if c.removedSelf {
			return ErrRemoved
		}
		c.propose(in.props)
		c.readIndex(in.reads)
		c.issueReads()
		for c.rn.HasReady() {
			if err := c.handleReady(); err != nil {
				return err
			}
		}
		if c.removedSelf {
			return ErrRemoved
		}
	}
}

// Propose replicates c and waits until this member has applied it. The
// result is the command's event, or its *api.Error (a failed precondition
// is still a committed, applied entry). Infrastructure failures are the
// package's sentinels: ErrTimeout / ErrCanceled when ctx ends first (the
// outcome is unknown: the command may still commit), ErrStopped,
// ErrProposalDropped. Propose never re-proposes. Without a known leader the
// proposal is held until one is elected or ctx ends. For OpExpire the
// event is nil; use ProposeExpire for the events.
func (n *Node) Propose(ctx context.Context, c storage.Cmd) (*api.Event, error) {
	r := n.propose(ctx, &c)
	if r.err != nil {
		return nil, r.err
	}
	return r.ev, nil
}

// ProposeExpire replicates an expiry pass stamped with now (the leader's
// clock, unix nanoseconds) and returns its expire events once applied.
func (n *Node) ProposeExpire(ctx context.Context, now int64) ([]*api.Event, error) {
	r := n.propose(ctx, &storage.Cmd{Op: storage.OpExpire, Now: now})
	if r.err != nil {
		return nil, r.err
	}
	return r.events, nil
}

func (n *Node) propose(ctx context.Context, c *storage.Cmd) result {
	id := n.ids.id()
	data := appendEnvelope(make([]byte, 0, 24+len(c.Path)+len(c.Value)+len(c.PrevValue)), id, c)
	return n.wait(ctx, proposal{id: id, data: data})
}

// wait hands p to the loop and waits for its result: the apply result,
// ctx's end, or the member stopping.
func (n *Node) wait(ctx context.Context, p proposal) result {
	select {
	case <-n.done:
		return result{err: ErrStopped}
	default:
	}
	if ctx.Err() != nil {
		return result{err: n.ctxErr(ctx, time.Now())}
	}
	start := time.Now()
	id := p.id
	ch := n.waits.register(id) // before proposing: the result cannot be missed
	n.met.proposalsPending.Inc()
	defer n.met.proposalsPending.Dec()
	n.in.addProposal(p)

	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		n.waits.cancel(id)
		select {
		case r = <-ch: // answered at the same moment: prefer the answer
		default:
			r = result{err: n.ctxErr(ctx, start)}
		}
	case <-n.done:
		n.waits.cancel(id)
		r = result{err: ErrStopped}
	}
	if r.err != nil {
		var apiErr *api.Error
		if !errors.As(r.err, &apiErr) {
			n.met.proposalsFailed.Inc()
		}
	}
	return r
}

// ReadBarrier returns once this member has applied everything committed
// before the call began (linearizable read): a ReadIndex round through raft,
// shared by every ReadBarrier waiting in the same loop iteration, then a
// wait until the applied index reaches the read index. Local reads after
// it see every write acknowledged before the call.
func (n *Node) ReadBarrier(ctx context.Context) error {
	select {
	case <-n.done:
		return ErrStopped
	default:
	}
	if ctx.Err() != nil {
		return n.ctxErr(ctx, time.Now())
	}
	start := time.Now()
	w := &readWaiter{done: make(chan error, 1), cancel: ctx.Done()}
	n.in.addRead(w)
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return n.ctxErr(ctx, start)
	case <-n.done:
		return ErrStopped
	}
}

// ctxErr maps a finished context to etcd's error: cancelled, or timed out
// (with etcd's hint when the request waited across a leader election).
func (n *Node) ctxErr(ctx context.Context, start time.Time) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ErrCanceled
	}
	since := n.Status().LeaderSince
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	if !since.IsZero() && start.After(since.Add(-2*electionTimeout)) && start.Before(since) {
		return ErrTimeoutLeaderFail
	}
	if n.connectionLost(start) {
		return ErrTimeoutConnectionLost
	}
	return ErrTimeout
}

// peerActivity is the part of a transport that knows since when a peer has
// been reachable (HTTPTransport.ActiveSince).
type peerActivity interface {
	ActiveSince(id uint64) time.Time
}

// connectionLost reports, as etcd does for a timed-out request, whether
// the member lacked what the request needed for all of its life: a leader
// a quorum of voters connected since start, a follower its leader. With
// no leader known it reports false (a plain timeout).
func (n *Node) connectionLost(start time.Time) bool {
	pa, ok := n.cfg.Transport.(peerActivity)
	if !ok {
		return false
	}
	st := n.Status()
	switch st.Leader {
	case 0:
		return false
	case st.ID:
		v := n.pub.members.Load()
		if v == nil {
			return false
		}
		voters, connected := ConnectedVoters(v.members, st.ID, pa.ActiveSince, start)
		return connected < voters/2+1
	default:
		return !reachedSince(pa.ActiveSince(st.Leader), start)
	}
}

// ConnectedVoters counts the voters of ms (learners excluded) and those of
// them reached continuously since since, by activeSince (when the current
// run of successful requests to a peer began; zero when it is failing);
// self counts as reached. etcd's quorum-safety checks (timeout causes,
// strict reconfiguration) are built on it.
func ConnectedVoters(ms []storage.Member, self uint64, activeSince func(id uint64) time.Time, since time.Time) (voters, connected int) {
	for _, m := range ms {
		if m.IsLearner {
			continue
		}
		voters++
		if m.ID == self || reachedSince(activeSince(m.ID), since) {
			connected++
		}
	}
	return voters, connected
}

// reachedSince: a peer active since active (zero: not) was reached
// continuously from before since.
func reachedSince(active, since time.Time) bool {
	return !active.IsZero() && active.Before(since)
}

// Status returns the member's raft state as of the last Ready. Cheap: one
// atomic load.
func (n *Node) Status() Status { return *n.pub.status.Load() }

// LeaderChanged returns a channel that is closed at the next leader change
// (including the loss of the leader); call again for the one after.
func (n *Node) LeaderChanged() <-chan struct{} { return n.pub.leaderChange.wait() }

// Step hands a message received from a peer to the loop. It does not block
// on the loop; when the member is stopped it returns ErrStopped.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	select {
	case <-n.done:
		return ErrStopped
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !n.in.addMessage(m) {
		return errors.New("consensus: receive queue full, message dropped")
	}
	return nil
}

// ReportUnreachable tells raft that the last message to id was not
// delivered (called by the transport).
func (n *Node) ReportUnreachable(id uint64) { n.in.addReport(report{id: id}) }

// ReportSnapshot tells raft how sending a snapshot to id ended (called by
// the transport for every MsgSnap it was given).
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	n.in.addReport(report{id: id, snapshot: true, failed: failed})
}

// ReportRemoved tells the member that a peer of its cluster refused its
// traffic because it was removed: the member stops with ErrRemoved.
func (n *Node) ReportRemoved() { n.in.addReport(report{removed: true}) }

// Stop stops the loop and waits for it. Pending proposals and reads fail
// with ErrStopped. It closes neither the transport nor the engine: the
// caller shuts those down afterwards. Safe to call more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.done
}

// Done is closed when the loop has exited (Stop, or a failure: see Err).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is the failure that stopped the loop (a storage error or a broken
// invariant), or nil while running or after a clean Stop.
func (n *Node) Err() error {
	select {
	case <-n.done:
		return n.err
	default:
		return nil
	}
}
