package watchers

import (
	"errors"
	"testing"

	"cairn/api"
)

func ev(index uint64, action, key string, dir bool) *api.Event {
	return &api.Event{Action: action, Index: index, Node: &api.Node{Key: key, Dir: dir, ModifiedIndex: index, CreatedIndex: index}}
}

// drain returns the indexes Next has for w without waiting.
func drain(w *Watcher) []uint64 {
	out, _ := drainErr(w)
	return out
}

// drainErr is drain that also returns the error that ended the watch, if
// it ended.
func drainErr(w *Watcher) ([]uint64, error) {
	var out []uint64
	for range 100000 {
		e, err := w.Next()
		if err != nil {
			return out, err
		}
		if e == nil {
			return out, nil
		}
		out = append(out, e.Index)
	}
	panic("drain did not end")
}

func TestMatchingRules(t *testing.T) {
	cases := []struct {
		name      string
		path      string
		recursive bool
		event     *api.Event
		want      bool
	}{
		{"exact", "/a", false, ev(1, "set", "/a", false), true},
		{"exact hidden", "/_h", false, ev(1, "set", "/_h", false), true},
		{"child needs recursive", "/a", false, ev(1, "set", "/a/b", false), false},
		{"recursive child", "/a", true, ev(1, "set", "/a/b/c", false), true},
		{"recursive skips hidden child", "/app", true, ev(1, "set", "/app/_x", false), false},
		{"recursive skips below hidden", "/app", true, ev(1, "set", "/app/_x/y", false), false},
		{"recursive inside hidden dir", "/_x", true, ev(1, "set", "/_x/y", false), true},
		{"root recursive skips hidden", "/", true, ev(1, "set", "/_x/y", false), false},
		{"root recursive", "/", true, ev(1, "set", "/x/y", false), true},
		{"sibling prefix is not a child", "/a", true, ev(1, "set", "/ab", false), false},
		{"dir delete reaches inside", "/dir/sub/c", false, ev(1, "delete", "/dir", true), true},
		{"dir expire reaches missing path", "/ed/none", false, ev(1, "expire", "/ed", true), true},
		{"dir expire not by string prefix [D-4]", "/edx", false, ev(1, "expire", "/ed", true), false},
		{"dir CAD reaches inside", "/d/x", false, ev(1, "compareAndDelete", "/d", true), true},
		{"dir set does not reach inside", "/d/x", false, ev(1, "set", "/d", true), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := matches(tc.path, tc.recursive, tc.event); got != tc.want {
				t.Fatalf("matches(%q, %v, %s %s) = %v, want %v", tc.path, tc.recursive, tc.event.Action, tc.event.Node.Key, got, tc.want)
			}
			// Live delivery must agree with replay [D-5, D-12].
			h := New(Config{}, 0)
			w, err := h.Watch(tc.path, tc.recursive, true, 0)
			if err != nil {
				t.Fatal(err)
			}
			h.Applied(1, []*api.Event{tc.event})
			if got := len(drain(w)) == 1; got != tc.want {
				t.Fatalf("live delivery = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStreamDeliversEachEventOnce(t *testing.T) {
	h := New(Config{}, 0)
	w, _ := h.Watch("/d", false, true, 0)
	// [D-3]: a deleted directory's own watcher gets its event once.
	h.Applied(1, []*api.Event{ev(1, "set", "/d", true), ev(2, "delete", "/d", true)})
	if got := drain(w); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("got %v, want [1 2]", got)
	}
}

func TestOneShotRemovedAfterEvent(t *testing.T) {
	h := New(Config{}, 5)
	w, _ := h.Watch("/k", false, false, 0)
	if w.StartIndex != 5 || h.Count() != 1 {
		t.Fatalf("start %d count %d", w.StartIndex, h.Count())
	}
	h.Applied(6, []*api.Event{ev(6, "set", "/k", false), ev(7, "set", "/k", false)})
	got, err := drainErr(w)
	if len(got) != 1 || got[0] != 6 || !errors.Is(err, ErrDone) {
		t.Fatalf("got %v, %v; want [6], ErrDone", got, err)
	}
	if h.Count() != 0 {
		t.Fatalf("count %d after one-shot", h.Count())
	}
}

func TestWaitIndexReplayAndCleared(t *testing.T) {
	h := New(Config{HistoryEvents: 3}, 0)
	for i := uint64(1); i <= 5; i++ {
		h.Applied(i, []*api.Event{ev(i, "set", "/k", false)})
	}
	// History holds 3..5.
	_, err := h.Watch("/k", false, false, 2)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 401 || apiErr.Cause != "the requested history has been cleared [3/2]" || apiErr.Index != 5 {
		t.Fatalf("got %v", err)
	}
	w, err := h.Watch("/k", false, false, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(w); len(got) != 1 || got[0] != 4 {
		t.Fatalf("replay got %v", got)
	}
	s, _ := h.Watch("/k", false, true, 3)
	if got := drain(s); len(got) != 3 {
		t.Fatalf("stream replay got %v", got)
	}
	// A future index waits and skips the events before it.
	f, _ := h.Watch("/k", false, true, 8)
	h.Applied(6, []*api.Event{ev(6, "set", "/k", false), ev(7, "set", "/k", false), ev(8, "set", "/k", false)})
	if got := drain(f); len(got) != 1 || got[0] != 8 {
		t.Fatalf("future got %v", got)
	}
}

func TestRefreshNeverDelivered(t *testing.T) {
	h := New(Config{}, 0)
	w, _ := h.Watch("/k", false, true, 0)
	r := ev(1, "set", "/k", false)
	r.Refresh = true
	h.Applied(1, []*api.Event{r})
	if got := drain(w); len(got) != 0 {
		t.Fatalf("refresh delivered: %v", got)
	}
	w2, _ := h.Watch("/k", false, false, 1)
	h.Applied(2, []*api.Event{ev(2, "set", "/k", false)})
	if got := drain(w2); len(got) != 1 || got[0] != 2 {
		t.Fatalf("replay past refresh got %v", got)
	}
}

func TestSlowWatcherEvicted(t *testing.T) {
	h := New(Config{BufferEvents: 2}, 0)
	w, _ := h.Watch("/k", false, true, 0)
	for i := uint64(1); i <= 3; i++ {
		h.Applied(i, []*api.Event{ev(i, "set", "/k", false)})
	}
	got, err := drainErr(w)
	if len(got) != 2 || !w.Evicted() || h.Count() != 0 || h.Evictions() != 1 {
		t.Fatalf("got %v evicted=%v count=%d", got, w.Evicted(), h.Count())
	}
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 401 || apiErr.Index != 3 {
		t.Fatalf("end of an evicted watcher: %v, want a 401 error at index 3", err)
	}
}

func TestMaxWatchers(t *testing.T) {
	h := New(Config{MaxWatchers: 1}, 0)
	w, err := h.Watch("/a", false, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Watch("/b", false, true, 0); !errors.Is(err, ErrTooManyWatchers) {
		t.Fatalf("got %v", err)
	}
	w.Remove()
	w.Remove()
	if h.Count() != 0 {
		t.Fatalf("count %d", h.Count())
	}
	if _, err := h.Watch("/b", false, true, 0); err != nil {
		t.Fatal(err)
	}
}
