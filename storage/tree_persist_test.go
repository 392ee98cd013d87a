package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"cairn/api"
)

// treeCmdLog generates a reproducible command log that exercises every
// operation, TTLs, hidden keys, in-order keys, refreshes and expiry, over a
// small key space so that operations collide often.
func treeCmdLog(seed uint64, n int) []Cmd {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	paths := []string{"/a", "/a/b", "/a/b/c", "/a/_h", "/a/_h/x", "/d", "/d/e", "/d/f", "/q", "/_s", "/z/y/x/w", "/a-x", "/a0"}
	clock := time.Duration(0)
	var log []Cmd
	for len(log) < n {
		clock += time.Duration(rng.IntN(400)) * time.Millisecond
		c := Cmd{Path: paths[rng.IntN(len(paths))], Value: fmt.Sprintf("v%d", rng.IntN(5)), Now: at(clock)}
		switch r := rng.IntN(100); {
		case r < 30:
			c.Op, c.Dir = OpSet, rng.IntN(6) == 0
		case r < 38:
			c.Op, c.Dir = OpCreate, rng.IntN(4) == 0
		case r < 45:
			c.Op, c.Path = OpCreateInOrder, paths[rng.IntN(3)+7] // /d/f, /q, /_s
		case r < 55:
			c.Op = OpUpdate
			if rng.IntN(4) == 0 {
				c.Dir, c.Value = true, ""
			}
		case r < 65:
			c.Op, c.PrevValue = OpCAS, fmt.Sprintf("v%d", rng.IntN(5))
			if rng.IntN(4) == 0 {
				c.PrevIndex = uint64(rng.IntN(3))
			}
		case r < 75:
			c.Op, c.Dir, c.Recursive = OpDelete, rng.IntN(2) == 0, rng.IntN(2) == 0
		case r < 82:
			c.Op, c.PrevValue = OpCAD, fmt.Sprintf("v%d", rng.IntN(5))
		default:
			log = append(log, Cmd{Op: OpExpire, Now: at(clock)})
			continue
		}
		if rng.IntN(3) == 0 {
			c.Expiration = at(clock + time.Duration(rng.IntN(5000))*time.Millisecond)
		}
		if c.Expiration != 0 && c.Op != OpCreateInOrder && rng.IntN(5) == 0 {
			c.Refresh, c.Value = true, ""
		}
		log = append(log, c)
	}
	return log
}

// applyLog applies log to h and returns every outcome rendered at t0.
func applyLog(h *treeHarness, log []Cmd) []string {
	out := make([]string, 0, len(log))
	for _, c := range log {
		evs, aerr := h.apply(c)
		out = append(out, renderTree(evs, aerr, t0))
	}
	return out
}

func TestTreeDeterminism(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			log := treeCmdLog(seed, 3000)
			h1, h2 := newTreeHarness(t), newTreeHarness(t)
			out1, out2 := applyLog(h1, log), applyLog(h2, log)
			for i := range out1 {
				if out1[i] != out2[i] {
					t.Fatalf("command %d (%+v) diverged:\n%s\n%s", i, log[i], out1[i], out2[i])
				}
			}
			e1, e2 := h1.export(), h2.export()
			if !bytes.Equal(e1, e2) {
				t.Fatalf("exports differ (%d vs %d bytes)", len(e1), len(e2))
			}
			if h1.tree.StoreIndex() == 0 || h1.tree.StoreIndex() != h2.tree.StoreIndex() {
				t.Fatalf("store indexes %d, %d", h1.tree.StoreIndex(), h2.tree.StoreIndex())
			}
			checkTreeInvariants(t, h1.tree)
		})
	}
}

// TestTreeRestart checks that a reopened tree has the same state, indexes
// and expiry schedule as one that kept running, and that both go on to
// produce the same events.
func TestTreeRestart(t *testing.T) {
	log := treeCmdLog(7, 2000)
	live, restarted := newTreeHarness(t), newTreeHarness(t)
	applyLog(live, log)
	applyLog(restarted, log)
	before := restarted.export()
	restarted = restarted.reopen()
	compareTrees(t, live, restarted)
	if !bytes.Equal(before, restarted.export()) {
		t.Fatal("export changed across the restart")
	}
	// The expiry index was rebuilt identically: drain it on both.
	more := append(treeCmdLog(8, 300), Cmd{Op: OpExpire, Now: at(time.Hour)})
	out1, out2 := applyLog(live, more), applyLog(restarted, more)
	for i := range out1 {
		if out1[i] != out2[i] {
			t.Fatalf("command %d after restart diverged:\n%s\n%s", i, out1[i], out2[i])
		}
	}
	restarted = restarted.reopen()
	compareTrees(t, live, restarted)
}

// TestTreeRestartScenario restarts after a hand-written sequence and checks
// concrete reads, including the range delete of a recursive delete.
func TestTreeRestartScenario(t *testing.T) {
	h := newTreeHarness(t)
	h.mustApply(tcSet("/a/b/c", "1"))
	h.mustApply(tcSet("/a-x", "2"))
	h.mustApply(tcSet("/a0", "3"))
	h.mustApply(tcTTL(tcSet("/a/t", "4"), time.Minute))
	h.mustApply(Cmd{Op: OpDelete, Path: "/a", Recursive: true})
	h.mustApply(tcTTL(tcDir("/ttl"), 30*time.Second))
	h.mustApply(tcTTL(tcSet("/ttl/f", "5"), 10*time.Second))
	h.mustApply(Cmd{Op: OpCreateInOrder, Path: "/q", Value: "j"})
	h.mustApply(tcTTL(Cmd{Op: OpSet, Path: "/ttl/f", Refresh: true}, 20*time.Second))
	h.mustApply(tcSet("/_hidden", "h"))
	h.apply(tcSet("/", "x")) // a failed write still advances the applied index
	h.commit(func(b *Batch, ri uint64) error { return h.tree.SetApplied(b, ri) })

	h2 := h.reopen()
	if got, want := h2.tree.AppliedIndex(), uint64(12); got != want {
		t.Errorf("applied index %d, want %d", got, want)
	}
	if got, want := h2.tree.StoreIndex(), uint64(10); got != want {
		t.Errorf("store index %d, want %d", got, want)
	}
	if got, want := h2.tree.NextExpiration(), at(20*time.Second); got != want {
		t.Errorf("next expiration %d, want %d", got, want)
	}
	want := `{"action":"get","node":{"dir":true,"nodes":[{"key":"/a-x","value":"2","modifiedIndex":2,"createdIndex":2},{"key":"/a0","value":"3","modifiedIndex":3,"createdIndex":3},{"key":"/q","dir":true,"nodes":[{"key":"/q/00000000000000000008","value":"j","modifiedIndex":8,"createdIndex":8}],"modifiedIndex":8,"createdIndex":8},{"key":"/ttl","dir":true,"expiration":"2026-11-25T07:32:30Z","ttl":30,"nodes":[{"key":"/ttl/f","value":"5","expiration":"2026-11-25T07:32:20Z","ttl":20,"modifiedIndex":9,"createdIndex":9}],"modifiedIndex":6,"createdIndex":6}]}}`
	if got := h2.get("/", true, true, t0); got != want {
		t.Errorf("GET / after restart\n got: %s\nwant: %s", got, want)
	}
	evs := h2.mustApply(tcExpire(time.Minute))
	got := renderTree(evs, nil, t0)
	wantExp := `{"action":"expire","node":{"key":"/ttl/f","modifiedIndex":11,"createdIndex":9},"prevNode":{"key":"/ttl/f","value":"5","expiration":"2026-11-25T07:32:20Z","modifiedIndex":9,"createdIndex":9}}` + "\n" +
		`{"action":"expire","node":{"key":"/ttl","dir":true,"modifiedIndex":12,"createdIndex":6},"prevNode":{"key":"/ttl","dir":true,"expiration":"2026-11-25T07:32:30Z","modifiedIndex":6,"createdIndex":6}}`
	if got != wantExp {
		t.Errorf("expire after restart\n got: %s\nwant: %s", got, wantExp)
	}
}

// compareTrees checks that two trees hold the same state.
func compareTrees(t *testing.T, a, b *treeHarness) {
	t.Helper()
	if !bytes.Equal(a.export(), b.export()) {
		t.Error("exports differ")
	}
	if a.tree.AppliedIndex() != b.tree.AppliedIndex() || a.tree.StoreIndex() != b.tree.StoreIndex() ||
		a.tree.NextExpiration() != b.tree.NextExpiration() {
		t.Errorf("indexes differ: applied %d/%d, store %d/%d, next expiration %d/%d",
			a.tree.AppliedIndex(), b.tree.AppliedIndex(), a.tree.StoreIndex(), b.tree.StoreIndex(),
			a.tree.NextExpiration(), b.tree.NextExpiration())
	}
	if ga, gb := a.get("/", true, true, t0), b.get("/", true, true, t0); ga != gb {
		t.Errorf("GET / differs:\n%s\n%s", ga, gb)
	}
	checkTreeInvariants(t, b.tree)
}

// checkTreeInvariants checks the in-memory structure: parent links, the
// expiry heap (order, positions, exactly the nodes with an expiration) and
// NextExpiration.
func checkTreeInvariants(t *testing.T, tr *Tree) {
	t.Helper()
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	withTTL := 0
	err := walkTree(tr.root, nil, func(p []byte, n *treeNode) error {
		if n.parent == nil || n.parent.children[n.name] != n {
			return fmt.Errorf("%s: bad parent link", p)
		}
		if !n.dir && n.children != nil {
			return fmt.Errorf("%s: file with children", p)
		}
		if (n.expiration != 0) != (n.heapIdx >= 0) {
			return fmt.Errorf("%s: expiration %d but heap position %d", p, n.expiration, n.heapIdx)
		}
		if n.heapIdx >= 0 {
			withTTL++
			e := tr.exp[n.heapIdx]
			if e.n != n || e.path != string(p) || e.exp != n.expiration {
				return fmt.Errorf("%s: heap entry %+v", p, e)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if withTTL != len(tr.exp) {
		t.Fatalf("%d nodes with a TTL, %d heap entries", withTTL, len(tr.exp))
	}
	for i := 1; i < len(tr.exp); i++ {
		if tr.exp.less(i, (i-1)/2) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
	var next int64
	if len(tr.exp) > 0 {
		next = tr.exp[0].exp
	}
	if tr.NextExpiration() != next {
		t.Fatalf("NextExpiration %d, heap top %d", tr.NextExpiration(), next)
	}
}

func TestTreeExportRestore(t *testing.T) {
	src := newTreeHarness(t)
	applyLog(src, treeCmdLog(3, 1500))
	data := src.export()

	dst := newTreeHarness(t)
	applyLog(dst, treeCmdLog(4, 200)) // some state to be replaced
	var raftIndex uint64 = 5000
	dst.commit(func(b *Batch, _ uint64) error { return dst.tree.Restore(bytes.NewReader(data), b, raftIndex) })
	if got := dst.export(); !bytes.Equal(got, data) {
		t.Fatal("restored tree exports differently")
	}
	if dst.tree.AppliedIndex() != raftIndex || dst.tree.StoreIndex() != src.tree.StoreIndex() ||
		dst.tree.NextExpiration() != src.tree.NextExpiration() {
		t.Fatalf("indexes after restore: applied %d, store %d (want %d), next expiration %d (want %d)",
			dst.tree.AppliedIndex(), dst.tree.StoreIndex(), src.tree.StoreIndex(),
			dst.tree.NextExpiration(), src.tree.NextExpiration())
	}
	checkTreeInvariants(t, dst.tree)
	// The restore was written to disk, replacing every old record.
	dst = dst.reopen()
	if got := dst.export(); !bytes.Equal(got, data) {
		t.Fatal("restored tree does not survive a restart")
	}
	if dst.tree.AppliedIndex() != raftIndex {
		t.Fatalf("applied index after restart %d", dst.tree.AppliedIndex())
	}
	// And it keeps behaving like the source.
	more := treeCmdLog(5, 500)
	for i := range more {
		evsA, aerrA := src.apply(more[i])
		evsB, aerrB := dst.apply(more[i])
		if a, b := renderTree(evsA, aerrA, t0), renderTree(evsB, aerrB, t0); a != b {
			t.Fatalf("command %d diverged after restore:\n%s\n%s", i, a, b)
		}
	}
}

func TestTreeRestoreRejectsBadStreams(t *testing.T) {
	src := newTreeHarness(t)
	applyLog(src, treeCmdLog(9, 300))
	good := src.export()

	h := newTreeHarness(t)
	h.mustApply(tcSet("/keep", "me"))
	before := h.export()
	bad := map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("NOTATREE"), good[8:]...),
		"truncated": good[:len(good)/2],
		"no crc":    good[:len(good)-4],
		"flipped":   flipByte(good, len(good)/2),
		"bad crc":   flipByte(good, len(good)-1),
	}
	for name, data := range bad {
		b := h.e.NewBatch()
		err := h.tree.Restore(bytes.NewReader(data), b, 100)
		if !errors.Is(err, ErrTreeCorrupt) {
			t.Errorf("%s: err = %v, want ErrTreeCorrupt", name, err)
		}
		if !b.Empty() {
			t.Errorf("%s: batch written on a failed restore", name)
		}
		b.Close()
		if !bytes.Equal(h.export(), before) {
			t.Fatalf("%s: tree changed by a failed restore", name)
		}
	}
}

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x5a
	return c
}

func TestTreeOpenRejectsOrphans(t *testing.T) {
	h := newTreeHarness(t)
	b := h.e.NewBatch()
	rec := appendTreeRecord(nil, &treeRecord{Created: 1, Modified: 1, Value: "x"})
	if err := b.set(append([]byte{prefixTree}, "/no/parent"...), rec); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := OpenTree(h.e); !errors.Is(err, ErrTreeCorrupt) {
		t.Fatalf("OpenTree with an orphan record: %v", err)
	}
}

func TestTreeApplyOrder(t *testing.T) {
	h := newTreeHarness(t)
	h.mustApply(tcSet("/a", "1"))
	b := h.e.NewBatch()
	defer b.Close()
	c := tcSet("/a", "2")
	if _, _, err := h.tree.Apply(b, 1, &c); !errors.Is(err, ErrApplyOrder) {
		t.Fatalf("re-applying index 1: %v", err)
	}
	if _, err := h.tree.ApplyExpire(b, 1, at(time.Hour)); !errors.Is(err, ErrApplyOrder) {
		t.Fatalf("re-applying index 1 as expire: %v", err)
	}
	if err := h.tree.SetApplied(b, 0); !errors.Is(err, ErrApplyOrder) {
		t.Fatalf("SetApplied(0): %v", err)
	}
	if got := h.get("/a", false, false, t0); !strings.Contains(got, `"value":"1"`) {
		t.Fatalf("state changed by a rejected apply: %s", got)
	}
}

// TestTreeApplyExpireViaApply: Apply with OpExpire returns the first event.
func TestTreeApplyExpireViaApply(t *testing.T) {
	h := newTreeHarness(t)
	h.mustApply(tcTTL(tcSet("/b", "1"), time.Second))
	h.mustApply(tcTTL(tcSet("/a", "1"), time.Second))
	var ev *api.Event
	h.commit(func(b *Batch, ri uint64) error {
		c := tcExpire(time.Second)
		var aerr *api.Error
		var err error
		ev, aerr, err = h.tree.Apply(b, ri, &c)
		if aerr != nil {
			t.Errorf("expire: %v", aerr)
		}
		return err
	})
	if ev == nil || ev.Node.Key != "/a" || ev.Index != 3 || h.tree.StoreIndex() != 4 {
		t.Fatalf("first expire event %+v, store index %d", ev, h.tree.StoreIndex())
	}
	h.commit(func(b *Batch, ri uint64) error {
		c := tcExpire(time.Hour)
		ev, _, err := h.tree.Apply(b, ri, &c)
		if ev != nil {
			t.Errorf("nothing to expire, got %+v", ev)
		}
		return err
	})
}

// TestTreeManyCommandsPerBatch: the apply loop puts many entries in one
// batch; a recursive delete's range tombstone must not hide keys written
// after it in the same batch.
func TestTreeManyCommandsPerBatch(t *testing.T) {
	h := newTreeHarness(t)
	cmds := []Cmd{
		tcSet("/a/b", "1"),
		tcSet("/a/c/d", "2"),
		{Op: OpDelete, Path: "/a", Recursive: true},
		tcSet("/a/c/e", "3"),
		tcTTL(tcSet("/a/f", "4"), time.Minute),
		{Op: OpDelete, Path: "/a/c", Recursive: true},
		tcSet("/a/c", "5"),
	}
	h.commit(func(b *Batch, ri uint64) error {
		for i := range cmds {
			if _, aerr, err := h.tree.Apply(b, ri+uint64(i), &cmds[i]); err != nil || aerr != nil {
				return fmt.Errorf("command %d: %v %v", i, err, aerr)
			}
		}
		return nil
	})
	want := h.get("/", true, true, t0)
	h2 := h.reopen()
	if got := h2.get("/", true, true, t0); got != want {
		t.Fatalf("after restart\n got: %s\nwant: %s", got, want)
	}
	if h2.tree.AppliedIndex() != uint64(len(cmds)) || h2.tree.StoreIndex() != uint64(len(cmds)) ||
		h2.tree.NextExpiration() != at(time.Minute) {
		t.Fatalf("indexes after restart: applied %d, store %d, next expiration %d",
			h2.tree.AppliedIndex(), h2.tree.StoreIndex(), h2.tree.NextExpiration())
	}
}

// TestTreeViewExport: a view exports the state committed when it was
// taken, whatever is applied afterwards, and that export restores to the
// same tree as Export's (the paths include "/a-x" and "/a0", which sort
// differently bytewise and segment-wise).
func TestTreeViewExport(t *testing.T) {
	src := newTreeHarness(t)
	applyLog(src, treeCmdLog(3, 1500))
	want := src.export()
	view := src.tree.View()
	defer view.Close()
	applyLog(src, treeCmdLog(6, 300)) // after the view: must not show in it
	if bytes.Equal(src.export(), want) {
		t.Fatal("the later commands changed nothing: the test proves nothing")
	}
	var data bytes.Buffer
	if err := view.Export(&data); err != nil {
		t.Fatal(err)
	}
	dst := newTreeHarness(t)
	applyLog(dst, treeCmdLog(4, 200))
	dst.commit(func(b *Batch, _ uint64) error { return dst.tree.Restore(bytes.NewReader(data.Bytes()), b, 5000) })
	if got := dst.export(); !bytes.Equal(got, want) {
		t.Fatal("the view's export restores to a different tree than Export at the view's time")
	}
	checkTreeInvariants(t, dst.tree)
	// A damaged view export is refused like any other stream.
	bad := bytes.Clone(data.Bytes())
	bad[len(bad)/2] ^= 0x40
	dst.commit(func(b *Batch, _ uint64) error {
		if err := dst.tree.Restore(bytes.NewReader(bad), b, 6000); err == nil {
			t.Error("a damaged view export was restored")
		}
		return nil
	})
}
