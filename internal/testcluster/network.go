package testcluster

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// link is one direction between two members.
type link struct{ from, to uint64 }

// linkFaults are a link's random faults, drawn once per run.
type linkFaults struct {
	dropPct  int // a message is lost with this chance (percent)
	dupPct   int // a delivered message is delivered again later with this chance
	maxDelay int // a message is held for up to this many steps before it can arrive
}

// envelope is a message on the wire.
type envelope struct {
	msg     *raftpb.Message
	fromInc uint64 // the sender's incarnation when it sent msg
	due     int    // the first step at which it may arrive
}

// network is the simulated wire between the members: every message waits
// in one pool until the cluster picks it (at random among those due, so
// messages overtake each other), and then arrives, is lost or arrives
// twice according to its link's faults and the partition.
type network struct {
	rng    *rand.Rand
	step   int
	ids    []uint64
	faults map[link]linkFaults
	cut    map[link]bool // directed: a cut link loses every message sent over it
	pool   []envelope
	// calm: the network has healed. No cut, loss, duplication or delay,
	// and messages arrive in the order they were sent.
	calm bool
}

func newNetwork(rng *rand.Rand, ids []uint64) *network {
	n := &network{rng: rng, ids: ids, faults: make(map[link]linkFaults), cut: make(map[link]bool)}
	for _, from := range ids {
		for _, to := range ids {
			if from != to {
				n.faults[link{from, to}] = linkFaults{dropPct: rng.IntN(8), dupPct: rng.IntN(5), maxDelay: rng.IntN(16)}
			}
		}
	}
	return n
}

// send puts msgs from a member's incarnation on the wire. The messages are
// copied: raft may reuse what it handed out.
func (n *network) send(fromInc uint64, msgs []*raftpb.Message) {
	for _, m := range msgs {
		due := n.step
		if !n.calm {
			due += n.rng.IntN(n.faults[link{m.GetFrom(), m.GetTo()}].maxDelay + 1)
		}
		n.pool = append(n.pool, envelope{msg: proto.Clone(m).(*raftpb.Message), fromInc: fromInc, due: due})
	}
}

// next takes a message off the wire: one picked at random among those due,
// or, when calm, the oldest. ok is false when none is due.
func (n *network) next() (e envelope, ok bool) {
	i := -1
	if n.calm {
		if len(n.pool) > 0 {
			i = 0
		}
	} else {
		due := 0
		for _, e := range n.pool {
			if e.due <= n.step {
				due++
			}
		}
		if due > 0 {
			k := n.rng.IntN(due)
			for j, e := range n.pool {
				if e.due > n.step {
					continue
				}
				if k == 0 {
					i = j
					break
				}
				k--
			}
		}
	}
	if i < 0 {
		return envelope{}, false
	}
	e = n.pool[i]
	n.pool = slices.Delete(n.pool, i, i+1)
	return e, true
}

// fate decides what happens to e on its link: lost to a cut link (the
// sender's transport notices), lost silently, delivered, or delivered
// and also put back on the wire to arrive again.
type fate int

const (
	deliver fate = iota
	duplicate
	lostSilently
	lostToCut
)

func (n *network) fate(e envelope) fate {
	if n.calm {
		return deliver
	}
	l := link{e.msg.GetFrom(), e.msg.GetTo()}
	if n.cut[l] {
		return lostToCut
	}
	f := n.faults[l]
	switch r := n.rng.IntN(100); {
	case r < f.dropPct:
		return lostSilently
	case r < f.dropPct+f.dupPct:
		dup := e
		dup.msg = proto.Clone(e.msg).(*raftpb.Message)
		dup.due = n.step + n.rng.IntN(f.maxDelay+1)
		n.pool = append(n.pool, dup)
		return duplicate
	}
	return deliver
}

// dropTo removes every message on its way to id (its connections broke)
// and returns them.
func (n *network) dropTo(id uint64) []envelope {
	var lost []envelope
	kept := n.pool[:0]
	for _, e := range n.pool {
		if e.msg.GetTo() == id {
			lost = append(lost, e)
		} else {
			kept = append(kept, e)
		}
	}
	clear(n.pool[len(kept):])
	n.pool = kept
	return lost
}

// repartition replaces the partition with a random one, or heals it, and
// describes what it did.
func (n *network) repartition() string {
	clear(n.cut)
	cutBoth := func(a, b uint64) { n.cut[link{a, b}], n.cut[link{b, a}] = true, true }
	pick := n.ids[n.rng.IntN(len(n.ids))]
	switch n.rng.IntN(6) {
	case 0, 1:
		return "healed"
	case 2:
		for _, id := range n.ids {
			if id != pick {
				cutBoth(pick, id)
			}
		}
		return fmt.Sprintf("member %d isolated", pick)
	case 3:
		// One way: pick still hears the others (heartbeats, votes) but
		// nothing it sends arrives, or the other way round.
		out := n.rng.IntN(2) == 0
		for _, id := range n.ids {
			if id == pick {
				continue
			}
			if out {
				n.cut[link{pick, id}] = true
			} else {
				n.cut[link{id, pick}] = true
			}
		}
		if out {
			return fmt.Sprintf("member %d cannot send", pick)
		}
		return fmt.Sprintf("member %d cannot receive", pick)
	case 4:
		// Two sides, each member on a random one.
		side := make(map[uint64]bool)
		for _, id := range n.ids {
			side[id] = n.rng.IntN(2) == 0
		}
		var a []uint64
		for _, x := range n.ids {
			if side[x] {
				a = append(a, x)
			}
			for _, y := range n.ids {
				if x < y && side[x] != side[y] {
					cutBoth(x, y)
				}
			}
		}
		return fmt.Sprintf("split %v from the rest", a)
	default:
		other := n.ids[n.rng.IntN(len(n.ids))]
		if other == pick {
			return "healed"
		}
		n.cut[link{pick, other}] = true
		return fmt.Sprintf("link %d→%d cut", pick, other)
	}
}
