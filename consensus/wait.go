package consensus

import (
	"container/heap"
	"sync"

	"cairn/api"
	"go.etcd.io/raft/v3/raftpb"
)

// result is what apply hands back to a proposer.
type result struct {
	ev     *api.Event   // Propose: the event of the command (nil for OpExpire)
	events []*api.Event // ProposeExpire: the expire events
	err    error        // *api.Error from apply, or an infrastructure sentinel
}

// waitRegistry maps request IDs to the channel of the goroutine waiting for
// that proposal's result (etcd's wait.Wait). Proposers register before they
// propose and cancel on every exit path; the loop triggers after the apply
// batch is committed. Safe for concurrent use.
type waitRegistry struct {
	mu sync.Mutex
	m  map[uint64]chan result
}

func newWaitRegistry() *waitRegistry {
	return &waitRegistry{m: make(map[uint64]chan result)}
}

// register returns the channel that receives id's result (buffered: a
// trigger never blocks).
func (w *waitRegistry) register(id uint64) <-chan result {
	ch := make(chan result, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

// trigger delivers r to id's waiter and forgets it. It reports whether
// someone was waiting.
func (w *waitRegistry) trigger(id uint64, r result) bool {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

// cancel forgets id without delivering anything.
func (w *waitRegistry) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// has reports whether someone still waits for id.
func (w *waitRegistry) has(id uint64) bool {
	w.mu.Lock()
	_, ok := w.m[id]
	w.mu.Unlock()
	return ok
}

// failAll delivers err to every waiter.
func (w *waitRegistry) failAll(err error) {
	w.mu.Lock()
	m := w.m
	w.m = make(map[uint64]chan result)
	w.mu.Unlock()
	for _, ch := range m {
		ch <- result{err: err}
	}
}

func (w *waitRegistry) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// proposal is one encoded envelope on its way into raft.
type proposal struct {
	id         uint64
	data       []byte
	confChange bool // data is a marshalled raftpb.ConfChange
	// promote is the learner a promotion proposal promotes: the loop
	// checks that it is in sync with this leader before proposing.
	promote uint64
}

// readWaiter is one ReadBarrier call. done receives nil once the local
// applied index has reached a read index obtained after the call began.
type readWaiter struct {
	done   chan error      // buffered 1
	cancel <-chan struct{} // the caller's ctx.Done(), polled to prune abandoned reads
}

func (r *readWaiter) abandoned() bool {
	select {
	case <-r.cancel:
		return true
	default:
		return false
	}
}

// report is a transport's feedback for raft (unreachable peer, snapshot).
type report struct {
	id       uint64
	snapshot bool // false: unreachable
	failed   bool // snapshot failed
	removed  bool // a peer said this member was removed from the cluster
}

// inbox is the hand-off from every other goroutine to the loop: producers
// append under the mutex and poke signal; the loop takes everything at once.
// That drain is what makes group commit work: all proposals that arrived
// while the loop was busy (fsyncing) go into the next Ready together.
type inbox struct {
	mu      sync.Mutex
	props   []proposal
	reads   []*readWaiter
	msgs    []*raftpb.Message
	reports []report
	signal  chan struct{} // cap 1
}

func newInbox() *inbox { return &inbox{signal: make(chan struct{}, 1)} }

func (in *inbox) poke() {
	select {
	case in.signal <- struct{}{}:
	default:
	}
}

func (in *inbox) addProposal(p proposal) {
	in.mu.Lock()
	in.props = append(in.props, p)
	in.mu.Unlock()
	in.poke()
}

func (in *inbox) addRead(r *readWaiter) {
	in.mu.Lock()
	in.reads = append(in.reads, r)
	in.mu.Unlock()
	in.poke()
}

// maxInboxMsgs bounds queued peer messages; raft tolerates the loss of any
// message, and a loop that far behind must not be buried deeper.
const maxInboxMsgs = 4096

func (in *inbox) addMessage(m *raftpb.Message) bool {
	in.mu.Lock()
	ok := len(in.msgs) < maxInboxMsgs
	if ok {
		in.msgs = append(in.msgs, m)
	}
	in.mu.Unlock()
	if ok {
		in.poke()
	}
	return ok
}

func (in *inbox) addReport(r report) {
	in.mu.Lock()
	in.reports = append(in.reports, r)
	in.mu.Unlock()
	in.poke()
}

// batch is everything taken from the inbox in one go.
type batch struct {
	props   []proposal
	reads   []*readWaiter
	msgs    []*raftpb.Message
	reports []report
}

func (in *inbox) take() batch {
	in.mu.Lock()
	b := batch{props: in.props, reads: in.reads, msgs: in.msgs, reports: in.reports}
	in.props, in.reads, in.msgs, in.reports = nil, nil, nil, nil
	in.mu.Unlock()
	return b
}

// appliedWaits releases read waiters once the applied index reaches their
// read index. Owned by the loop goroutine: no locking.
type appliedWaits struct{ h waitHeap }

type indexedWaiters struct {
	index   uint64
	waiters []*readWaiter
}

type waitHeap []indexedWaiters

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].index < h[j].index }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(indexedWaiters)) }
func (h *waitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = indexedWaiters{}
	*h = old[:len(old)-1]
	return x
}

func (a *appliedWaits) add(index uint64, ws []*readWaiter) {
	heap.Push(&a.h, indexedWaiters{index: index, waiters: ws})
}

// release signals every waiter whose index is ≤ applied.
func (a *appliedWaits) release(applied uint64) {
	for len(a.h) > 0 && a.h[0].index <= applied {
		iw := heap.Pop(&a.h).(indexedWaiters)
		for _, w := range iw.waiters {
			w.done <- nil
		}
	}
}

func (a *appliedWaits) failAll(err error) {
	for _, iw := range a.h {
		for _, w := range iw.waiters {
			w.done <- err
		}
	}
	a.h = nil
}
