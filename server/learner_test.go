package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startJoiningMember starts a member that was added to the running
// cluster of srvs (POST /v2/members) with peer URL peer, as an operator
// would: --initial-cluster-state existing with the whole membership.
func startJoiningMember(t *testing.T, name, peer string, srvs []*Server) *Server {
	t.Helper()
	var parts []string
	for _, s := range srvs {
		parts = append(parts, s.cfg.Name+"="+s.PeerURLs()[0])
	}
	parts = append(parts, name+"="+peer)
	client := "http://127.0.0.1:0"
	s, err := Start(Config{
		Name: name, InMemory: true,
		ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
		ListenPeerURLs: []string{peer}, InitialAdvertisePeerURLs: []string{peer},
		InitialCluster: strings.Join(parts, ","), InitialClusterState: "existing", InitialClusterToken: "in-process",
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.Stop(ctx)
		cancel()
	})
	return s
}

// listedMember is a member of GET /v2/members, with isLearner told apart
// from its absence.
type listedMember struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	IsLearner *bool  `json:"isLearner"`
}

// learnerFlags lists the members of s's /v2/members: hex ID → isLearner
// (nil when the field is absent).
func learnerFlags(t *testing.T, s *Server) map[string]*bool {
	t.Helper()
	r := doHTTP(t, "GET", s.ClientURLs()[0]+"/v2/members", "", "")
	var list struct{ Members []listedMember }
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &list) != nil {
		t.Fatalf("GET /v2/members: %d %s", r.code, r.body)
	}
	out := map[string]*bool{}
	for _, m := range list.Members {
		out[m.ID] = m.IsLearner
	}
	return out
}

// decimal renders a hex member ID as the peer port spells it.
func decimal(t *testing.T, hex string) string {
	t.Helper()
	id, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(id, 10)
}

// promoteUntilInSync asks url to promote until the answer is no longer
// "not in sync" (the leader hears of the learner's progress a moment
// after it applied the log), for up to 10 s.
func promoteUntilInSync(t *testing.T, url string) httpResult {
	t.Helper()
	var r httpResult
	eventually(t, 10*time.Second, "the learner in sync for its promotion", func() bool {
		r = doHTTP(t, "POST", url, "", "")
		return !strings.Contains(r.body, "in sync with leader")
	})
	return r
}

// TestLearnerMembership drives learners through both ports of real
// members: a learner added with "isLearner":true is listed as such and is
// not needed for writes; promotion errors on the client port (JSON) and
// the peer port (text); the started learner serves stats, health, reads,
// quorum reads and forwarded writes; it is promoted through its own client
// port (forwarded to the leader's peer port), a second learner through
// the leader's peer port, and both end up voters everywhere.
func TestLearnerMembership(t *testing.T) {
	c1 := startTestCluster(t, 1, false)[0]
	cURL, cPeer := c1.ClientURLs()[0], c1.PeerURLs()[0]
	selfHex := hexID(c1.node.Status().ID)
	for i := range 20 {
		if r := doHTTP(t, "PUT", fmt.Sprintf("%s/v2/keys/before/%d", cURL, i), "application/x-www-form-urlencoded", "value=v"); r.code != http.StatusCreated {
			t.Fatalf("PUT: %d %s", r.code, r.body)
		}
	}

	// Add a learner. Its object carries isLearner; voters' never do.
	l1Peer := freeLoopbackURL(t)
	r := doHTTP(t, "POST", cURL+"/v2/members", "application/json", `{"peerURLs":["`+l1Peer+`"],"isLearner":true}`)
	if r.code != http.StatusCreated || !strings.HasSuffix(r.body, `"name":"","peerURLs":["`+l1Peer+`"],"clientURLs":[],"isLearner":true}`+"\n") {
		t.Fatalf("POST a learner: %d %s", r.code, r.body)
	}
	var added listedMember
	_ = json.Unmarshal([]byte(r.body), &added)
	l1Hex := added.ID
	flags := learnerFlags(t, c1)
	if f := flags[l1Hex]; f == nil || !*f {
		t.Fatalf("the learner is not listed as one: %+v", flags)
	}
	if f, ok := flags[selfHex]; !ok || f != nil {
		t.Fatalf("the voter's object: isLearner %v (listed %v)", f, ok)
	}
	var peerList []map[string]any
	if r := doHTTP(t, "GET", cPeer+"/members", "", ""); r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &peerList) != nil || len(peerList) != 2 {
		t.Fatalf("peer GET /members: %d %s", r.code, r.body)
	}
	for _, m := range peerList { // told apart by peer URL (a decimal ID does not fit a float64)
		learner, has := m["isLearner"]
		if urls := fmt.Sprint(m["peerURLs"]); strings.Contains(urls, l1Peer) != (has && learner == true) {
			t.Fatalf("peer /members: %v", m)
		}
	}
	// One learner at a time (--max-learners, 1 by default, as etcd): a
	// second is refused while the first has not been promoted.
	if r := doHTTP(t, "POST", cURL+"/v2/members", "application/json", `{"peerURLs":["`+freeLoopbackURL(t)+`"],"isLearner":true}`); r.code != http.StatusPreconditionFailed ||
		r.body != `{"message":"etcdserver: too many learner members in cluster"}` {
		t.Fatalf("POST a second learner past the cap: %d %s", r.code, r.body)
	}
	// The learner has not started, and the voter alone still commits.
	if r := doHTTP(t, "PUT", cURL+"/v2/keys/with-learner-down", "application/x-www-form-urlencoded", "value=v"); r.code != http.StatusCreated {
		t.Fatalf("PUT with the learner down: %d %s", r.code, r.body)
	}

	// Promotion errors, client port (JSON) then peer port (text).
	for _, tc := range []struct{ target, want string }{
		{l1Hex, `412 {"message":"etcdserver: can only promote a learner member which is in sync with leader"}`},
		{selfHex, `412 {"message":"etcdserver: can only promote a learner member"}`},
		{"1234", `404 {"message":"No such member: 1234"}`},
		{"zz", `404 {"message":"No such member: zz"}`},
	} {
		r := doHTTP(t, "POST", cURL+"/v2/members/"+tc.target+"/promote", "", "")
		if got := fmt.Sprintf("%d %s", r.code, r.body); got != tc.want || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("client port: promote %s: %s (%s), want %s", tc.target, got, r.header.Get("Content-Type"), tc.want)
		}
	}
	for _, tc := range []struct{ method, target, want string }{
		{"POST", decimal(t, l1Hex), "412 etcdserver: can only promote a learner member which is in sync with leader\n"},
		{"POST", decimal(t, selfHex), "412 etcdserver: can only promote a learner member\n"},
		{"POST", "1234", "404 membership: ID not found\n"},
		{"POST", l1Hex + "x", "404 member " + l1Hex + "x not found in cluster\n"},
		{"GET", "1234", "405 Method Not Allowed\n"},
	} {
		r := doHTTP(t, tc.method, cPeer+"/members/promote/"+tc.target, "", "")
		if got := fmt.Sprintf("%d %s", r.code, r.body); got != tc.want {
			t.Errorf("peer port: %s promote %s: %q, want %q", tc.method, tc.target, got, tc.want)
		}
		if tc.method == "GET" && r.header.Get("Allow") != "POST" {
			t.Errorf("peer port: GET promote: Allow %q", r.header.Get("Allow"))
		}
	}
	if r := doHTTP(t, "GET", cPeer+"/members/promote", "", ""); r.code != http.StatusNotFound {
		t.Errorf("peer port: /members/promote without an ID: %d %s", r.code, r.body)
	}

	// Start the learner: it catches up and serves reads, quorum reads,
	// stats and health, and forwards writes.
	l1 := startJoiningMember(t, "l1", l1Peer, []*Server{c1})
	lURL := l1.ClientURLs()[0]
	eventually(t, 10*time.Second, "the learner caught up", func() bool {
		r := doHTTP(t, "GET", lURL+"/v2/keys/with-learner-down", "", "")
		return r.code == http.StatusOK
	})
	eventually(t, 10*time.Second, "the learner healthy", func() bool {
		return doHTTP(t, "GET", lURL+"/health", "", "").code == http.StatusOK
	})
	var self struct{ State, ID string }
	if r := doHTTP(t, "GET", lURL+"/v2/stats/self", "", ""); json.Unmarshal([]byte(r.body), &self) != nil || self.State != "StateFollower" || self.ID != l1Hex {
		t.Fatalf("/v2/stats/self on the learner: %d %s", r.code, r.body)
	}
	if r := doHTTP(t, "PUT", lURL+"/v2/keys/from-learner", "application/x-www-form-urlencoded", "value=1"); r.code != http.StatusCreated {
		t.Fatalf("PUT on the learner: %d %s", r.code, r.body)
	}
	if r := doHTTP(t, "PUT", cURL+"/v2/keys/linear", "application/x-www-form-urlencoded", "value=1"); r.code != http.StatusCreated {
		t.Fatal(r.body)
	}
	if r := doHTTP(t, "GET", lURL+"/v2/keys/linear?quorum=true", "", ""); r.code != http.StatusOK || !strings.Contains(r.body, `"value":"1"`) {
		t.Fatalf("quorum GET on the learner: %d %s", r.code, r.body)
	}
	eventually(t, 5*time.Second, "the learner listed with its name", func() bool {
		r := doHTTP(t, "GET", lURL+"/v2/members", "", "")
		return strings.Contains(r.body, `"name":"l1","peerURLs":["`+l1Peer+`"],"clientURLs":["`+lURL+`"],"isLearner":true}`)
	})
	if st := l1.node.Status(); st.Role != "StateFollower" || st.Leader != c1.node.Status().ID {
		t.Fatalf("learner's raft status: %+v", st)
	}

	// Promote it through its own client port: the request goes to the
	// leader's peer port. The answer is the member, now a voter, and the
	// learner's own list shows it at once.
	r = promoteUntilInSync(t, lURL+"/v2/members/"+l1Hex+"/promote")
	if want := `{"id":"` + l1Hex + `","name":"l1","peerURLs":["` + l1Peer + `"],"clientURLs":["` + lURL + `"]}` + "\n"; r.code != http.StatusOK || r.body != want {
		t.Fatalf("promote through the learner: %d %s, want %s", r.code, r.body, want)
	}
	if f := learnerFlags(t, l1)[l1Hex]; f != nil {
		t.Fatalf("the promoted member's own list still says isLearner %v", *f)
	}
	eventually(t, 5*time.Second, "the promotion on the leader", func() bool { return learnerFlags(t, c1)[l1Hex] == nil })
	if r := doHTTP(t, "POST", cURL+"/v2/members/"+l1Hex+"/promote", "", ""); r.code != http.StatusPreconditionFailed {
		t.Fatalf("promoting the promoted member again: %d %s", r.code, r.body)
	}

	// A second learner, added through a follower and promoted through the
	// leader's peer port; with two voters its quorum reads go through a
	// heartbeat round.
	l2Peer := freeLoopbackURL(t)
	r = doHTTP(t, "POST", lURL+"/v2/members", "application/json", `{"peerURLs":["`+l2Peer+`"],"isLearner":true}`)
	if r.code != http.StatusCreated {
		t.Fatalf("POST a second learner: %d %s", r.code, r.body)
	}
	_ = json.Unmarshal([]byte(r.body), &added)
	l2Hex := added.ID
	l2 := startJoiningMember(t, "l2", l2Peer, []*Server{c1, l1})
	if r := doHTTP(t, "PUT", cURL+"/v2/keys/linear", "application/x-www-form-urlencoded", "value=2"); r.code != http.StatusOK {
		t.Fatal(r.body)
	}
	eventually(t, 10*time.Second, "a quorum read on the second learner", func() bool {
		r := doHTTP(t, "GET", l2.ClientURLs()[0]+"/v2/keys/linear?quorum=true", "", "")
		return r.code == http.StatusOK && strings.Contains(r.body, `"value":"2"`)
	})
	var leaderPeer string
	for _, s := range []*Server{c1, l1} {
		if st := s.node.Status(); st.Leader == st.ID {
			leaderPeer = s.PeerURLs()[0]
		}
	}
	if leaderPeer == "" {
		t.Fatal("no leader among the voters")
	}
	r = promoteUntilInSync(t, leaderPeer+"/members/promote/"+decimal(t, l2Hex))
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("peer port promotion: %d %s", r.code, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &peerList); err != nil || len(peerList) != 3 || strings.Contains(r.body, "isLearner") {
		t.Fatalf("peer port promotion answer: %s", r.body)
	}
	for _, s := range []*Server{c1, l1, l2} {
		eventually(t, 5*time.Second, "three voters everywhere", func() bool {
			flags := learnerFlags(t, s)
			for _, f := range flags {
				if f != nil {
					return false
				}
			}
			return len(flags) == 3
		})
	}
}
