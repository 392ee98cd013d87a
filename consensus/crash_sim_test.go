package consensus

import (
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"cairn/api"
	"cairn/storage"
)

// recordingSM wraps the tree of one simulated member and reports, for
// every index the state machine applies, a digest of what it applied
// there. The member's log of digests survives restarts, so a re-apply
// after a crash is compared with the first apply, and the simulation
// compares the digests of different members at the same index.
type recordingSM struct {
	*storage.Tree
	record func(index uint64, digest string)
}

func (s *recordingSM) Apply(b *storage.Batch, raftIndex uint64, c *storage.Cmd) (*api.Event, *api.Error, error) {
	s.record(raftIndex, fmt.Sprintf("cmd %+v", *c))
	return s.Tree.Apply(b, raftIndex, c)
}

func (s *recordingSM) ApplyExpire(b *storage.Batch, raftIndex uint64, now int64) ([]*api.Event, error) {
	s.record(raftIndex, fmt.Sprint("expire ", now))
	return s.Tree.ApplyExpire(b, raftIndex, now)
}

func (s *recordingSM) SetApplied(b *storage.Batch, raftIndex uint64) error {
	// An empty entry or a conf change: both are identical on every member
	// only if the entries are, which the command digests around them check;
	// a command at this index on another member is a divergence.
	s.record(raftIndex, "no command")
	return s.Tree.SetApplied(b, raftIndex)
}

// syncedCommits is how many synced (fsynced) commits the core made: the
// sample count of its fsync histogram.
func syncedCommits(t *testing.T, c *core) uint64 {
	t.Helper()
	var m dto.Metric
	if err := c.met.fsyncDuration.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
