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
	"sync"
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

	mu   sync.Mutex
	wake chan struct{}
}

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
	return &Expirer{
		proposer: cfg.Proposer,
		schedule: cfg.Schedule,
		isLeader: cfg.IsLeader,
		clock:    cfg.Clock,
		logger:   cfg.Logger,
		wake:     make(chan struct{}, 1),
	}
}

// Applied is called after each applied batch (consensus.ApplyObserver): a new
// TTL may be earlier than the one the loop waits for.
func (e *Expirer) Applied(uint64, []*api.Event) { e.Wake() }

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
		wait := idleRecheck
		if e.isLeader() {
			if next := e.schedule.NextExpiration(); next != 0 {
				now := e.clock.Now()
				if d := time.Duration(next - now.UnixNano()); d > 0 {
					wait = min(d, idleRecheck)
				} else {
					wait = e.expire(ctx, now)
				}
			}
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
