package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Node records: the value stored under prefixTree + full path for every node
// except the root (which always exists and is never persisted).
//
//	byte    version (treeRecordVersion)
//	byte    flags (treeRecDir)
//	uvarint createdIndex
//	uvarint modifiedIndex
//	varint  expiration (unix ns, 0 = permanent)
//	bytes   value: the rest of the record (always empty for directories)
//
// The value is last and unprefixed so that a record costs five to a dozen
// bytes on top of the value itself.

const treeRecordVersion = 1

const (
	treeRecDir        byte = 1 << iota
	treeRecKnownFlags      = treeRecDir
)

// ErrTreeCorrupt reports a tree record, key or export stream that cannot be
// decoded or does not fit the tree (a child without its parent directory…).
var ErrTreeCorrupt = errors.New("storage: corrupt tree data")

// treeRecord is the decoded form of a node record.
type treeRecord struct {
	Dir        bool
	Created    uint64
	Modified   uint64
	Expiration int64
	Value      string
}

// appendTreeRecord appends the encoding of r to dst.
func appendTreeRecord(dst []byte, r *treeRecord) []byte {
	var flags byte
	if r.Dir {
		flags |= treeRecDir
	}
	dst = append(dst, treeRecordVersion, flags)
	dst = binary.AppendUvarint(dst, r.Created)
	dst = binary.AppendUvarint(dst, r.Modified)
	dst = binary.AppendVarint(dst, r.Expiration)
	if !r.Dir {
		dst = append(dst, r.Value...)
	}
	return dst
}

// decodeTreeRecord decodes a record written by appendTreeRecord. The value is
// copied, so b may be reused by the caller.
func decodeTreeRecord(b []byte) (treeRecord, error) {
	var r treeRecord
	if len(b) < 2 {
		return r, fmt.Errorf("%w: record of %d bytes", ErrTreeCorrupt, len(b))
	}
	if b[0] != treeRecordVersion {
		return r, fmt.Errorf("%w: record version %d", ErrTreeCorrupt, b[0])
	}
	flags := b[1]
	if flags&^treeRecKnownFlags != 0 {
		return r, fmt.Errorf("%w: record flags %#x", ErrTreeCorrupt, flags)
	}
	r.Dir = flags&treeRecDir != 0
	rest := b[2:]
	var n int
	if r.Created, n = binary.Uvarint(rest); n <= 0 {
		return treeRecord{}, fmt.Errorf("%w: record createdIndex", ErrTreeCorrupt)
	}
	rest = rest[n:]
	if r.Modified, n = binary.Uvarint(rest); n <= 0 {
		return treeRecord{}, fmt.Errorf("%w: record modifiedIndex", ErrTreeCorrupt)
	}
	rest = rest[n:]
	if r.Expiration, n = binary.Varint(rest); n <= 0 {
		return treeRecord{}, fmt.Errorf("%w: record expiration", ErrTreeCorrupt)
	}
	rest = rest[n:]
	if r.Dir && len(rest) != 0 {
		return treeRecord{}, fmt.Errorf("%w: directory record with a %d-byte value", ErrTreeCorrupt, len(rest))
	}
	r.Value = string(rest)
	return r, nil
}
