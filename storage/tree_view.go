package storage

import (
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
	index, err := readTreeMeta(v.snap, treeMetaStoreIndex)
	if err != nil {
		return err
	}
	ew := newExportWriter(w, index)
	err = scanKeys(v.snap, []byte{prefixTree}, []byte{prefixTree + 1}, func(k, rec []byte) error {
		ew.node(k[1:], rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("export view: %w", err)
	}
	return ew.finish()
}
