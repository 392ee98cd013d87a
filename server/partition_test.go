package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"cairn/api"
	"cairn/client"
)

// TestMinorityOverHTTP cuts one member off from the other two — first the
// leader, then a follower — and checks the client API on both sides: the
// majority goes on writing; on the minority a write is never acknowledged
// and a quorum=true read never answers with the stale value — both end
// with 500 and error 300 "etcdserver: request timed out" once the request
// timeout has passed, instead of hanging — while a plain GET still serves
// the member's (stale) replica. After healing, the cut-off member catches
// up with the majority's writes.
func TestMinorityOverHTTP(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := newLinCluster(t, 3, timeout, true)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	follower := (lead + 1) % 3
	if _, err := c.members[follower].kv.Set(ctx, "/k", "before", client.SetOptions{}); err != nil {
		t.Fatalf("write on a follower: %v", err)
	}
	c.converge(10 * time.Second)

	for _, victim := range []string{"leader", "follower"} {
		i := c.waitLeader(10 * time.Second)
		if victim == "follower" {
			i = (i + 1) % 3
		}
		minority := c.members[i]
		var majority []*linMember
		for j, m := range c.members {
			if j != i {
				majority = append(majority, m)
			}
		}
		c.isolate(i, false)

		// The majority has (or elects) a leader and writes.
		newValue := "after-cutting-the-" + victim
		eventually(t, 10*time.Second, "a write on the majority side", func() bool {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := majority[0].kv.Set(wctx, "/k", newValue, client.SetOptions{})
			return err == nil
		})
		r, err := majority[1].kv.Get(ctx, "/k", client.GetOptions{Quorum: true})
		if err != nil || r.Event.Node.Value != newValue {
			t.Fatalf("quorum read on the majority: %v %v", r, err)
		}

		// The minority: never an acknowledgement, never a stale quorum read.
		start := time.Now()
		_, err = minority.kv.Set(ctx, "/minority", "x", client.SetOptions{})
		checkTimedOut(t, victim+": write on the minority", err, time.Since(start), timeout)
		start = time.Now()
		r, err = minority.kv.Get(ctx, "/k", client.GetOptions{Quorum: true})
		if err == nil {
			t.Fatalf("%s: quorum read on the minority answered %q (stale)", victim, r.Event.Node.Value)
		}
		checkTimedOut(t, victim+": quorum read on the minority", err, time.Since(start), timeout)
		// A plain GET reads the member's replica, which may be stale.
		if r, err := minority.kv.Get(ctx, "/k", client.GetOptions{}); err != nil || r.Event.Node.Value == newValue {
			t.Fatalf("%s: plain read on the minority: %v %v (the majority's write cannot be there)", victim, r, err)
		}

		c.heal()
		eventually(t, 10*time.Second, "the healed member to read the majority's write", func() bool {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := minority.kv.Get(rctx, "/k", client.GetOptions{Quorum: true})
			return err == nil && r.Event.Node.Value == newValue
		})
		c.converge(10 * time.Second)
	}
}

// checkTimedOut: err is etcd's request timeout (500, error 300), which
// came after the request timeout and not much later.
func checkTimedOut(t *testing.T, what string, err error, took, timeout time.Duration) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.EcodeRaftInternal || ae.Status != http.StatusInternalServerError ||
		!strings.HasPrefix(ae.Cause, "etcdserver: request timed out") {
		t.Fatalf("%s: got %v (%#v), want 500 with error 300 \"etcdserver: request timed out\"", what, err, ae)
	}
	if took < timeout-50*time.Millisecond || took > timeout+3*time.Second {
		t.Fatalf("%s: answered after %v with a request timeout of %v", what, took, timeout)
	}
}
