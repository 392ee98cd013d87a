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
	looks     int     // NextExpiration calls: one per pass of the loop, one per Applied while leading
	next      []int64 // pending expirations, unsorted
	proposals []int64 // the now of each proposal
	fail      int     // fail this many proposals first
}

func (f *fakeTree) NextExpiration() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
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

// start runs an Expirer over tree; leader says whether the member leads,
// and the test may change it.
func start(t *testing.T, tree *fakeTree, leading bool) (e *Expirer, leader *atomic.Bool, cancel context.CancelFunc) {
	leader = new(atomic.Bool)
	leader.Store(leading)
	e = NewExpirer(Config{
		Proposer: tree, Schedule: tree, IsLeader: leader.Load,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = e.Run(ctx) }()
	return e, leader, cancel
}

func TestLeaderProposesAtTheExpiration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		exp := time.Now().Add(2 * time.Second).UnixNano()
		tree.add(exp)
		_, _, cancel := start(t, tree, true)
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
		_, leader, cancel := start(t, tree, false)
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
		e, _, cancel := start(t, tree, true)
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

func (f *fakeTree) lookCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.looks
}

// TestAppliedWakesOnlyForChanges: writes that bring no earlier expiration
// and no change of leader leave the loop asleep; the others wake it.
func TestAppliedWakesOnlyForChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		e, leader, cancel := start(t, tree, true)
		defer cancel()
		synctest.Wait()
		passes := tree.lookCount // schedule looks, by Applied (while leading) and by the loop
		// Leading, nothing to expire: a write without TTL wakes nothing
		// (Applied looks at the schedule once, the loop not at all).
		before := passes()
		for i := range 10 {
			e.Applied(uint64(i), nil)
		}
		synctest.Wait()
		if got := passes() - before; got != 10 {
			t.Fatalf("10 plain writes: %d schedule looks, want 10 (none by the loop)", got)
		}
		// An expiration appears: the loop plans for it.
		far := time.Now().Add(300 * time.Millisecond).UnixNano()
		tree.add(far)
		before = passes()
		e.Applied(11, nil)
		synctest.Wait()
		if got := passes() - before; got != 2 {
			t.Fatalf("first expiration: %d looks, want 2 (Applied and one loop pass)", got)
		}
		// A later one changes nothing; an earlier one wakes the loop.
		tree.add(far + 1)
		before = passes()
		e.Applied(12, nil)
		synctest.Wait()
		if got := passes() - before; got != 1 {
			t.Fatalf("later expiration: %d looks, want 1", got)
		}
		near := time.Now().Add(10 * time.Millisecond).UnixNano()
		tree.add(near)
		e.Applied(13, nil)
		time.Sleep(11 * time.Millisecond)
		synctest.Wait()
		if got := tree.calls(); len(got) != 1 || got[0] < near || got[0] >= far {
			t.Fatalf("proposals %v, want one for the earlier expiration %d", got, near)
		}
		// Losing the lead is noticed at the next apply; a follower's writes
		// then wake nothing.
		leader.Store(false)
		e.Applied(14, nil)
		synctest.Wait()
		before = passes()
		tree.add(time.Now().Add(time.Millisecond).UnixNano())
		for i := range 10 {
			e.Applied(uint64(15+i), nil)
		}
		synctest.Wait()
		if got := passes() - before; got != 0 {
			t.Fatalf("a follower's writes: %d looks, want 0", got)
		}
		// Gaining it is noticed at the next apply, well before the idle
		// recheck: the overdue expirations are proposed at once.
		leader.Store(true)
		n := len(tree.calls())
		e.Applied(30, nil)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := len(tree.calls()); got != n+1 {
			t.Fatalf("new leader: %d proposals after its first apply, want %d", got, n+1)
		}
	})
}

func TestFailedProposalIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{fail: 2}
		tree.add(time.Now().Add(time.Second).UnixNano())
		_, _, cancel := start(t, tree, true)
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

// TestAppliedBeforeRun: batches applied while the member starts, before Run
// (and before the server has the raft node IsLeader reads), must not
// consult IsLeader; they leave a wake-up for the first pass.
func TestAppliedBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tree := &fakeTree{}
		var started atomic.Bool
		e := NewExpirer(Config{
			Proposer: tree, Schedule: tree,
			IsLeader: func() bool {
				if !started.Load() {
					panic("IsLeader called before Run")
				}
				return true
			},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		tree.add(time.Now().Add(time.Millisecond).UnixNano())
		for i := range 3 {
			e.Applied(uint64(i), nil)
		}
		started.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = e.Run(ctx) }()
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got := tree.calls(); len(got) != 1 {
			t.Fatalf("%d proposals after the start, want 1", len(got))
		}
	})
}
