package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv2 "go.etcd.io/etcd/client/v2"
)

// dockerAvailable reports whether a Docker engine answers. Tests that need
// one skip loudly without it, so a green run without Docker is visible.
func dockerAvailable(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	return exec.Command("docker", "info").Run() == nil
}

func skipWithoutDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("Docker test skipped in -short mode")
	}
	if !dockerAvailable(t) {
		msg := "SKIPPING DOCKER TEST: no Docker engine answers on this machine"
		fmt.Fprintln(os.Stderr, "*** "+msg+" ***")
		t.Skip(msg)
	}
}

var (
	imageOnce sync.Once
	imageErr  error
)

// image builds cairn:e2e from docker/Dockerfile around a static binary.
func image(t *testing.T) string {
	t.Helper()
	const tag = "cairn:e2e"
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-image")
		if err != nil {
			imageErr = err
			return
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "cairn"), "..")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("static build: %v\n%s", err, out)
			return
		}
		df, err := os.ReadFile("../docker/Dockerfile")
		if err != nil {
			imageErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
			imageErr = err
			return
		}
		if out, err := exec.Command("docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("docker build: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return tag
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func waitHealthy(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not healthy within %v", url, within)
}

// TestDockerImageSurvivesKill runs the scratch image, writes, kills the
// container with SIGKILL mid-load, starts it again on the same volume and
// checks every acknowledged write.
func TestDockerImageSurvivesKill(t *testing.T) {
	skipWithoutDocker(t)
	img := image(t)
	name := fmt.Sprintf("cairn-e2e-%d", time.Now().UnixNano())
	volume := name + "-data"
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	t.Cleanup(func() {
		_ = exec.Command("docker", "rm", "-f", name).Run()
		_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
	})
	docker(t, "run", "-d", "--name", name, "-v", volume+":/data", "-p", fmt.Sprintf("127.0.0.1:%d:2379", port),
		"-e", "CAIRN_ADVERTISE_CLIENT_URLS="+url, img)
	waitHealthy(t, url, 30*time.Second)

	c, err := clientv2.New(clientv2.Config{Endpoints: []string{url}, HeaderTimeoutPerRequest: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	kapi := clientv2.NewKeysAPI(c)
	ctx := context.Background()
	load := startWriteLoad([]clientv2.KeysAPI{kapi, kapi, kapi, kapi}, "/docker", never)
	load.waitFor(500, 10*time.Second)
	docker(t, "kill", "-s", "KILL", name)
	acked := load.finish()
	if len(acked) == 0 {
		t.Fatal("no write acknowledged before the kill")
	}
	docker(t, "start", name)
	waitHealthy(t, url, 30*time.Second)
	for _, a := range acked {
		resp, err := kapi.Get(ctx, a.key, nil)
		if err != nil || resp.Node.Value != a.value || resp.Node.ModifiedIndex != a.index {
			t.Fatalf("acknowledged %s=%s@%d after container kill: %v", a.key, a.value, a.index, err)
		}
	}
	t.Logf("%d acknowledged writes survived docker kill -s KILL", len(acked))
}
