package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"cairn/api"
)

const allowGET = "GET"

// selfStatsJSON is /v2/stats/self in etcd's field order (spec §9.2).
type selfStatsJSON struct {
	Name       string    `json:"name"`
	ID         string    `json:"id"`
	State      string    `json:"state"`
	StartTime  time.Time `json:"startTime"`
	LeaderInfo struct {
		Leader    string    `json:"leader"`
		Uptime    string    `json:"uptime"`
		StartTime time.Time `json:"startTime"`
	} `json:"leaderInfo"`
	RecvAppendRequestCnt uint64  `json:"recvAppendRequestCnt"`
	RecvPkgRate          float64 `json:"recvPkgRate,omitempty"`
	RecvBandwidthRate    float64 `json:"recvBandwidthRate,omitempty"`
	SendAppendRequestCnt uint64  `json:"sendAppendRequestCnt"`
	SendPkgRate          float64 `json:"sendPkgRate,omitempty"`
	SendBandwidthRate    float64 `json:"sendBandwidthRate,omitempty"`
}

func (rt *router) serveStatsSelf(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeStats)
	if !requireMethod(w, r, allowGET, http.MethodGet) {
		return
	}
	st := rt.raft.Status()
	self := rt.cluster.Self()
	var s selfStatsJSON
	s.Name = self.Name
	s.ID = self.ID
	if s.ID == "" {
		s.ID = strconv.FormatUint(st.ID, 16)
	}
	s.State = stateName(st.Role) // the live role [D-8]
	s.StartTime = rt.opt.StartTime
	s.LeaderInfo.Leader = strconv.FormatUint(st.Leader, 16)
	s.LeaderInfo.StartTime = st.LeaderSince
	s.LeaderInfo.Uptime = "0s"
	if !st.LeaderSince.IsZero() {
		s.LeaderInfo.Uptime = rt.now().Sub(st.LeaderSince).String()
	}
	if rt.opt.PeerStats != nil {
		ps := rt.opt.PeerStats.SelfStats()
		s.RecvAppendRequestCnt, s.RecvPkgRate, s.RecvBandwidthRate = ps.RecvAppendRequestCnt, ps.RecvPkgRate, ps.RecvBandwidthRate
		s.SendAppendRequestCnt, s.SendPkgRate, s.SendBandwidthRate = ps.SendAppendRequestCnt, ps.SendPkgRate, ps.SendBandwidthRate
	}
	body, _ := json.Marshal(&s)
	writeBody(w, r, http.StatusOK, hvJSON, body)
}

// stateName spells a raft role as raft.StateType.String() does.
func stateName(role string) string {
	if strings.HasPrefix(role, "State") {
		return role
	}
	switch strings.ToLower(role) {
	case "leader":
		return "StateLeader"
	case "candidate":
		return "StateCandidate"
	case "pre-candidate", "precandidate", "pre_candidate":
		return "StatePreCandidate"
	}
	return "StateFollower"
}

func (rt *router) serveStatsLeader(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeStats)
	if !requireMethod(w, r, allowGET, http.MethodGet) {
		return
	}
	st := rt.raft.Status()
	if st.ID == 0 || st.Leader != st.ID {
		writeMessage(w, r, http.StatusForbidden, "not current leader")
		return
	}
	followers := map[string]FollowerStats{}
	if rt.opt.PeerStats != nil {
		for id, f := range rt.opt.PeerStats.Followers() {
			followers[id] = f
		}
	}
	body, _ := json.Marshal(struct {
		Leader    string                   `json:"leader"`
		Followers map[string]FollowerStats `json:"followers"`
	}{strconv.FormatUint(st.ID, 16), followers})
	writeBody(w, r, http.StatusOK, hvJSON, body)
}

// serveStatsStore renders the 16 counters in wire order, watchers last.
func (rt *router) serveStatsStore(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeStats)
	if !requireMethod(w, r, allowGET, http.MethodGet) {
		return
	}
	s := rt.store.Stats()
	var watchers uint64
	if rt.opt.Watches != nil {
		if n := rt.opt.Watches.Count(); n > 0 {
			watchers = uint64(n)
		}
	}
	fields := [...]struct {
		name string
		v    uint64
	}{
		{"getsSuccess", s.GetsSuccess}, {"getsFail", s.GetsFail},
		{"setsSuccess", s.SetsSuccess}, {"setsFail", s.SetsFail},
		{"deleteSuccess", s.DeleteSuccess}, {"deleteFail", s.DeleteFail},
		{"updateSuccess", s.UpdateSuccess}, {"updateFail", s.UpdateFail},
		{"createSuccess", s.CreateSuccess}, {"createFail", s.CreateFail},
		{"compareAndSwapSuccess", s.CompareAndSwapSuccess}, {"compareAndSwapFail", s.CompareAndSwapFail},
		{"compareAndDeleteSuccess", s.CompareAndDeleteSuccess}, {"compareAndDeleteFail", s.CompareAndDeleteFail},
		{"expireCount", s.ExpireCount}, {"watchers", watchers},
	}
	b := make([]byte, 0, 512)
	for i, f := range fields {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, f.v, 10)
	}
	b = append(b, '}')
	writeBody(w, r, http.StatusOK, hvJSON, b)
}

// serveMachines lists every member's client URLs, sorted, joined by ", ".
func (rt *router) serveMachines(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeMachines)
	if !requireMethod(w, r, "GET,HEAD", http.MethodGet, http.MethodHead) {
		return
	}
	var urls []string
	for _, m := range rt.cluster.Members() {
		urls = append(urls, m.ClientURLs...)
	}
	sort.Strings(urls)
	writeBody(w, r, http.StatusOK, hvText, []byte(strings.Join(urls, ", ")))
}

func (rt *router) serveVersion(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeVersion)
	if !requireMethod(w, r, allowGET, http.MethodGet) {
		return
	}
	body, _ := json.Marshal(api.Version{Server: rt.opt.Version, Cluster: clusterVersion})
	writeBody(w, r, http.StatusOK, hvJSON, body)
}

// serveHealth checks the leader (unless serializable=true) and then runs a
// quorum read with a 1 s timeout (spec §9.5). 200 is text/plain without a
// newline; 503 is http.Error's text/plain with one.
func (rt *router) serveHealth(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeHealth)
	if !requireMethod(w, r, allowGET, http.MethodGet) {
		return
	}
	serializable := r.URL.Query().Get("serializable") == "true"
	if !serializable && rt.raft.Status().Leader == 0 {
		writeTextError(w, r, http.StatusServiceUnavailable, healthBody("false", "RAFT NO LEADER"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
	err := rt.raft.ReadBarrier(ctx)
	cancel()
	if err != nil {
		rt.log.Warn("/health quorum read failed", "err", err)
		writeTextError(w, r, http.StatusServiceUnavailable, healthBody("false", "QGET ERROR:"+consensusCause(err)))
		return
	}
	writeBody(w, r, http.StatusOK, hvText, []byte(healthBody("true", "")))
}

func healthBody(health, reason string) string {
	b, _ := json.Marshal(struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}{health, reason})
	return string(b)
}
