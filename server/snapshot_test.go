package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"cairn/client"
)

// TestSnapshotCatchUpOverHTTP: a follower cut off while the others write
// far past their log compaction (--snapshot-count 100) comes back through
// a snapshot sent over the peer port — exported from a Pebble view off the
// leader's raft loop while writes go on — and ends with the same key space.
// The members run on disk, so the follower stages the snapshot in a file of
// its data dir and restores from it; the file is gone afterwards.
func TestSnapshotCatchUpOverHTTP(t *testing.T) {
	c := newLinCluster(t, 3, 2*time.Second, false)
	lead := c.waitLeader(10 * time.Second)
	lag := (lead + 1) % 3
	ctx := context.Background()
	c.isolate(lag, false)
	for i := range 350 {
		if _, err := c.members[lead].kv.Set(ctx, fmt.Sprintf("/k%d", i), "v", client.SetOptions{}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.heal()
	// Writes go on while the snapshot is exported and sent.
	for i := range 50 {
		eventually(t, 10*time.Second, "a write after healing", func() bool {
			_, err := c.members[c.waitLeader(10*time.Second)].kv.Set(ctx, fmt.Sprintf("/late%d", i), "v", client.SetOptions{})
			return err == nil
		})
	}
	c.converge(20 * time.Second)
	if got := counter(t, c.members[lag].url, "cairn_server_snapshots_restored_total"); got < 1 {
		t.Fatalf("the lagging member restored %v snapshots: it caught up some other way, so the test proves nothing", got)
	}
	var sent float64
	for _, m := range c.members {
		sent += counter(t, m.url, "cairn_server_snapshots_sent_total")
	}
	if sent < 1 {
		t.Fatalf("%v snapshots sent", sent)
	}
	r, err := c.members[lag].kv.Get(ctx, "/late49", client.GetOptions{})
	if err != nil || r.Event.Node.Value != "v" {
		t.Fatalf("the last write on the member that caught up: %v %v", r, err)
	}
	staged, err := os.ReadDir(filepath.Join(c.members[lag].cfg.DataDir, "snap"))
	if err != nil || len(staged) != 0 {
		t.Fatalf("staged snapshots left after the restore: %v %v", staged, err)
	}
}

// counter reads an unlabelled sample from a member's /metrics.
func counter(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return metricSample(t, string(body), name)
}

// metricSample reads one unlabelled sample from a /metrics body.
func metricSample(t testing.TB, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}
