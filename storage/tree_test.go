package storage

import (
	"testing"
	"time"

	"cairn/api"
)

// treeStep is one command (or GET) of a table case and its golden output:
// the event JSON (one line per event for expire commands) or the error JSON,
// as on the wire without the final newline, rendered at t0+now.
type treeStep struct {
	cmd Cmd
	// get, when set, makes the step a GET of this path instead of cmd.
	get         string
	rec, sorted bool
	now         time.Duration
	// want is the golden output; "" marks a setup step, which must succeed;
	// noEvents expects an apply that produces neither event nor error.
	want string
	// refresh is the expected Event.Refresh of every event of the step.
	refresh bool
}

const noEvents = "-"

func tcSet(p, v string) Cmd        { return Cmd{Op: OpSet, Path: p, Value: v} }
func tcDir(p string) Cmd           { return Cmd{Op: OpSet, Path: p, Dir: true} }
func tcExpire(d time.Duration) Cmd { return Cmd{Op: OpExpire, Now: at(d)} }

// tcTTL gives c an expiration d after t0 (ttl=d for a request at t0).
func tcTTL(c Cmd, d time.Duration) Cmd {
	c.Expiration = at(d)
	return c
}

// runTreeSteps plays steps on h, checking goldens and the index invariants:
// every apply advances the applied index by one; an event takes exactly the
// next store index (Event.Index = node.modifiedIndex), an error carries the
// unchanged store index.
func runTreeSteps(t *testing.T, h *treeHarness, steps []treeStep) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.now)
		if s.get != "" {
			got := h.get(s.get, s.rec, s.sorted, now)
			if got != s.want {
				t.Errorf("step %d: GET %s recursive=%v\n got: %s\nwant: %s", i, s.get, s.rec, got, s.want)
			}
			continue
		}
		applied, index := h.tree.AppliedIndex(), h.tree.StoreIndex()
		evs, aerr := h.apply(s.cmd)
		got := renderTree(evs, aerr, now)
		switch {
		case s.want == "" && aerr != nil:
			t.Fatalf("step %d: setup %s %q failed: %s", i, s.cmd.Op, s.cmd.Path, got)
		case s.want == noEvents && got != "":
			t.Errorf("step %d: %s %q: want nothing, got: %s", i, s.cmd.Op, s.cmd.Path, got)
		case s.want != "" && s.want != noEvents && got != s.want:
			t.Errorf("step %d: %s %q\n got: %s\nwant: %s", i, s.cmd.Op, s.cmd.Path, got, s.want)
		}
		if h.tree.AppliedIndex() != applied+1 {
			t.Errorf("step %d: applied index %d → %d", i, applied, h.tree.AppliedIndex())
		}
		checkIndexes(t, i, index, evs, aerr, h.tree.StoreIndex())
		for _, ev := range evs {
			if ev.Refresh != s.refresh {
				t.Errorf("step %d: Event.Refresh = %v, want %v", i, ev.Refresh, s.refresh)
			}
		}
	}
}

func checkIndexes(t *testing.T, step int, before uint64, evs []*api.Event, aerr *api.Error, after uint64) {
	t.Helper()
	if aerr != nil {
		if after != before || aerr.Index != before {
			t.Errorf("step %d: error moved the store index %d → %d (error index %d)", step, before, after, aerr.Index)
		}
		return
	}
	for j, ev := range evs {
		want := before + uint64(j) + 1
		if ev.Index != want || ev.Node.ModifiedIndex != want {
			t.Errorf("step %d: event %d has Index %d, modifiedIndex %d; want %d", step, j, ev.Index, ev.Node.ModifiedIndex, want)
		}
	}
	if after != before+uint64(len(evs)) {
		t.Errorf("step %d: store index %d → %d after %d events", step, before, after, len(evs))
	}
}

// Golden outputs follow the spec's worked examples (§11), with indexes
// counted from a fresh tree (the first write takes index 1).
var treeCases = []struct {
	name  string
	steps []treeStep
}{
	// --- set ---
	{"set new file", []treeStep{
		{cmd: tcSet("/message", "Hello"), want: `{"action":"set","node":{"key":"/message","value":"Hello","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"set replaces a file and resets createdIndex", []treeStep{
		{cmd: tcSet("/message", "Hello")},
		{cmd: tcSet("/message", "Hello world"), want: `{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/message","value":"Hello","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"set empty value", []treeStep{
		{cmd: tcSet("/e", ""), want: `{"action":"set","node":{"key":"/e","value":"","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"set over a directory is 102 with or without dir", []treeStep{
		{cmd: tcDir("/dir")},
		{cmd: tcSet("/dir", "x"), want: `{"errorCode":102,"message":"Not a file","cause":"/dir","index":1}`},
		{cmd: tcDir("/dir"), want: `{"errorCode":102,"message":"Not a file","cause":"/dir","index":1}`},
	}},
	{"set dir over a file makes an empty dir", []treeStep{
		{cmd: tcSet("/f", "v")},
		{cmd: Cmd{Op: OpSet, Path: "/f", Dir: true, Value: "ignored"}, want: `{"action":"set","node":{"key":"/f","dir":true,"modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/f","value":"v","modifiedIndex":1,"createdIndex":1}}`},
		{get: "/f", want: `{"action":"get","node":{"key":"/f","dir":true,"modifiedIndex":2,"createdIndex":2}}`},
	}},
	{"implicit parent dirs take the write's index", []treeStep{
		{cmd: tcSet("/a", "x")},
		{cmd: tcSet("/b/c/d", "v"), want: `{"action":"set","node":{"key":"/b/c/d","value":"v","modifiedIndex":2,"createdIndex":2}}`},
		{get: "/b", rec: true, sorted: true, want: `{"action":"get","node":{"key":"/b","dir":true,"nodes":[{"key":"/b/c","dir":true,"nodes":[{"key":"/b/c/d","value":"v","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":2,"createdIndex":2}],"modifiedIndex":2,"createdIndex":2}}`},
	}},
	{"a directory's modifiedIndex does not move with its children", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: tcSet("/d/x", "1")},
		{cmd: tcSet("/d/x", "2")},
		{cmd: Cmd{Op: OpDelete, Path: "/d/x"}},
		{get: "/d", want: `{"action":"get","node":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"keys with unusual characters", []treeStep{
		{cmd: tcSet("/a b?c", `<a&b>"q"`), want: `{"action":"set","node":{"key":"/a b?c","value":"\u003ca\u0026b\u003e\"q\"","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcSet("/✓", "\xff\xfex"), want: `{"action":"set","node":{"key":"/✓","value":"\ufffd\ufffdx","modifiedIndex":2,"createdIndex":2}}`},
	}},

	// --- root ---
	{"root is read only", []treeStep{
		{cmd: tcSet("/", "x"), want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: tcDir("/"), want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpCreate, Path: "/"}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/"}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/", Dir: true, Expiration: at(time.Minute)}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpCAS, Path: "/", PrevValue: "x"}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpDelete, Path: "/"}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpDelete, Path: "/", Recursive: true}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{cmd: Cmd{Op: OpSet, Path: "/", Refresh: true, Expiration: at(time.Minute)}, want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
	}},
	{"compare-and-delete on the root is 102 without a cause", []treeStep{
		{cmd: tcSet("/x", "1")},
		{cmd: Cmd{Op: OpCAD, Path: "/", PrevValue: "x"}, want: `{"errorCode":102,"message":"Not a file","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/", PrevIndex: 1}, want: `{"errorCode":102,"message":"Not a file","index":1}`},
	}},
	{"empty root", []treeStep{
		{get: "/", want: `{"action":"get","node":{"dir":true}}`},
		{cmd: tcSet("/_hidden", "x")},
		{get: "/", rec: true, want: `{"action":"get","node":{"dir":true}}`},
	}},
	{"root listing has no key and no indexes", []treeStep{
		{cmd: tcSet("/b", "2")},
		{cmd: tcSet("/a/x", "1")},
		{get: "/", sorted: true, want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/a","dir":true,"modifiedIndex":2,"createdIndex":2},{"key":"/b","value":"2","modifiedIndex":1,"createdIndex":1}]}}`},
		{get: "/", rec: true, sorted: true, want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/a","dir":true,"nodes":[{"key":"/a/x","value":"1","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":2,"createdIndex":2},{"key":"/b","value":"2","modifiedIndex":1,"createdIndex":1}]}}`},
	}},
	{"POST on the root", []treeStep{
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/", Value: "top"}, want: `{"action":"create","node":{"key":"/00000000000000000001","value":"top","modifiedIndex":1,"createdIndex":1}}`},
	}},

	// --- missing keys, files in the way ---
	{"key not found names the first missing segment", []treeStep{
		{get: "/no/such/key", want: `{"errorCode":100,"message":"Key not found","cause":"/no","index":0}`},
		{cmd: tcDir("/a")},
		{get: "/a/b/c", want: `{"errorCode":100,"message":"Key not found","cause":"/a/b","index":1}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/a/b/c", Value: "x"}, want: `{"errorCode":100,"message":"Key not found","cause":"/a/b","index":1}`},
		{cmd: Cmd{Op: OpCAS, Path: "/missing", PrevValue: "x"}, want: `{"errorCode":100,"message":"Key not found","cause":"/missing","index":1}`},
		{cmd: Cmd{Op: OpDelete, Path: "/missing", Recursive: true}, want: `{"errorCode":100,"message":"Key not found","cause":"/missing","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/missing", PrevIndex: 1}, want: `{"errorCode":100,"message":"Key not found","cause":"/missing","index":1}`},
	}},
	{"a file in the path is 104 naming the file", []treeStep{
		{cmd: tcSet("/message", "Hi")},
		{get: "/message/child", want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{get: "/message/child/deeper", want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: tcSet("/message/child", "x"), want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: tcDir("/message/child/deeper"), want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpCreate, Path: "/message/a/b"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/message", Value: "x"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/message/child"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message/child", PrevValue: "x"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpDelete, Path: "/message/child"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/message/child", PrevValue: "x"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: Cmd{Op: OpSet, Path: "/message/child", Refresh: true, Expiration: at(time.Minute)}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":1}`},
		{cmd: tcDir("/d")},
		{cmd: tcSet("/d/f", "1")},
		{cmd: tcSet("/d/f/g/h", "1"), want: `{"errorCode":104,"message":"Not a directory","cause":"/d/f","index":3}`},
	}},

	// --- create, POST ---
	{"create", []treeStep{
		{cmd: Cmd{Op: OpCreate, Path: "/newkey", Value: "first"}, want: `{"action":"create","node":{"key":"/newkey","value":"first","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpCreate, Path: "/newkey", Value: "x"}, want: `{"errorCode":105,"message":"Key already exists","cause":"/newkey","index":1}`},
		{cmd: tcDir("/d")},
		{cmd: Cmd{Op: OpCreate, Path: "/d", Dir: true}, want: `{"errorCode":105,"message":"Key already exists","cause":"/d","index":2}`},
		{cmd: Cmd{Op: OpCreate, Path: "/e", Dir: true, Value: "ignored"}, want: `{"action":"create","node":{"key":"/e","dir":true,"modifiedIndex":3,"createdIndex":3}}`},
		{cmd: Cmd{Op: OpCreate, Path: "/p/q", Value: "v", PrevValue: "ignored", PrevIndex: 99}, want: `{"action":"create","node":{"key":"/p/q","value":"v","modifiedIndex":4,"createdIndex":4}}`},
		{get: "/p", want: `{"action":"get","node":{"key":"/p","dir":true,"nodes":[{"key":"/p/q","value":"v","modifiedIndex":4,"createdIndex":4}],"modifiedIndex":4,"createdIndex":4}}`},
	}},
	{"create with a TTL", []treeStep{
		{cmd: tcTTL(Cmd{Op: OpCreate, Path: "/t", Value: "v"}, 10*time.Second), want: `{"action":"create","node":{"key":"/t","value":"v","expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcTTL(Cmd{Op: OpCreate, Path: "/td", Dir: true}, 10*time.Second), now: 500 * time.Millisecond, want: `{"action":"create","node":{"key":"/td","dir":true,"expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":2,"createdIndex":2}}`},
	}},
	{"POST creates in-order keys and the missing parent", []treeStep{
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/queue", Value: "job1"}, want: `{"action":"create","node":{"key":"/queue/00000000000000000001","value":"job1","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/queue", Value: "job2"}, want: `{"action":"create","node":{"key":"/queue/00000000000000000002","value":"job2","modifiedIndex":2,"createdIndex":2}}`},
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/queue", Dir: true}, want: `{"action":"create","node":{"key":"/queue/00000000000000000003","dir":true,"modifiedIndex":3,"createdIndex":3}}`},
		{cmd: tcTTL(Cmd{Op: OpCreateInOrder, Path: "/queue", Value: "j"}, time.Second), want: `{"action":"create","node":{"key":"/queue/00000000000000000004","value":"j","expiration":"2026-11-25T07:32:01Z","ttl":1,"modifiedIndex":4,"createdIndex":4}}`},
		{get: "/queue", sorted: true, want: `{"action":"get","node":{"key":"/queue","dir":true,"nodes":[{"key":"/queue/00000000000000000001","value":"job1","modifiedIndex":1,"createdIndex":1},{"key":"/queue/00000000000000000002","value":"job2","modifiedIndex":2,"createdIndex":2},{"key":"/queue/00000000000000000003","dir":true,"modifiedIndex":3,"createdIndex":3},{"key":"/queue/00000000000000000004","value":"j","expiration":"2026-11-25T07:32:01Z","ttl":1,"modifiedIndex":4,"createdIndex":4}],"modifiedIndex":1,"createdIndex":1}}`},
	}},

	// --- update ---
	{"update keeps createdIndex", []treeStep{
		{cmd: tcSet("/message", "Hello world")},
		{cmd: Cmd{Op: OpUpdate, Path: "/message", Value: "Hi"}, want: `{"action":"update","node":{"key":"/message","value":"Hi","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"update without a TTL makes the node permanent", []treeStep{
		{cmd: tcTTL(tcSet("/m", "v"), 10*time.Second), want: `{"action":"set","node":{"key":"/m","value":"v","expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/m", Value: "w"}, now: 1500 * time.Millisecond, want: `{"action":"update","node":{"key":"/m","value":"w","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/m","value":"v","expiration":"2026-11-25T07:32:10Z","ttl":9,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
		{get: "/m", want: `{"action":"get","node":{"key":"/m","value":"w","modifiedIndex":2,"createdIndex":1}}`},
	}},
	{"update sets a TTL", []treeStep{
		{cmd: tcSet("/m", "v")},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/m", Value: "v2"}, 5*time.Second), want: `{"action":"update","node":{"key":"/m","value":"v2","expiration":"2026-11-25T07:32:05Z","ttl":5,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/m","value":"v","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"update of a directory with a value is 102", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: Cmd{Op: OpUpdate, Path: "/d", Value: "x"}, want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/d", Value: "x", Dir: true}, want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
	}},
	{"directory TTL update [D-1]", []treeStep{
		{cmd: tcTTL(tcDir("/tdir"), 30*time.Second), want: `{"action":"set","node":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcSet("/tdir/f", "x")},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/tdir", Dir: true}, time.Minute), want: `{"action":"update","node":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":3,"createdIndex":1},"prevNode":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/tdir", rec: true, want: `{"action":"get","node":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:33:00Z","ttl":60,"nodes":[{"key":"/tdir/f","value":"x","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":3,"createdIndex":1}}`},
		{cmd: tcExpire(45 * time.Second), want: noEvents},
		{cmd: Cmd{Op: OpUpdate, Path: "/tdir", Dir: true}, want: `{"action":"update","node":{"key":"/tdir","dir":true,"modifiedIndex":4,"createdIndex":1},"prevNode":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":3,"createdIndex":1}}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
		{get: "/tdir/f", want: `{"action":"get","node":{"key":"/tdir/f","value":"x","modifiedIndex":2,"createdIndex":2}}`},
	}},
	{"update with dir=true on a file empties it into a file", []treeStep{
		{cmd: tcSet("/f", "v")},
		{cmd: Cmd{Op: OpUpdate, Path: "/f", Dir: true}, want: `{"action":"update","node":{"key":"/f","value":"","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/f","value":"v","modifiedIndex":1,"createdIndex":1}}`},
	}},

	// --- compare-and-swap ---
	{"compare-and-swap", []treeStep{
		{cmd: tcSet("/message", "Hi")},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Bye", PrevValue: "Hi"}, want: `{"action":"compareAndSwap","node":{"key":"/message","value":"Bye","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/message","value":"Hi","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Nope", PrevIndex: 1}, want: `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye] [1 != 2]","index":2}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Nope"}, want: `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye]","index":2}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevIndex: 1}, want: `{"errorCode":101,"message":"Compare failed","cause":"[1 != 2]","index":2}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Bye", PrevIndex: 1}, want: `{"errorCode":101,"message":"Compare failed","cause":"[1 != 2]","index":2}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Nope", PrevIndex: 2}, want: `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye]","index":2}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevIndex: 2}, want: `{"action":"compareAndSwap","node":{"key":"/message","value":"Again","modifiedIndex":3,"createdIndex":1},"prevNode":{"key":"/message","value":"Bye","modifiedIndex":2,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Last", PrevValue: "Again", PrevIndex: 3}, want: `{"action":"compareAndSwap","node":{"key":"/message","value":"Last","modifiedIndex":4,"createdIndex":1},"prevNode":{"key":"/message","value":"Again","modifiedIndex":3,"createdIndex":1}}`},
	}},
	{"compare-and-swap on a directory is 102", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: Cmd{Op: OpCAS, Path: "/d", PrevIndex: 1}, want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
	}},
	{"compare-and-swap ignores dir and clears the TTL", []treeStep{
		{cmd: tcTTL(tcSet("/f", "a"), 10*time.Second)},
		{cmd: Cmd{Op: OpCAS, Path: "/f", Value: "b", PrevValue: "a", Dir: true}, want: `{"action":"compareAndSwap","node":{"key":"/f","value":"b","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/f","value":"a","expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
	}},
	{"compare-and-swap sets a TTL", []treeStep{
		{cmd: tcSet("/f", "a")},
		{cmd: tcTTL(Cmd{Op: OpCAS, Path: "/f", Value: "b", PrevIndex: 1}, 3*time.Second), want: `{"action":"compareAndSwap","node":{"key":"/f","value":"b","expiration":"2026-11-25T07:32:03Z","ttl":3,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/f","value":"a","modifiedIndex":1,"createdIndex":1}}`},
	}},

	// --- delete ---
	{"delete a file with any flags", []treeStep{
		{cmd: tcSet("/f", "v")},
		{cmd: Cmd{Op: OpDelete, Path: "/f"}, want: `{"action":"delete","node":{"key":"/f","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/f","value":"v","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcSet("/g", "v")},
		{cmd: Cmd{Op: OpDelete, Path: "/g", Dir: true}, want: `{"action":"delete","node":{"key":"/g","modifiedIndex":4,"createdIndex":3},"prevNode":{"key":"/g","value":"v","modifiedIndex":3,"createdIndex":3}}`},
		{cmd: tcSet("/h", "v")},
		{cmd: Cmd{Op: OpDelete, Path: "/h", Recursive: true}, want: `{"action":"delete","node":{"key":"/h","modifiedIndex":6,"createdIndex":5},"prevNode":{"key":"/h","value":"v","modifiedIndex":5,"createdIndex":5}}`},
		{get: "/", want: `{"action":"get","node":{"dir":true}}`},
	}},
	{"delete a file with a TTL shows it in prevNode", []treeStep{
		{cmd: tcTTL(tcSet("/f", "v"), 5*time.Second)},
		{cmd: Cmd{Op: OpDelete, Path: "/f"}, now: 2500 * time.Millisecond, want: `{"action":"delete","node":{"key":"/f","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/f","value":"v","expiration":"2026-11-25T07:32:05Z","ttl":3,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
	}},
	{"delete an empty directory needs dir or recursive", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: Cmd{Op: OpDelete, Path: "/d"}, want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
		{cmd: Cmd{Op: OpDelete, Path: "/d", Dir: true}, want: `{"action":"delete","node":{"key":"/d","dir":true,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcDir("/e")},
		{cmd: Cmd{Op: OpDelete, Path: "/e", Recursive: true}, want: `{"action":"delete","node":{"key":"/e","dir":true,"modifiedIndex":4,"createdIndex":3},"prevNode":{"key":"/e","dir":true,"modifiedIndex":3,"createdIndex":3}}`},
	}},
	{"delete a non-empty directory needs recursive and is one event", []treeStep{
		{cmd: tcDir("/dir")},
		{cmd: tcSet("/dir/b", "2")},
		{cmd: tcSet("/dir/a", "1")},
		{cmd: tcTTL(tcSet("/dir/sub/c", "3"), time.Second)},
		{cmd: Cmd{Op: OpDelete, Path: "/dir"}, want: `{"errorCode":102,"message":"Not a file","cause":"/dir","index":4}`},
		{cmd: Cmd{Op: OpDelete, Path: "/dir", Dir: true}, want: `{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":4}`},
		{cmd: Cmd{Op: OpDelete, Path: "/dir", Recursive: true}, want: `{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":5,"createdIndex":1},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/dir/sub/c", want: `{"errorCode":100,"message":"Key not found","cause":"/dir","index":5}`},
		// The TTL'd child went with its directory: nothing left to expire.
		{cmd: tcExpire(time.Hour), want: noEvents},
	}},
	{"a directory with only hidden children is not empty", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: tcSet("/d/_h", "x")},
		{cmd: Cmd{Op: OpDelete, Path: "/d", Dir: true}, want: `{"errorCode":108,"message":"Directory not empty","cause":"/d","index":2}`},
	}},
	{"recursive delete leaves keys sharing the prefix", []treeStep{
		{cmd: tcSet("/a/b", "1")},
		{cmd: tcSet("/a-x", "2")},
		{cmd: tcSet("/a0", "3")},
		{cmd: tcSet("/ab", "4")},
		{cmd: Cmd{Op: OpDelete, Path: "/a", Recursive: true}},
		{get: "/", rec: true, sorted: true, want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/a-x","value":"2","modifiedIndex":2,"createdIndex":2},{"key":"/a0","value":"3","modifiedIndex":3,"createdIndex":3},{"key":"/ab","value":"4","modifiedIndex":4,"createdIndex":4}]}}`},
	}},

	// --- compare-and-delete ---
	{"compare-and-delete", []treeStep{
		{cmd: tcSet("/lock", "owner1")},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevValue: "owner2"}, want: `{"errorCode":101,"message":"Compare failed","cause":"[owner2 != owner1]","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevIndex: 7}, want: `{"errorCode":101,"message":"Compare failed","cause":"[7 != 1]","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevValue: "owner2", PrevIndex: 7}, want: `{"errorCode":101,"message":"Compare failed","cause":"[owner2 != owner1] [7 != 1]","index":1}`},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevIndex: 1}, want: `{"action":"compareAndDelete","node":{"key":"/lock","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/lock","value":"owner1","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevIndex: 1}, want: `{"errorCode":100,"message":"Key not found","cause":"/lock","index":2}`},
		{cmd: tcSet("/lock", "owner3")},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevValue: "owner3"}, want: `{"action":"compareAndDelete","node":{"key":"/lock","modifiedIndex":4,"createdIndex":3},"prevNode":{"key":"/lock","value":"owner3","modifiedIndex":3,"createdIndex":3}}`},
	}},
	{"compare-and-delete on a directory is 102", []treeStep{
		{cmd: tcDir("/d")},
		{cmd: Cmd{Op: OpCAD, Path: "/d", PrevIndex: 1}, want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
	}},

	// --- GET listings ---
	{"recursive sorted listing", []treeStep{
		{cmd: tcDir("/dir")},
		{cmd: tcSet("/dir/b", "2")},
		{cmd: tcSet("/dir/a", "1")},
		{cmd: tcSet("/dir/sub/c", "3")},
		{get: "/dir", rec: true, sorted: true, want: `{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":3,"createdIndex":3},{"key":"/dir/b","value":"2","modifiedIndex":2,"createdIndex":2},{"key":"/dir/sub","dir":true,"nodes":[{"key":"/dir/sub/c","value":"3","modifiedIndex":4,"createdIndex":4}],"modifiedIndex":4,"createdIndex":4}],"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/dir", sorted: true, want: `{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":3,"createdIndex":3},{"key":"/dir/b","value":"2","modifiedIndex":2,"createdIndex":2},{"key":"/dir/sub","dir":true,"modifiedIndex":4,"createdIndex":4}],"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/dir/a", want: `{"action":"get","node":{"key":"/dir/a","value":"1","modifiedIndex":3,"createdIndex":3}}`},
	}},
	{"sorted is bytewise at every level", []treeStep{
		{cmd: tcSet("/s/b", "")},
		{cmd: tcSet("/s/B", "")},
		{cmd: tcSet("/s/a-x/2", "")},
		{cmd: tcSet("/s/a-x/10", "")},
		{cmd: tcSet("/s/a", "")},
		{get: "/s", rec: true, sorted: true, want: `{"action":"get","node":{"key":"/s","dir":true,"nodes":[{"key":"/s/B","value":"","modifiedIndex":2,"createdIndex":2},{"key":"/s/a","value":"","modifiedIndex":5,"createdIndex":5},{"key":"/s/a-x","dir":true,"nodes":[{"key":"/s/a-x/10","value":"","modifiedIndex":4,"createdIndex":4},{"key":"/s/a-x/2","value":"","modifiedIndex":3,"createdIndex":3}],"modifiedIndex":3,"createdIndex":3},{"key":"/s/b","value":"","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"empty directories have no nodes", []treeStep{
		{cmd: tcDir("/d/e")},
		{get: "/d/e", want: `{"action":"get","node":{"key":"/d/e","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/d", rec: true, want: `{"action":"get","node":{"key":"/d","dir":true,"nodes":[{"key":"/d/e","dir":true,"modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"hidden nodes are left out of listings at every depth", []treeStep{
		{cmd: tcSet("/app/_internal", "secret")},
		{cmd: tcSet("/app/public", "y")},
		{cmd: tcSet("/app/sub/_h", "z")},
		{cmd: tcSet("/app/_hd/k", "w")},
		{get: "/app", rec: true, sorted: true, want: `{"action":"get","node":{"key":"/app","dir":true,"nodes":[{"key":"/app/public","value":"y","modifiedIndex":2,"createdIndex":2},{"key":"/app/sub","dir":true,"modifiedIndex":3,"createdIndex":3}],"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/app", sorted: true, want: `{"action":"get","node":{"key":"/app","dir":true,"nodes":[{"key":"/app/public","value":"y","modifiedIndex":2,"createdIndex":2},{"key":"/app/sub","dir":true,"modifiedIndex":3,"createdIndex":3}],"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/app/_internal", want: `{"action":"get","node":{"key":"/app/_internal","value":"secret","modifiedIndex":1,"createdIndex":1}}`},
		{get: "/app/_hd", rec: true, want: `{"action":"get","node":{"key":"/app/_hd","dir":true,"nodes":[{"key":"/app/_hd/k","value":"w","modifiedIndex":4,"createdIndex":4}],"modifiedIndex":4,"createdIndex":4}}`},
		{get: "/", rec: true, sorted: true, want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/app","dir":true,"nodes":[{"key":"/app/public","value":"y","modifiedIndex":2,"createdIndex":2},{"key":"/app/sub","dir":true,"modifiedIndex":3,"createdIndex":3}],"modifiedIndex":1,"createdIndex":1}]}}`},
		{cmd: Cmd{Op: OpUpdate, Path: "/app/_internal", Value: "v2"}, want: `{"action":"update","node":{"key":"/app/_internal","value":"v2","modifiedIndex":5,"createdIndex":1},"prevNode":{"key":"/app/_internal","value":"secret","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"unclean paths are cleaned", []treeStep{
		{cmd: tcSet("a//b/", "1"), want: `{"action":"set","node":{"key":"/a/b","value":"1","modifiedIndex":1,"createdIndex":1}}`},
		{get: "/a/./b/", want: `{"action":"get","node":{"key":"/a/b","value":"1","modifiedIndex":1,"createdIndex":1}}`},
		{get: "//", want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/a","dir":true,"modifiedIndex":1,"createdIndex":1}]}}`},
	}},

	// --- TTL and expiry ---
	{"TTL counts down and the key expires", []treeStep{
		{cmd: tcTTL(tcSet("/tmp", "soon"), 2*time.Second), want: `{"action":"set","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:02Z","ttl":2,"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/tmp", now: 1200 * time.Millisecond, want: `{"action":"get","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:02Z","ttl":1,"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/tmp", now: 3 * time.Second, want: `{"action":"get","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:02Z","ttl":-1,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(2*time.Second - 1), want: noEvents},
		{cmd: tcExpire(2 * time.Second), now: 3 * time.Second, want: `{"action":"expire","node":{"key":"/tmp","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:02Z","modifiedIndex":1,"createdIndex":1}}`},
		{get: "/tmp", want: `{"errorCode":100,"message":"Key not found","cause":"/tmp","index":2}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
	}},
	{"ttl=0 shows an expiration and no ttl, and expires next", []treeStep{
		{cmd: tcTTL(tcSet("/z", "v"), 0), want: `{"action":"set","node":{"key":"/z","value":"v","expiration":"2026-11-25T07:32:00Z","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(0), want: `{"action":"expire","node":{"key":"/z","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/z","value":"v","expiration":"2026-11-25T07:32:00Z","modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"expiry runs in expiration order, ties by path", []treeStep{
		{cmd: tcTTL(tcSet("/b", "1"), 5*time.Second)},
		{cmd: tcTTL(tcSet("/a", "2"), 5*time.Second)},
		{cmd: tcTTL(tcSet("/c", "3"), 3*time.Second)},
		{cmd: tcSet("/p", "4")},
		{cmd: tcTTL(tcSet("/d", "5"), 10*time.Second)},
		{cmd: tcExpire(5 * time.Second), now: 5 * time.Second, want: `{"action":"expire","node":{"key":"/c","modifiedIndex":6,"createdIndex":3},"prevNode":{"key":"/c","value":"3","expiration":"2026-11-25T07:32:03Z","modifiedIndex":3,"createdIndex":3}}` + "\n" +
			`{"action":"expire","node":{"key":"/a","modifiedIndex":7,"createdIndex":2},"prevNode":{"key":"/a","value":"2","expiration":"2026-11-25T07:32:05Z","modifiedIndex":2,"createdIndex":2}}` + "\n" +
			`{"action":"expire","node":{"key":"/b","modifiedIndex":8,"createdIndex":1},"prevNode":{"key":"/b","value":"1","expiration":"2026-11-25T07:32:05Z","modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(9 * time.Second), want: noEvents},
		{get: "/", sorted: true, want: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","value":"5","expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":5,"createdIndex":5},{"key":"/p","value":"4","modifiedIndex":4,"createdIndex":4}]}}`},
	}},
	{"an expiring directory takes its subtree in one event", []treeStep{
		{cmd: tcTTL(tcDir("/ed"), 5*time.Second)},
		{cmd: tcTTL(tcSet("/ed/x", "1"), 7*time.Second)},
		{cmd: tcSet("/ed/y", "2")},
		{cmd: tcTTL(tcSet("/ed/sub/z", "3"), 6*time.Second)},
		{cmd: tcTTL(tcSet("/ed/early", "4"), 4*time.Second)},
		{cmd: tcExpire(10 * time.Second), now: 10 * time.Second, want: `{"action":"expire","node":{"key":"/ed/early","modifiedIndex":6,"createdIndex":5},"prevNode":{"key":"/ed/early","value":"4","expiration":"2026-11-25T07:32:04Z","modifiedIndex":5,"createdIndex":5}}` + "\n" +
			`{"action":"expire","node":{"key":"/ed","dir":true,"modifiedIndex":7,"createdIndex":1},"prevNode":{"key":"/ed","dir":true,"expiration":"2026-11-25T07:32:05Z","modifiedIndex":1,"createdIndex":1}}`},
		{get: "/ed/x", want: `{"errorCode":100,"message":"Key not found","cause":"/ed","index":7}`},
		{get: "/", want: `{"action":"get","node":{"dir":true}}`},
	}},
	{"files inside a TTL'd directory show no TTL of their own", []treeStep{
		{cmd: tcTTL(tcDir("/td"), 30*time.Second)},
		{cmd: tcSet("/td/f", "v"), want: `{"action":"set","node":{"key":"/td/f","value":"v","modifiedIndex":2,"createdIndex":2}}`},
		{get: "/td", rec: true, want: `{"action":"get","node":{"key":"/td","dir":true,"expiration":"2026-11-25T07:32:30Z","ttl":30,"nodes":[{"key":"/td/f","value":"v","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":1,"createdIndex":1}}`},
		{get: "/td/f", want: `{"action":"get","node":{"key":"/td/f","value":"v","modifiedIndex":2,"createdIndex":2}}`},
	}},
	{"set without a TTL makes the node permanent", []treeStep{
		{cmd: tcTTL(tcSet("/k", "a"), time.Second)},
		{cmd: tcSet("/k", "b"), want: `{"action":"set","node":{"key":"/k","value":"b","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/k","value":"a","expiration":"2026-11-25T07:32:01Z","ttl":1,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(time.Hour), want: noEvents},
	}},

	// --- refresh (§6.4) ---
	{"refresh alone is set-style: recreated, value kept", []treeStep{
		{cmd: tcTTL(tcSet("/s", "v"), 30*time.Second)},
		{cmd: tcTTL(Cmd{Op: OpSet, Path: "/s", Refresh: true}, time.Minute), refresh: true, want: `{"action":"set","node":{"key":"/s","value":"v","expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/s","value":"v","expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcExpire(45 * time.Second), want: noEvents},
		{cmd: tcTTL(Cmd{Op: OpSet, Path: "/missing/k", Refresh: true}, time.Minute), want: `{"errorCode":100,"message":"Key not found","cause":"/missing","index":2}`},
		{cmd: tcDir("/d")},
		{cmd: tcTTL(Cmd{Op: OpSet, Path: "/d", Refresh: true}, time.Minute), want: `{"errorCode":102,"message":"Not a file","cause":"/d","index":3}`},
	}},
	{"refresh with prevExist=true is update-style", []treeStep{
		{cmd: tcTTL(tcSet("/session", "s"), 30*time.Second)},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/session", Refresh: true}, time.Minute), refresh: true, want: `{"action":"update","node":{"key":"/session","value":"s","expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/session","value":"s","expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/nope", Refresh: true}, time.Minute), want: `{"errorCode":100,"message":"Key not found","cause":"/nope","index":2}`},
	}},
	{"refresh of a directory's TTL [D-1]", []treeStep{
		{cmd: tcTTL(tcDir("/d"), 30*time.Second)},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/d", Dir: true, Refresh: true}, time.Minute), refresh: true, want: `{"action":"update","node":{"key":"/d","dir":true,"expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/d","dir":true,"expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"refresh with a compare is compare-and-swap style", []treeStep{
		{cmd: tcTTL(tcSet("/s", "v"), 30*time.Second)},
		{cmd: tcTTL(Cmd{Op: OpCAS, Path: "/s", PrevValue: "w", Refresh: true}, time.Minute), want: `{"errorCode":101,"message":"Compare failed","cause":"[w != v]","index":1}`},
		{cmd: tcTTL(Cmd{Op: OpCAS, Path: "/s", PrevValue: "v", Refresh: true}, time.Minute), refresh: true, want: `{"action":"compareAndSwap","node":{"key":"/s","value":"v","expiration":"2026-11-25T07:33:00Z","ttl":60,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/s","value":"v","expiration":"2026-11-25T07:32:30Z","ttl":30,"modifiedIndex":1,"createdIndex":1}}`},
	}},
	{"refresh with prevExist=false is a plain create", []treeStep{
		{cmd: tcTTL(Cmd{Op: OpCreate, Path: "/n", Refresh: true}, 10*time.Second), want: `{"action":"create","node":{"key":"/n","value":"","expiration":"2026-11-25T07:32:10Z","ttl":10,"modifiedIndex":1,"createdIndex":1}}`},
		{cmd: tcTTL(Cmd{Op: OpCreate, Path: "/n", Refresh: true}, 10*time.Second), want: `{"errorCode":105,"message":"Key already exists","cause":"/n","index":1}`},
	}},
}

func TestTreeApply(t *testing.T) {
	for _, tc := range treeCases {
		t.Run(tc.name, func(t *testing.T) {
			runTreeSteps(t, newTreeHarness(t), tc.steps)
		})
	}
}
