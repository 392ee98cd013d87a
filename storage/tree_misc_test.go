package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/api"
)

func TestTreeStats(t *testing.T) {
	h := newTreeHarness(t)
	steps := []Cmd{
		tcSet("/a", "1"),                           // set ok
		tcSet("/", "x"),                            // set fail
		{Op: OpCreate, Path: "/a"},                 // create fail
		{Op: OpCreate, Path: "/b"},                 // create ok
		{Op: OpCreateInOrder, Path: "/q"},          // POST counts as create: ok
		{Op: OpCreateInOrder, Path: "/a"},          // create fail (104)
		{Op: OpUpdate, Path: "/a", Value: "2"},     // update ok
		{Op: OpUpdate, Path: "/zz", Value: "2"},    // update fail
		{Op: OpCAS, Path: "/a", PrevValue: "2"},    // CAS ok
		{Op: OpCAS, Path: "/a", PrevValue: "nope"}, // CAS fail
		{Op: OpCAD, Path: "/a", PrevValue: "nope"}, // CAD fail
		{Op: OpCAD, Path: "/a", PrevIndex: 5},      // CAD ok
		{Op: OpDelete, Path: "/a"},                 // delete fail
		{Op: OpDelete, Path: "/b"},                 // delete ok
		tcTTL(tcSet("/t1", ""), time.Second),       // set ok
		tcTTL(tcSet("/t2", ""), time.Second),       // set ok
		tcExpire(time.Hour),                        // 2 expired
		tcExpire(2 * time.Hour),                    // none
	}
	for _, c := range steps {
		h.apply(c)
	}
	h.tree.CountGet(true)
	h.tree.CountGet(true)
	h.tree.CountGet(false)
	want := StoreStats{
		GetsSuccess: 2, GetsFail: 1,
		SetsSuccess: 3, SetsFail: 1,
		DeleteSuccess: 1, DeleteFail: 1,
		UpdateSuccess: 1, UpdateFail: 1,
		CreateSuccess: 2, CreateFail: 2,
		CompareAndSwapSuccess: 1, CompareAndSwapFail: 1,
		CompareAndDeleteSuccess: 1, CompareAndDeleteFail: 1,
		ExpireCount: 2,
	}
	if got := h.tree.Stats(); got != want {
		t.Fatalf("stats\n got: %+v\nwant: %+v", got, want)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"getsSuccess":2,"getsFail":1,"setsSuccess":3,"setsFail":1,"deleteSuccess":1,"deleteFail":1,"updateSuccess":1,"updateFail":1,"createSuccess":2,"createFail":2,"compareAndSwapSuccess":1,"compareAndSwapFail":1,"compareAndDeleteSuccess":1,"compareAndDeleteFail":1,"expireCount":2}`
	if string(b) != wantJSON {
		t.Fatalf("stats JSON\n got: %s\nwant: %s", b, wantJSON)
	}
}

// TestTreeResultsAreCopies: callers may keep and modify what they get back
// without touching the tree. Two trees get the same commands; every node
// returned by one of them is scribbled over.
func TestTreeResultsAreCopies(t *testing.T) {
	clean, dirty := newTreeHarness(t), newTreeHarness(t)
	var scribble func(n *api.Node)
	scribble = func(n *api.Node) {
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			scribble(c)
		}
		n.Key, n.Value, n.Dir, n.Expiration = "/scribbled", "scribbled", !n.Dir, 1
		n.ModifiedIndex, n.CreatedIndex, n.Nodes = 99, 99, nil
	}
	cmds := []Cmd{
		tcTTL(tcSet("/d/f", "v"), time.Minute),
		tcSet("/d/g", "w"),
		tcSet("/d/f", "v2"),
		{Op: OpUpdate, Path: "/d/g", Value: "w2"},
		tcTTL(tcDir("/e"), time.Second),
		{Op: OpDelete, Path: "/d/g"},
		tcExpire(time.Hour),
	}
	for _, c := range cmds {
		clean.apply(c)
		evs, _ := dirty.apply(c)
		for _, ev := range evs {
			scribble(ev.Node)
			scribble(ev.PrevNode)
		}
		ev, _ := dirty.tree.Get("/", true, false)
		scribble(ev.Node)
		ev, _ = dirty.tree.Get("/d", true, false)
		scribble(ev.Node)
	}
	compareTrees(t, clean, dirty)
}

// TestTreeConcurrentReads runs GETs and renders results while commands are
// applied; run with -race.
func TestTreeConcurrentReads(t *testing.T) {
	h := newTreeHarness(t)
	log := treeCmdLog(11, 1500)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, p := range []string{"/", "/a", "/d/f", "/q"} {
					if ev, aerr := h.tree.Get(p, true, r%2 == 0); ev != nil {
						ev.AppendJSON(&buf, t0)
					} else {
						aerr.AppendJSON(&buf)
					}
				}
				_ = h.tree.StoreIndex() + h.tree.AppliedIndex() + uint64(h.tree.NextExpiration())
				_ = h.tree.Stats()
				h.tree.CountGet(true)
				buf.Reset()
			}
		}()
	}
	var events []*api.Event
	for _, c := range log {
		evs, _ := h.apply(c)
		events = append(events, evs...)
	}
	close(done)
	wg.Wait()
	var buf bytes.Buffer
	for _, ev := range events {
		ev.AppendJSON(&buf, t0) // after more writes: must not race with the tree
	}
}

// TestTreeMemory checks the footprint target: 100,000 keys of 256 bytes
// must fit well under 200 MiB of RSS. The tree itself (without Pebble's
// memtables and cache) should stay far below that.
func TestTreeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory test in -short mode")
	}
	e, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tree, err := OpenTree(e)
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("x", 256)
	const n = 100_000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := e.NewBatch()
	for i := 0; i < n; i++ {
		// Batches are discarded: only the tree's own memory is measured.
		if i%1000 == 0 {
			b.Close()
			b = e.NewBatch()
		}
		c := Cmd{Op: OpSet, Path: fmt.Sprintf("/bench/d%03d/key-%07d", i%100, i), Value: value + fmt.Sprint(i)}
		if _, aerr, err := tree.Apply(b, uint64(i+1), &c); err != nil || aerr != nil {
			t.Fatalf("apply: %v %v", err, aerr)
		}
	}
	b.Close()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("tree with %d keys of ~256 B: %.1f MiB of heap (%.0f B/key)", n, float64(used)/(1<<20), float64(used)/n)
	if used > 80<<20 {
		t.Errorf("tree uses %.1f MiB for %d keys", float64(used)/(1<<20), n)
	}
	runtime.KeepAlive(tree)
}

func BenchmarkTreeApplySet(b *testing.B) {
	h := newTreeHarness(b)
	value := strings.Repeat("x", 256)
	paths := make([]string, 10_000)
	for i := range paths {
		paths[i] = fmt.Sprintf("/bench/d%02d/key-%05d", i%50, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	batch := h.e.NewBatch()
	for i := 0; i < b.N; i++ {
		c := Cmd{Op: OpSet, Path: paths[i%len(paths)], Value: value}
		if _, _, err := h.tree.Apply(batch, h.tree.AppliedIndex()+1, &c); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 { // commit in groups, as the apply loop does
			if err := h.e.Commit(batch, false); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch = h.e.NewBatch()
		}
	}
	batch.Close()
}

func BenchmarkTreeGet(b *testing.B) {
	h := newTreeHarness(b)
	value := strings.Repeat("x", 256)
	paths := make([]string, 10_000)
	for i := range paths {
		paths[i] = fmt.Sprintf("/bench/d%02d/key-%05d", i%50, i)
		h.mustApply(Cmd{Op: OpSet, Path: paths[i], Value: value})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		i := 0
		for pb.Next() {
			ev, aerr := h.tree.Get(paths[i%len(paths)], false, false)
			if aerr != nil {
				b.Fatal(aerr)
			}
			buf.Reset()
			ev.AppendJSON(&buf, t0)
			i++
		}
	})
}

// BenchmarkTreeExport100k: a raft snapshot of 100,000 keys of 256 bytes
// (ns/op is one whole export; it runs on the raft loop when a follower
// needs a snapshot).
func BenchmarkTreeExport100k(b *testing.B) {
	h := loadTree100k(b)
	var buf bytes.Buffer
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		if err := h.tree.Export(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/(1<<20), "MiB")
}

// BenchmarkTreeViewExport100k: the same snapshot as a leader sends it, a
// view taken on the raft loop (view-ns/op, all the loop pays) and
// exported from Pebble off it (ns/op).
func BenchmarkTreeViewExport100k(b *testing.B) {
	h := loadTree100k(b)
	var buf bytes.Buffer
	var viewTime time.Duration
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		start := time.Now()
		v := h.tree.View()
		viewTime += time.Since(start)
		if err := v.Export(&buf); err != nil {
			b.Fatal(err)
		}
		v.Close()
	}
	b.ReportMetric(float64(viewTime.Nanoseconds())/float64(b.N), "view-ns/op")
	b.ReportMetric(float64(buf.Len())/(1<<20), "MiB")
}

// loadTree100k builds a tree of 100,000 keys of 256 bytes in 50 directories.
func loadTree100k(b *testing.B) *treeHarness {
	h := newTreeHarness(b)
	value := strings.Repeat("x", 256)
	batch := h.e.NewBatch()
	for i := range 100_000 {
		c := Cmd{Op: OpSet, Path: fmt.Sprintf("/bench/d%02d/key-%06d", i%50, i), Value: value}
		if _, _, err := h.tree.Apply(batch, h.tree.AppliedIndex()+1, &c); err != nil {
			b.Fatal(err)
		}
	}
	if err := h.e.Commit(batch, false); err != nil {
		b.Fatal(err)
	}
	batch.Close()
	return h
}
