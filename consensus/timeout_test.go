package consensus

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"cairn/storage"
)

// activityTransport is a Transport that only knows since when each peer
// has been reachable.
type activityTransport map[uint64]time.Time

func (activityTransport) Send([]*raftpb.Message)            {}
func (activityTransport) Close() error                      { return nil }
func (a activityTransport) ActiveSince(id uint64) time.Time { return a[id] }

// TestTimeoutCauses: a timed-out request names its likely cause as etcd
// does: a leader without a quorum of voters connected since the request
// began, or a member without its leader, "lost the connection"; with no
// leader known, or with what it needed connected, it is a plain timeout;
// a request that waited across an election blames the previous leader.
func TestTimeoutCauses(t *testing.T) {
	start := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	before, after := start.Add(-time.Second), start.Add(time.Second)
	members := []storage.Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4, IsLearner: true}, {ID: 5, IsLearner: true}}
	cases := []struct {
		name   string
		leader uint64
		active activityTransport
		want   error
	}{
		{"no leader", 0, activityTransport{}, ErrTimeout},
		{"leader, quorum connected", 1, activityTransport{2: before}, ErrTimeout},
		{"leader, a peer connected only after the start", 1, activityTransport{2: after, 3: after}, ErrTimeoutConnectionLost},
		{"leader, no peer", 1, activityTransport{}, ErrTimeoutConnectionLost},
		{"leader, only learners connected", 1, activityTransport{4: before, 5: before}, ErrTimeoutConnectionLost},
		{"follower, leader connected", 2, activityTransport{2: before}, ErrTimeout},
		{"follower, leader reconnected after the start", 2, activityTransport{2: after, 3: before}, ErrTimeoutConnectionLost},
		{"follower, leader unreachable", 2, activityTransport{3: before}, ErrTimeoutConnectionLost},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{cfg: Config{Transport: tc.active, ElectionTicks: 10, TickInterval: 100 * time.Millisecond}, pub: &published{}}
			n.pub.status.Store(&Status{ID: 1, Leader: tc.leader, LeaderSince: start.Add(-time.Hour)})
			n.pub.members.Store(&memberView{members: members})
			ctx, cancel := context.WithDeadline(context.Background(), start)
			defer cancel()
			<-ctx.Done()
			err := n.ctxErr(ctx, start)
			if err != tc.want || !errors.Is(err, ErrTimeout) {
				t.Fatalf("got %q, want %q", err, tc.want)
			}
		})
	}
	t.Run("waited across an election", func(t *testing.T) {
		n := &Node{cfg: Config{Transport: activityTransport{}, ElectionTicks: 10, TickInterval: 100 * time.Millisecond}, pub: &published{}}
		n.pub.status.Store(&Status{ID: 1, Leader: 1, LeaderSince: start.Add(500 * time.Millisecond)})
		n.pub.members.Store(&memberView{members: members})
		if err := n.ctxErr(context.Background(), start); err != ErrTimeoutLeaderFail {
			t.Fatalf("got %q, want %q", err, ErrTimeoutLeaderFail)
		}
	})
	if got := ErrTimeoutConnectionLost.Error(); got != "etcdserver: request timed out, possibly due to connection lost" {
		t.Fatalf("text %q", got)
	}
}
