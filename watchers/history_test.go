package watchers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cairn/api"
)

// memHistory is an in-memory History: every event from index 1 on, minus
// those trimmed below oldest.
type memHistory struct {
	mu     sync.Mutex
	evs    []*api.Event // evs[i].Index == i+1
	oldest uint64
	reads  int
}

func newMemHistory() *memHistory { return &memHistory{oldest: 1} }

func (m *memHistory) add(evs ...*api.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range evs {
		if e.Index != uint64(len(m.evs))+1 {
			panic(fmt.Sprintf("history gap: %d after %d", e.Index, len(m.evs)))
		}
		m.evs = append(m.evs, e)
	}
}

func (m *memHistory) Range(from, to uint64, fn func(*api.Event) bool) error {
	m.mu.Lock()
	m.reads++
	lo := max(from, m.oldest)
	hi := min(to, uint64(len(m.evs)))
	var part []*api.Event
	if lo <= hi {
		part = slices.Clone(m.evs[lo-1 : hi])
	}
	m.mu.Unlock()
	for _, e := range part {
		c := *e // fresh copies, as storage gives
		if !fn(&c) {
			break
		}
	}
	return nil
}

func (m *memHistory) Oldest() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.oldest
}

func (m *memHistory) trim(oldest uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.oldest = max(m.oldest, oldest)
}

// feed applies events to history then hub, as the apply path does.
func feed(h *Hub, m *memHistory, evs ...*api.Event) {
	m.add(evs...)
	h.Applied(evs[len(evs)-1].Index, evs)
}

func setEvents(from, to uint64, key string) []*api.Event {
	var out []*api.Event
	for i := from; i <= to; i++ {
		out = append(out, ev(i, "set", key, false))
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestReplayFromHistory: a waitIndex older than the in-memory events but
// retained in History replays from there, then continues live.
func TestReplayFromHistory(t *testing.T) {
	m := newMemHistory()
	h := New(Config{HistoryEvents: 4, History: m}, 0)
	feed(h, m, setEvents(1, 20, "/k")...)
	feed(h, m, ev(21, "set", "/other", false))

	s, err := h.Watch("/k", false, true, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(s); !slices.Equal(got, seq(3, 20)) {
		t.Fatalf("stream replay %v", got)
	}
	feed(h, m, setEvents(22, 23, "/k")...)
	if got := drain(s); !slices.Equal(got, seq(22, 23)) {
		t.Fatalf("live after replay %v", got)
	}

	// A one-shot watch resolves in Watch: the first event from there.
	o, err := h.Watch("/k", false, false, 5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := drainErr(o)
	if !slices.Equal(got, []uint64{5}) || !errors.Is(err, ErrDone) || h.Count() != 1 {
		t.Fatalf("one-shot replay %v, %v, count %d", got, err, h.Count())
	}
	// Nothing matching in history or memory: it waits for a live event.
	q, _ := h.Watch("/quiet", false, false, 2)
	if got := drain(q); len(got) != 0 {
		t.Fatalf("quiet key got %v", got)
	}
	feed(h, m, ev(24, "set", "/quiet", false))
	if got := drain(q); !slices.Equal(got, []uint64{24}) {
		t.Fatalf("quiet key live %v", got)
	}
}

// TestHistoryCleared: older than History's oldest → 401 with History's
// oldest in the cause and the current index.
func TestHistoryCleared(t *testing.T) {
	m := newMemHistory()
	h := New(Config{HistoryEvents: 4, History: m}, 0)
	feed(h, m, setEvents(1, 1034, "/churn")...)
	m.trim(35)
	_, err := h.Watch("/message", false, false, 8)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 401 || apiErr.Cause != "the requested history has been cleared [35/8]" || apiErr.Index != 1034 {
		t.Fatalf("got %v", err)
	}
	if _, err := h.Watch("/message", false, false, 35); err != nil {
		t.Fatalf("oldest retained index refused: %v", err)
	}
}

// TestSlowStreamCatchesUp: a stream watcher whose queue overflows is not
// dropped; it reads the rest from History and rejoins the live feed.
func TestSlowStreamCatchesUp(t *testing.T) {
	m := newMemHistory()
	h := New(Config{HistoryEvents: 8, BufferEvents: 3, History: m, ReplayBatch: 4}, 0)
	w, _ := h.Watch("/k", true, true, 0)
	feed(h, m, setEvents(1, 50, "/k/a")...)
	if w.Evicted() || h.CatchUps() != 1 {
		t.Fatalf("evicted=%v catch-ups=%d", w.Evicted(), h.CatchUps())
	}
	var got []uint64
	for i := 0; i < 200; i++ {
		e, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		got = append(got, e.Index)
		if e.Index == 20 { // writes keep coming while it catches up
			feed(h, m, setEvents(51, 60, "/k/b")...)
		}
	}
	if !slices.Equal(got, seq(1, 60)) {
		t.Fatalf("got %v", got)
	}
	feed(h, m, ev(61, "set", "/k", false))
	if got := drain(w); !slices.Equal(got, []uint64{61}) {
		t.Fatalf("live after catch-up %v", got)
	}
	if h.Evictions() != 0 || h.Count() != 1 {
		t.Fatalf("evictions %d count %d", h.Evictions(), h.Count())
	}
}

// TestCatchUpPastTrimmedHistory: a lagging watcher whose position was
// trimmed away ends with a 401 carrying the index to resume from.
func TestCatchUpPastTrimmedHistory(t *testing.T) {
	m := newMemHistory()
	h := New(Config{HistoryEvents: 4, BufferEvents: 2, History: m}, 0)
	w, _ := h.Watch("/k", false, true, 0)
	feed(h, m, setEvents(1, 30, "/k")...)
	m.trim(10)
	got, err := drainErr(w)
	var apiErr *api.Error
	if !slices.Equal(got, []uint64{1, 2}) || !errors.As(err, &apiErr) || apiErr.Code != 401 ||
		apiErr.Cause != "the requested history has been cleared [10/3]" || apiErr.Index != 30 {
		t.Fatalf("got %v, %v", got, err)
	}
	if h.Count() != 0 || h.Evictions() != 1 || !w.Evicted() {
		t.Fatalf("count %d evictions %d evicted %v", h.Count(), h.Evictions(), w.Evicted())
	}
}

// TestResetAndClose: a snapshot install ends watchers with 401 at the new
// index; Close ends them with ErrClosed and refuses new ones.
func TestResetAndClose(t *testing.T) {
	h := New(Config{}, 3)
	w, _ := h.Watch("/k", false, true, 0)
	h.ResetAt(90)
	_, err := drainErr(w)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 401 || apiErr.Index != 90 || h.CurrentIndex() != 90 {
		t.Fatalf("after reset: %v, current %d", err, h.CurrentIndex())
	}
	w2, _ := h.Watch("/k", false, true, 0)
	if w2.StartIndex != 90 {
		t.Fatalf("start index %d after reset", w2.StartIndex)
	}
	h.Close()
	if _, err := drainErr(w2); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := h.Watch("/k", false, true, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
}

// TestReadySignalled: Ready fires for a live event and for the end.
func TestReadySignalled(t *testing.T) {
	h := New(Config{}, 0)
	w, _ := h.Watch("/k", false, true, 0)
	select {
	case <-w.Ready():
		t.Fatal("ready before anything happened")
	default:
	}
	h.Applied(1, []*api.Event{ev(1, "set", "/k", false)})
	select {
	case <-w.Ready():
	default:
		t.Fatal("no ready after an event")
	}
	drain(w)
	w.Remove()
	select {
	case <-w.Ready():
	default:
		t.Fatal("no ready after remove")
	}
	if _, err := drainErr(w); !errors.Is(err, ErrClosed) {
		t.Fatalf("after remove: %v", err)
	}
}

// TestNoGapNoDuplicateUnderConcurrentWrites is the checker: a writer
// applies a random log while watchers with random paths, start indexes and
// speeds consume it; each watcher's sequence must equal the log filtered
// by the §5.3 rules from its start, with nothing missing or repeated,
// across history replays, overflows, catch-ups and the switch back to live.
func TestNoGapNoDuplicateUnderConcurrentWrites(t *testing.T) {
	const (
		total    = 3000
		watchers = 24
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	paths := []string{"/a", "/a/b", "/a/b/c", "/a/_h", "/d", "/d/e", "/x"}
	log := make([]*api.Event, 0, total)
	for i := uint64(1); i <= total; i++ {
		p := paths[rng.IntN(len(paths))]
		e := ev(i, "set", p, false)
		switch r := rng.IntN(20); {
		case r == 0:
			e = ev(i, "delete", p, true)
		case r == 1:
			e.Refresh = true
		}
		log = append(log, e)
	}
	want := func(path string, recursive bool, from uint64) []uint64 {
		var out []uint64
		for _, e := range log {
			if e.Index >= from && !e.Refresh && matches(path, recursive, e) {
				out = append(out, e.Index)
			}
		}
		return out
	}

	m := newMemHistory()
	h := New(Config{HistoryEvents: 16, BufferEvents: 4, History: m, ReplayBatch: 8}, 0)
	feed(h, m, log[:500]...)

	type spec struct {
		path      string
		recursive bool
		since     uint64
		slow      bool
	}
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	progress := make([]atomic.Uint64, watchers) // last index each consumer got
	done := make(chan struct{})
	for i := 0; i < watchers; i++ {
		sp := spec{path: paths[rng.IntN(len(paths))], recursive: rng.IntN(2) == 0, slow: i%3 == 0}
		switch i % 4 {
		case 0:
			sp.since = 0 // live from now
		case 1:
			sp.since = 1 + uint64(rng.IntN(480)) // deep in History
		case 2:
			sp.since = 490 + uint64(rng.IntN(10)) // in memory
		case 3:
			sp.since = 600 + uint64(rng.IntN(100)) // in the future
		}
		w, err := h.Watch(sp.path, sp.recursive, true, sp.since)
		if err != nil {
			t.Fatal(err)
		}
		from := sp.since
		if from == 0 {
			from = w.StartIndex + 1
		}
		exp := want(sp.path, sp.recursive, from)
		wg.Add(1)
		progress[i].Store(min(from, w.StartIndex+1) - 1)
		go func(w *Watcher, sp spec, exp []uint64, pos *atomic.Uint64, seed uint64) {
			defer wg.Done()
			defer w.Remove()
			defer pos.Store(total)
			rng := rand.New(rand.NewPCG(seed, 9))
			var got []uint64
			deadline := time.After(20 * time.Second)
			for len(got) < len(exp) {
				e, err := w.Next()
				if err != nil {
					errs <- fmt.Errorf("%+v: ended with %v after %d of %d events", sp, err, len(got), len(exp))
					return
				}
				if e == nil {
					select {
					case <-w.Ready():
					case <-done:
						// the writer finished: anything left is ready now
					case <-deadline:
						errs <- fmt.Errorf("%+v: timed out after %d of %d events", sp, len(got), len(exp))
						return
					}
					continue
				}
				got = append(got, e.Index)
				pos.Store(e.Index)
				if sp.slow && rng.IntN(8) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
			if !slices.Equal(got, exp) {
				errs <- fmt.Errorf("%+v: sequence differs from the log\n got %v\nwant %v", sp, got, exp)
			}
		}(w, sp, exp, &progress[i], seed+uint64(i))
	}
	for i := 500; i < total; i += 1 + i%7 {
		j := min(i+1+i%7, total)
		feed(h, m, log[i:j]...)
		if i%50 == 0 {
			// Trim behind every consumer: a real History keeps far more
			// than a consumer lags (and TestCatchUpPastTrimmedHistory
			// covers one that lags further).
			low := uint64(total)
			for k := range progress {
				low = min(low, progress[k].Load())
			}
			m.trim(low)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h.Evictions() != 0 {
		t.Errorf("%d evictions with a History", h.Evictions())
	}
	t.Logf("catch-ups: %d, history reads: %d", h.CatchUps(), m.reads)
}
