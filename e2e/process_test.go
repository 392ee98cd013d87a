// Package e2e runs the real cairn binary as separate processes: durability
// across kill -9, restart, graceful shutdown on SIGTERM.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv2 "go.etcd.io/etcd/client/v2"

	"cairn/internal/testbin"
)

// binary builds cairn once per test run.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := testbin.Cairn("..")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out in this test process
)

// freePort returns a loopback port that was free a moment ago and that no
// earlier call returned: the kernel may hand the same port out twice in a
// row once its listener is closed, and two members must never share one.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !ports[port] {
			ports[port] = true
			return port
		}
	}
	t.Fatal("no unused loopback port after 100 tries")
	return 0
}

// member is one cairn serve process.
type member struct {
	t         *testing.T
	name      string   // --name; "e2e" when empty
	flags     []string // extra flags of every start (cluster flags)
	dataDir   string
	clientURL string
	peerURL   string
	cmd       *exec.Cmd
	logs      *strings.Builder
	logMu     *sync.Mutex
	exited    chan struct{}
}

func newMember(t *testing.T) *member {
	return &member{
		t:         t,
		dataDir:   filepath.Join(t.TempDir(), "data"),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		logs:      &strings.Builder{},
		logMu:     &sync.Mutex{},
	}
}

func (m *member) start(extra ...string) {
	m.t.Helper()
	m.launch(extra...)
	m.waitHealthy()
}

// launch starts the process without waiting for it to be healthy (the
// members of a new cluster only become healthy together).
func (m *member) launch(extra ...string) {
	m.t.Helper()
	name := m.name
	if name == "" {
		name = "e2e"
	}
	args := append([]string{"serve", "--name", name, "--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL}, m.flags...)
	args = append(args, extra...)
	m.cmd = exec.Command(binary(m.t), args...)
	stderr, err := m.cmd.StderrPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			m.logMu.Lock()
			m.logs.WriteString(sc.Text() + "\n")
			m.logMu.Unlock()
		}
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	m.t.Cleanup(func() { m.kill() })
}

func (m *member) waitHealthy() {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), `"health":"true"`) {
				return
			}
		}
		select {
		case <-m.exited:
			m.t.Fatalf("member exited during start:\n%s", m.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	m.t.Fatalf("member not healthy within 20s:\n%s", m.log())
}

func (m *member) log() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.logs.String()
}

func (m *member) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

func (m *member) keys() clientv2.KeysAPI {
	c, err := clientv2.New(clientv2.Config{Endpoints: []string{m.clientURL}, Transport: clientv2.DefaultTransport, HeaderTimeoutPerRequest: 10 * time.Second})
	if err != nil {
		m.t.Fatal(err)
	}
	return clientv2.NewKeysAPI(c)
}

// TestKill9KeepsAcknowledgedWrites writes from several clients, kills the
// member with SIGKILL mid-load, restarts it and checks every write that was
// acknowledged, the TTLs and that the store index carries on.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	m := newMember(t)
	m.start()
	kapi := m.keys()
	ctx := context.Background()
	ttlResp, err := kapi.Set(ctx, "/ttl/long", "stays", &clientv2.SetOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	kapis := make([]clientv2.KeysAPI, 8)
	for i := range kapis {
		kapis[i] = kapi
	}
	load := startWriteLoad(kapis, "/load", never)
	// Let the load build up, then kill mid-flight.
	load.waitFor(2000, 10*time.Second)
	m.kill()
	acked := load.finish()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged before the kill:\n%s", len(acked), m.log())
	}
	var maxIndex uint64
	for _, a := range acked {
		maxIndex = max(maxIndex, a.index)
	}

	m.start()
	kapi = m.keys()
	for _, a := range acked {
		resp, err := kapi.Get(ctx, a.key, nil)
		if err != nil {
			t.Fatalf("acknowledged write %s (index %d) lost after kill -9: %v", a.key, a.index, err)
		}
		if resp.Node.Value != a.value || resp.Node.ModifiedIndex != a.index {
			t.Fatalf("%s = %q@%d, acknowledged %q@%d", a.key, resp.Node.Value, resp.Node.ModifiedIndex, a.value, a.index)
		}
	}
	got, err := kapi.Get(ctx, "/ttl/long", nil)
	if err != nil {
		t.Fatalf("TTL key lost: %v", err)
	}
	if !got.Node.Expiration.Equal(*ttlResp.Node.Expiration) || got.Node.TTL <= 3500 {
		t.Fatalf("TTL key after restart: expiration %v ttl %d, want %v", got.Node.Expiration, got.Node.TTL, ttlResp.Node.Expiration)
	}
	if got.Index < maxIndex {
		t.Fatalf("X-Etcd-Index after restart %d < highest acknowledged %d", got.Index, maxIndex)
	}
	next, err := kapi.Set(ctx, "/after", "restart", nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Index <= got.Index {
		t.Fatalf("index went backwards: write after restart got %d, store index was %d", next.Index, got.Index)
	}
	t.Logf("%d acknowledged writes survived kill -9; store index %d → %d", len(acked), maxIndex, next.Index)
}

// TestSIGTERMShutsDownCleanly checks a graceful stop: in-flight watch
// connections end, the process exits 0 and a restart finds every key.
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	m := newMember(t)
	m.start()
	kapi := m.keys()
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := kapi.Set(ctx, fmt.Sprintf("/term/k%d", i), "v", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit within 15s of SIGTERM:\n%s", m.log())
	}
	if st := m.cmd.ProcessState; st == nil || !st.Success() {
		t.Fatalf("exit status %v after SIGTERM:\n%s", m.cmd.ProcessState, m.log())
	}
	m.start()
	resp, err := m.keys().Get(ctx, "/term", &clientv2.GetOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Node.Nodes) != 50 {
		t.Fatalf("%d keys after restart, want 50", len(resp.Node.Nodes))
	}
}
