package consensus

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"cairn/storage"
)

// Membership errors, with etcd's texts (the HTTP layer matches them by
// text to its 404/409/410 answers).
var (
	ErrIDExists      = errors.New("membership: ID exists")
	ErrPeerURLExists = errors.New("membership: peerURL exists")
	ErrIDNotFound    = errors.New("membership: ID not found")
	ErrIDRemoved     = errors.New("membership: ID removed")
	// ErrMemberNotLearner refuses promoting a member that already votes
	// (the text etcd's API answers with).
	ErrMemberNotLearner = errors.New("etcdserver: can only promote a learner member")
	// ErrLearnerNotReady refuses promoting a learner whose log is too far
	// behind the leader's (see learnerInSync).
	ErrLearnerNotReady = errors.New("etcdserver: can only promote a learner member which is in sync with leader")
	// ErrRemoved stops a member that was removed from the cluster (Err
	// returns it): it applied its own removal, or a peer refused its
	// traffic because it was removed.
	ErrRemoved = errors.New("etcdserver: the member has been permanently removed from the cluster")
)

// PeerManager is implemented by transports that track peer addresses
// (HTTPTransport). The loop calls it as conf changes and member records
// are applied, and once at Start for every known member.
type PeerManager interface {
	AddPeer(id uint64, urls []string)
	UpdatePeer(id uint64, urls []string)
	RemovePeer(id uint64)
}

// memberSet is the replicated membership: every member's record and the
// IDs removed for good. Owned by the loop; readers get a memberView.
type memberSet struct {
	members map[uint64]*storage.Member
	removed map[uint64]bool
}

// memberView is an immutable copy of the membership for other goroutines.
type memberView struct {
	members []storage.Member // sorted by ID
	removed map[uint64]bool
}

func newMemberSet(ms []storage.Member, removed []uint64) *memberSet {
	s := &memberSet{members: make(map[uint64]*storage.Member), removed: make(map[uint64]bool)}
	for i := range ms {
		m := ms[i]
		s.members[m.ID] = &m
	}
	for _, id := range removed {
		s.removed[id] = true
	}
	return s
}

func (s *memberSet) view() *memberView {
	v := &memberView{members: make([]storage.Member, 0, len(s.members)), removed: maps.Clone(s.removed)}
	for _, m := range s.members {
		v.members = append(v.members, cloneMember(m))
	}
	slices.SortFunc(v.members, func(a, b storage.Member) int { return cmp.Compare(a.ID, b.ID) })
	return v
}

func cloneMember(m *storage.Member) storage.Member {
	c := *m
	c.PeerURLs = slices.Clone(m.PeerURLs)
	c.ClientURLs = slices.Clone(m.ClientURLs)
	return c
}

// peerURLTaken reports whether a member other than except uses one of urls.
func peerURLTaken(members []storage.Member, urls []string, except uint64) bool {
	for _, m := range members {
		if m.ID == except {
			continue
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(urls, u) {
				return true
			}
		}
	}
	return false
}

// validate checks a conf change against the membership as etcd's
// ValidateConfigurationChange does. It runs on apply, so that every member
// accepts or refuses the same changes. promote marks a ConfChangeAddNode
// that promotes an existing learner (promoteContext).
func (s *memberSet) validate(typ raftpb.ConfChangeType, id uint64, rec *storage.Member, promote bool) error {
	if s.removed[id] {
		return ErrIDRemoved
	}
	m, exists := s.members[id]
	if promote {
		switch {
		case typ != raftpb.ConfChangeAddNode || !exists:
			return ErrIDNotFound
		case !m.IsLearner:
			return ErrMemberNotLearner
		}
		return nil
	}
	switch typ {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if exists {
			return ErrIDExists
		}
		if rec != nil && peerURLTaken(s.view().members, rec.PeerURLs, id) {
			return ErrPeerURLExists
		}
	case raftpb.ConfChangeRemoveNode:
		if !exists {
			return ErrIDNotFound
		}
	case raftpb.ConfChangeUpdateNode:
		if !exists {
			return ErrIDNotFound
		}
		if rec != nil && peerURLTaken(s.view().members, rec.PeerURLs, id) {
			return ErrPeerURLExists
		}
	}
	return nil
}

// promoteContext is the context of a conf change that promotes a learner
// to a voter: raft promotes with a ConfChangeAddNode for the learner's ID,
// which must not be taken for the addition of a new member. Its first
// byte is not the member codec's version byte, so it is never mistaken for
// a record, and a build that predates promotion stops on it instead of
// applying it differently from the others.
var promoteContext = []byte("cairn/promote")

// confChangeContext decodes the member record a conf change carries; nil
// when there is none (a change not proposed by Cairn, or a promotion,
// which reports promote instead).
func confChangeContext(cc *raftpb.ConfChange) (rec *storage.Member, promote bool, err error) {
	ctx := cc.GetContext()
	switch {
	case len(ctx) == 0:
		return nil, false, nil
	case bytes.Equal(ctx, promoteContext):
		return nil, true, nil
	}
	m, err := storage.DecodeMember(ctx)
	if err != nil {
		return nil, false, err
	}
	if m.ID != cc.GetNodeId() {
		return nil, false, fmt.Errorf("conf change for %x carries the record of %x", cc.GetNodeId(), m.ID)
	}
	return &m, false, nil
}

// applyMemberChange applies a validated v1 conf change to the member
// records, in memory and in b, and to the transport's peer table.
func (c *core) applyMemberChange(b *storage.Batch, cc *raftpb.ConfChange, rec *storage.Member, promote bool) error {
	id := cc.GetNodeId()
	pm, _ := c.tr.(PeerManager)
	if promote {
		m := c.members.members[id]
		m.IsLearner = false
		if err := b.PutMember(m); err != nil {
			return err
		}
		c.publishMembers()
		return nil
	}
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		m := storage.Member{ID: id, IsLearner: cc.GetType() == raftpb.ConfChangeAddLearnerNode}
		if rec != nil {
			m.Name, m.PeerURLs, m.ClientURLs = rec.Name, slices.Clone(rec.PeerURLs), slices.Clone(rec.ClientURLs)
		}
		c.members.members[id] = &m
		if err := b.PutMember(&m); err != nil {
			return err
		}
		if pm != nil && id != c.id {
			pm.AddPeer(id, m.PeerURLs)
		}
	case raftpb.ConfChangeRemoveNode:
		delete(c.members.members, id)
		c.members.removed[id] = true
		if err := b.RemoveMember(id); err != nil {
			return err
		}
		if id == c.id {
			c.removedSelf = true
		} else if pm != nil {
			pm.RemovePeer(id)
		}
	case raftpb.ConfChangeUpdateNode:
		m := c.members.members[id]
		if rec != nil {
			m.PeerURLs = slices.Clone(rec.PeerURLs)
		}
		if err := b.PutMember(m); err != nil {
			return err
		}
		if pm != nil && id != c.id {
			pm.UpdatePeer(id, m.PeerURLs)
		}
	}
	c.publishMembers()
	return nil
}

// applyAttributes records a member's published name and client URLs. It
// takes no store index: the key space does not see it.
func (c *core) applyAttributes(b *storage.Batch, idx uint64, reqID uint64, rec *storage.Member) error {
	if m, ok := c.members.members[rec.ID]; ok {
		m.Name, m.ClientURLs = rec.Name, slices.Clone(rec.ClientURLs)
		if err := b.PutMember(m); err != nil {
			return err
		}
		c.publishMembers()
	}
	if err := c.sm.SetApplied(b, idx); err != nil {
		return fmt.Errorf("set applied %d: %w", idx, err)
	}
	var r result
	if _, ok := c.members.members[rec.ID]; !ok {
		r.err = ErrIDNotFound
	}
	c.results = append(c.results, waiterResult{id: reqID, r: r})
	return nil
}

func (c *core) publishMembers() { c.pub.members.Store(c.members.view()) }

// syncPeers tells the transport about every member but this one (Start,
// snapshot restore). Peers no longer members are removed.
func (c *core) syncPeers(before map[uint64]*storage.Member) {
	pm, ok := c.tr.(PeerManager)
	if !ok {
		return
	}
	for id := range before {
		if _, still := c.members.members[id]; !still && id != c.id {
			pm.RemovePeer(id)
		}
	}
	for id, m := range c.members.members {
		if id != c.id {
			pm.AddPeer(id, m.PeerURLs)
		}
	}
}

// Snapshot data, as sent to a follower:
//
//	magic "CAIRNSN" + version byte 1
//	uvarint count, then per member: uvarint len, storage.AppendMember record
//	uvarint count, then the removed IDs as uvarints
//	the state machine's Export stream
const snapshotMagic = "CAIRNSN\x01"

const snapshotMaxMembers = 1 << 16

func (s *memberSet) appendSnapshotHeader(dst []byte) []byte {
	dst = append(dst, snapshotMagic...)
	v := s.view()
	dst = binary.AppendUvarint(dst, uint64(len(v.members)))
	var rec []byte
	for i := range v.members {
		rec = storage.AppendMember(rec[:0], &v.members[i])
		dst = binary.AppendUvarint(dst, uint64(len(rec)))
		dst = append(dst, rec...)
	}
	removed := slices.Sorted(maps.Keys(s.removed))
	dst = binary.AppendUvarint(dst, uint64(len(removed)))
	for _, id := range removed {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

var errBadSnapshot = errors.New("consensus: malformed snapshot data")

// readSnapshotHeader reads the membership section of snapshot data; r is
// left at the start of the state machine's export.
func readSnapshotHeader(r *bufio.Reader) ([]storage.Member, []uint64, error) {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapshotMagic {
		return nil, nil, fmt.Errorf("%w: bad magic", errBadSnapshot)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > snapshotMaxMembers {
		return nil, nil, fmt.Errorf("%w: bad member count", errBadSnapshot)
	}
	var members []storage.Member
	for range n {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > 1<<20 {
			return nil, nil, fmt.Errorf("%w: bad member record length", errBadSnapshot)
		}
		rec := make([]byte, l)
		if _, err := io.ReadFull(r, rec); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
		}
		m, err := storage.DecodeMember(rec)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
		}
		members = append(members, m)
	}
	n, err = binary.ReadUvarint(r)
	if err != nil || n > snapshotMaxMembers {
		return nil, nil, fmt.Errorf("%w: bad removed count", errBadSnapshot)
	}
	var removed []uint64
	for range n {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: bad removed ID", errBadSnapshot)
		}
		removed = append(removed, id)
	}
	return members, removed, nil
}

// restoreMembers replaces the membership with a snapshot's, in b and in
// memory, and updates the transport's peers.
func (c *core) restoreMembers(b *storage.Batch, members []storage.Member, removed []uint64) error {
	if err := b.ReplaceMembers(members, removed); err != nil {
		return err
	}
	before := c.members.members
	c.members = newMemberSet(members, removed)
	c.syncPeers(before)
	c.publishMembers()
	return nil
}

// loadMembers reads the member records at Start. A data directory written
// before member records existed has voters without records: they get bare
// records (completed from initial when it knows them), written at once.
func loadMembers(eng *storage.Engine, cs *raftpb.ConfState, initial []storage.Member) (*memberSet, error) {
	ms, removed, err := eng.LoadMembers()
	if err != nil {
		return nil, fmt.Errorf("consensus: load members: %w", err)
	}
	s := newMemberSet(ms, removed)
	var missing []storage.Member
	for _, id := range append(slices.Clone(cs.GetVoters()), cs.GetLearners()...) {
		if _, ok := s.members[id]; ok {
			continue
		}
		m := storage.Member{ID: id, IsLearner: slices.Contains(cs.GetLearners(), id)}
		for _, im := range initial {
			if im.ID == id {
				m.Name, m.PeerURLs = im.Name, slices.Clone(im.PeerURLs)
			}
		}
		s.members[id] = &m
		missing = append(missing, m)
	}
	if len(missing) > 0 {
		b := eng.NewBatch()
		defer b.Close()
		for i := range missing {
			if err := b.PutMember(&missing[i]); err != nil {
				return nil, err
			}
		}
		if err := eng.Commit(b, true); err != nil {
			return nil, fmt.Errorf("consensus: write member records: %w", err)
		}
	}
	return s, nil
}

// Members returns every member's record, sorted by ID, as of the last
// applied entry. Safe from any goroutine.
func (n *Node) Members() []storage.Member {
	v := n.pub.members.Load()
	if v == nil {
		return nil
	}
	out := make([]storage.Member, len(v.members))
	for i := range v.members {
		out[i] = cloneMember(&v.members[i])
	}
	return out
}

// IsRemoved reports whether id was removed from the cluster.
func (n *Node) IsRemoved(id uint64) bool {
	v := n.pub.members.Load()
	return v != nil && v.removed[id]
}

// AddMember proposes adding m as a voter (or a learner with m.IsLearner)
// and waits until this member applied it. m.ID and m.PeerURLs are
// required; Name and ClientURLs are normally empty (the new member
// publishes them when it starts). The errors are the membership sentinels,
// the proposal errors of Propose, or ErrTimeout when raft refused the
// change (another one is still being applied).
func (n *Node) AddMember(ctx context.Context, m storage.Member) error {
	if m.ID == 0 || len(m.PeerURLs) == 0 {
		return errors.New("consensus: a new member needs an ID and peer URLs")
	}
	typ := raftpb.ConfChangeAddNode
	if m.IsLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	return n.confChange(ctx, typ, &m, false)
}

// RemoveMember proposes removing member id and waits until it is applied.
// A member that removes itself stops (Err returns ErrRemoved) after
// answering.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	return n.confChange(ctx, raftpb.ConfChangeRemoveNode, &storage.Member{ID: id}, false)
}

// UpdateMember proposes new peer URLs for member id and waits until applied.
func (n *Node) UpdateMember(ctx context.Context, id uint64, peerURLs []string) error {
	return n.confChange(ctx, raftpb.ConfChangeUpdateNode, &storage.Member{ID: id, PeerURLs: peerURLs}, false)
}

// PublishAttributes replicates this member's name and client URLs into its
// member record and waits until applied here.
func (n *Node) PublishAttributes(ctx context.Context, name string, clientURLs []string) error {
	id := n.ids.id()
	rec := storage.Member{ID: n.cfg.ID, Name: name, ClientURLs: clientURLs}
	data := appendAttributesEnvelope(nil, id, &rec)
	return n.wait(ctx, proposal{id: id, data: data}).err
}

// PromoteMember proposes promoting learner id to a voter and waits until
// this member applied it. Like etcd, only the leader promotes, and only a
// learner in sync with it (see learnerInSync): elsewhere it returns
// ErrNotLeader at once, and the caller forwards the request to the
// leader. The other errors are ErrIDNotFound, ErrIDRemoved,
// ErrMemberNotLearner, ErrLearnerNotReady and those of AddMember.
func (n *Node) PromoteMember(ctx context.Context, id uint64) error {
	if st := n.Status(); st.Leader != st.ID {
		return ErrNotLeader
	}
	return n.confChange(ctx, raftpb.ConfChangeAddNode, &storage.Member{ID: id}, true)
}

// confChange proposes a v1 conf change for m.ID and waits until this
// member applied it. promote marks the promotion of a learner.
func (n *Node) confChange(ctx context.Context, typ raftpb.ConfChangeType, m *storage.Member, promote bool) error {
	if v := n.pub.members.Load(); v != nil {
		// Quick answers from this member's view; apply checks again.
		s := &memberSet{members: make(map[uint64]*storage.Member), removed: v.removed}
		for i := range v.members {
			s.members[v.members[i].ID] = &v.members[i]
		}
		rec := m
		if typ == raftpb.ConfChangeRemoveNode || promote {
			rec = nil
		}
		if err := s.validate(typ, m.ID, rec, promote); err != nil {
			return err
		}
	}
	id := n.ids.id()
	cc := &raftpb.ConfChange{Id: new(id), Type: typ.Enum(), NodeId: new(m.ID)}
	switch {
	case promote:
		cc.Context = promoteContext
	case typ != raftpb.ConfChangeRemoveNode:
		cc.Context = storage.AppendMember(nil, m)
	}
	data, err := proto.Marshal(cc)
	if err != nil {
		return fmt.Errorf("consensus: encode conf change: %w", err)
	}
	p := proposal{id: id, data: data, confChange: true}
	if promote {
		p.promote = m.ID
	}
	return n.wait(ctx, p).err
}

// learnerReadyPercent is etcd's bar for promoting a learner: its match
// index must be at least 90% of the leader's own.
const learnerReadyPercent = 0.9

// learnerInSync is etcd's isLearnerReady, run on the loop right before a
// promotion is proposed, so that the check and the proposal see the same
// raft state: only a leader knows its followers' progress, and the
// learner's match index must be at least learnerReadyPercent of the
// leader's (its last persisted entry: etcd compares with the leader's own
// match, not the commit index).
func (c *core) learnerInSync(id uint64) error {
	if c.role != raft.StateLeader {
		return ErrNotLeader
	}
	var leaderMatch, match uint64
	found, learner := false, false
	c.rn.WithProgress(func(pid uint64, typ raft.ProgressType, pr tracker.Progress) {
		switch pid {
		case c.id:
			leaderMatch = pr.Match
		case id:
			match, found, learner = pr.Match, true, typ == raft.ProgressTypeLearner
		}
	})
	switch {
	case !found:
		return ErrIDNotFound
	case !learner:
		return ErrMemberNotLearner
	case float64(match) < float64(leaderMatch)*learnerReadyPercent:
		c.log.Info("refusing to promote a lagging learner", "member", fmt.Sprintf("%x", id), "match", match, "leader-match", leaderMatch)
		return ErrLearnerNotReady
	}
	return nil
}
