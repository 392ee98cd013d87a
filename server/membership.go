package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"cairn/api"
	"cairn/consensus"
	"cairn/httpapi"
	"cairn/storage"
)

// Membership: how a member learns its identity (new cluster, join,
// restart), the cluster view the HTTP layer reads, /v2/members changes as
// raft conf changes with etcd's strict reconfiguration checks (learners
// skip them; their promotion is in promote.go), the transport's counters
// for /v2/stats, and the publication of the member's name and client URLs
// through raft.

// maxIDGenerations bounds the IDs tried for one set of peer URLs: the
// first is MemberID(urls, token); a URL set whose ID was already used (a
// member removed and added again) gets MemberID(urls, token+"#k").
const maxIDGenerations = 64

// memberIDGen is the k-th ID candidate for peer URLs in a cluster.
func memberIDGen(urls []string, token string, k int) uint64 {
	if k == 1 {
		return MemberID(urls, token)
	}
	return MemberID(urls, token+"#"+strconv.Itoa(k))
}

// isCandidateID reports whether id is one of the IDs the token gives urls.
func isCandidateID(id uint64, urls []string, token string) bool {
	for k := 1; k <= maxIDGenerations; k++ {
		if memberIDGen(urls, token, k) == id {
			return true
		}
	}
	return false
}

// identity is what start needs to run raft: the IDs, the initial members
// of a new cluster, or the peers of the cluster being joined.
type identity struct {
	clusterID, selfID uint64
	restart           bool
	join              bool
	initial           []storage.Member // new cluster: every member's record
	remote            []storage.Member // joining: the members to talk to
}

// resolveIdentity works out the cluster and member IDs.
//
//   - new: both come from --initial-cluster and --initial-cluster-token;
//     checkIdentity compares them with the data directory on restart.
//   - existing, first start: the member was added to a running cluster
//     (POST /v2/members). It reads the member list from the other
//     members' peer URLs, takes the cluster ID from there, finds itself by
//     its peer URLs and checks that its ID is one the token gives those
//     URLs: a wrong token or a member never added is refused, as is a
//     member that was already bootstrapped once (its data is lost: remove
//     it and add it again).
//   - existing, restart: the data directory's identity, checked against
//     the token.
func (s *Server) resolveIdentity(members []InitialMember, self int) (identity, error) {
	cfg := s.cfg
	if cfg.InitialClusterState == "new" {
		ids := make([]uint64, len(members))
		var initial []storage.Member
		for i, m := range members {
			ids[i] = m.ID
			initial = append(initial, storage.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs})
		}
		id := identity{clusterID: ClusterID(ids), selfID: members[self].ID, initial: initial}
		restart, err := s.checkIdentity(id.clusterID, id.selfID)
		id.restart = restart
		return id, err
	}

	peerURLs := members[self].PeerURLs
	got, found, err := s.engine.GetMeta("identity")
	if err != nil {
		return identity{}, err
	}
	if found {
		if len(got) != 16 {
			return identity{}, fmt.Errorf("data dir %s: corrupt identity record", cfg.DataDir)
		}
		id := identity{clusterID: binary.BigEndian.Uint64(got), selfID: binary.BigEndian.Uint64(got[8:]), restart: true, join: true}
		if !isCandidateID(id.selfID, peerURLs, cfg.InitialClusterToken) {
			return identity{}, fmt.Errorf("data dir %s belongs to member %s, which --initial-advertise-peer-urls %v and --initial-cluster-token %q do not give",
				cfg.DataDir, hexID(id.selfID), peerURLs, cfg.InitialClusterToken)
		}
		ms, _, err := s.engine.LoadMembers()
		if err != nil {
			return identity{}, err
		}
		if len(ms) == 0 {
			// Stopped before it heard from the cluster: ask again.
			_, remote, err := s.fetchCluster(members, self)
			if err != nil {
				return identity{}, err
			}
			id.remote = remote
		}
		return id, nil
	}

	clusterID, remote, err := s.fetchCluster(members, self)
	if err != nil {
		return identity{}, err
	}
	var me *storage.Member
	for i := range remote {
		if slices.Equal(sortedCopy(remote[i].PeerURLs), peerURLs) {
			me = &remote[i]
		}
	}
	if me == nil {
		return identity{}, fmt.Errorf("--initial-cluster-state existing: cluster %s has no member with peer URLs %v: add this member first (POST /v2/members with these peerURLs), then start it",
			hexID(clusterID), peerURLs)
	}
	if !isCandidateID(me.ID, peerURLs, cfg.InitialClusterToken) {
		return identity{}, fmt.Errorf("--initial-cluster-state existing: the member with peer URLs %v is %s in cluster %s, an ID --initial-cluster-token %q does not give: the token does not match the cluster's",
			peerURLs, hexID(me.ID), hexID(clusterID), cfg.InitialClusterToken)
	}
	if me.Name != "" {
		return identity{}, fmt.Errorf("--initial-cluster-state existing: member %s (%q) of cluster %s was already bootstrapped and this data dir is empty: remove the member and add it again",
			hexID(me.ID), me.Name, hexID(clusterID))
	}
	want := make([]byte, 16)
	binary.BigEndian.PutUint64(want, clusterID)
	binary.BigEndian.PutUint64(want[8:], me.ID)
	if err := s.engine.SetMeta("identity", want); err != nil {
		return identity{}, err
	}
	s.logger.Info("joining a running cluster", "cluster-id", hexID(clusterID), "id", hexID(me.ID), "members", len(remote))
	return identity{clusterID: clusterID, selfID: me.ID, join: true, remote: remote}, nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// startTransport creates the peer transport and tells it about the
// cluster being joined. In a new cluster's records, this member's peer
// URLs are the advertised ones with the ports actually bound (a listen
// URL with port 0 in tests).
func (s *Server) startTransport(id *identity, advertisePeer []string) error {
	for i := range id.initial {
		if id.initial[i].ID == id.selfID {
			id.initial[i].PeerURLs = sortedCopy(advertisePeer)
		}
	}
	tr, err := consensus.NewHTTPTransport(consensus.TransportConfig{
		ID:            id.selfID,
		ClusterID:     id.clusterID,
		Logger:        s.logger.With("component", "transport"),
		Registerer:    s.registry,
		DialTimeout:   max(s.cfg.HeartbeatInterval*5, time.Second),
		Filter:        s.cfg.PeerFilter,
		SnapshotStage: s.stage,
	})
	if err != nil {
		return err
	}
	s.transport = tr
	for _, m := range id.remote {
		tr.AddPeer(m.ID, m.PeerURLs)
	}
	return nil
}

// publish makes this member's name and client URLs part of its record. A
// member that is its cluster's leader already (a single member) does it
// before serving, so /v2/members is complete from the first request;
// others do it in the background once they hear from a leader.
func (s *Server) publish(ctx context.Context, clientURLs []string) {
	if st := s.node.Status(); st.Leader == st.ID {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.publishAttributes(pctx, s.cfg.Name, clientURLs)
		cancel()
		if err == nil {
			return
		}
		s.logger.Warn("publishing member attributes at start", "err", err)
	}
	s.goBackground(func() { _ = s.publishAttributes(ctx, s.cfg.Name, clientURLs) })
}

// fetchTimeout bounds how long a joining member looks for the cluster.
const fetchTimeout = 10 * time.Second

// fetchCluster reads GET /members from the peer URLs of the other members
// of --initial-cluster until one answers with the cluster's ID.
func (s *Server) fetchCluster(members []InitialMember, self int) (uint64, []storage.Member, error) {
	var urls []string
	for i, m := range members {
		if i != self {
			urls = append(urls, m.PeerURLs...)
		}
	}
	if len(urls) == 0 {
		return 0, nil, errors.New("--initial-cluster-state existing needs the peer URLs of the running members in --initial-cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, u := range urls {
			id, ms, err := getPeerMembers(ctx, hc, u)
			if err == nil {
				return id, ms, nil
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("--initial-cluster-state existing: cannot read the member list from %v after %d attempts: %w", urls, attempt+1, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getPeerMembers(ctx context.Context, hc *http.Client, base string) (uint64, []storage.Member, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/members", nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET %s/members: %s", base, resp.Status)
	}
	clusterID, err := strconv.ParseUint(resp.Header.Get(api.HeaderClusterID), 16, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s/members: no cluster ID header", base)
	}
	var raw []peerMember
	if err := json.Unmarshal(body, &raw); err != nil {
		return 0, nil, fmt.Errorf("GET %s/members: %w", base, err)
	}
	ms := make([]storage.Member, 0, len(raw))
	for _, m := range raw {
		ms = append(ms, storage.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return clusterID, ms, nil
}

// clusterView is the membership as the HTTP layer sees it (httpapi.Cluster,
// MembershipChanger and PeerStats), read from the raft member's replicated
// records and the transport.
type clusterView struct {
	id     uint64
	selfID uint64
	self   api.Member // this member as configured (advertised URLs)
	token  string
	node   *consensus.Node
	tr     *consensus.HTTPTransport
	now    func() time.Time
	// peers forwards promotions to the leader's peer port; filter is
	// Config.PeerFilter (nil: every peer reachable).
	peers  *http.Client
	filter func(from, to uint64) bool
	// maxLearners caps the learners AddMember lets in (Config.MaxLearners).
	// Checked on this member's view when the request arrives, as etcd's
	// strict checks are: two concurrent additions may both pass.
	maxLearners int
}

func (c *clusterView) ClusterID() uint64 { return c.id }

// Self is this member as configured: its name and advertised URLs are
// known before the cluster has applied them.
func (c *clusterView) Self() api.Member { return c.self }

func (c *clusterView) Members() []api.Member {
	ms := c.node.Members()
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		am := memberOf(m.ID, m.Name, m.PeerURLs, m.ClientURLs)
		am.IsLearner = m.IsLearner
		out = append(out, am)
	}
	return out
}

// Errors of the strict reconfiguration checks, with etcd's texts (the
// HTTP layer answers them with 500 and logs the reason).
var (
	errNotEnoughStarted = errors.New("etcdserver: re-configuration failed due to not enough started members")
	errUnhealthy        = errors.New("etcdserver: unhealthy cluster")
)

// healthInterval: a peer counts as connected when requests to it have
// succeeded for this long (etcd's HealthInterval).
const healthInterval = 5 * time.Second

// AddMember adds a voter, or a learner, with the given peer URLs (sorted
// by the caller). A learner takes no part in quorums, so the strict check
// does not apply to it (as in etcd).
func (c *clusterView) AddMember(ctx context.Context, peerURLs []string, isLearner bool) (api.Member, error) {
	ms := c.node.Members()
	for _, m := range ms {
		for _, u := range m.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return api.Member{}, httpapi.ErrPeerURLExists
			}
		}
	}
	if !isLearner && !readyToAddVoter(ms) {
		return api.Member{}, errNotEnoughStarted
	}
	if !isLearner && !connectedToQuorumAfterAdd(ms, c.selfID, c.tr.ActiveSince, c.now()) {
		return api.Member{}, errUnhealthy
	}
	if isLearner && learners(ms) >= c.maxLearners {
		return api.Member{}, httpapi.ErrTooManyLearners
	}
	var id uint64
	for k := 1; k <= maxIDGenerations && id == 0; k++ {
		cand := memberIDGen(peerURLs, c.token, k)
		if !c.node.IsRemoved(cand) && !slices.ContainsFunc(ms, func(m storage.Member) bool { return m.ID == cand }) {
			id = cand
		}
	}
	if id == 0 {
		return api.Member{}, httpapi.ErrMemberIDExists
	}
	if err := c.node.AddMember(ctx, storage.Member{ID: id, PeerURLs: peerURLs, IsLearner: isLearner}); err != nil {
		return api.Member{}, err
	}
	m := memberOf(id, "", peerURLs, nil)
	m.IsLearner = isLearner
	return m, nil
}

// UpdateMember replaces member id's peer URLs.
func (c *clusterView) UpdateMember(ctx context.Context, id uint64, peerURLs []string) error {
	if c.node.IsRemoved(id) {
		return httpapi.ErrMemberRemoved
	}
	m, ok := c.member(id)
	if !ok {
		return httpapi.ErrMemberNotFound
	}
	if slices.Equal(m.PeerURLs, peerURLs) {
		return nil // nothing changes (etcd answers 204 as well)
	}
	return c.node.UpdateMember(ctx, id, peerURLs)
}

// RemoveMember removes member id (this member included: it then stops).
func (c *clusterView) RemoveMember(ctx context.Context, id uint64) error {
	if c.node.IsRemoved(id) {
		return httpapi.ErrMemberRemoved
	}
	if _, ok := c.member(id); !ok {
		return httpapi.ErrMemberNotFound
	}
	if err := c.mayRemove(id); err != nil {
		return err
	}
	return c.node.RemoveMember(ctx, id)
}

func (c *clusterView) member(id uint64) (storage.Member, bool) {
	for _, m := range c.node.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return storage.Member{}, false
}

// voters counts the voting members and those of them that started
// (published a name); learners count toward neither.
func voters(ms []storage.Member) (members, started int) {
	for _, m := range ms {
		if m.IsLearner {
			continue
		}
		members++
		if m.Name != "" {
			started++
		}
	}
	return members, started
}

// readyToPromote is etcd's IsReadyToPromoteMember: the started voters
// plus the learner (counted as started) must be a quorum of the voters
// plus the learner.
func readyToPromote(ms []storage.Member) bool {
	members, started := voters(ms)
	return started+1 >= (members+1)/2+1
}

// readyToAddVoter is etcd's IsReadyToAddVotingMember: after the add, the
// started voters (those that published a name) must still be a quorum —
// except when adding a second member to a one-member cluster.
func readyToAddVoter(ms []storage.Member) bool {
	members, started := voters(ms)
	if started == 1 && members == 1 {
		return true
	}
	return started >= (members+1)/2+1
}

// connectedToQuorumAfterAdd is etcd's second strict check for adding a
// voter (isConnectedToQuorumAfterAddingNewMemberSince): counting the new
// member as unreachable, the voters this member has reached continuously
// for healthInterval, itself included, must be a quorum of the voters plus
// the new one. A one-member cluster may always grow.
func connectedToQuorumAfterAdd(ms []storage.Member, self uint64, activeSince func(id uint64) time.Time, now time.Time) bool {
	voters, connected := consensus.ConnectedVoters(ms, self, activeSince, now.Add(-healthInterval))
	return voters == 1 || connected >= (voters+1)/2+1
}

// mayRemove is etcd's strict check for a removal: the remaining started
// voters must be a quorum, and unless the member is down (never connected
// or failing), the members connected for healthInterval must still be a
// quorum without it.
func (c *clusterView) mayRemove(id uint64) error {
	ms := c.node.Members()
	nmembers, nstarted := 0, 0
	for _, m := range ms {
		if m.IsLearner {
			if m.ID == id {
				return nil
			}
			continue
		}
		if m.ID == id {
			continue
		}
		if m.Name != "" {
			nstarted++
		}
		nmembers++
	}
	if nstarted < nmembers/2+1 {
		return errNotEnoughStarted
	}
	if id != c.selfID && c.tr.ActiveSince(id).IsZero() {
		return nil // a member that is down is not part of the active quorum
	}
	voters, active := consensus.ConnectedVoters(ms, c.selfID, c.tr.ActiveSince, c.now().Add(-healthInterval))
	if active-1 < 1+(voters-1)/2 {
		return errUnhealthy
	}
	return nil
}

// SelfStats are the transport's append counters and rates.
func (c *clusterView) SelfStats() httpapi.SelfStats {
	s := c.tr.Stats()
	return httpapi.SelfStats{
		RecvAppendRequestCnt: s.RecvAppendRequestCnt, RecvPkgRate: s.RecvPkgRate, RecvBandwidthRate: s.RecvBandwidthRate,
		SendAppendRequestCnt: s.SendAppendRequestCnt, SendPkgRate: s.SendPkgRate, SendBandwidthRate: s.SendBandwidthRate,
	}
}

// Followers are the leader's view of every other member: batch round
// trips and messages delivered or lost.
func (c *clusterView) Followers() map[string]httpapi.FollowerStats {
	stats := c.tr.PeerStats()
	out := make(map[string]httpapi.FollowerStats, len(stats))
	for _, m := range c.node.Members() {
		if m.ID == c.selfID {
			continue
		}
		l, ok := stats[m.ID]
		if !ok {
			continue
		}
		var f httpapi.FollowerStats
		f.Latency.Current, f.Latency.Average, f.Latency.StandardDeviation = l.Current, l.Average, l.StandardDeviation
		f.Latency.Minimum, f.Latency.Maximum = l.Minimum, l.Maximum
		f.Counts.Fail, f.Counts.Success = l.Fail, l.Success
		out[hexID(m.ID)] = f
	}
	return out
}

// publishAttributes replicates this member's name and client URLs into
// its record (as etcd publishes its attributes) unless the record already
// has them, retrying until it is applied or ctx ends. A member whose
// record is not there yet (joining: it has not applied its own addition)
// waits for it.
func (s *Server) publishAttributes(ctx context.Context, name string, clientURLs []string) error {
	const retry = 500 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if rec, ok := s.cluster.member(s.cluster.selfID); ok {
			if rec.Name == name && slices.Equal(rec.ClientURLs, clientURLs) {
				return nil
			}
			if s.node.Status().Leader != 0 {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.node.PublishAttributes(pctx, name, clientURLs)
				cancel()
				if err == nil {
					s.logger.Info("published member attributes", "name", name, "client-urls", clientURLs)
					return nil
				}
				if errors.Is(err, consensus.ErrStopped) || ctx.Err() != nil {
					return err
				}
				if attempt%10 == 0 {
					s.logger.Warn("publishing member attributes", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.node.Done():
			return consensus.ErrStopped
		case <-time.After(retry):
		}
	}
}

// learners counts the members that do not vote.
func learners(ms []storage.Member) int {
	n := 0
	for _, m := range ms {
		if m.IsLearner {
			n++
		}
	}
	return n
}
