package storage

import (
	"bytes"
	"errors"
	"testing"
)

func TestTreeRecordRoundTrip(t *testing.T) {
	recs := []treeRecord{
		{},
		{Dir: true, Created: 1, Modified: 1},
		{Created: 5, Modified: 8, Value: "Bye"},
		{Created: 1 << 63, Modified: ^uint64(0), Expiration: -1, Value: "\x00\xff"},
		{Dir: true, Created: 3, Modified: 9, Expiration: 1795678344954115175},
	}
	for _, r := range recs {
		enc := appendTreeRecord([]byte("prefix"), &r)
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatalf("appendTreeRecord clobbered dst")
		}
		got, err := decodeTreeRecord(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("decode %+v: %v", r, err)
		}
		if got != r {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestTreeRecordRejects(t *testing.T) {
	bad := map[string][]byte{
		"empty":         nil,
		"short":         {treeRecordVersion},
		"version":       {2, 0, 1, 1, 0},
		"flags":         {treeRecordVersion, 0x80, 1, 1, 0},
		"no created":    {treeRecordVersion, 0},
		"no modified":   {treeRecordVersion, 0, 1},
		"no expiration": {treeRecordVersion, 0, 1, 1},
		"bad varint":    {treeRecordVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"dir value":     {treeRecordVersion, treeRecDir, 1, 1, 0, 'x'},
	}
	for name, b := range bad {
		if _, err := decodeTreeRecord(b); !errors.Is(err, ErrTreeCorrupt) {
			t.Errorf("%s: err = %v, want ErrTreeCorrupt", name, err)
		}
	}
}

// FuzzTreeRecord: any record that decodes re-encodes to something that
// decodes to the same record; structured records round-trip; garbage never
// panics.
func FuzzTreeRecord(f *testing.F) {
	for _, r := range []treeRecord{
		{Created: 4, Modified: 4, Value: "Hello"},
		{Dir: true, Created: 12, Modified: 12},
		{Created: 25, Modified: 25, Expiration: 1795678344954115175, Value: "soon"},
	} {
		f.Add(appendTreeRecord(nil, &r), r.Dir, r.Created, r.Modified, r.Expiration, r.Value)
	}
	f.Add([]byte{}, false, uint64(0), uint64(0), int64(0), "")
	f.Add([]byte{1, 1, 0x80}, true, uint64(1), uint64(2), int64(-3), "x")
	f.Fuzz(func(t *testing.T, data []byte, dir bool, created, modified uint64, exp int64, value string) {
		if r, err := decodeTreeRecord(data); err == nil {
			again, err := decodeTreeRecord(appendTreeRecord(nil, &r))
			if err != nil || again != r {
				t.Fatalf("re-encoding %+v gave %+v, %v", r, again, err)
			}
		} else if !errors.Is(err, ErrTreeCorrupt) {
			t.Fatalf("unexpected error type: %v", err)
		}
		r := treeRecord{Dir: dir, Created: created, Modified: modified, Expiration: exp, Value: value}
		if dir {
			r.Value = ""
		}
		got, err := decodeTreeRecord(appendTreeRecord(nil, &r))
		if err != nil || got != r {
			t.Fatalf("round trip of %+v gave %+v, %v", r, got, err)
		}
	})
}

// FuzzTreeRestore: a corrupted export never panics and, when rejected,
// leaves the tree as it was.
func FuzzTreeRestore(f *testing.F) {
	src := newTreeHarness(f)
	applyLog(src, treeCmdLog(21, 200))
	f.Add(src.export())
	f.Add([]byte(treeExportMagic))
	f.Add([]byte{})
	h := newTreeHarness(f)
	before := h.export()
	f.Fuzz(func(t *testing.T, data []byte) {
		b := h.e.NewBatch()
		defer b.Close()
		if err := h.tree.Restore(bytes.NewReader(data), b, 1); err != nil {
			if !bytes.Equal(exportTree(t, h.tree), before) {
				t.Fatal("a rejected restore changed the tree")
			}
			return
		}
		// Accepted: it must re-export to a stream that restores the same.
		out := exportTree(t, h.tree)
		h2 := newTreeHarness(t)
		b2 := h2.e.NewBatch()
		defer b2.Close()
		if err := h2.tree.Restore(bytes.NewReader(out), b2, 1); err != nil {
			t.Fatalf("re-export does not restore: %v", err)
		}
		if !bytes.Equal(exportTree(t, h2.tree), out) {
			t.Fatal("re-export is not stable")
		}
		// Put the original state back for the next input.
		b3 := h.e.NewBatch()
		defer b3.Close()
		if err := h.tree.Restore(bytes.NewReader(before), b3, 1); err != nil {
			t.Fatal(err)
		}
	})
}
