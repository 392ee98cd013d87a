package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"cairn/server"
)

// freePeerURL reserves a loopback port and releases it: a member's peer URL
// must be known before it starts.
func freePeerURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// startCLIMember starts an in-memory member: a new one-member cluster, or
// with join set a member added to the cluster of --initial-cluster.
func startCLIMember(t *testing.T, name, peer, initial string, join bool) *server.Server {
	t.Helper()
	client := "http://127.0.0.1:0"
	cfg := server.Config{
		Name: name, InMemory: true,
		ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
		ListenPeerURLs: []string{peer}, InitialAdvertisePeerURLs: []string{peer},
		InitialCluster: initial, InitialClusterToken: "cli-test",
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}
	if join {
		cfg.InitialClusterState = "existing"
	}
	s, err := server.Start(cfg)
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

// runCLI runs the client commands with args and returns what they print.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{Name: "cairn", Commands: clientCommands(), Writer: &out, ErrWriter: io.Discard}
	err := app.Run(append([]string{"cairn"}, args...))
	return out.String(), err
}

// TestMemberCommands drives cairn member add/list/promote/update/remove
// against real members: a learner added, listed as one in every output
// format, refused its promotion before it runs, promoted once it caught
// up; a second learner updated and removed; bad arguments refused.
func TestMemberCommands(t *testing.T) {
	vPeer := freePeerURL(t)
	voter := startCLIMember(t, "v1", vPeer, "v1="+vPeer, false)
	ep := voter.ClientURLs()[0]
	member := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"member", args[0], "--endpoints", ep}, args[1:]...)...)
	}

	lPeer := freePeerURL(t)
	out, err := member("add", "--peer-urls", lPeer, "--learner", "l1")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^Member ([0-9a-f]+) added to cluster ([0-9a-f]+)\n\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("member add printed:\n%s", out)
	}
	id, cid := m[1], m[2]
	for _, want := range []string{`CAIRN_NAME="l1"`, "v1=" + vPeer, "l1=" + lPeer, `CAIRN_INITIAL_ADVERTISE_PEER_URLS="` + lPeer + `"`, `CAIRN_INITIAL_CLUSTER_STATE="existing"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("member add output lacks %s:\n%s", want, out)
		}
	}

	out, err = member("list")
	if err != nil || !strings.Contains(out, id+", unstarted, , "+lPeer+", , true\n") || !strings.Contains(out, ", started, v1, "+vPeer+", "+ep+", false\n") {
		t.Fatalf("member list: %v\n%s", err, out)
	}
	out, err = member("list", "-w", "json")
	if err != nil || !strings.Contains(out, `"id":"`+id+`","name":"","peerURLs":["`+lPeer+`"],"clientURLs":[],"isLearner":true}`) || strings.Count(out, "isLearner") != 1 {
		t.Fatalf("member list -w json: %v\n%s", err, out)
	}
	out, err = member("list", "-w", "table")
	if err != nil || !regexp.MustCompile(`\| +`+id+` \| unstarted \|.*\| +true \|`).MatchString(out) || !regexp.MustCompile(`\| +started \| +v1 \|.*\| +false \|`).MatchString(out) {
		t.Fatalf("member list -w table: %v\n%s", err, out)
	}

	if _, err := member("promote", id); err == nil || !strings.Contains(err.Error(), "412 Precondition Failed: etcdserver: can only promote a learner member which is in sync with leader") {
		t.Fatalf("promoting a learner that never ran: %v", err)
	}
	startCLIMember(t, "l1", lPeer, "v1="+vPeer+",l1="+lPeer, true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = member("promote", id)
		if err == nil || !strings.Contains(err.Error(), "in sync") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || out != "Member "+id+" promoted in cluster "+cid+"\n" {
		t.Fatalf("member promote: %v %q", err, out)
	}
	out, err = member("list")
	if err != nil || strings.Contains(out, "true") || strings.Count(out, "false\n") != 2 {
		t.Fatalf("member list after the promotion: %v\n%s", err, out)
	}

	// A second learner, never started: updated, then removed.
	out, err = member("add", "--learner", "--peer-urls", "http://127.0.0.1:3")
	if m = regexp.MustCompile(`^Member ([0-9a-f]+) added to cluster ` + cid + "\n$").FindStringSubmatch(out); err != nil || m == nil {
		t.Fatalf("member add without a name: %v %q", err, out)
	}
	id2 := m[1]
	if out, err = member("update", "--peer-urls", "http://127.0.0.1:4,http://127.0.0.1:5", id2); err != nil || out != "Member "+id2+" updated in cluster "+cid+"\n" {
		t.Fatalf("member update: %v %q", err, out)
	}
	if out, _ = member("list"); !strings.Contains(out, id2+", unstarted, , http://127.0.0.1:4,http://127.0.0.1:5, , true\n") {
		t.Fatalf("member list after the update:\n%s", out)
	}
	if out, err = member("remove", id2); err != nil || out != "Member "+id2+" removed from cluster "+cid+"\n" {
		t.Fatalf("member remove: %v %q", err, out)
	}
	if _, err = member("remove", id2); err == nil || !strings.Contains(err.Error(), "410 Gone: Member permanently removed: "+id2) {
		t.Fatalf("removing it again: %v", err)
	}

	for _, bad := range [][]string{{"remove", "zz"}, {"promote"}, {"update", "--peer-urls", "http://127.0.0.1:6", "1", "2"}, {"add", "l3"}} {
		if out, err := member(bad...); err == nil {
			t.Fatalf("member %v: no error, printed %q", bad, out)
		}
	}
}
