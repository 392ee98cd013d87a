package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Member is the replicated record of one cluster member, kept in the meta
// namespace as "members/<hex id>" and written in the apply batch of the
// entry that changed it (a conf change, or the member publishing its name
// and client URLs). Removed members leave a "removed/<hex id>" record so
// that an ID is never reused.
type Member struct {
	ID         uint64
	Name       string   // "" until the member has started and published it
	PeerURLs   []string // sorted
	ClientURLs []string // as published by the member
	IsLearner  bool
}

const memberCodecVersion = 1

// Bounds that keep a garbage record from asking for absurd allocations.
const (
	memberMaxString = 1 << 16
	memberMaxURLs   = 1 << 10
)

// ErrBadMember reports a member record that cannot be decoded.
var ErrBadMember = errors.New("storage: malformed member record")

// AppendMember appends the encoding of m to dst: a version byte, the ID,
// a flags byte, the name, then the peer and client URL lists (a count and
// length-prefixed strings).
func AppendMember(dst []byte, m *Member) []byte {
	dst = append(dst, memberCodecVersion)
	dst = binary.AppendUvarint(dst, m.ID)
	var flags byte
	if m.IsLearner {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = appendString(dst, m.Name)
	for _, list := range [][]string{m.PeerURLs, m.ClientURLs} {
		dst = binary.AppendUvarint(dst, uint64(len(list)))
		for _, s := range list {
			dst = appendString(dst, s)
		}
	}
	return dst
}

// DecodeMember decodes a record written by AppendMember. Every byte must
// be consumed.
func DecodeMember(b []byte) (Member, error) {
	var m Member
	if len(b) < 1 || b[0] != memberCodecVersion {
		return m, fmt.Errorf("%w: bad version", ErrBadMember)
	}
	b = b[1:]
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return m, fmt.Errorf("%w: bad ID", ErrBadMember)
	}
	m.ID, b = id, b[n:]
	if len(b) < 1 || b[0]&^1 != 0 {
		return m, fmt.Errorf("%w: bad flags", ErrBadMember)
	}
	m.IsLearner, b = b[0]&1 != 0, b[1:]
	var err error
	if m.Name, b, err = readString(b); err != nil {
		return m, err
	}
	for _, list := range []*[]string{&m.PeerURLs, &m.ClientURLs} {
		count, n := binary.Uvarint(b)
		if n <= 0 || count > memberMaxURLs {
			return m, fmt.Errorf("%w: bad URL count", ErrBadMember)
		}
		b = b[n:]
		for range count {
			var s string
			if s, b, err = readString(b); err != nil {
				return m, err
			}
			*list = append(*list, s)
		}
	}
	if len(b) != 0 {
		return m, fmt.Errorf("%w: %d trailing bytes", ErrBadMember, len(b))
	}
	return m, nil
}

func readString(b []byte) (string, []byte, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > memberMaxString || uint64(len(b)-n) < l {
		return "", nil, fmt.Errorf("%w: bad string", ErrBadMember)
	}
	return string(b[n : n+int(l)]), b[n+int(l):], nil
}

// Meta key ranges of the member records ('0' follows '/').
const (
	memberKeyPrefix  = "members/"
	memberKeyEnd     = "members0"
	removedKeyPrefix = "removed/"
	removedKeyEnd    = "removed0"
)

// PutMember writes (or replaces) a member record into the batch.
func (b *Batch) PutMember(m *Member) error {
	return b.set(metaKey(memberKeyPrefix+strconv.FormatUint(m.ID, 16)), AppendMember(nil, m))
}

// RemoveMember deletes member id's record and records the ID as removed.
func (b *Batch) RemoveMember(id uint64) error {
	hex := strconv.FormatUint(id, 16)
	if err := b.del(metaKey(memberKeyPrefix + hex)); err != nil {
		return err
	}
	return b.set(metaKey(removedKeyPrefix+hex), nil)
}

// ReplaceMembers replaces every member and removed-ID record with the given
// ones (a snapshot restore).
func (b *Batch) ReplaceMembers(members []Member, removed []uint64) error {
	for _, r := range [][2]string{{memberKeyPrefix, memberKeyEnd}, {removedKeyPrefix, removedKeyEnd}} {
		if err := b.delRange(metaKey(r[0]), metaKey(r[1])); err != nil {
			return err
		}
	}
	for i := range members {
		if err := b.PutMember(&members[i]); err != nil {
			return err
		}
	}
	for _, id := range removed {
		if err := b.set(metaKey(removedKeyPrefix+strconv.FormatUint(id, 16)), nil); err != nil {
			return err
		}
	}
	return nil
}

// LoadMembers reads every member record and the removed IDs.
func (e *Engine) LoadMembers() (members []Member, removed []uint64, err error) {
	start := metaKey(memberKeyPrefix)
	err = e.scan(start, metaKey(memberKeyEnd), func(k, v []byte) error {
		m, err := DecodeMember(v)
		if err != nil {
			return fmt.Errorf("member record %q: %w", k[1:], err)
		}
		members = append(members, m)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	err = e.scan(metaKey(removedKeyPrefix), metaKey(removedKeyEnd), func(k, _ []byte) error {
		id, err := strconv.ParseUint(string(k[1+len(removedKeyPrefix):]), 16, 64)
		if err != nil {
			return fmt.Errorf("removed record %q: %w", k[1:], err)
		}
		removed = append(removed, id)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return members, removed, nil
}
