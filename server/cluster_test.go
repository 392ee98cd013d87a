package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/bench"
)

var (
	loopbackMu    sync.Mutex
	loopbackTaken = map[string]bool{} // handed out in this test process
)

// freeLoopbackURL reserves a port on 127.0.0.1 and releases it: members
// of a cluster must know each other's peer URLs before they start. The
// kernel may hand a released port out again at once, so a URL returned
// earlier in this process is never returned twice.
func freeLoopbackURL(t testing.TB) string {
	t.Helper()
	loopbackMu.Lock()
	defer loopbackMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + ln.Addr().String()
		ln.Close()
		if !loopbackTaken[u] {
			loopbackTaken[u] = true
			return u
		}
	}
	t.Fatal("no unused loopback port after 100 tries")
	return ""
}

// startTestCluster starts n members on loopback, all at once: in memory,
// or on disk under CAIRN_BENCH_DIR (benchmarks).
func startTestCluster(t testing.TB, n int, onDisk bool) []*Server {
	t.Helper()
	peers := make([]string, n)
	var parts []string
	for i := range peers {
		peers[i] = freeLoopbackURL(t)
		parts = append(parts, fmt.Sprintf("c%d=%s", i+1, peers[i]))
	}
	srvs := make([]*Server, n)
	errs := make(chan error, n)
	for i := range srvs {
		go func() {
			client := "http://127.0.0.1:0"
			dir := t.TempDir()
			if onDisk {
				d, err := os.MkdirTemp(os.Getenv("CAIRN_BENCH_DIR"), "cairn-cluster-bench")
				if err != nil {
					errs <- err
					return
				}
				t.Cleanup(func() { os.RemoveAll(d) })
				dir = d
			}
			s, err := Start(Config{
				Name: fmt.Sprintf("c%d", i+1), InMemory: !onDisk, DataDir: dir,
				ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
				ListenPeerURLs: []string{peers[i]}, InitialAdvertisePeerURLs: []string{peers[i]},
				InitialCluster: strings.Join(parts, ","), InitialClusterToken: "in-process",
				HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler),
			})
			srvs[i] = s
			errs <- err
		}()
	}
	var failed error
	for range srvs {
		if err := <-errs; err != nil {
			failed = err
		}
	}
	t.Cleanup(func() {
		for _, s := range srvs {
			if s == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.Stop(ctx)
			cancel()
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	return srvs
}

type httpResult struct {
	code   int
	header http.Header
	body   string
}

func doHTTP(t *testing.T, method, url, ctype, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// eventually polls cond every 10 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInProcessCluster runs three members in one process over the real
// peer transport on loopback and checks the client API of a cluster:
// writes and quorum reads on followers with meaningful raft headers, the
// member list everywhere, stats, membership changes with their checks and
// errors, and /health once the cluster has lost its quorum.
func TestInProcessCluster(t *testing.T) {
	srvs := startTestCluster(t, 3, false)
	var lead *Server
	eventually(t, 10*time.Second, "a leader", func() bool {
		for _, s := range srvs {
			if st := s.node.Status(); st.Leader == st.ID {
				lead = s
			}
		}
		return lead != nil
	})
	var followers []*Server
	for _, s := range srvs {
		if s != lead {
			followers = append(followers, s)
		}
	}
	for _, s := range srvs {
		eventually(t, 5*time.Second, "every member healthy", func() bool {
			return doHTTP(t, "GET", s.ClientURLs()[0]+"/health", "", "").code == http.StatusOK
		})
	}

	// A write on a follower is forwarded, applied and answered there.
	r := doHTTP(t, "PUT", followers[0].ClientURLs()[0]+"/v2/keys/a", "application/x-www-form-urlencoded", "value=1")
	if r.code != http.StatusCreated {
		t.Fatalf("PUT on a follower: %d %s", r.code, r.body)
	}
	for _, h := range []string{"X-Raft-Index", "X-Raft-Term", "X-Etcd-Index"} {
		if v, _ := strconv.ParseUint(r.header.Get(h), 10, 64); v == 0 {
			t.Fatalf("PUT on a follower: %s = %q", h, r.header.Get(h))
		}
	}
	// A quorum read on the other follower sees it at once.
	r = doHTTP(t, "GET", followers[1].ClientURLs()[0]+"/v2/keys/a?quorum=true", "", "")
	if r.code != http.StatusOK || !strings.Contains(r.body, `"value":"1"`) {
		t.Fatalf("quorum GET on the other follower: %d %s", r.code, r.body)
	}
	if v, _ := strconv.ParseUint(r.header.Get("X-Raft-Index"), 10, 64); v == 0 {
		t.Fatalf("follower's X-Raft-Index %q", r.header.Get("X-Raft-Index"))
	}

	// Every member lists every member with its name and client URLs.
	for _, s := range srvs {
		eventually(t, 5*time.Second, "three published members", func() bool {
			var list struct {
				Members []struct {
					Name       string   `json:"name"`
					ClientURLs []string `json:"clientURLs"`
				} `json:"members"`
			}
			r := doHTTP(t, "GET", s.ClientURLs()[0]+"/v2/members", "", "")
			if json.Unmarshal([]byte(r.body), &list) != nil || len(list.Members) != 3 {
				return false
			}
			for _, m := range list.Members {
				if m.Name == "" || len(m.ClientURLs) != 1 {
					return false
				}
			}
			return true
		})
		if got := doHTTP(t, "GET", s.ClientURLs()[0]+"/v2/machines", "", "").body; strings.Count(got, "http://") != 3 {
			t.Fatalf("/v2/machines: %q", got)
		}
	}
	var ls struct {
		Followers map[string]struct {
			Counts struct{ Success uint64 } `json:"counts"`
		} `json:"followers"`
	}
	r = doHTTP(t, "GET", lead.ClientURLs()[0]+"/v2/stats/leader", "", "")
	if err := json.Unmarshal([]byte(r.body), &ls); err != nil || len(ls.Followers) != 2 {
		t.Fatalf("/v2/stats/leader: %d %s", r.code, r.body)
	}
	for id, f := range ls.Followers {
		if f.Counts.Success == 0 {
			t.Fatalf("follower %s: no successful sends in %s", id, r.body)
		}
	}

	// Membership: an add through a follower, refused duplicates, a removal
	// of the member that never started, then 410.
	// Until the member has reached its peers for 5 s, etcd's strict check
	// refuses a voter that would make an unreachable quorum: 500.
	newPeer := freeLoopbackURL(t)
	eventually(t, 15*time.Second, "an add once the peers are connected for 5 s", func() bool {
		r = doHTTP(t, "POST", followers[1].ClientURLs()[0]+"/v2/members", "application/json", `{"peerURLs":["`+newPeer+`"]}`)
		if r.code == http.StatusInternalServerError && strings.Contains(r.body, `{"message":"Internal Server Error"}`) {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
	if r.code != http.StatusCreated || !strings.Contains(r.body, `"name":"","peerURLs":["`+newPeer+`"],"clientURLs":[]`) {
		t.Fatalf("POST /v2/members: %d %s", r.code, r.body)
	}
	var added struct{ ID string }
	_ = json.Unmarshal([]byte(r.body), &added)
	if r := doHTTP(t, "POST", lead.ClientURLs()[0]+"/v2/members", "application/json", `{"peerURLs":["`+newPeer+`"]}`); r.code != http.StatusConflict {
		t.Fatalf("adding a taken peer URL: %d %s", r.code, r.body)
	}
	if r := doHTTP(t, "PUT", lead.ClientURLs()[0]+"/v2/members/"+added.ID, "application/json", `{"peerURLs":["`+srvs[0].PeerURLs()[0]+`"]}`); r.code != http.StatusConflict {
		t.Fatalf("updating to a taken peer URL: %d %s", r.code, r.body)
	}
	for _, s := range srvs {
		eventually(t, 5*time.Second, "four members everywhere", func() bool { return len(s.cluster.Members()) == 4 })
	}
	if r := doHTTP(t, "DELETE", lead.ClientURLs()[0]+"/v2/members/"+added.ID, "", ""); r.code != http.StatusNoContent {
		t.Fatalf("removing the unstarted member: %d %s", r.code, r.body)
	}
	if r := doHTTP(t, "DELETE", followers[0].ClientURLs()[0]+"/v2/members/"+added.ID, "", ""); r.code != http.StatusGone {
		t.Fatalf("removing it again: %d %s", r.code, r.body)
	}

	// Two members gone: the last one has no leader and says so.
	for _, s := range followers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.Stop(ctx)
		cancel()
	}
	eventually(t, 10*time.Second, "/health 503 without a quorum", func() bool {
		r := doHTTP(t, "GET", lead.ClientURLs()[0]+"/health", "", "")
		return r.code == http.StatusServiceUnavailable && strings.Contains(r.body, "RAFT NO LEADER")
	})
}

// benchCluster runs the load generator against a three-member on-disk
// cluster on loopback (set CAIRN_BENCH_DIR to the disk to measure), the
// clients spread over every member's client URL.
func benchCluster(b *testing.B, workload string, clients int) {
	srvs := startTestCluster(b, 3, true)
	var endpoints []string
	for _, s := range srvs {
		endpoints = append(endpoints, s.ClientURLs()...)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srvs[0].node.Status().Leader == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	runBench(b, bench.Config{Endpoints: endpoints, Workload: workload, Clients: clients, KeySpace: 1000})
}

// BenchmarkCluster3Put1 is durable PUTs from one client on a three-member
// cluster (a follower's write is forwarded to the leader).
func BenchmarkCluster3Put1(b *testing.B) { benchCluster(b, bench.WorkloadPut, 1) }

// BenchmarkCluster3Put64 is durable PUTs from 64 clients on three members.
func BenchmarkCluster3Put64(b *testing.B) { benchCluster(b, bench.WorkloadPut, 64) }

// BenchmarkCluster3QuorumGet64 is linearizable GETs from 64 clients on
// three members (ReadIndex on followers too).
func BenchmarkCluster3QuorumGet64(b *testing.B) { benchCluster(b, bench.WorkloadQGet, 64) }
