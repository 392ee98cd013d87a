package storage

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"cairn/api"
)

// historyOf reads the whole retained history of h.
func historyOf(t testing.TB, l *EventLog) []*api.Event {
	t.Helper()
	var out []*api.Event
	if err := l.Range(0, ^uint64(0), func(ev *api.Event) bool { out = append(out, ev); return true }); err != nil {
		t.Fatalf("range: %v", err)
	}
	return out
}

// TestEventLogRecordsEveryEvent: the history holds exactly the events the
// tree returned, in index order, field for field (refresh included), and
// the same after a restart.
func TestEventLogRecordsEveryEvent(t *testing.T) {
	h := newTreeHarness(t)
	var want []*api.Event
	for _, c := range treeCmdLog(7, 800) {
		evs, aerr := h.apply(c)
		if aerr == nil {
			want = append(want, evs...)
		}
	}
	if len(want) < 200 {
		t.Fatalf("only %d events in the log", len(want))
	}
	check := func(h *treeHarness) {
		t.Helper()
		got := historyOf(t, h.tree.Events())
		if len(got) != len(want) {
			t.Fatalf("history has %d events, want %d", len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("event %d:\n got %+v %+v %+v\nwant %+v %+v %+v", i, got[i], got[i].Node, got[i].PrevNode, want[i], want[i].Node, want[i].PrevNode)
			}
		}
		if o := h.tree.Events().Oldest(); o != 1 {
			t.Fatalf("Oldest = %d, want 1", o)
		}
	}
	check(h)
	h = h.reopen()
	check(h)
	// Range bounds and early stop.
	var idx []uint64
	_ = h.tree.Events().Range(10, 14, func(ev *api.Event) bool { idx = append(idx, ev.Index); return len(idx) < 3 })
	if !reflect.DeepEqual(idx, []uint64{10, 11, 12}) {
		t.Fatalf("Range(10,14) stopped after 3 = %v", idx)
	}
}

// TestEventLogCountRetention: the count limit is exact at once (Oldest),
// and Trim deletes what it no longer answers for, also across a restart.
func TestEventLogCountRetention(t *testing.T) {
	h := newTreeHarness(t)
	l := h.tree.Events()
	l.SetRetention(1000, 0)
	for i := 0; i < 1034; i++ {
		h.mustApply(Cmd{Op: OpSet, Path: "/churn", Value: "x"})
	}
	// W40: after store index 1034 with 1000 events kept, the oldest is 35.
	if o := l.Oldest(); o != 35 {
		t.Fatalf("Oldest = %d, want 35", o)
	}
	if n := len(historyOf(t, l)); n != 1034 {
		t.Fatalf("%d events on disk before Trim", n)
	}
	if err := l.Trim(t0); err != nil {
		t.Fatal(err)
	}
	got := historyOf(t, l)
	if len(got) != 1000 || got[0].Index != 35 || got[999].Index != 1034 {
		t.Fatalf("after Trim: %d events, %d…%d", len(got), got[0].Index, got[len(got)-1].Index)
	}
	h = h.reopen()
	h.tree.Events().SetRetention(1000, 0)
	if o := h.tree.Events().Oldest(); o != 35 {
		t.Fatalf("Oldest after restart = %d, want 35", o)
	}
}

// TestEventLogAgeRetention: events older than the age limit go at the
// first Trim after they are old enough, as judged by node-local marks that
// survive a restart.
func TestEventLogAgeRetention(t *testing.T) {
	h := newTreeHarness(t)
	l := h.tree.Events()
	l.SetRetention(0, time.Minute)
	write := func(n int) {
		for i := 0; i < n; i++ {
			h.mustApply(Cmd{Op: OpSet, Path: "/k", Value: "v"})
		}
	}
	write(10)                              // 1…10
	mustTrim(t, l, t0)                     // mark: 10 at t0
	write(5)                               // 11…15
	mustTrim(t, l, t0.Add(30*time.Second)) // mark: 15 at t0+30s
	write(5)                               // 16…20
	mustTrim(t, l, t0.Add(59*time.Second))
	if o := l.Oldest(); o != 1 {
		t.Fatalf("Oldest = %d before anything is a minute old", o)
	}
	mustTrim(t, l, t0.Add(61*time.Second)) // 1…10 are over a minute old
	if o := l.Oldest(); o != 11 {
		t.Fatalf("Oldest = %d, want 11", o)
	}
	h = h.reopen()
	l = h.tree.Events()
	l.SetRetention(0, time.Minute)
	if o := l.Oldest(); o != 11 {
		t.Fatalf("Oldest after restart = %d, want 11", o)
	}
	mustTrim(t, l, t0.Add(91*time.Second)) // the t0+30s mark is now old
	if got := historyOf(t, l); len(got) != 5 || got[0].Index != 16 {
		t.Fatalf("after the second age cut: %d events from %d", len(got), got[0].Index)
	}
}

func mustTrim(t *testing.T, l *EventLog, now time.Time) {
	t.Helper()
	if err := l.Trim(now); err != nil {
		t.Fatalf("trim: %v", err)
	}
}

// TestEventLogRestoreClears: a snapshot install empties the history; the
// log then answers from the snapshot's store index + 1.
func TestEventLogRestoreClears(t *testing.T) {
	src := newTreeHarness(t)
	applyLog(src, treeCmdLog(3, 300))
	data := src.export()
	dst := newTreeHarness(t)
	applyLog(dst, treeCmdLog(4, 100))
	dst.commit(func(b *Batch, _ uint64) error { return dst.tree.Restore(bytes.NewReader(data), b, 5000) })
	want := src.tree.StoreIndex() + 1
	if o := dst.tree.Events().Oldest(); o != want {
		t.Fatalf("Oldest after restore = %d, want %d", o, want)
	}
	if n := len(historyOf(t, dst.tree.Events())); n != 0 {
		t.Fatalf("%d events survived the restore", n)
	}
	dst = dst.reopen()
	if o := dst.tree.Events().Oldest(); o != want {
		t.Fatalf("Oldest after restore and restart = %d, want %d", o, want)
	}
}

// TestEventLogEmptyOpen: a data directory without history (fresh, or from
// before the history existed) answers from the next store index.
func TestEventLogEmptyOpen(t *testing.T) {
	h := newTreeHarness(t)
	if o := h.tree.Events().Oldest(); o != 1 {
		t.Fatalf("fresh Oldest = %d", o)
	}
	h.mustApply(Cmd{Op: OpSet, Path: "/a", Value: "1"})
	h.mustApply(Cmd{Op: OpSet, Path: "/a", Value: "2"})
	b := h.e.NewBatch()
	_ = b.delRange([]byte{prefixEvents}, []byte{prefixEvents + 1})
	if err := h.e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	h = h.reopen()
	if o := h.tree.Events().Oldest(); o != 3 {
		t.Fatalf("Oldest without history = %d, want 3", o)
	}
}

// TestEventRecordTime: an event's time is kept only when a TTL makes it
// show, and a record claiming a time without a TTL is corrupt.
func TestEventRecordTime(t *testing.T) {
	timeless := &api.Event{Action: api.ActionSet, At: 99, Node: &api.Node{Key: "/a", Value: "v", ModifiedIndex: 1, CreatedIndex: 1}}
	enc, err := appendEventRecord(nil, timeless)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEventRecord(enc)
	if err != nil || got.At != 0 {
		t.Fatalf("timeless event decoded with At %d, %v; want 0", got.At, err)
	}
	forged := append([]byte(nil), enc...)
	forged[2] |= evRecAt
	forged = append(forged, 0x02)
	if _, err := decodeEventRecord(forged); !errors.Is(err, ErrEventCorrupt) {
		t.Fatalf("time without a TTL decoded: %v", err)
	}
}

func TestEventRecordRoundTrip(t *testing.T) {
	for _, ev := range []*api.Event{
		{Action: api.ActionSet, Node: &api.Node{Key: "/message", Value: "Hello", ModifiedIndex: 1, CreatedIndex: 1}},
		{Action: api.ActionDelete, Node: &api.Node{Key: "/dir", Dir: true, ModifiedIndex: 16, CreatedIndex: 12, HideValue: true},
			PrevNode: &api.Node{Key: "/dir", Dir: true, ModifiedIndex: 12, CreatedIndex: 12}},
		{Action: api.ActionExpire, Node: &api.Node{Key: "/tmp", ModifiedIndex: 26, CreatedIndex: 25, HideValue: true},
			PrevNode: &api.Node{Key: "/tmp", Value: "soon", Expiration: 1795678344954115175, ModifiedIndex: 25, CreatedIndex: 25, HideTTL: true}},
		{Action: api.ActionUpdate, Refresh: true, Node: &api.Node{Key: "/s", Value: "v", Expiration: 7}},
		{Action: "somethingNew", Node: &api.Node{Key: "/x"}},
		{Action: api.ActionGet},
		{Action: api.ActionSet, At: 1795678342954115175, Node: &api.Node{Key: "/t", Value: "v", Expiration: 1795678344954115175, ModifiedIndex: 3, CreatedIndex: 3}},
		{Action: api.ActionSet, At: -5, Node: &api.Node{Key: "/t", Value: "v", ModifiedIndex: 4, CreatedIndex: 4},
			PrevNode: &api.Node{Key: "/t", Value: "v", Expiration: 9, ModifiedIndex: 3, CreatedIndex: 3}},
	} {
		enc, err := appendEventRecord(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEventRecord(enc)
		if err != nil || !reflect.DeepEqual(got, ev) {
			t.Fatalf("round trip of %+v: %+v, %v", ev, got, err)
		}
	}
}

func FuzzEventRecord(f *testing.F) {
	for _, ev := range []*api.Event{
		{Action: api.ActionSet, Node: &api.Node{Key: "/message", Value: "Hello", ModifiedIndex: 1, CreatedIndex: 1}},
		{Action: api.ActionExpire, Node: &api.Node{Key: "/tmp", ModifiedIndex: 26, CreatedIndex: 25, HideValue: true},
			PrevNode: &api.Node{Key: "/tmp", Value: "soon", Expiration: 1795678344954115175, ModifiedIndex: 25, CreatedIndex: 25, HideTTL: true}},
		{Action: "x", Refresh: true},
	} {
		enc, _ := appendEventRecord(nil, ev)
		f.Add(enc)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 9, 0})
	f.Add([]byte{1, 1, 2, 0, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := decodeEventRecord(data)
		if err != nil {
			if !errors.Is(err, ErrEventCorrupt) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		enc, err := appendEventRecord(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeEventRecord(enc)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("re-encoding %+v gave %+v, %v", ev, again, err)
		}
	})
}

// TestHistoryKeepsTTLOfTheWrite: a watch replayed from the history shows
// the remaining TTLs of the moment of the write, as the write's answer did
// and as etcd's history does, however much later it is read, and after a
// restart too.
func TestHistoryKeepsTTLOfTheWrite(t *testing.T) {
	h := newTreeHarness(t)
	t0 := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	set := Cmd{Op: OpSet, Path: "/lease", Value: "a", Now: t0.UnixNano(), Expiration: t0.Add(100 * time.Second).UnixNano()}
	upd := Cmd{Op: OpSet, Path: "/lease", Value: "b", Now: t0.Add(40 * time.Second).UnixNano()}
	for _, c := range []Cmd{set, upd} {
		if _, aerr := h.apply(c); aerr != nil {
			t.Fatal(aerr)
		}
	}
	want := []string{
		`{"action":"set","node":{"key":"/lease","value":"a","expiration":"2026-12-07T04:01:40Z","ttl":100,"modifiedIndex":1,"createdIndex":1}}`,
		`{"action":"set","node":{"key":"/lease","value":"b","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/lease","value":"a","expiration":"2026-12-07T04:01:40Z","ttl":60,"modifiedIndex":1,"createdIndex":1}}`,
	}
	check := func(h *treeHarness) {
		t.Helper()
		evs := historyOf(t, h.tree.Events())
		if len(evs) != len(want) {
			t.Fatalf("%d events in the history, want %d", len(evs), len(want))
		}
		for i, ev := range evs {
			var b bytes.Buffer
			ev.AppendJSON(&b, t0.Add(90*time.Second)) // read much later
			if got := strings.TrimSpace(b.String()); got != want[i] {
				t.Errorf("event %d replayed as\n%s\nwant\n%s", i, got, want[i])
			}
		}
	}
	check(h)
	check(h.reopen())
}
