package testcluster

import (
	"errors"
	"fmt"
)

// Checker holds the safety invariants of a simulated cluster. The cluster
// reports what it observes (leaders, applies, applied indexes, syncs,
// restarts, state digests, acknowledged writes); the checker records the
// first violation of each kind it sees and every later one up to a limit.
// It is separate from the cluster so that a test can feed it fabricated
// histories and see it object.
type Checker struct {
	leaders map[uint64]uint64         // term → the member that led it
	applies map[uint64]applyRecord    // raft index → the first apply seen there
	digests map[uint64]digestRecord   // applied index → the first state digest seen there
	members map[uint64]*memberHistory // per member, across restarts
	acked   []string                  // acknowledged write keys, in acknowledgement order
	ackedAt map[string]string         // key → acknowledged value
	errs    []error
}

// maxViolations bounds how many violations are kept: the first is the one
// that matters, the rest give context.
const maxViolations = 20

type applyRecord struct {
	member, incarnation uint64
	digest              string
}

type digestRecord struct {
	member uint64
	digest string
}

type memberHistory struct {
	incarnation uint64 // restarts so far
	applied     uint64 // applied index last observed in this incarnation
	durable     uint64 // an applied index known to be synced to the member's disk
	rolledBack  int    // restarts that came back below the last observed applied index
}

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{
		leaders: make(map[uint64]uint64),
		applies: make(map[uint64]applyRecord),
		digests: make(map[uint64]digestRecord),
		members: make(map[uint64]*memberHistory),
		ackedAt: make(map[string]string),
	}
}

func (k *Checker) violate(format string, args ...any) {
	if len(k.errs) < maxViolations {
		k.errs = append(k.errs, fmt.Errorf(format, args...))
	}
}

func (k *Checker) member(id uint64) *memberHistory {
	m := k.members[id]
	if m == nil {
		m = &memberHistory{}
		k.members[id] = m
	}
	return m
}

// Err is every violation recorded so far (nil when none), the first first.
func (k *Checker) Err() error { return errors.Join(k.errs...) }

// Failed reports whether any violation was recorded.
func (k *Checker) Failed() bool { return len(k.errs) > 0 }

// Leader records that member is leader in term: at most one member may
// ever lead a term.
func (k *Checker) Leader(term, member uint64) {
	if l, ok := k.leaders[term]; ok && l != member {
		k.violate("two leaders in term %d: members %d and %d", term, l, member)
		return
	}
	k.leaders[term] = member
}

// Terms is how many terms had a leader.
func (k *Checker) Terms() int { return len(k.leaders) }

// Apply records that member applied what digest describes at raft index.
// Every apply at one index — by any member, in any incarnation — must be
// the same.
func (k *Checker) Apply(member, index uint64, digest string) {
	inc := k.member(member).incarnation
	first, ok := k.applies[index]
	if !ok {
		k.applies[index] = applyRecord{member: member, incarnation: inc, digest: digest}
		return
	}
	if first.digest != digest {
		k.violate("member %d (restart %d) applied %q at index %d, member %d (restart %d) applied %q there",
			member, inc, digest, index, first.member, first.incarnation, first.digest)
	}
}

// Indexes is how many distinct raft indexes were applied somewhere.
func (k *Checker) Indexes() int { return len(k.applies) }

// AppliedIndex records member's applied index: within one incarnation it
// never goes back.
func (k *Checker) AppliedIndex(member, applied uint64) {
	m := k.member(member)
	if applied < m.applied {
		k.violate("member %d (restart %d): applied index went back from %d to %d without a restart",
			member, m.incarnation, m.applied, applied)
	}
	m.applied = max(m.applied, applied)
}

// Durable records that member's applied index up to applied is synced to
// its disk: no crash may lose it.
func (k *Checker) Durable(member, applied uint64) {
	m := k.member(member)
	m.durable = max(m.durable, applied)
}

// Restarted records that member restarted after a crash at applied index
// applied: below what it applied before is allowed (unsynced applies are
// replayed from the log), below what was synced is not.
func (k *Checker) Restarted(member, applied uint64) {
	m := k.member(member)
	m.incarnation++
	if applied < m.durable {
		k.violate("member %d restarted (restart %d) at applied index %d, below the synced applied index %d",
			member, m.incarnation, applied, m.durable)
	}
	if applied < m.applied {
		m.rolledBack++
	}
	m.applied = applied
}

// RolledBack is how many restarts came back below the applied index the
// member had reached before its crash.
func (k *Checker) RolledBack() int {
	n := 0
	for _, m := range k.members {
		n += m.rolledBack
	}
	return n
}

// StateDigest records a digest of member's state (its key tree) at applied
// index applied: every member at one applied index holds the same state.
func (k *Checker) StateDigest(member, applied uint64, digest string) {
	first, ok := k.digests[applied]
	if !ok {
		k.digests[applied] = digestRecord{member: member, digest: digest}
		return
	}
	if first.digest != digest {
		k.violate("member %d's state at applied index %d differs from member %d's at the same index (%s vs %s)",
			member, applied, first.member, shortDigest(digest), shortDigest(first.digest))
	}
}

func shortDigest(d string) string { return d[:min(len(d), 12)] }

// Acked records a write acknowledged to its client: key now holds value.
func (k *Checker) Acked(key, value string) {
	k.acked = append(k.acked, key)
	k.ackedAt[key] = value
}

// AckedCount is how many writes were acknowledged so far; a read barrier
// remembers it when issued.
func (k *Checker) AckedCount() int { return len(k.acked) }

// HasAcked checks that member holds the first n acknowledged writes, as
// get reads them from its state: after a read barrier issued when n writes
// were acknowledged, and (with n = AckedCount()) on every member once the
// cluster settled. what says which check this is.
func (k *Checker) HasAcked(member uint64, n int, what string, get func(key string) (value string, ok bool)) {
	var missing []string
	for _, key := range k.acked[:n] {
		v, ok := get(key)
		switch {
		case !ok:
			missing = append(missing, key)
		case v != k.ackedAt[key]:
			k.violate("%s: member %d holds %q at acknowledged key %s, want %q", what, member, v, key, k.ackedAt[key])
		}
	}
	if len(missing) > 0 {
		k.violate("%s: member %d lacks %d acknowledged writes: %v", what, member, len(missing), missing[:min(len(missing), 10)])
	}
}

// Summary is a line of counts for the test log.
func (k *Checker) Summary() string {
	restarts := uint64(0)
	for _, m := range k.members {
		restarts += m.incarnation
	}
	return fmt.Sprintf("%d writes acknowledged, %d terms with a leader, %d indexes compared, %d state digests, %d restarts (%d came back behind)",
		len(k.acked), len(k.leaders), len(k.applies), len(k.digests), restarts, k.RolledBack())
}
