package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv2 "go.etcd.io/etcd/client/v2"
)

// TestDockerThreeMemberCluster runs three containers of the scratch image
// on a private Docker network the test creates: the cluster forms, takes
// writes on every member, survives SIGKILL of its leader's container, and
// the restarted container catches up.
func TestDockerThreeMemberCluster(t *testing.T) {
	skipWithoutDocker(t)
	img := image(t)
	prefix := fmt.Sprintf("cairn-e2e-%d", time.Now().UnixNano())
	network := prefix + "-net"
	docker(t, "network", "create", network)
	names := []string{prefix + "-c1", prefix + "-c2", prefix + "-c3"}
	t.Cleanup(func() {
		for _, n := range names {
			_ = exec.Command("docker", "rm", "-f", "-v", n).Run()
		}
		_ = exec.Command("docker", "network", "rm", network).Run()
	})
	var initial []string
	for i, n := range names {
		initial = append(initial, fmt.Sprintf("m%d=http://%s:2380", i+1, n))
	}
	urls := make([]string, len(names))
	for i, n := range names {
		port := freePort(t)
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", port)
		docker(t, "run", "-d", "--name", n, "--hostname", n, "--network", network,
			"-p", fmt.Sprintf("127.0.0.1:%d:2379", port),
			"-e", fmt.Sprintf("CAIRN_NAME=m%d", i+1),
			"-e", "CAIRN_ADVERTISE_CLIENT_URLS=http://"+n+":2379",
			"-e", "CAIRN_INITIAL_ADVERTISE_PEER_URLS=http://"+n+":2380",
			"-e", "CAIRN_INITIAL_CLUSTER="+strings.Join(initial, ","),
			"-e", "CAIRN_INITIAL_CLUSTER_TOKEN="+prefix,
			img)
	}
	for _, u := range urls {
		waitHealthy(t, u, 60*time.Second)
	}
	ctx := context.Background()
	keys := func(u string) clientv2.KeysAPI {
		c, err := clientv2.New(clientv2.Config{Endpoints: []string{u}, HeaderTimeoutPerRequest: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return clientv2.NewKeysAPI(c)
	}
	acked := map[string]string{}
	for i := 0; i < 30; i++ {
		k, v := fmt.Sprintf("/dc/k%d", i), fmt.Sprintf("v%d", i)
		if _, err := keys(urls[i%3]).Set(ctx, k, v, nil); err != nil {
			t.Fatalf("write on member %d: %v", i%3+1, err)
		}
		acked[k] = v
	}
	if resp, err := keys(urls[2]).Get(ctx, "/dc/k0", &clientv2.GetOptions{Quorum: true}); err != nil || resp.Node.Value != "v0" {
		t.Fatalf("quorum read on member 3: %v", err)
	}

	// Kill the leader's container; the other two elect a new leader.
	leaderURL, leaderIdx := "", -1
	var leader struct{ Name string }
	resp, err := http.Get(urls[0] + "/v2/members/leader")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&leader)
	resp.Body.Close()
	for i := range names {
		if leader.Name == fmt.Sprintf("m%d", i+1) {
			leaderURL, leaderIdx = urls[i], i
		}
	}
	if leaderIdx < 0 {
		t.Fatalf("no leader named among the members: %+v", leader)
	}
	docker(t, "kill", "-s", "KILL", names[leaderIdx])
	survivor := urls[(leaderIdx+1)%3]
	deadline := time.Now().Add(15 * time.Second)
	var werr error
	for i := 0; time.Now().Before(deadline); i++ {
		k := fmt.Sprintf("/dc/after%d", i)
		if _, werr = keys(survivor).Set(ctx, k, "x", nil); werr == nil {
			acked[k] = "x"
			if i >= 20 {
				break
			}
		}
	}
	if werr != nil {
		t.Fatalf("no write accepted after the leader was killed: %v", werr)
	}
	docker(t, "start", names[leaderIdx])
	waitHealthy(t, leaderURL, 60*time.Second)
	// The restarted member catches up: every acknowledged write readable there.
	deadline = time.Now().Add(20 * time.Second)
	for k, v := range acked {
		for {
			r, err := keys(leaderURL).Get(ctx, k, nil)
			if err == nil && r.Node.Value == v {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restarted member lacks %s=%s: %v", k, v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("%d writes on every member after the leader's container was killed and restarted", len(acked))
}

// TestComposeFileIsValid checks docker/docker-compose.yml parses.
func TestComposeFileIsValid(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		fmt.Fprintln(os.Stderr, "*** SKIPPING COMPOSE TEST: docker-compose not installed ***")
		t.Skip("docker-compose not installed")
	}
	out, err := exec.Command("docker-compose", "-f", "../docker/docker-compose.yml", "config", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
