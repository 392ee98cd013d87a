package leases

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"cairn/api"
)

// fakeTree is a schedule whose expirations are removed by proposals, like
// the key tree removes nodes when an expire entry applies.
type fakeTree struct {
	mu        sync.Mutex
	next      []int64 // pending expirations, unsorted
	proposals []int64 // the now of each proposal
	fail      int     // fail this many proposals first
}

func (f *fakeTree) NextExpiration() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var min int64
	for _, e := range f.next {
		if min == 0 || e < min {
			min = e
		}
	}
	return min
}

func (f *fakeTree) ProposeExpire(_ context.Context, now int64) ([]*api.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proposals = append(f.proposals, now)
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("etcdserver: request timed out")
	}
	kept := f.next[:0]
	for _, e := range f.next {
		if e > now {
			kept = append(kept, e)
		}
	}
	f.next = kept
	return nil, nil
}

func (f *fakeTree) add(exp int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = append(f.next, exp)
}

func (f *fakeTree) calls() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.proposals...)
}

func start(t *testing.T, tree *fakeTree, leader *atomic.Bool) (*Expirer, context.CancelFunc) {
	e := NewExpirer(Config{
		Proposer: tree, Schedule: tree, IsLeader: leader.Load,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = e.Run(ctx) }()
	return e, cancel
}

func TestLeaderProposesAtTheExpiration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		exp := time.Now().Add(2 * time.Second).UnixNano()
		tree.add(exp)
		var leader atomic.Bool
		leader.Store(true)
		_, cancel := start(t, tree, &leader)
		defer cancel()

		time.Sleep(1999 * time.Millisecond)
		synctest.Wait()
		if got := tree.calls(); len(got) != 0 {
			t.Fatalf("proposed before the expiration: %v", got)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		got := tree.calls()
		if len(got) != 1 {
			t.Fatalf("want one proposal right after the expiration, got %d", len(got))
		}
		if got[0] < exp || got[0]-exp > int64(5*time.Millisecond) {
			t.Fatalf("proposed now=%d, expiration %d: late by %v", got[0], exp, time.Duration(got[0]-exp))
		}
	})
}

func TestFollowerNeverExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		tree.add(time.Now().Add(time.Second).UnixNano())
		var leader atomic.Bool
		_, cancel := start(t, tree, &leader)
		defer cancel()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := tree.calls(); len(got) != 0 {
			t.Fatalf("a follower proposed expiry: %v", got)
		}
		// Becoming leader: expiry happens within the recheck period.
		leader.Store(true)
		time.Sleep(idleRecheck + time.Millisecond)
		synctest.Wait()
		if got := tree.calls(); len(got) != 1 {
			t.Fatalf("new leader proposed %d times, want 1", len(got))
		}
	})
}

func TestWakeSeesAnEarlierExpiration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		var leader atomic.Bool
		leader.Store(true)
		e, cancel := start(t, tree, &leader)
		defer cancel()
		synctest.Wait()
		exp := time.Now().Add(50 * time.Millisecond).UnixNano()
		tree.add(exp)
		e.Applied(1, nil) // a write with a TTL was applied
		time.Sleep(51 * time.Millisecond)
		synctest.Wait()
		got := tree.calls()
		if len(got) != 1 || got[0] < exp {
			t.Fatalf("got %v, want one proposal at or after %d", got, exp)
		}
	})
}

func TestFailedProposalIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{fail: 2}
		tree.add(time.Now().Add(time.Second).UnixNano())
		var leader atomic.Bool
		leader.Store(true)
		_, cancel := start(t, tree, &leader)
		defer cancel()
		time.Sleep(time.Second + 2*retryDelay + 10*time.Millisecond)
		synctest.Wait()
		if got := tree.calls(); len(got) != 3 {
			t.Fatalf("got %d proposals, want 2 failures then 1 success", len(got))
		}
		if tree.NextExpiration() != 0 {
			t.Fatal("node not expired after the retries")
		}
	})
}
