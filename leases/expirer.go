// Package leases holds the node-local machinery around replicated TTL state.
// Expiry is decided by the leader alone and goes through the log: the
// Expirer waits for the earliest expiration and proposes an expire command
// carrying the leader's clock, so every member removes the same nodes at the
// same store index. Followers never expire anything on their own.
package leases

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"cairn/api"
)

// Proposer replicates an expire command stamped with the leader's clock.
type Proposer interface {
	ProposeExpire(ctx context.Context, now int64) ([]*api.Event, error)
}

// Schedule tells when the next node expires (unix nanoseconds, 0 for none).
type Schedule interface {
	NextExpiration() int64
}

// Clock is the time source; tests substitute a fake.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Expirer proposes expiry while this member leads.
type Expirer struct {
	proposer Proposer
	schedule Schedule
	isLeader func() bool
	clock    Clock
	logger   *slog.Logger

	wake chan struct{}

	// What the loop last decided: whether this member leads, and the
	// expiration it waits for (unix ns; 0 for none, planning while it
	// decides). Applied wakes the loop only when either is out of date: an
	// unconditional wake-up after every applied batch put a goroutine switch
	// on every write's path.
	leading atomic.Bool
	planned atomic.Int64
}

// planning is the planned value while the loop decides: any apply wakes it.
const planning = -1

// Config configures an Expirer.
type Config struct {
	Proposer Proposer
	Schedule Schedule
	// IsLeader reports whether this member currently leads.
	IsLeader func() bool
	Clock    Clock
	Logger   *slog.Logger
}

// NewExpirer builds an Expirer; call Run to start it.
func NewExpirer(cfg Config) *Expirer {
	if cfg.Clock == nil {
		cfg.Clock = RealClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Expirer{
		proposer: cfg.Proposer,
		schedule: cfg.Schedule,
		isLeader: cfg.IsLeader,
		clock:    cfg.Clock,
		logger:   cfg.Logger,
		wake:     make(chan struct{}, 1),
	}
	e.planned.Store(planning)
	return e
}

// Applied is called after each applied batch (consensus.ApplyObserver), after
// the schedule has taken the batch in: it wakes the loop when the batch
// brought an expiration earlier than the one the loop waits for, or when
// leadership changed since the loop looked (a new leader's first apply).
//
// IsLeader is consulted only once Run has planned: batches applied while the
// member starts (before Run, and before the server has its raft node) just
// leave a wake-up for the loop's first pass.
func (e *Expirer) Applied(uint64, []*api.Event) {
	planned := e.planned.Load() // before leading: the loop stores it last
	if planned == planning {
		e.Wake()
		return
	}
	leading := e.isLeader()
	switch {
	case leading != e.leading.Load():
		e.Wake()
	case leading:
		if next := e.schedule.NextExpiration(); next != 0 && (planned == 0 || next < planned) {
			e.Wake()
		}
	}
}

// Restored is called after a snapshot install.
func (e *Expirer) Restored(uint64) { e.Wake() }

// Wake makes the loop look at the schedule again (after a write or a leader
// change). It never blocks.
func (e *Expirer) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// idleRecheck bounds how long the loop sleeps without looking at leadership
// and the schedule, in case a wake-up was missed.
const idleRecheck = 500 * time.Millisecond

// retryDelay spaces out proposals that failed (no quorum, say).
const retryDelay = 100 * time.Millisecond

// Run expires nodes until ctx is done.
func (e *Expirer) Run(ctx context.Context) error {
	for {
		e.planned.Store(planning)
		wait := idleRecheck
		leading := e.isLeader()
		e.leading.Store(leading)
		var next int64
		if leading {
			if next = e.schedule.NextExpiration(); next != 0 {
				now := e.clock.Now()
				if d := time.Duration(next - now.UnixNano()); d > 0 {
					wait = min(d, idleRecheck)
				} else {
					wait = e.expire(ctx, now)
					next = 0 // expired (or retried soon): look again
				}
			}
		}
		if wait > 0 {
			e.planned.Store(next)
		}
		timer, stop := e.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-e.wake:
			stop()
		case <-timer:
		}
	}
}

// expire proposes one expire command and returns how long to wait next.
func (e *Expirer) expire(ctx context.Context, now time.Time) time.Duration {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := e.proposer.ProposeExpire(pctx, now.UnixNano())
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			e.logger.Warn("expire proposal failed", "err", err)
		}
		return retryDelay
	}
	return 0
}
