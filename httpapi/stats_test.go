package httpapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"cairn/api"
)

type fakePeerStats struct {
	self      SelfStats
	followers map[string]FollowerStats
}

func (f *fakePeerStats) SelfStats() SelfStats                { return f.self }
func (f *fakePeerStats) Followers() map[string]FollowerStats { return f.followers }

func TestInfoEndpoints(t *testing.T) {
	leaderSince := fixedNow.Add(-11730593679 * time.Nanosecond)
	start := time.Date(2026, 11, 25, 7, 32, 19, 241934403, time.UTC)
	follower := FollowerStats{}
	follower.Latency.Current = 0.5
	follower.Latency.Minimum = 0.25
	follower.Counts.Success = 3
	cases := []struct {
		name       string
		mod        func(*env)
		q          req
		wantStatus int
		wantBody   string
		wantCT     string
	}{
		{"W1 version", nil, req{method: "GET", target: "/version"}, 200,
			`{"etcdserver":"9.9.9","etcdcluster":"3.5.0"}`, "application/json"},
		{"self as leader", func(e *env) {
			e.opt.StartTime = start
			e.raft.StatusFn = func() RaftStatus {
				return RaftStatus{ID: 0x933a6163ed79adfc, Leader: 0x933a6163ed79adfc, Role: "StateLeader", LeaderSince: leaderSince}
			}
		}, req{method: "GET", target: "/v2/stats/self"}, 200,
			`{"name":"r1","id":"933a6163ed79adfc","state":"StateLeader","startTime":"2026-11-25T07:32:19.241934403Z","leaderInfo":{"leader":"933a6163ed79adfc","uptime":"11.730593679s","startTime":"2026-11-25T07:32:11.223521496Z"},"recvAppendRequestCnt":0,"sendAppendRequestCnt":0}`,
			"application/json"},
		{"self reports the live role [D-8]", func(e *env) {
			e.opt.StartTime = start
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 0x933a6163ed79adfc, Role: "candidate"} }
			e.opt.PeerStats = &fakePeerStats{self: SelfStats{RecvAppendRequestCnt: 5, RecvPkgRate: 1.5, SendAppendRequestCnt: 7, SendBandwidthRate: 100}}
		}, req{method: "GET", target: "/v2/stats/self"}, 200,
			`{"name":"r1","id":"933a6163ed79adfc","state":"StateCandidate","startTime":"2026-11-25T07:32:19.241934403Z","leaderInfo":{"leader":"0","uptime":"0s","startTime":"0001-01-01T00:00:00Z"},"recvAppendRequestCnt":5,"recvPkgRate":1.5,"sendAppendRequestCnt":7,"sendBandwidthRate":100}`,
			"application/json"},
		{"leader stats, one member", nil, req{method: "GET", target: "/v2/stats/leader"}, 200,
			`{"leader":"933a6163ed79adfc","followers":{}}`, "application/json"},
		{"leader stats with followers", func(e *env) {
			e.opt.PeerStats = &fakePeerStats{followers: map[string]FollowerStats{"323a1d048b88930f": follower}}
		}, req{method: "GET", target: "/v2/stats/leader"}, 200,
			`{"leader":"933a6163ed79adfc","followers":{"323a1d048b88930f":{"latency":{"current":0.5,"average":0,"standardDeviation":0,"minimum":0.25,"maximum":0},"counts":{"fail":0,"success":3}}}}`,
			"application/json"},
		{"leader stats on a follower", func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Leader: 2, Role: "StateFollower"} }
		}, req{method: "GET", target: "/v2/stats/leader"}, 403, `{"message":"not current leader"}`, "application/json"},
		{"leader stats without a leader", func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Role: "StateLeader"} }
		}, req{method: "GET", target: "/v2/stats/leader"}, 403, `{"message":"not current leader"}`, "application/json"},
		{"store stats", func(e *env) {
			e.store.StatsV = StoreStats{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
			e.opt.Watches = &fakeWatches{count: 3}
		}, req{method: "GET", target: "/v2/stats/store"}, 200,
			`{"getsSuccess":1,"getsFail":2,"setsSuccess":3,"setsFail":4,"deleteSuccess":5,"deleteFail":6,"updateSuccess":7,"updateFail":8,"createSuccess":9,"createFail":10,"compareAndSwapSuccess":11,"compareAndSwapFail":12,"compareAndDeleteSuccess":13,"compareAndDeleteFail":14,"expireCount":15,"watchers":3}`,
			"application/json"},
		{"store stats without a watch hub", nil, req{method: "GET", target: "/v2/stats/store"}, 200,
			`{"getsSuccess":0,"getsFail":0,"setsSuccess":0,"setsFail":0,"deleteSuccess":0,"deleteFail":0,"updateSuccess":0,"updateFail":0,"createSuccess":0,"createFail":0,"compareAndSwapSuccess":0,"compareAndSwapFail":0,"compareAndDeleteSuccess":0,"compareAndDeleteFail":0,"expireCount":0,"watchers":0}`,
			"application/json"},
		{"machines", func(e *env) {
			e.cluster.List = []api.Member{member1, member2, {ID: "5", ClientURLs: []string{"http://10.0.0.1:2379", "http://a:1"}}}
		}, req{method: "GET", target: "/v2/machines"}, 200,
			`http://10.0.0.1:2379, http://127.0.0.1:25790, http://127.0.0.1:25791, http://a:1`, "text/plain; charset=utf-8"},
		{"machines HEAD", nil, req{method: "HEAD", target: "/v2/machines"}, 200, "", "text/plain; charset=utf-8"},
		{"healthy", nil, req{method: "GET", target: "/health"}, 200,
			`{"health":"true","reason":""}`, "text/plain; charset=utf-8"},
		{"no leader", func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Role: "StateFollower"} }
		}, req{method: "GET", target: "/health"}, 503,
			`{"health":"false","reason":"RAFT NO LEADER"}` + "\n", "text/plain; charset=utf-8"},
		{"serializable skips the leader check only", func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Role: "StateFollower"} }
			e.raft.BarrierFn = func(context.Context) error { return errors.New("etcdserver: request timed out") }
		}, req{method: "GET", target: "/health?serializable=true"}, 503,
			`{"health":"false","reason":"QGET ERROR:etcdserver: request timed out"}` + "\n", "text/plain; charset=utf-8"},
		{"serializable healthy", func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Role: "StateFollower"} }
		}, req{method: "GET", target: "/health?serializable=true"}, 200,
			`{"health":"true","reason":""}`, "text/plain; charset=utf-8"},
		{"quorum read times out", func(e *env) {
			e.raft.BarrierFn = func(ctx context.Context) error {
				dl, ok := ctx.Deadline()
				if !ok || time.Until(dl) > time.Second {
					return errors.New("no 1 s deadline")
				}
				return context.DeadlineExceeded
			}
		}, req{method: "GET", target: "/health"}, 503,
			`{"health":"false","reason":"QGET ERROR:etcdserver: request timed out"}` + "\n", "text/plain; charset=utf-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mod)
			w := e.do(t, tc.q)
			if w.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tc.wantStatus)
			}
			if w.Body.String() != tc.wantBody {
				t.Errorf("body %s\nwant %s", w.Body, tc.wantBody)
			}
			wantHeader(t, w.Header(), "Content-Type", tc.wantCT)
			wantHeader(t, w.Header(), "X-Etcd-Cluster-Id", "")
			wantHeader(t, w.Header(), "Access-Control-Allow-Origin", "*")
			if w.Code == 503 {
				wantHeader(t, w.Header(), "X-Content-Type-Options", "nosniff")
			}
			if w.Header().Get("Content-Length") == "" {
				t.Error("no Content-Length")
			}
		})
	}
}

func TestStateName(t *testing.T) {
	for in, want := range map[string]string{
		"StateLeader": "StateLeader", "StatePreCandidate": "StatePreCandidate", "leader": "StateLeader",
		"Follower": "StateFollower", "candidate": "StateCandidate", "pre-candidate": "StatePreCandidate", "": "StateFollower",
	} {
		if got := stateName(in); got != want {
			t.Errorf("stateName(%q) = %q, want %q", in, got, want)
		}
	}
}
