// Package watchers delivers applied v2 events to watchers. The Hub keeps the
// newest events in memory for waitIndex replays, reads older ones from a
// durable History when it has one, and keeps an index from watched path to
// watchers, so an event wakes only the watchers it matches. It knows nothing
// of HTTP: long-poll, stream=true and Server-Sent Events are renderings of a
// Watcher in httpapi.
//
// Concurrency: Applied, Restored/ResetAt and Close are called by the apply
// path (one goroutine); Watch, Count and the accessors by any goroutine.
// Each Watcher has exactly one consumer goroutine (the HTTP request serving
// it) which calls Next; Remove may be called from anywhere. Applied never
// blocks and never reads the History: a watcher whose bounded queue is full
// is either switched to catching up (its consumer then reads the History,
// outside every hub lock, and rejoins the live feed with no gap and no
// duplicate) or, without a History, ended with an error.
package watchers

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"cairn/api"
)

// History is the durable event history of the member (satisfied by
// *storage.EventLog, wired in server/). Every event the hub is told about
// through Applied must already be readable through Range.
type History interface {
	// Range calls fn with every retained event whose store index lies in
	// [from, to], in index order, until fn returns false. The events are
	// fresh copies with Index set.
	Range(from, to uint64, fn func(*api.Event) bool) error
	// Oldest is the lowest store index retained: Range returns every
	// event from Oldest up to the newest applied. It is raised before
	// events are deleted, so a reader that finds from ≥ Oldest() after its
	// Range saw every event from `from` on.
	Oldest() uint64
}

// Config configures a Hub.
type Config struct {
	// HistoryEvents is how many of the newest events are kept in memory
	// (≥ 1; default 1000). Without History this is the whole history
	// offered to waitIndex, as in etcd; with History it is a cache.
	HistoryEvents int
	// BufferEvents is each stream watcher's queue (default 100). A watcher
	// whose queue is full catches up from History, or without one is
	// ended with a 401-style error.
	BufferEvents int
	// MaxWatchers caps the watchers open at once (0: no cap).
	MaxWatchers int
	// History, when set, answers watches older than the in-memory events
	// and lets slow stream watchers catch up instead of being dropped.
	History History
	// ReplayBatch is how many matching events a catching-up watcher reads
	// from History at a time (default 256).
	ReplayBatch int
}

// ErrTooManyWatchers is returned when MaxWatchers are already open.
var ErrTooManyWatchers = errors.New("watchers: too many open watchers")

// ErrClosed is returned by Watch after Close, and by Next when the hub
// closed or the watcher was removed.
var ErrClosed = errors.New("watchers: shutting down")

// ErrDone is returned by Next after a one-shot (non-stream) watcher's event.
var ErrDone = errors.New("watchers: one-shot watch complete")

// Hub fans applied events out to watchers.
type Hub struct {
	cfg  Config
	hist History

	mu      sync.Mutex
	current uint64       // store index of the newest applied event
	ring    []*api.Event // the newest cfg.HistoryEvents events
	head    int          // next write position in ring
	size    int
	byPath  map[string]*pathWatchers
	closed  bool

	cur      atomic.Uint64 // current, readable without mu
	count    atomic.Int64
	evicted  atomic.Int64
	caughtUp atomic.Int64
}

type pathWatchers struct {
	exact     map[*Watcher]struct{}
	recursive map[*Watcher]struct{}
}

// New builds a hub whose store index starts at current.
func New(cfg Config, current uint64) *Hub {
	if cfg.HistoryEvents <= 0 {
		cfg.HistoryEvents = 1000
	}
	if cfg.BufferEvents <= 0 {
		cfg.BufferEvents = 100
	}
	if cfg.ReplayBatch <= 0 {
		cfg.ReplayBatch = 256
	}
	h := &Hub{cfg: cfg, hist: cfg.History, current: current, ring: make([]*api.Event, cfg.HistoryEvents), byPath: map[string]*pathWatchers{}}
	h.cur.Store(current)
	return h
}

// Watcher is one registered watch. Its consumer calls Next until it returns
// an error, waiting on Ready whenever Next returns (nil, nil).
type Watcher struct {
	// StartIndex is the store index when the watch was registered (the
	// X-Etcd-Index of the watch response).
	StartIndex uint64

	hub       *Hub
	path      string
	recursive bool
	stream    bool
	ready     chan struct{} // capacity 1: "Next may have something"

	// Guarded by hub.mu.
	since   uint64 // live delivery: events with index ≥ since
	removed bool

	// lagging: not fed by Applied; the consumer reads History. Written
	// under hub.mu, read by the consumer without it.
	lagging atomic.Bool
	evicted atomic.Bool

	mu    sync.Mutex // guards queue, qhead, ended, err
	queue []*api.Event
	qhead int
	ended bool
	err   error

	// Consumer-owned.
	last    uint64       // index of the last event returned by Next
	next    uint64       // catching up: next index to read from History
	pending []*api.Event // replayed events not yet returned
	phead   int
}

// Evicted reports whether the hub dropped the watcher for falling behind.
func (w *Watcher) Evicted() bool { return w.evicted.Load() }

// Ready is signalled whenever Next may return something new: an event, the
// end of the watch, or catching-up work.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

func (w *Watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// Next returns the next matching event without waiting: (ev, nil) an event,
// in store-index order, each at most once; (nil, nil) nothing yet (wait on
// Ready); (nil, err) the watch is over: ErrDone after a one-shot watch's
// event, ErrClosed when removed or at shutdown, or an *api.Error (401 when
// the watcher fell behind further than any history reaches, with the store
// index to resume from) after which the client must re-read and re-watch.
// Only one goroutine may call Next. Catching up from History happens here,
// on the caller's goroutine.
func (w *Watcher) Next() (*api.Event, error) {
	for range 1000 { // each round makes progress or returns
		if w.phead < len(w.pending) {
			ev := w.pending[w.phead]
			w.pending[w.phead] = nil
			w.phead++
			if w.phead == len(w.pending) {
				w.pending, w.phead = w.pending[:0], 0
			}
			if ev.Index <= w.last {
				continue
			}
			w.last = ev.Index
			return ev, nil
		}
		w.mu.Lock()
		if w.qhead < len(w.queue) {
			ev := w.queue[w.qhead]
			w.queue[w.qhead] = nil
			w.qhead++
			if w.qhead == len(w.queue) {
				w.queue, w.qhead = w.queue[:0], 0
			}
			w.mu.Unlock()
			if ev.Index <= w.last {
				continue
			}
			w.last = ev.Index
			return ev, nil
		}
		ended, err := w.ended, w.err
		w.mu.Unlock()
		if ended {
			return nil, err
		}
		if !w.lagging.Load() {
			return nil, nil
		}
		if err := w.catchUp(); err != nil {
			w.hub.evict(w, err)
			return nil, err
		}
	}
	w.signal() // more to do: come back after the caller's other work
	return nil, nil
}

// catchUp reads the history from w.next (set when the watcher started
// lagging) and queues what matches in pending; once it has read everything
// the hub has applied it rejoins the live feed under the hub lock, taking
// what the in-memory events hold beyond its position, so nothing is missed
// or repeated at the switch.
func (w *Watcher) catchUp() error {
	h := w.hub
	if w.next == 0 {
		w.next = w.last + 1
	}
	for range 64 {
		if target := h.cur.Load(); w.next <= target && h.hist != nil {
			from := w.next
			if oldest := h.hist.Oldest(); from < oldest {
				return h.clearedError(oldest, from)
			}
			full := false
			err := h.hist.Range(from, target, func(ev *api.Event) bool {
				w.next = ev.Index + 1
				if ev.Refresh || !matches(w.path, w.recursive, ev) {
					return true
				}
				w.pending = append(w.pending, ev)
				full = !w.stream || len(w.pending)-w.phead >= h.cfg.ReplayBatch
				return !full
			})
			if err != nil {
				return api.NewError(api.EcodeRaftInternal, "watch history: "+err.Error(), h.cur.Load())
			}
			if oldest := h.hist.Oldest(); from < oldest {
				// Trimmed while we read: the scan may have missed events.
				w.pending, w.phead = w.pending[:0], 0
				return h.clearedError(oldest, from)
			}
			if !full {
				w.next = max(w.next, target+1)
			}
			if w.phead < len(w.pending) {
				if !w.stream {
					h.mu.Lock()
					h.finishLocked(w, ErrDone)
					h.mu.Unlock()
				}
				return nil
			}
		}
		h.mu.Lock()
		if w.removed {
			h.mu.Unlock()
			return nil
		}
		if w.next > h.current {
			w.since = max(w.since, w.next)
			w.lagging.Store(false)
			h.mu.Unlock()
			return nil
		}
		if w.next >= h.ringOldestLocked() {
			found := h.scanRingLocked(w, w.next, &w.pending)
			if found && !w.stream {
				h.finishLocked(w, ErrDone)
			} else {
				w.since = max(w.since, h.current+1)
				w.lagging.Store(false)
			}
			h.mu.Unlock()
			return nil
		}
		if h.hist == nil { // cannot happen: only History-backed watchers lag
			err := h.clearedError(h.ringOldestLocked(), w.next)
			h.mu.Unlock()
			return err
		}
		h.mu.Unlock()
	}
	return nil // still behind a busy writer: Next comes back
}

// Remove unregisters the watcher (idempotent). Call it when the client goes away.
func (w *Watcher) Remove() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.finishLocked(w, ErrClosed)
}

// Count is the number of registered watchers.
func (h *Hub) Count() int { return int(h.count.Load()) }

// Evictions is how many watchers were dropped for falling behind.
func (h *Hub) Evictions() int64 { return h.evicted.Load() }

// CatchUps is how many times a stream watcher fell behind and was switched
// to catching up from History instead of being dropped.
func (h *Hub) CatchUps() int64 { return h.caughtUp.Load() }

// CurrentIndex is the store index of the newest event the hub has seen.
func (h *Hub) CurrentIndex() uint64 { return h.cur.Load() }

// OldestIndex is the oldest store index a watch may start from.
func (h *Hub) OldestIndex() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.oldestLocked()
}

// Watch registers a watcher on path. sinceIndex 0 means "events after now";
// a sinceIndex above the current index waits for it (events in between are
// skipped). An older sinceIndex replays the retained events from there on
// (from memory, or from History by the consumer's Next); one older than
// every retained event gives error 401. A one-shot (non-stream) watch that
// needs History is resolved here, so a 401 always comes from Watch.
func (h *Hub) Watch(path string, recursive, stream bool, sinceIndex uint64) (*Watcher, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	if h.cfg.MaxWatchers > 0 && int(h.count.Load()) >= h.cfg.MaxWatchers {
		h.mu.Unlock()
		return nil, ErrTooManyWatchers
	}
	w := &Watcher{hub: h, path: path, recursive: recursive, stream: stream, StartIndex: h.current, ready: make(chan struct{}, 1)}
	w.since = h.current + 1
	if sinceIndex > h.current {
		w.since = sinceIndex
	}
	w.last = w.since - 1
	fromHistory := false
	if sinceIndex != 0 && sinceIndex <= h.current {
		oldest := h.oldestLocked()
		if sinceIndex < oldest {
			err := h.clearedError(oldest, sinceIndex)
			h.mu.Unlock()
			return nil, err
		}
		w.last = sinceIndex - 1
		if sinceIndex >= h.ringOldestLocked() {
			found := h.scanRingLocked(w, sinceIndex, &w.pending)
			if found && !stream {
				w.removed, w.ended, w.err = true, true, ErrDone
				h.mu.Unlock()
				return w, nil
			}
		} else {
			fromHistory = true
			w.next = sinceIndex
			w.lagging.Store(true)
		}
	}
	h.registerLocked(w)
	h.mu.Unlock()
	if fromHistory {
		w.signal()
		if !stream {
			// Resolve a one-shot watch now: its first event, or live.
			for range 1000 {
				if err := w.catchUp(); err != nil {
					w.Remove()
					return nil, err
				}
				if !w.lagging.Load() || w.phead < len(w.pending) {
					break
				}
			}
		}
	}
	return w, nil
}

func (h *Hub) registerLocked(w *Watcher) {
	pw := h.byPath[w.path]
	if pw == nil {
		pw = &pathWatchers{exact: map[*Watcher]struct{}{}, recursive: map[*Watcher]struct{}{}}
		h.byPath[w.path] = pw
	}
	if w.recursive {
		pw.recursive[w] = struct{}{}
	} else {
		pw.exact[w] = struct{}{}
	}
	h.count.Add(1)
}

// Applied publishes events (in index order) applied at a raft index. They
// must already be durable (and in History, when there is one).
func (h *Hub) Applied(_ uint64, events []*api.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range events {
		if ev == nil || ev.Index == 0 {
			continue
		}
		h.current = ev.Index
		h.ring[h.head] = ev
		h.head = (h.head + 1) % len(h.ring)
		h.size = min(h.size+1, len(h.ring))
		if ev.Refresh || len(h.byPath) == 0 {
			continue
		}
		h.publishLocked(ev)
	}
	h.cur.Store(h.current)
}

// Close ends every watcher (their responses finish) and refuses new ones.
// Called at shutdown so open watches do not hold the server up.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.endAllLocked(func() error { return ErrClosed })
}

// Restored drops every watcher after a snapshot install: their history no
// longer lines up with the store. Prefer ResetAt, which also learns the new
// store index.
func (h *Hub) Restored(uint64) { h.ResetAt(0) }

// ResetAt drops every watcher and the in-memory events after a snapshot
// install that left the store at storeIndex (0: unknown, keep the current
// index). Watchers get a 401 error carrying the new index to resume from.
func (h *Hub) ResetAt(storeIndex uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if storeIndex != 0 {
		h.current = storeIndex
		h.cur.Store(storeIndex)
	}
	h.size, h.head = 0, 0
	clear(h.ring)
	idx := h.current
	h.endAllLocked(func() error {
		return api.NewError(api.EcodeEventIndexCleared, fmt.Sprintf("the watch history was replaced by a snapshot at index %d", idx), idx)
	})
}

func (h *Hub) endAllLocked(reason func() error) {
	for _, pw := range h.byPath {
		for w := range pw.exact {
			h.finishLocked(w, reason())
		}
		for w := range pw.recursive {
			h.finishLocked(w, reason())
		}
	}
}

// SetCurrent sets the store index when no events were seen yet (at start).
func (h *Hub) SetCurrent(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.size == 0 {
		h.current = index
		h.cur.Store(index)
	}
}

// oldestLocked is the oldest index a watch may start from.
func (h *Hub) oldestLocked() uint64 {
	if h.hist != nil {
		return min(h.hist.Oldest(), h.current+1)
	}
	return h.ringOldestLocked()
}

// ringOldestLocked is the oldest index held in memory (current+1 if none).
func (h *Hub) ringOldestLocked() uint64 {
	if h.size == 0 {
		return h.current + 1
	}
	return h.ring[(h.head-h.size+len(h.ring))%len(h.ring)].Index
}

func (h *Hub) clearedError(oldest, since uint64) *api.Error {
	return api.NewError(api.EcodeEventIndexCleared,
		fmt.Sprintf("the requested history has been cleared [%d/%d]", oldest, since), h.cur.Load())
}

// scanRingLocked appends to out the in-memory events from index since on
// that match w (only the first for a one-shot watcher) and reports whether
// there was any.
func (h *Hub) scanRingLocked(w *Watcher, since uint64, out *[]*api.Event) bool {
	found := false
	for k := 0; k < h.size; k++ {
		ev := h.ring[(h.head-h.size+k+len(h.ring))%len(h.ring)]
		if ev.Index < since || ev.Refresh || !matches(w.path, w.recursive, ev) {
			continue
		}
		*out = append(*out, ev)
		found = true
		if !w.stream {
			break
		}
	}
	return found
}

// publishLocked delivers ev to every watcher it matches, each at most once.
func (h *Hub) publishLocked(ev *api.Event) {
	key := ev.Node.Key
	// Rule 1 and 2: watchers at the key itself, recursive ones above it
	// unless a hidden segment lies between.
	if pw := h.byPath[key]; pw != nil {
		h.sendAllLocked(pw.exact, ev)
		h.sendAllLocked(pw.recursive, ev)
	}
	hidden := isHidden(key)
	for p := key; p != "/"; {
		p = parent(p)
		if !hidden {
			if pw := h.byPath[p]; pw != nil {
				h.sendAllLocked(pw.recursive, ev)
			}
		}
		if isHidden(p) {
			hidden = true
		}
	}
	// Rule 3: removing a directory reaches every watcher inside it.
	if ev.Node.Dir && removes(ev.Action) {
		prefix := key + "/"
		if key == "/" {
			prefix = "/"
		}
		for p, pw := range h.byPath {
			if strings.HasPrefix(p, prefix) {
				h.sendAllLocked(pw.exact, ev)
				h.sendAllLocked(pw.recursive, ev)
			}
		}
	}
}

func (h *Hub) sendAllLocked(set map[*Watcher]struct{}, ev *api.Event) {
	for w := range set {
		if ev.Index < w.since || w.lagging.Load() {
			continue
		}
		limit := h.cfg.BufferEvents
		if !w.stream {
			limit = 1
		}
		w.mu.Lock()
		if len(w.queue)-w.qhead >= limit {
			w.mu.Unlock()
			h.overflowLocked(w)
			continue
		}
		if len(w.queue) == cap(w.queue) && w.qhead > 0 {
			n := copy(w.queue, w.queue[w.qhead:])
			clear(w.queue[n:])
			w.queue, w.qhead = w.queue[:n], 0
		}
		w.queue = append(w.queue, ev)
		w.mu.Unlock()
		w.signal()
		if !w.stream {
			h.finishLocked(w, ErrDone)
		}
	}
}

// overflowLocked handles a watcher whose queue is full: with History it
// catches up from there (its consumer drains the queue first, then reads
// on from its last event); without, it is ended with a 401-style error.
func (h *Hub) overflowLocked(w *Watcher) {
	if h.hist != nil && w.stream {
		w.next = 0 // the consumer restarts from its last returned event
		w.lagging.Store(true)
		h.caughtUp.Add(1)
		w.signal()
		return
	}
	w.evicted.Store(true)
	h.evicted.Add(1)
	h.finishLocked(w, api.NewError(api.EcodeEventIndexCleared,
		fmt.Sprintf("the watcher fell more than %d events behind and was dropped", h.cfg.BufferEvents), h.current))
}

// evict ends w, which fell further behind than the history reaches (or
// could not read it), on behalf of its consumer.
func (h *Hub) evict(w *Watcher, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !w.removed {
		w.evicted.Store(true)
		h.evicted.Add(1)
	}
	h.finishLocked(w, err)
}

// finishLocked unregisters w and ends it with err (idempotent: the first
// reason wins). Queued events stay readable before the end is reported.
func (h *Hub) finishLocked(w *Watcher, err error) {
	if w.removed {
		return
	}
	w.removed = true
	w.mu.Lock()
	if !w.ended {
		w.ended, w.err = true, err
	}
	w.mu.Unlock()
	w.signal()
	if pw := h.byPath[w.path]; pw != nil {
		delete(pw.exact, w)
		delete(pw.recursive, w)
		if len(pw.exact) == 0 && len(pw.recursive) == 0 {
			delete(h.byPath, w.path)
		}
	}
	h.count.Add(-1)
}

// matches applies §5.3's rules to one event for a watcher on path.
func matches(path string, recursive bool, ev *api.Event) bool {
	key := ev.Node.Key
	if key == path {
		return true
	}
	if recursive && isBelow(key, path) && !hiddenBetween(path, key) {
		return true
	}
	if ev.Node.Dir && removes(ev.Action) && isBelow(path, key) {
		return true
	}
	return false
}

func removes(action string) bool {
	return action == api.ActionDelete || action == api.ActionExpire || action == api.ActionCompareAndDelete
}

// isBelow reports whether key lies strictly inside directory dir.
func isBelow(key, dir string) bool {
	if dir == "/" {
		return key != "/"
	}
	return len(key) > len(dir) && strings.HasPrefix(key, dir) && key[len(dir)] == '/'
}

// hiddenBetween reports whether a segment of key below dir starts with "_".
func hiddenBetween(dir, key string) bool {
	rest := key[len(dir):]
	if dir == "/" {
		rest = key
	}
	return strings.Contains(rest, "/_")
}

func isHidden(path string) bool {
	i := strings.LastIndexByte(path, '/')
	return i >= 0 && i+1 < len(path) && path[i+1] == '_'
}

func parent(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/"
	}
	return path[:i]
}
