package consensus

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// startCluster starts n members on in-memory disks joined by net, with a
// fast clock (5ms ticks) so elections take tens of milliseconds.
func startCluster(t *testing.T, net *chanNet, n int, opts ...func(*Config)) []*member {
	t.Helper()
	peers := make([]uint64, n)
	for i := range peers {
		peers[i] = uint64(i + 1)
	}
	ms := make([]*member, n)
	for i := range ms {
		cfg := Config{ID: peers[i], Peers: peers, Transport: net.transport(peers[i]), TickInterval: 5 * time.Millisecond}
		for _, o := range opts {
			o(&cfg)
		}
		ms[i] = openMember(t, vfs.NewMem(), cfg)
		net.attach(peers[i], ms[i].node)
	}
	return ms
}

func closeAll(ms []*member) {
	for _, m := range ms {
		m.close()
	}
}

// waitLeader waits until all members agree on one leader and returns it.
func waitLeader(t *testing.T, ms []*member) *member {
	t.Helper()
	var lead *member
	waitFor(t, 10*time.Second, "a leader all members agree on", func() bool {
		id := ms[0].node.Status().Leader
		if id == 0 {
			return false
		}
		for _, m := range ms[1:] {
			if m.node.Status().Leader != id {
				return false
			}
		}
		for _, m := range ms {
			if m.id == id {
				lead = m
			}
		}
		return lead != nil && lead.node.Status().Role == "StateLeader"
	})
	return lead
}

// waitConverged waits until every member applied the same index and then
// compares their exported trees byte for byte.
func waitConverged(t *testing.T, ms []*member) {
	t.Helper()
	waitFor(t, 10*time.Second, "members to apply the same index", func() bool {
		a := ms[0].node.Status().Applied
		for _, m := range ms[1:] {
			if m.node.Status().Applied != a {
				return false
			}
		}
		return true
	})
	var want bytes.Buffer
	if err := ms[0].tree.Export(&want); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[1:] {
		var got bytes.Buffer
		if err := m.tree.Export(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("member %d's tree differs from member %d's", m.id, ms[0].id)
		}
	}
}

func TestThreeMembers(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 3)
	defer closeAll(ms)
	lead := waitLeader(t, ms)
	ctx := ctxTimeout(t, 30*time.Second)

	// Every member accepts writes (followers forward to the leader) and
	// quorum reads; a member's own writes are readable locally once
	// acknowledged.
	var wg sync.WaitGroup
	errs := make(chan error, 3*8)
	for _, m := range ms {
		for w := range 8 {
			wg.Go(func() {
				for i := range 20 {
					key := fmt.Sprintf("/m%d/w%d/%d", m.id, w, i)
					if _, err := m.node.Propose(ctx, set(key, key)); err != nil {
						errs <- fmt.Errorf("member %d %s: %w", m.id, key, err)
						return
					}
					if _, aerr := m.tree.Get(key, false, false); aerr != nil {
						errs <- fmt.Errorf("member %d: own acknowledged write %s missing: %v", m.id, key, aerr)
						return
					}
					if i%5 == 0 {
						if err := m.node.ReadBarrier(ctx); err != nil {
							errs <- fmt.Errorf("member %d read barrier: %w", m.id, err)
							return
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// A write acknowledged on the leader is visible on a follower after a
	// ReadBarrier there (linearizable read).
	if _, err := lead.node.Propose(ctx, set("/linear", "yes")); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m == lead {
			continue
		}
		if err := m.node.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		m.mustGet("/linear", "yes")
	}
	waitConverged(t, ms)
	for _, m := range ms {
		m.obs.check(t)
	}
}

// TestFollowerCatchesUpBySnapshot: a follower cut off while the others
// compact their logs comes back through a snapshot and converges; the
// snapshot's data exported on the loop (a transport that is not a
// SnapshotSender), or from a view off the loop while the leader keeps
// applying writes.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	t.Run("on the loop", func(t *testing.T) { testFollowerCatchesUpBySnapshot(t, false) })
	t.Run("from a view", func(t *testing.T) { testFollowerCatchesUpBySnapshot(t, true) })
}

func testFollowerCatchesUpBySnapshot(t *testing.T, views bool) {
	net := newChanNet()
	net.viewSnapshots = views
	ms := startCluster(t, net, 3, func(c *Config) { c.SnapshotCount = 20; c.SnapshotCatchUpEntries = 5 })
	defer net.stopAll(ms)
	lead := waitLeader(t, ms)
	ctx := ctxTimeout(t, 30*time.Second)

	lagging := followerOf(ms, lead)
	if _, err := lead.node.Propose(ctx, set("/before", "1")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms)
	net.isolate(lagging.id, true)
	for i := range 100 {
		if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/during%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	net.isolate(lagging.id, false)
	// Writes go on while the snapshot is exported and sent.
	for i := range 50 {
		if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/late%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, ms)
	restored := lagging.obs.restores()
	if restored == 0 {
		t.Fatal("the lagging follower caught up without a snapshot")
	}
	if got := net.snapshotViews.Load(); (got > 0) != views {
		t.Fatalf("%d snapshots sent from views (views %v)", got, views)
	}
	lagging.mustGet("/during99", "v")
	lagging.mustGet("/late49", "v")
	// It keeps working as a member afterwards.
	if _, err := lagging.node.Propose(ctx, set("/after", "1")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms)
}

// TestLeaderCompactsWhatEveryMemberHolds: between SnapshotCount
// compactions the leader drops the entries every member already holds, and
// only those: a member cut off holds it back, and comes back from the log,
// not a snapshot. Followers keep their last LeaderCompactEvery entries.
func TestLeaderCompactsWhatEveryMemberHolds(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 3, func(c *Config) { c.LeaderCompactEvery = 20 }) // SnapshotCount stays 10000
	defer net.stopAll(ms)
	lead := waitLeader(t, ms)
	ctx := ctxTimeout(t, 30*time.Second)
	// Every member converges after each 20 writes: a write needs only one
	// follower, and under load the other may otherwise lag far enough to
	// hold the leader's compaction back by more than the bounds below.
	write := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/%s%d", prefix, i), "v")); err != nil {
				t.Fatal(err)
			}
			if i%20 == 19 {
				waitConverged(t, ms)
			}
		}
		waitConverged(t, ms)
	}
	write("a", 100)
	applied := lead.node.Status().Applied
	if c := lead.compactedTo(); c+2*20 < applied {
		t.Fatalf("leader compacted to %d with %d applied, every member holding it: want within 40", c, applied)
	}
	var lagging *member
	for _, m := range ms {
		if m != lead {
			lagging = m
			// A follower keeps its last 20 (LeaderCompactEvery) entries.
			c, applied := m.compactedTo(), m.node.Status().Applied
			if c == 0 || c+20 > applied || c+3*20 < applied {
				t.Fatalf("follower %d compacted to %d with %d applied: want within 20 to 60 entries", m.id, c, applied)
			}
		}
	}

	net.isolate(lagging.id, true)
	held := lagging.node.Status().Applied
	for i := range 100 {
		if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/b%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	if c := lead.compactedTo(); c > held {
		t.Fatalf("leader compacted to %d past the cut-off member's %d", c, held)
	}
	net.isolate(lagging.id, false)
	waitConverged(t, ms)
	lagging.mustGet("/b99", "v")
	restored := lagging.obs.restores()
	if restored != 0 {
		t.Fatal("the member came back through a snapshot; the leader's log should have held its entries")
	}
	write("c", 60)
	if c, applied := lead.compactedTo(), lead.node.Status().Applied; c+2*20 < applied {
		t.Fatalf("after the member caught up, leader compacted to %d with %d applied", c, applied)
	}
}

// TestLeaderLogStaysBoundedWithAMemberDown: a member cut off holds the
// eager compaction back, but the SnapshotCount rule still compacts past it
// (the log stays bounded) and the member comes back through a snapshot.
func TestLeaderLogStaysBoundedWithAMemberDown(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 3, func(c *Config) {
		c.SnapshotCount, c.SnapshotCatchUpEntries, c.LeaderCompactEvery = 60, 10, 7
	})
	defer net.stopAll(ms)
	lead := waitLeader(t, ms)
	ctx := ctxTimeout(t, 30*time.Second)
	down := followerOf(ms, lead)
	net.isolate(down.id, true)
	for i := range 300 {
		if _, err := lead.node.Propose(ctx, set(fmt.Sprintf("/k%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	if c, applied := lead.compactedTo(), lead.node.Status().Applied; c+60+10 < applied {
		t.Fatalf("leader compacted to %d with %d applied and a member down: its log grows past SnapshotCount", c, applied)
	}
	net.isolate(down.id, false)
	waitConverged(t, ms)
	down.mustGet("/k299", "v")
	restored := down.obs.restores()
	if restored == 0 {
		t.Fatal("the member that was down caught up without a snapshot, past the leader's compaction")
	}
}

// followerOf is the first member of ms that is not lead.
func followerOf(ms []*member, lead *member) *member {
	for _, m := range ms {
		if m != lead {
			return m
		}
	}
	return nil
}
