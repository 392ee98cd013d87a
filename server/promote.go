package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cairn/api"
	"cairn/consensus"
	"cairn/httpapi"
)

// Promotion of a learner to a voter. Only the leader knows how far the
// learner's log is behind, so, as in etcd, the member asked forwards the
// request to the leader's peer port (POST /members/promote/<decimal id>),
// which checks and proposes it.

// headerForwarded marks a promotion forwarded by another member: the
// receiver answers it itself (503 when it is not the leader) instead of
// forwarding it again, so a request never travels in circles while two
// members disagree on the leader.
const headerForwarded = "X-Cairn-Forwarded"

// promoteRetry is how long a forwarding member waits before asking again
// when there is no leader or the leader does not answer.
const promoteRetry = 100 * time.Millisecond

// Errors of a forwarded promotion that another attempt may cure.
var (
	errPeerFiltered = errors.New("peer unreachable (filtered)")
	errNoLeader     = errors.New("no leader")
)

// PromoteMember makes learner id a voter (httpapi.MembershipChanger).
func (c *clusterView) PromoteMember(ctx context.Context, id uint64) (api.Member, error) {
	return c.promote(ctx, id, true)
}

// promote checks the request against this member's records and etcd's
// strict check, then promotes on the leader: here when this member leads,
// else, with forward, through the leader's peer port. After a forwarded
// promotion it waits (a read barrier) until this member applied it, so
// that its own /v2/members shows the voter at once.
func (c *clusterView) promote(ctx context.Context, id uint64, forward bool) (api.Member, error) {
	if c.node.IsRemoved(id) {
		return api.Member{}, httpapi.ErrMemberRemoved
	}
	m, ok := c.member(id)
	if !ok {
		return api.Member{}, httpapi.ErrMemberNotFound
	}
	if !m.IsLearner {
		return api.Member{}, consensus.ErrMemberNotLearner
	}
	if !readyToPromote(c.node.Members()) {
		return api.Member{}, errNotEnoughStarted
	}
	err := c.node.PromoteMember(ctx, id)
	if errors.Is(err, consensus.ErrNotLeader) && forward {
		if err = c.forwardPromote(ctx, id); err == nil {
			_ = c.node.ReadBarrier(ctx) // best effort: the promotion is done either way
		}
	}
	if err != nil {
		return api.Member{}, err
	}
	if now, ok := c.member(id); ok {
		m = now
	}
	return memberOf(m.ID, m.Name, m.PeerURLs, m.ClientURLs), nil
}

// forwardPromote asks the leader to promote learner id (etcd's
// promoteMemberHTTP), again while there is no leader or the leader cannot
// be reached, until ctx ends. The leader's refusals are final.
func (c *clusterView) forwardPromote(ctx context.Context, id uint64) error {
	lastErr := errNoLeader
	for {
		changed := c.node.LeaderChanged()
		switch lead := c.node.Status().Leader; lead {
		case 0:
		case c.selfID: // elected meanwhile
			if err := c.node.PromoteMember(ctx, id); !errors.Is(err, consensus.ErrNotLeader) {
				return err
			}
		default:
			if m, ok := c.member(lead); ok {
				for _, u := range m.PeerURLs {
					retry, err := c.postPromote(ctx, lead, u, id)
					if err == nil || !retry {
						return err
					}
					lastErr = err
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("forward the promotion of %s to the leader: %w (last attempt: %v)", hexID(id), consensus.ErrTimeout, lastErr)
		case <-c.node.Done():
			return consensus.ErrStopped
		case <-changed:
		case <-time.After(promoteRetry):
		}
	}
}

// postPromote sends one forwarded promotion to the leader's peer URL
// base. retry reports an error another attempt may cure (the leader
// unreachable, or no longer the leader).
func (c *clusterView) postPromote(ctx context.Context, lead uint64, base string, id uint64) (retry bool, err error) {
	if c.filter != nil && !c.filter(c.selfID, lead) {
		return true, errPeerFiltered
	}
	target := strings.TrimSuffix(base, "/") + peerPromotePrefix + strconv.FormatUint(id, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return false, fmt.Errorf("forward the promotion of %s: %w", hexID(id), err)
	}
	req.Header.Set(headerForwarded, "1")
	resp, err := c.peers.Do(req)
	if err != nil {
		return true, fmt.Errorf("forward the promotion of %s to %s: %w", hexID(id), base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusOK:
		return false, nil
	case http.StatusNotFound:
		return false, httpapi.ErrMemberNotFound
	case http.StatusGone:
		return false, httpapi.ErrMemberRemoved
	case http.StatusPreconditionFailed:
		for _, e := range []error{consensus.ErrLearnerNotReady, consensus.ErrMemberNotLearner} {
			if text == e.Error() {
				return false, e
			}
		}
	case http.StatusServiceUnavailable:
		return true, fmt.Errorf("forward the promotion of %s to %s: %s", hexID(id), base, text)
	}
	return false, fmt.Errorf("forward the promotion of %s to %s: %s: %s", hexID(id), base, resp.Status, text)
}

// peerPromotePrefix is the peer port's promotion path, followed by the
// decimal member ID (etcd's).
const peerPromotePrefix = "/members/promote/"

// servePeerPromote handles POST /members/promote/<decimal id> on the peer
// port, etcd's route, with text answers: 200 and the member list (as GET
// /members) on success; 404 "membership: ID not found" (or etcd's
// "member <x> not found in cluster" for an ID that is not a number), 410
// "membership: ID removed", 412 for a voter or a lagging learner, 503
// "etcdserver: not leader" for a forwarded request that reached a
// non-leader, 500 with the reason otherwise.
func (s *Server) servePeerPromote(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set(api.HeaderClusterID, hexID(s.cluster.ClusterID()))
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		http.Error(w, fmt.Sprintf("member %s not found in cluster", raw), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout())
	_, err = s.cluster.promote(ctx, id, r.Header.Get(headerForwarded) == "")
	cancel()
	switch {
	case err == nil:
		s.writePeerMembers(w)
		return
	case errors.Is(err, httpapi.ErrMemberNotFound) || errors.Is(err, consensus.ErrIDNotFound):
		http.Error(w, consensus.ErrIDNotFound.Error(), http.StatusNotFound)
	case errors.Is(err, httpapi.ErrMemberRemoved) || errors.Is(err, consensus.ErrIDRemoved):
		http.Error(w, consensus.ErrIDRemoved.Error(), http.StatusGone)
	case errors.Is(err, consensus.ErrLearnerNotReady), errors.Is(err, consensus.ErrMemberNotLearner):
		http.Error(w, err.Error(), http.StatusPreconditionFailed)
	case errors.Is(err, consensus.ErrNotLeader):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	s.logger.Warn("learner promotion refused", "member", hexID(id), "err", err)
}

// requestTimeout bounds a promotion served on the peer port, as the
// client port bounds its requests.
func (s *Server) requestTimeout() time.Duration {
	if s.cfg.RequestTimeout > 0 {
		return s.cfg.RequestTimeout
	}
	return httpapi.DefaultRequestTimeout
}
