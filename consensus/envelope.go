package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"cairn/storage"
)

// Proposal envelope, the data of every normal raft entry Cairn proposes:
//
//	version byte (1) | request ID (uvarint) | storage.AppendCmd encoding
//
// or, for a member publishing its name and client URLs (an internal
// command: it takes no store index and the key space never sees it):
//
//	kind byte (2) | request ID (uvarint) | storage.AppendMember encoding
//
// The request ID routes the apply result back to the waiting proposer on the
// member that proposed it; other members ignore it.
const (
	envelopeVersion    = 1
	envelopeAttributes = 2
)

var errBadEnvelope = errors.New("consensus: malformed proposal envelope")

func appendEnvelope(dst []byte, id uint64, c *storage.Cmd) []byte {
	dst = append(dst, envelopeVersion)
	dst = binary.AppendUvarint(dst, id)
	return storage.AppendCmd(dst, c)
}

func decodeEnvelope(b []byte) (uint64, storage.Cmd, error) {
	if len(b) < 2 || b[0] != envelopeVersion {
		return 0, storage.Cmd{}, fmt.Errorf("%w: %d bytes, version %v", errBadEnvelope, len(b), b[:min(1, len(b))])
	}
	id, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return 0, storage.Cmd{}, fmt.Errorf("%w: bad request ID", errBadEnvelope)
	}
	c, err := storage.DecodeCmd(b[1+n:])
	if err != nil {
		return 0, storage.Cmd{}, fmt.Errorf("%w: %w", errBadEnvelope, err)
	}
	return id, c, nil
}

// idGenerator issues request IDs: the low 16 bits of the member ID in the
// top 16 bits, then a counter seeded from the clock at start (milliseconds
// shifted left by 8, as etcd's idutil does) so that IDs of entries proposed
// before a restart and replayed after it do not collide with new ones.
type idGenerator struct {
	prefix uint64
	next   atomic.Uint64
}

const idSuffixBits = 48

func newIDGenerator(memberID uint64, unixMillis int64) *idGenerator {
	g := &idGenerator{prefix: (memberID & 0xffff) << idSuffixBits}
	g.next.Store((uint64(unixMillis) << 8) & (1<<idSuffixBits - 1))
	return g
}

func (g *idGenerator) id() uint64 {
	return g.prefix | (g.next.Add(1) & (1<<idSuffixBits - 1))
}

func appendAttributesEnvelope(dst []byte, id uint64, m *storage.Member) []byte {
	dst = append(dst, envelopeAttributes)
	dst = binary.AppendUvarint(dst, id)
	return storage.AppendMember(dst, m)
}

func decodeAttributesEnvelope(b []byte) (uint64, storage.Member, error) {
	if len(b) < 2 || b[0] != envelopeAttributes {
		return 0, storage.Member{}, fmt.Errorf("%w: not an attributes envelope", errBadEnvelope)
	}
	id, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return 0, storage.Member{}, fmt.Errorf("%w: bad request ID", errBadEnvelope)
	}
	m, err := storage.DecodeMember(b[1+n:])
	if err != nil {
		return 0, storage.Member{}, fmt.Errorf("%w: %w", errBadEnvelope, err)
	}
	return id, m, nil
}
