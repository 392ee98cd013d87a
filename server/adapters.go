package server

import (
	"context"

	"cairn/api"
	"cairn/consensus"
	"cairn/httpapi"
	"cairn/storage"
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
