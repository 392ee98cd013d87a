package consensus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"cairn/storage"
)

// memberRecordOf returns id's record in m's view.
func memberRecordOf(t *testing.T, m *member, id uint64) storage.Member {
	t.Helper()
	for _, r := range m.node.Members() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("member %d has no record of %d: %+v", m.id, id, m.node.Members())
	return storage.Member{}
}

// write sets key on m, failing the test after 5 s without an answer (a
// write that needs an absent member would otherwise wait for the
// test's whole deadline).
func write(t *testing.T, m *member, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.node.Propose(ctx, set(key, "v")); err != nil {
		t.Fatalf("write %s on member %d: %v", key, m.id, err)
	}
}

// proposeFails checks that a write on m does not commit within d.
func proposeFails(t *testing.T, m *member, key string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := m.node.Propose(ctx, set(key, "x")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("write %s on member %d: got %v, want a timeout (no quorum)", key, m.id, err)
	}
}

// TestLearner runs one voter and one learner: the learner gets the log and
// a snapshot, serves linearizable reads, forwards writes, never campaigns
// and is not needed for a quorum; its promotion is refused while it lags
// (and when it is not a learner, or not asked of the leader), accepted once
// it caught up, and from then on it is a voter the quorum needs. The
// member records follow every step and survive a restart.
func TestLearner(t *testing.T) {
	net := newChanNet()
	opt := func(c *Config) { c.SnapshotCount = 40; c.SnapshotCatchUpEntries = 5 }
	ms := startCluster(t, net, 1, opt)
	defer func() { closeAll(ms) }()
	voter := ms[0]
	ctx := ctxTimeout(t, 60*time.Second)
	for i := range 20 {
		if _, err := voter.node.Propose(ctx, set(fmt.Sprintf("/before/%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}

	// Add member 2 as a learner, before it runs: the voter alone is still
	// a quorum (a second voter that never started would stall it).
	if err := voter.node.AddMember(ctx, storage.Member{ID: 2, PeerURLs: []string{"http://learner:2380"}, IsLearner: true}); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	if rec := memberRecordOf(t, voter, 2); !rec.IsLearner {
		t.Fatalf("learner's record: %+v", rec)
	}
	write(t, voter, "/with-learner-down")
	if err := voter.node.PromoteMember(ctx, 2); !errors.Is(err, ErrLearnerNotReady) {
		t.Fatalf("promoting a learner that never ran: %v", err)
	}

	cfg2 := Config{ID: 2, Join: true, Transport: net.transport(2), TickInterval: 5 * time.Millisecond}
	opt(&cfg2)
	fs2 := vfs.NewMem()
	learner := openMember(t, fs2, cfg2)
	net.attach(2, learner.node)
	ms = append(ms, learner)
	waitConverged(t, ms)
	learner.mustGet("/before/19", "v")
	if rec := memberRecordOf(t, learner, 2); !rec.IsLearner {
		t.Fatalf("the learner's own record: %+v", rec)
	}

	// It forwards writes and serves linearizable reads (ReadIndex through
	// the leader).
	if _, err := learner.node.Propose(ctx, set("/from-learner", "1")); err != nil {
		t.Fatalf("write on the learner: %v", err)
	}
	if _, err := voter.node.Propose(ctx, set("/linear", "1")); err != nil {
		t.Fatal(err)
	}
	if err := learner.node.ReadBarrier(ctx); err != nil {
		t.Fatalf("read barrier on the learner: %v", err)
	}
	learner.mustGet("/linear", "1")

	// Without the learner the voter keeps committing, and meanwhile
	// compacts its log: the learner comes back through a snapshot.
	net.isolate(2, true)
	for i := range 100 {
		write(t, voter, fmt.Sprintf("/during/%d", i))
	}
	// Lagging: refused. Not the leader, not a learner, unknown: refused.
	if err := voter.node.PromoteMember(ctx, 2); !errors.Is(err, ErrLearnerNotReady) {
		t.Fatalf("promoting a lagging learner: %v", err)
	}
	if err := learner.node.PromoteMember(ctx, 2); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("promotion asked of the learner itself: %v", err)
	}
	if err := voter.node.PromoteMember(ctx, 1); !errors.Is(err, ErrMemberNotLearner) {
		t.Fatalf("promoting the voter: %v", err)
	}
	if err := voter.node.PromoteMember(ctx, 99); !errors.Is(err, ErrIDNotFound) {
		t.Fatalf("promoting an unknown member: %v", err)
	}

	// Cut off, the learner never campaigns, however long it hears nothing
	// (the election timeout is 10 ticks of 5 ms).
	term := learner.node.Status().Term
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st := learner.node.Status(); st.Role != "StateFollower" || st.Term != term {
			t.Fatalf("the isolated learner campaigned: %+v", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if st := voter.node.Status(); st.Role != "StateLeader" {
		t.Fatalf("the voter lost its leadership without the learner: %+v", st)
	}

	net.isolate(2, false)
	waitConverged(t, ms)
	learner.mustGet("/during/99", "v")
	restored := learner.obs.restores()
	if restored == 0 {
		t.Fatal("the learner caught up without a snapshot (the voter compacted its log)")
	}

	// In sync: promoted. Every record says so, and raft agrees: the
	// cluster now needs both members to commit.
	// (The leader may not have heard the learner's last acknowledgement
	// yet when both have applied the same index: retry briefly.)
	var err error
	waitFor(t, 5*time.Second, "the caught-up learner's promotion", func() bool {
		err = voter.node.PromoteMember(ctx, 2)
		return !errors.Is(err, ErrLearnerNotReady)
	})
	if err != nil {
		t.Fatalf("promoting the caught-up learner: %v", err)
	}
	for _, m := range ms {
		waitFor(t, 5*time.Second, "the promotion applied everywhere", func() bool {
			return !memberRecordOf(t, m, 2).IsLearner
		})
	}
	if err := voter.node.PromoteMember(ctx, 2); !errors.Is(err, ErrMemberNotLearner) {
		t.Fatalf("promoting it again: %v", err)
	}
	net.isolate(2, true)
	proposeFails(t, voter, "/needs-both", 300*time.Millisecond)
	net.isolate(2, false)
	waitLeader(t, ms)
	waitFor(t, 10*time.Second, "a write with both voters", func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := voter.node.Propose(wctx, set("/after", "1"))
		return err == nil
	})
	waitConverged(t, ms)

	// The former learner restarts as a voter.
	learner.close()
	ms = ms[:1]
	cfg2.Join = false
	learner = openMember(t, fs2, cfg2)
	net.attach(2, learner.node)
	ms = append(ms, learner)
	if rec := memberRecordOf(t, learner, 2); rec.IsLearner {
		t.Fatalf("after a restart the promoted member is a learner again: %+v", rec)
	}
	waitLeader(t, ms)
	waitFor(t, 10*time.Second, "the restarted voter to take part", func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := learner.node.Propose(wctx, set("/after-restart", "1"))
		return err == nil
	})
	waitConverged(t, ms)
	for _, m := range ms {
		m.obs.check(t)
	}
}

// TestLearnerRecordsSurviveRestart restarts a learner before its
// promotion: its record and raft's configuration still say learner, and
// with the voter stopped it still never campaigns.
func TestLearnerRecordsSurviveRestart(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 1)
	voter := ms[0]
	ctx := ctxTimeout(t, 30*time.Second)
	if err := voter.node.AddMember(ctx, storage.Member{ID: 2, PeerURLs: []string{"http://learner:2380"}, IsLearner: true}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: 2, Join: true, Transport: net.transport(2), TickInterval: 5 * time.Millisecond}
	fs := vfs.NewMem()
	learner := openMember(t, fs, cfg)
	net.attach(2, learner.node)
	if _, err := voter.node.Propose(ctx, set("/k", "v")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, []*member{voter, learner})
	learner.close()
	voter.close()

	cfg.Join = false
	learner = openMember(t, fs, cfg)
	defer learner.close()
	net.attach(2, learner.node)
	learner.mustGet("/k", "v")
	recs := learner.node.Members()
	if len(recs) != 2 || !recs[1].IsLearner || recs[0].IsLearner {
		t.Fatalf("records after the restart: %+v", recs)
	}
	rl, err := learner.eng.LoadRaftLog()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rl.ConfState.GetLearners(), 2) || slices.Contains(rl.ConfState.GetVoters(), 2) {
		t.Fatalf("raft configuration after the restart: %v", rl.ConfState)
	}
	// Alone with a stopped voter for 20 election timeouts: no campaign.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st := learner.node.Status(); st.Role != "StateFollower" {
			t.Fatalf("a restarted learner campaigned: %+v", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
