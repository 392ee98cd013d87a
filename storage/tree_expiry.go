package storage

import (
	"fmt"

	"cairn/api"
)

// treeExpEntry is one node with a TTL in the expiry index. The path is kept
// here (not in every node) because ties on the expiration are broken by it.
type treeExpEntry struct {
	exp  int64
	path string
	n    *treeNode
}

// treeExpHeap is a min-heap ordered by (expiration, path); each node knows
// its position (heapIdx), so removal and re-keying are O(log n). Paths of
// live nodes are unique, so the order is total and the expiry order does not
// depend on the heap's internal layout.
type treeExpHeap []treeExpEntry

func (h treeExpHeap) less(i, j int) bool {
	if h[i].exp != h[j].exp {
		return h[i].exp < h[j].exp
	}
	return h[i].path < h[j].path
}

func (h treeExpHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].n.heapIdx = int32(i)
	h[j].n.heapIdx = int32(j)
}

func (h treeExpHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (h treeExpHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

func (h *treeExpHeap) push(e treeExpEntry) {
	e.n.heapIdx = int32(len(*h))
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *treeExpHeap) remove(i int) {
	old := *h
	last := len(old) - 1
	old[i].n.heapIdx = -1
	if i != last {
		old[i] = old[last]
		old[i].n.heapIdx = int32(i)
	}
	old[last] = treeExpEntry{} // let the node be collected
	*h = old[:last]
	if i != last {
		h.fix(i)
	}
}

func (h treeExpHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

// setExpiration sets n's expiration (0 = permanent) and keeps the expiry
// index in step; p is n's full path.
func (t *Tree) setExpiration(n *treeNode, p string, exp int64) {
	n.expiration = exp
	switch {
	case n.heapIdx >= 0 && exp == 0:
		t.exp.remove(int(n.heapIdx))
	case n.heapIdx >= 0:
		i := int(n.heapIdx)
		t.exp[i].exp = exp
		t.exp.fix(i)
	case exp != 0:
		t.exp.push(treeExpEntry{exp: exp, path: p, n: n})
	}
}

func (t *Tree) updateNextExpiration() {
	var next int64
	if len(t.exp) > 0 {
		next = t.exp[0].exp
	}
	t.nextExp.Store(next)
}

// ApplyExpire applies an expire command stamped with the leader's clock now
// (unix ns): it removes, in (expiration, path) order, every node whose
// expiration is at or before now. Each removal takes one store index and
// yields one "expire" event; an expiring directory takes its whole subtree
// with it in that one event. The applied index becomes raftIndex even when
// nothing expires.
func (t *Tree) ApplyExpire(b *Batch, raftIndex uint64, now int64) ([]*api.Event, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkOrder(raftIndex); err != nil {
		return nil, err
	}
	before := t.index.Load()
	var evs []*api.Event
	for len(t.exp) > 0 && t.exp[0].exp <= now {
		top := t.exp[0]
		ev, err := t.remove(b, top.n, top.path, api.ActionExpire)
		if err != nil {
			return nil, fmt.Errorf("expire %q at raft index %d: %w", top.path, raftIndex, err)
		}
		// The remaining TTL of an expired node is <= 0: show the
		// expiration, never a ttl (§4.5).
		ev.PrevNode.HideTTL = true
		ev.At = now
		evs = append(evs, ev)
	}
	t.stats.countExpired(len(evs))
	if err := t.finish(b, raftIndex, before, evs...); err != nil {
		return nil, err
	}
	return evs, nil
}
