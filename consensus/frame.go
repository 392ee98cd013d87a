package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Peer wire format. A message batch (POST /raft/message) is a sequence of
// frames until the end of the body:
//
//	4 bytes  big-endian length n (at most maxFrameBytes)
//	n bytes  proto.Marshal(raftpb.Message)
//
// A snapshot (POST /raft/snapshot) is streamed as:
//
//	one frame     the MsgSnap without its snapshot data
//	8 bytes       big-endian length of the data (at most the receiver's limit)
//	frames        the data in chunks of at most snapshotChunkBytes, until
//	              the announced length is reached
//	4 bytes       big-endian CRC-32C of the data
//
// so neither side ever holds one frame larger than a chunk.

const (
	// maxFrameBytes bounds one message: raft's MaxSizePerMsg (1 MiB) plus
	// a single entry as large as the largest request the HTTP layer takes.
	maxFrameBytes = 64 << 20
	// snapshotChunkBytes is the size of one snapshot data frame.
	snapshotChunkBytes = 1 << 20
	// readStep is how much of a frame is allocated before its bytes have
	// arrived, so a garbage length cannot make the reader allocate much.
	readStep = 64 << 10
)

var (
	errFrameTooLarge = errors.New("consensus: peer frame too large")
	errBadFrame      = errors.New("consensus: malformed peer frame")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends m as one frame.
func appendFrame(dst []byte, m *raftpb.Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("consensus: marshal %s: %w", m.GetType(), err)
	}
	n := len(dst) - start - 4
	if n > maxFrameBytes {
		return dst[:start], fmt.Errorf("%w: %s of %d bytes", errFrameTooLarge, m.GetType(), n)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}

// readFrame reads one frame into buf (reused when large enough). It
// returns io.EOF only at a clean end, before any byte of a frame.
func readFrame(r io.Reader, buf []byte, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated length", errBadFrame)
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", errFrameTooLarge, n, limit)
	}
	buf = buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), readStep)
		buf = slices.Grow(buf, step)
		if _, err := io.ReadFull(r, buf[len(buf):len(buf)+step]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // not a clean end
			}
			return nil, fmt.Errorf("%w: truncated frame: %w", errBadFrame, err)
		}
		buf = buf[:len(buf)+step]
	}
	return buf, nil
}

// readMessages decodes frames until the end of r and calls fn with each
// message (which fn owns).
func readMessages(r io.Reader, fn func(*raftpb.Message) error) error {
	var buf []byte
	for {
		b, err := readFrame(r, buf, maxFrameBytes)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		buf = b
		m := &raftpb.Message{}
		if err := proto.Unmarshal(b, m); err != nil {
			return fmt.Errorf("%w: %w", errBadFrame, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// writeSnapshot streams a MsgSnap in the snapshot format.
func writeSnapshot(w io.Writer, m *raftpb.Message) error {
	data := m.GetSnapshot().GetData()
	head := proto.Clone(m).(*raftpb.Message)
	head.Snapshot.Data = nil
	b, err := appendFrame(nil, head)
	if err != nil {
		return err
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	var hdr [4]byte
	for off := 0; off < len(data); off += snapshotChunkBytes {
		chunk := data[off:min(off+snapshotChunkBytes, len(data))]
		binary.BigEndian.PutUint32(hdr[:], uint32(len(chunk)))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, crcTable)))
	return err
}

// readSnapshot reads a snapshot stream written by writeSnapshot, refusing
// data longer than maxBytes, and returns the MsgSnap with its data.
func readSnapshot(r io.Reader, maxBytes int64) (*raftpb.Message, error) {
	b, err := readFrame(r, nil, maxFrameBytes)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: empty snapshot stream", errBadFrame)
		}
		return nil, err
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadFrame, err)
	}
	if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		return nil, fmt.Errorf("%w: snapshot stream starts with %s", errBadFrame, m.GetType())
	}
	var lb [8]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, fmt.Errorf("%w: snapshot length: %w", errBadFrame, err)
	}
	total := binary.BigEndian.Uint64(lb[:])
	if total > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: snapshot of %d bytes (limit %d)", errFrameTooLarge, total, maxBytes)
	}
	data := make([]byte, 0, min(total, snapshotChunkBytes))
	var chunk []byte
	for uint64(len(data)) < total {
		chunk, err = readFrame(r, chunk, snapshotChunkBytes)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: snapshot data truncated at %d of %d bytes", errBadFrame, len(data), total)
			}
			return nil, err
		}
		if len(chunk) == 0 || uint64(len(data)+len(chunk)) > total {
			return nil, fmt.Errorf("%w: bad snapshot chunk of %d bytes", errBadFrame, len(chunk))
		}
		data = append(data, chunk...)
	}
	var cb [4]byte
	if _, err := io.ReadFull(r, cb[:]); err != nil {
		return nil, fmt.Errorf("%w: snapshot checksum: %w", errBadFrame, err)
	}
	if binary.BigEndian.Uint32(cb[:]) != crc32.Checksum(data, crcTable) {
		return nil, fmt.Errorf("%w: snapshot checksum mismatch", errBadFrame)
	}
	m.Snapshot.Data = data
	return m, nil
}
