package storage

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"cairn/api"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// t0 is the fixed clock of the tree tests: TTLs are stamped relative to it
// and responses are rendered at t0 unless a step says otherwise.
var t0 = time.Date(2026, 11, 25, 7, 32, 0, 0, time.UTC)

// at is t0+d in unix nanoseconds, the form of Cmd.Expiration and Cmd.Now.
func at(d time.Duration) int64 { return t0.Add(d).UnixNano() }

// treeHarness drives a Tree on an engine, committing one batch per command
// at consecutive raft indexes.
type treeHarness struct {
	t    testing.TB
	fs   vfs.FS
	e    *Engine
	tree *Tree
}

func newTreeHarness(t testing.TB) *treeHarness {
	t.Helper()
	return openTreeHarness(t, vfs.NewMem())
}

// openTreeHarness opens (or reopens) the engine and tree stored on fs.
func openTreeHarness(t testing.TB, fs vfs.FS) *treeHarness {
	t.Helper()
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	tree, err := OpenTree(e)
	if err != nil {
		_ = e.Close()
		t.Fatalf("open tree: %v", err)
	}
	h := &treeHarness{t: t, fs: fs, e: e, tree: tree}
	t.Cleanup(func() { h.close() })
	return h
}

func (h *treeHarness) close() {
	if h.e != nil {
		if err := h.e.Close(); err != nil {
			h.t.Errorf("close engine: %v", err)
		}
		h.e = nil
	}
}

// reopen closes the engine and opens the tree again from the same files.
func (h *treeHarness) reopen() *treeHarness {
	h.t.Helper()
	h.close()
	return openTreeHarness(h.t, h.fs)
}

// commit runs fn on a fresh batch at the next raft index and commits it.
func (h *treeHarness) commit(fn func(b *Batch, raftIndex uint64) error) {
	h.t.Helper()
	b := h.e.NewBatch()
	defer b.Close()
	if err := fn(b, h.tree.AppliedIndex()+1); err != nil {
		h.t.Fatalf("apply: %v", err)
	}
	if err := h.e.Commit(b, false); err != nil {
		h.t.Fatalf("commit: %v", err)
	}
}

// apply applies one command; expire commands go through ApplyExpire so that
// every event comes back.
func (h *treeHarness) apply(c Cmd) (evs []*api.Event, aerr *api.Error) {
	h.t.Helper()
	h.commit(func(b *Batch, ri uint64) error {
		if c.Op == OpExpire {
			var err error
			evs, err = h.tree.ApplyExpire(b, ri, c.Now)
			return err
		}
		ev, ae, err := h.tree.Apply(b, ri, &c)
		if ev != nil {
			evs = []*api.Event{ev}
		}
		aerr = ae
		return err
	})
	return evs, aerr
}

// mustApply applies c and fails the test on an API error.
func (h *treeHarness) mustApply(c Cmd) []*api.Event {
	h.t.Helper()
	evs, aerr := h.apply(c)
	if aerr != nil {
		h.t.Fatalf("%s %q: %s", c.Op, c.Path, renderTree(nil, aerr, t0))
	}
	return evs
}

// export returns the Export bytes of the tree.
func (h *treeHarness) export() []byte {
	h.t.Helper()
	return exportTree(h.t, h.tree)
}

func exportTree(t testing.TB, tr *Tree) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tr.Export(&buf); err != nil {
		t.Fatalf("export: %v", err)
	}
	return buf.Bytes()
}

// get renders a GET as the HTTP layer would.
func (h *treeHarness) get(path string, recursive, sorted bool, now time.Time) string {
	ev, aerr := h.tree.Get(path, recursive, sorted)
	var evs []*api.Event
	if ev != nil {
		evs = []*api.Event{ev}
	}
	return renderTree(evs, aerr, now)
}

// renderTree renders events (one per line) or an error as on the wire,
// without the final newline.
func renderTree(evs []*api.Event, aerr *api.Error, now time.Time) string {
	var buf bytes.Buffer
	if aerr != nil {
		aerr.AppendJSON(&buf)
	}
	for _, ev := range evs {
		ev.AppendJSON(&buf, now)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
