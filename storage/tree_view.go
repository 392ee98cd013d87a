package storage

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// TreeView is a read-only, point-in-time copy of the committed key space:
// a Pebble snapshot, so taking one costs next to nothing and exporting it
// does not hold up the writers of the tree. Close releases it (until then
// Pebble keeps the versions it needs).
type TreeView struct {
	snap *pebble.Snapshot
}

// View returns a view of what is committed now. Called on the apply
// goroutine between applies, it is the state at AppliedIndex: every apply
// batch is committed before the next one starts.
func (t *Tree) View() *TreeView { return &TreeView{snap: t.e.db.NewSnapshot()} }

// Close releases the view.
func (v *TreeView) Close() { _ = v.snap.Close() }

// Export writes the view in Tree.Export's stream format, which Restore
// reads. The nodes come in key order (bytewise by full path) rather than
// Export's segment-wise order; either way a parent precedes its children.
func (v *TreeView) Export(w io.Writer) error {
	index, err := v.meta(treeMetaStoreIndex)
	if err != nil {
		return err
	}
	ew := newExportWriter(w, index)
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixTree}, UpperBound: []byte{prefixTree + 1}})
	if err != nil {
		return fmt.Errorf("export view: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		rec, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("export view: %w", err)
		}
		ew.node(it.Key()[1:], rec)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("export view: %w", err)
	}
	return ew.finish()
}

// meta reads one of the tree's meta counters as of the view.
func (v *TreeView) meta(name string) (uint64, error) {
	val, closer, err := v.snap.Get(treeMetaKey(name))
	if err == pebble.ErrNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read meta %q: %w", name, err)
	}
	defer closer.Close()
	if len(val) != 8 {
		return 0, fmt.Errorf("%w: meta %q has %d bytes", ErrTreeCorrupt, name, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}
