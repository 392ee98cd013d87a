// Package watchers delivers applied v2 events to watchers. The Hub keeps the
// recent history for waitIndex replays and an index from watched path to
// watchers, so an event wakes only the watchers it matches. It knows nothing
// of HTTP: long-poll, stream=true and Server-Sent Events are renderings of a
// Watcher in httpapi.
package watchers

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"cairn/api"
)

// Config configures a Hub.
type Config struct {
	// HistoryEvents is how many recent events are kept for waitIndex (≥ 1).
	HistoryEvents int
	// BufferEvents is each watcher's queue; a watcher whose queue is full is
	// dropped and its client must re-watch from its last index.
	BufferEvents int
	// MaxWatchers caps the watchers open at once (0: no cap).
	MaxWatchers int
}

// ErrTooManyWatchers is returned when MaxWatchers are already open.
var ErrTooManyWatchers = errors.New("watchers: too many open watchers")

// ErrClosed is returned by Watch after Close.
var ErrClosed = errors.New("watchers: shutting down")

// Hub fans applied events out to watchers. Applied is called by the apply
// path, in index order, after the events are durable; it never blocks.
type Hub struct {
	cfg Config

	mu      sync.Mutex
	current uint64       // store index of the newest applied event
	history []*api.Event // ring buffer of the last cfg.HistoryEvents events
	head    int          // next write position in history
	size    int
	byPath  map[string]*pathWatchers
	count   atomic.Int64
	evicted atomic.Int64
	closed  bool
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
	return &Hub{cfg: cfg, current: current, history: make([]*api.Event, cfg.HistoryEvents), byPath: map[string]*pathWatchers{}}
}

// Watcher receives matching events on C. C is closed when the watcher is
// removed by the hub: after its one event (non-stream), or because it fell
// behind (Evicted reports true).
type Watcher struct {
	C <-chan *api.Event
	// StartIndex is the store index when the watch was registered (the
	// X-Etcd-Index of the watch response).
	StartIndex uint64

	c         chan *api.Event
	hub       *Hub
	path      string
	recursive bool
	stream    bool
	since     uint64 // deliver only events with index ≥ since
	removed   bool   // guarded by hub.mu
	evicted   atomic.Bool
}

// Evicted reports whether the hub dropped the watcher for falling behind.
func (w *Watcher) Evicted() bool { return w.evicted.Load() }

// Remove unregisters the watcher (idempotent). Call it when the client goes away.
func (w *Watcher) Remove() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.removeLocked(w)
}

// Count is the number of registered watchers.
func (h *Hub) Count() int { return int(h.count.Load()) }

// Evictions is how many watchers were dropped for falling behind.
func (h *Hub) Evictions() int64 { return h.evicted.Load() }

// CurrentIndex is the store index of the newest event the hub has seen.
func (h *Hub) CurrentIndex() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}

// Watch registers a watcher on path. sinceIndex 0 means "events after now".
// Events still in the history from sinceIndex on are queued at once. An
// index older than the history gives error 401.
func (h *Hub) Watch(path string, recursive, stream bool, sinceIndex uint64) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.cfg.MaxWatchers > 0 && int(h.count.Load()) >= h.cfg.MaxWatchers {
		return nil, ErrTooManyWatchers
	}
	w := &Watcher{hub: h, path: path, recursive: recursive, stream: stream, StartIndex: h.current}
	w.since = h.current + 1
	var replay []*api.Event
	if sinceIndex != 0 && sinceIndex <= h.current {
		oldest := h.oldestLocked()
		if sinceIndex < oldest {
			return nil, api.NewError(api.EcodeEventIndexCleared,
				fmt.Sprintf("the requested history has been cleared [%d/%d]", oldest, sinceIndex), h.current)
		}
		replay = h.scanLocked(w, sinceIndex)
		if len(replay) > 0 && !stream {
			c := make(chan *api.Event, 1)
			c <- replay[0]
			close(c)
			w.c, w.C, w.removed = c, c, true
			return w, nil
		}
	} else if sinceIndex > h.current {
		w.since = sinceIndex
	}
	capacity := h.cfg.BufferEvents
	if !stream {
		capacity = 1
	}
	w.c = make(chan *api.Event, max(capacity, len(replay)))
	w.C = w.c
	for _, ev := range replay {
		w.c <- ev
	}
	pw := h.byPath[path]
	if pw == nil {
		pw = &pathWatchers{exact: map[*Watcher]struct{}{}, recursive: map[*Watcher]struct{}{}}
		h.byPath[path] = pw
	}
	if recursive {
		pw.recursive[w] = struct{}{}
	} else {
		pw.exact[w] = struct{}{}
	}
	h.count.Add(1)
	return w, nil
}

// Applied publishes events (in index order) applied at a raft index.
func (h *Hub) Applied(_ uint64, events []*api.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range events {
		if ev.Index == 0 {
			continue
		}
		h.current = ev.Index
		h.history[h.head] = ev
		h.head = (h.head + 1) % len(h.history)
		h.size = min(h.size+1, len(h.history))
		if ev.Refresh || len(h.byPath) == 0 {
			continue
		}
		h.publishLocked(ev)
	}
}

// Close ends every watcher (their responses finish) and refuses new ones.
// Called at shutdown so open watches do not hold the server up.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.removeAllLocked()
}

// Restored drops every watcher after a snapshot install: their history no
// longer lines up with the store. Clients re-watch.
func (h *Hub) Restored(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeAllLocked()
	h.size, h.head = 0, 0
	clear(h.history)
}

func (h *Hub) removeAllLocked() {
	for _, pw := range h.byPath {
		for w := range pw.exact {
			h.evictLocked(w)
		}
		for w := range pw.recursive {
			h.evictLocked(w)
		}
	}
}

// SetCurrent sets the store index when no events were seen yet (at start).
func (h *Hub) SetCurrent(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.size == 0 {
		h.current = index
	}
}

func (h *Hub) oldestLocked() uint64 {
	if h.size == 0 {
		return h.current + 1
	}
	i := (h.head - h.size + len(h.history)) % len(h.history)
	return h.history[i].Index
}

// scanLocked returns the history events from index since on that match w.
func (h *Hub) scanLocked(w *Watcher, since uint64) []*api.Event {
	var out []*api.Event
	for k := 0; k < h.size; k++ {
		ev := h.history[(h.head-h.size+k+len(h.history))%len(h.history)]
		if ev.Index < since || ev.Refresh || !matches(w.path, w.recursive, ev) {
			continue
		}
		out = append(out, ev)
		if !w.stream {
			break
		}
	}
	return out
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
		if ev.Index < w.since {
			continue
		}
		select {
		case w.c <- ev:
			if !w.stream {
				h.removeLocked(w)
			}
		default:
			h.evictLocked(w)
		}
	}
}

func (h *Hub) evictLocked(w *Watcher) {
	if w.removed {
		return
	}
	w.evicted.Store(true)
	h.evicted.Add(1)
	h.removeLocked(w)
}

func (h *Hub) removeLocked(w *Watcher) {
	if w.removed {
		return
	}
	w.removed = true
	close(w.c)
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
