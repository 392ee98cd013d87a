package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Export stream (snapshots, determinism checks):
//
//	magic    "CAIRNTR" + version byte 1
//	uvarint  store index
//	repeated uvarint len(path) > 0, path, uvarint len(record), node record
//	uvarint  0 (end of nodes)
//	4 bytes  CRC-32C (Castagnoli, big-endian) of everything before it
//
// Tree.Export writes the nodes in pre-order with siblings sorted bytewise
// by name, i.e. in segment-wise path order (the same bytes on every member
// at one index); TreeView.Export in byte order of the full paths. In both a
// parent precedes its children, which is all Restore needs. The root is
// implicit. Applied index and counters are member-local and not exported.

const treeExportMagic = "CAIRNTR\x01"

// Bounds that keep a garbage stream from asking for absurd allocations.
const (
	treeExportMaxPath   = 16 << 20
	treeExportMaxRecord = 64 << 20
)

var treeCRCTable = crc32.MakeTable(crc32.Castagnoli)

// walkTree calls fn for every node below n in export order. prefix is n's
// path ("" for the root); the path passed to fn is only valid during the call.
func walkTree(n *treeNode, prefix []byte, fn func(p []byte, c *treeNode) error) error {
	if len(n.children) == 0 {
		return nil
	}
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c := n.children[name]
		p := append(append(prefix, '/'), name...)
		if err := fn(p, c); err != nil {
			return err
		}
		if c.dir {
			if err := walkTree(c, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Export writes the whole key space and the store index to w in a
// deterministic form that Restore reads back. It holds the read lock while
// writing, so writes to the tree wait for a slow w.
func (t *Tree) Export(w io.Writer) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ew := newExportWriter(w, t.index.Load())
	var recBuf []byte
	err := walkTree(t.root, make([]byte, 0, 256), func(p []byte, n *treeNode) error {
		rec := n.record()
		recBuf = appendTreeRecord(recBuf[:0], &rec)
		ew.node(p, recBuf)
		return nil
	})
	if err != nil {
		return fmt.Errorf("export tree: %w", err)
	}
	return ew.finish()
}

// exportWriter writes an export stream: the header at creation, then the
// nodes, then the end marker and the checksum at finish.
type exportWriter struct {
	bw      *bufio.Writer
	crc     uint32
	scratch []byte
}

func newExportWriter(w io.Writer, storeIndex uint64) *exportWriter {
	ew := &exportWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	ew.out(binary.AppendUvarint([]byte(treeExportMagic), storeIndex))
	return ew
}

func (ew *exportWriter) out(p []byte) {
	ew.crc = crc32.Update(ew.crc, treeCRCTable, p)
	_, _ = ew.bw.Write(p) // bufio keeps the first error for Flush
}

// node writes one node entry: its path and its encoded record.
func (ew *exportWriter) node(path, rec []byte) {
	ew.scratch = binary.AppendUvarint(ew.scratch[:0], uint64(len(path)))
	ew.scratch = append(ew.scratch, path...)
	ew.scratch = binary.AppendUvarint(ew.scratch, uint64(len(rec)))
	ew.out(ew.scratch)
	ew.out(rec)
}

func (ew *exportWriter) finish() error {
	ew.out([]byte{0})
	_, _ = ew.bw.Write(binary.BigEndian.AppendUint32(nil, ew.crc))
	if err := ew.bw.Flush(); err != nil {
		return fmt.Errorf("export tree: %w", err)
	}
	return nil
}

// Restore replaces the whole key space with an Export stream (a raft
// snapshot): the store index comes from the stream and the applied index
// becomes raftIndex. The stream is fully read and checked (structure and
// checksum) before anything changes: a bad stream leaves the tree and b
// untouched. The new state is then written into b, replacing every node
// record. r must hold the export alone (it may be read past its end).
func (t *Tree) Restore(r io.Reader, b *Batch, raftIndex uint64) error {
	nt, index, err := readTreeExport(r)
	if err != nil {
		return fmt.Errorf("restore tree: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := b.delRange([]byte{prefixTree}, []byte{prefixTree + 1}); err != nil {
		return fmt.Errorf("restore tree: clear records: %w", err)
	}
	err = walkTree(nt.root, nil, func(p []byte, n *treeNode) error {
		rec := n.record()
		return t.putRecord(b, string(p), &rec)
	})
	if err != nil {
		return fmt.Errorf("restore tree: %w", err)
	}
	if err := t.putMeta(b, treeMetaStoreIndex, index); err != nil {
		return err
	}
	if err := t.putMeta(b, treeMetaApplied, raftIndex); err != nil {
		return err
	}
	if t.events != nil {
		// The watch history before the snapshot does not lead to it.
		if err := t.events.reset(b, index); err != nil {
			return fmt.Errorf("restore tree: clear watch history: %w", err)
		}
	}
	t.root, t.exp = nt.root, nt.exp
	t.index.Store(index)
	t.applied.Store(raftIndex)
	t.updateNextExpiration()
	return nil
}

// readTreeExport decodes an Export stream into a detached tree.
func readTreeExport(r io.Reader) (*Tree, uint64, error) {
	er := &treeExportReader{r: bufio.NewReaderSize(r, 64<<10)}
	magic, err := er.bytes(len(treeExportMagic))
	if err != nil {
		return nil, 0, err
	}
	if string(magic) != treeExportMagic {
		return nil, 0, fmt.Errorf("%w: bad export header %q", ErrTreeCorrupt, magic)
	}
	index, err := er.uvarint()
	if err != nil {
		return nil, 0, err
	}
	nt := newTree(nil)
	if err := nt.readNodes(er); err != nil {
		return nil, 0, err
	}
	want := er.crc
	sum, err := er.bytes(4)
	if err != nil {
		return nil, 0, err
	}
	if got := binary.BigEndian.Uint32(sum); got != want {
		return nil, 0, fmt.Errorf("%w: export checksum %08x, computed %08x", ErrTreeCorrupt, got, want)
	}
	return nt, index, nil
}

// readNodes reads node entries up to the end marker into t.
func (t *Tree) readNodes(er *treeExportReader) error {
	lastDirPath, lastDir := "/", t.root
	for {
		n, err := er.uvarint()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n > treeExportMaxPath {
			return fmt.Errorf("%w: path of %d bytes", ErrTreeCorrupt, n)
		}
		pb, err := er.bytes(int(n))
		if err != nil {
			return err
		}
		p := string(pb)
		if !isCleanTreePath(p) || p == "/" {
			return fmt.Errorf("%w: node path %q", ErrTreeCorrupt, p)
		}
		if n, err = er.uvarint(); err != nil {
			return err
		}
		if n > treeExportMaxRecord {
			return fmt.Errorf("%w: record of %d bytes", ErrTreeCorrupt, n)
		}
		rb, err := er.bytes(int(n))
		if err != nil {
			return err
		}
		rec, err := decodeTreeRecord(rb)
		if err != nil {
			return fmt.Errorf("node %q: %w", p, err)
		}
		dp, name := splitTreePath(p)
		if dp != lastDirPath {
			if lastDir, err = t.dirAt(dp); err != nil {
				return fmt.Errorf("node %q: %w", p, err)
			}
			lastDirPath = dp
		}
		if err := t.insertRecord(lastDir, name, p, &rec); err != nil {
			return err
		}
	}
}

// treeExportReader reads an export stream and keeps its running CRC.
type treeExportReader struct {
	r   *bufio.Reader
	crc uint32
	buf []byte
}

func (er *treeExportReader) ReadByte() (byte, error) {
	c, err := er.r.ReadByte()
	if err != nil {
		return 0, er.eof(err)
	}
	er.crc = crc32.Update(er.crc, treeCRCTable, []byte{c})
	return c, nil
}

func (er *treeExportReader) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(er)
	if err != nil {
		return 0, er.eof(err)
	}
	return v, nil
}

// bytes reads n bytes; the slice is valid until the next call.
func (er *treeExportReader) bytes(n int) ([]byte, error) {
	if cap(er.buf) < n {
		er.buf = make([]byte, n)
	}
	b := er.buf[:n]
	if _, err := io.ReadFull(er.r, b); err != nil {
		return nil, er.eof(err)
	}
	er.crc = crc32.Update(er.crc, treeCRCTable, b)
	return b, nil
}

func (er *treeExportReader) eof(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: export stream: %w", ErrTreeCorrupt, err)
}
