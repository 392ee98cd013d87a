package server

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"cairn/api"
	"cairn/consensus"
	"cairn/httpapi"
	"cairn/storage"
	"cairn/watchers"
)

// raftAdapter gives the HTTP layer its view of the raft node.
type raftAdapter struct{ n *consensus.Node }

func (a raftAdapter) Propose(ctx context.Context, c storage.Cmd) (*api.Event, error) {
	return a.n.Propose(ctx, c)
}

func (a raftAdapter) ReadBarrier(ctx context.Context) error { return a.n.ReadBarrier(ctx) }

func (a raftAdapter) Status() httpapi.RaftStatus {
	st := a.n.Status()
	return httpapi.RaftStatus{ID: st.ID, Leader: st.Leader, Term: st.Term, Commit: st.Commit, Applied: st.Applied, Role: st.Role, LeaderSince: st.LeaderSince}
}

// storeAdapter gives the HTTP layer its view of the key tree.
type storeAdapter struct{ *storage.Tree }

func (a storeAdapter) Stats() httpapi.StoreStats { return httpapi.StoreStats(a.Tree.Stats()) }

// watchAdapter gives the HTTP layer its view of the watch hub.
type watchAdapter struct{ h *watchers.Hub }

func (a watchAdapter) Watch(key string, recursive, stream bool, sinceIndex uint64) (httpapi.Watcher, *api.Error) {
	w, err := a.h.Watch(key, recursive, stream, sinceIndex)
	if err != nil {
		var apiErr *api.Error
		if errors.As(err, &apiErr) {
			return nil, apiErr
		}
		if errors.Is(err, watchers.ErrClosed) {
			return nil, api.NewError(api.EcodeRaftInternal, "etcdserver: server stopped", 0)
		}
		return nil, api.NewError(api.EcodeRaftInternal, err.Error(), 0)
	}
	return watcherAdapter{w}, nil
}

func (a watchAdapter) Count() int { return a.h.Count() }

type watcherAdapter struct{ w *watchers.Watcher }

func (a watcherAdapter) EventChan() <-chan *api.Event { return a.w.C }
func (a watcherAdapter) StartIndex() uint64           { return a.w.StartIndex }
func (a watcherAdapter) Remove()                      { a.w.Remove() }

// observers fans applied events out to several observers, in order.
type observers []consensus.ApplyObserver

func (o observers) Applied(index uint64, events []*api.Event) {
	for _, x := range o {
		x.Applied(index, events)
	}
}

func (o observers) Restored(index uint64) {
	for _, x := range o {
		x.Restored(index)
	}
}

// staticCluster is the membership of a single-member cluster.
type staticCluster struct {
	id      uint64
	self    api.Member
	members []api.Member
	status  func() consensus.Status
}

func (c *staticCluster) ClusterID() uint64 { return c.id }
func (c *staticCluster) Self() api.Member  { return c.self }
func (c *staticCluster) Members() []api.Member {
	out := slices.Clone(c.members)
	slices.SortFunc(out, func(a, b api.Member) int {
		x, _ := strconv.ParseUint(a.ID, 16, 64)
		y, _ := strconv.ParseUint(b.ID, 16, 64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return out
}
