package consensus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestMinorityNeverAcknowledges cuts the leader off from the other two
// members: on the minority side a write is never acknowledged and a
// quorum read never answers — both end with ErrTimeout at their deadline
// instead of hanging — while the majority elects a leader and goes on.
// After healing, the minority's write is nowhere (it was never committed)
// and the old leader has the majority's writes.
func TestMinorityNeverAcknowledges(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 3)
	defer closeAll(ms)
	lead := waitLeader(t, ms)
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := lead.node.Propose(ctx, set("/k", "old")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms)

	net.isolate(lead.id, true)
	var majority []*member
	for _, m := range ms {
		if m != lead {
			majority = append(majority, m)
		}
	}
	// The majority elects a new leader and writes.
	waitFor(t, 10*time.Second, "a leader on the majority side", func() bool {
		l := majority[0].node.Status().Leader
		return l != 0 && l != lead.id && majority[1].node.Status().Leader == l
	})
	if _, err := majority[0].node.Propose(ctx, set("/k", "new")); err != nil {
		t.Fatal(err)
	}

	// The minority: a write and a quorum read end with the timeout error.
	for range 3 {
		wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err := lead.node.Propose(wctx, set("/minority", "x"))
		cancel()
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("write on the minority: got %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("write on the minority took %v", d)
		}
		rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err = lead.node.ReadBarrier(rctx)
		cancel()
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("quorum read on the minority: got %v, want ErrTimeout (a stale read would be nil)", err)
		}
		lead.mustGet("/k", "old") // a local (serializable) read may be stale
	}
	// CheckQuorum: the cut-off leader stepped down.
	waitFor(t, 10*time.Second, "the isolated leader to step down", func() bool {
		return lead.node.Status().Role != "StateLeader"
	})

	net.isolate(lead.id, false)
	waitConverged(t, ms)
	for _, m := range ms {
		m.mustGet("/k", "new")
		if _, aerr := m.tree.Get("/minority", false, false); aerr == nil {
			t.Fatalf("member %d applied a write only the minority saw", m.id)
		}
	}
	if err := lead.node.ReadBarrier(ctx); err != nil {
		t.Fatalf("quorum read after healing: %v", err)
	}
}
