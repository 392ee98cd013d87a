package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
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

// writeSnapshot streams a MsgSnap in the snapshot format: the message
// without its data as one frame; the data in frames of at most
// snapshotChunkBytes, ended by an empty frame; the CRC-32C of the data.
// With src the data is exported from src as it is written, never held
// whole in memory, and m's data is ignored. It returns the data's length.
func writeSnapshot(w io.Writer, m *raftpb.Message, src *SnapshotSource) (int64, error) {
	head := proto.Clone(m).(*raftpb.Message)
	head.Snapshot.Data = nil
	b, err := appendFrame(nil, head)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(b); err != nil {
		return 0, err
	}
	cw := &chunkWriter{w: w, buf: make([]byte, 0, snapshotChunkBytes)}
	if src != nil {
		err = src.writeTo(cw)
	} else {
		_, err = cw.Write(m.GetSnapshot().GetData())
	}
	if err == nil {
		err = cw.flush()
	}
	if err != nil {
		return cw.n, err
	}
	var tail [8]byte // the empty frame, then the checksum
	binary.BigEndian.PutUint32(tail[4:], cw.crc)
	_, err = w.Write(tail[:])
	return cw.n, err
}

// chunkWriter frames what is written to it in chunks of snapshotChunkBytes
// and keeps the running checksum.
type chunkWriter struct {
	w   io.Writer
	buf []byte
	crc uint32
	n   int64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(c.buf)))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	c.crc = crc32.Update(c.crc, crcTable, c.buf)
	c.n += int64(len(c.buf))
	c.buf = c.buf[:0]
	return nil
}

// readSnapshot reads a snapshot stream written by writeSnapshot, refusing
// data longer than maxBytes, and returns the MsgSnap and the data's length.
// Without a stage the message carries the data; with one the data goes to
// a staged file as it arrives, and the message carries its reference.
func readSnapshot(r io.Reader, maxBytes int64, stage *SnapshotStage) (m *raftpb.Message, size int64, err error) {
	b, err := readFrame(r, nil, maxFrameBytes)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: empty snapshot stream", errBadFrame)
		}
		return nil, 0, err
	}
	m = &raftpb.Message{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errBadFrame, err)
	}
	if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		return nil, 0, fmt.Errorf("%w: snapshot stream starts with %s", errBadFrame, m.GetType())
	}
	var staged *os.File
	if stage != nil {
		if staged, err = stage.create(m.GetSnapshot().GetMetadata().GetIndex()); err != nil {
			return nil, 0, err
		}
		defer func() {
			if err != nil {
				stage.remove(staged)
			}
		}()
	}
	// In memory, the chunks are kept apart and joined once their total is
	// known, so the data is never copied into a slice that grew by
	// doubling. Staged, one chunk buffer is reused.
	var chunks [][]byte
	var buf []byte
	var crc uint32
	for {
		chunk, err := readFrame(r, buf, snapshotChunkBytes)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: snapshot data truncated after %d bytes", errBadFrame, size)
			}
			return nil, 0, err
		}
		if len(chunk) == 0 {
			break
		}
		if size += int64(len(chunk)); size > maxBytes {
			return nil, 0, fmt.Errorf("%w: snapshot over %d bytes", errFrameTooLarge, maxBytes)
		}
		crc = crc32.Update(crc, crcTable, chunk)
		if staged != nil {
			if _, err := staged.Write(chunk); err != nil {
				return nil, 0, fmt.Errorf("stage snapshot: %w", err)
			}
			buf = chunk
			continue
		}
		chunks = append(chunks, chunk)
	}
	var cb [4]byte
	if _, err := io.ReadFull(r, cb[:]); err != nil {
		return nil, 0, fmt.Errorf("%w: snapshot checksum: %w", errBadFrame, err)
	}
	if binary.BigEndian.Uint32(cb[:]) != crc {
		return nil, 0, fmt.Errorf("%w: snapshot checksum mismatch", errBadFrame)
	}
	if staged != nil {
		if err := staged.Close(); err != nil {
			return nil, 0, fmt.Errorf("stage snapshot: %w", err)
		}
		m.Snapshot.Data = stage.reference(staged)
		return m, size, nil
	}
	data := make([]byte, 0, size)
	for i, c := range chunks {
		data = append(data, c...)
		chunks[i] = nil
	}
	m.Snapshot.Data = data
	return m, size, nil
}
