package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Raft log persistence, under prefix 0x01:
//
//	0x01 'e' index(BE u64)  marshalled raftpb.Entry
//	0x01 'h'                HardState
//	0x01 'c'                ConfState as of the applied index (written in the apply batch)
//	0x01 's'                SnapshotMetadata of the last snapshot or compaction point
//
// The consensus loop is the only writer. It persists a Ready's snapshot,
// HardState and entries in one batch (SaveRaftReady), records ConfState in the
// apply batch (SaveConfState), and drops a compacted prefix (CompactRaftLog).
// LoadRaftLog reads everything back on restart.

const (
	raftKeyEntry     byte = 'e'
	raftKeyHardState byte = 'h'
	raftKeyConfState byte = 'c'
	raftKeySnapshot  byte = 's'
)

var (
	raftKeyHS   = []byte{prefixRaft, raftKeyHardState}
	raftKeyCS   = []byte{prefixRaft, raftKeyConfState}
	raftKeySnap = []byte{prefixRaft, raftKeySnapshot}
	// raftEntriesEnd is the exclusive upper bound of every entry key.
	raftEntriesEnd = []byte{prefixRaft, raftKeyEntry + 1}
)

// ErrCorruptRaftLog reports persisted raft state that cannot be decoded or
// that breaks an invariant (a gap in the entries).
var ErrCorruptRaftLog = errors.New("storage: corrupt raft log")

// raftEntryKey is 0x01 'e' + index in big endian, so entries sort by index.
func raftEntryKey(index uint64) []byte {
	k := make([]byte, 10)
	k[0], k[1] = prefixRaft, raftKeyEntry
	binary.BigEndian.PutUint64(k[2:], index)
	return k
}

var raftMarshal = proto.MarshalOptions{}

// SaveRaftReady writes what a raft Ready asks to persist, in this order:
//
//   - snap (may be nil or empty): its metadata becomes the snapshot record,
//     every persisted entry is deleted and the ConfState record is replaced
//     by the snapshot's (the snapshot's data is the caller's business: the
//     state machine restores it into the same batch);
//   - hs (may be nil or empty): the HardState;
//   - ents: the new entries. Entries overwrite a conflicting suffix: when the
//     first new index is ≤ lastIndex, the persisted entries from that index
//     up to lastIndex are deleted first.
//
// lastIndex is the last entry index persisted before this batch (raft's
// MemoryStorage.LastIndex before Append; the snapshot index after a
// snapshot). It bounds the deletion of a conflicting suffix so that the
// common, conflict-free append writes no range tombstone.
func (b *Batch) SaveRaftReady(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, lastIndex uint64) error {
	if md := snap.GetMetadata(); md.GetIndex() != 0 {
		if err := b.saveSnapshotMeta(md); err != nil {
			return err
		}
		if err := b.delRange(raftEntryKey(0), raftEntriesEnd); err != nil {
			return fmt.Errorf("drop entries before snapshot %d: %w", md.GetIndex(), err)
		}
		if err := b.SaveConfState(md.GetConfState()); err != nil {
			return err
		}
		lastIndex = md.GetIndex()
	}
	if hs != nil && (hs.GetTerm() != 0 || hs.GetVote() != 0 || hs.GetCommit() != 0) {
		v, err := raftMarshal.Marshal(hs)
		if err != nil {
			return fmt.Errorf("marshal hardstate: %w", err)
		}
		if err := b.set(raftKeyHS, v); err != nil {
			return fmt.Errorf("save hardstate: %w", err)
		}
	}
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].GetIndex()
	if first <= lastIndex {
		if err := b.delRange(raftEntryKey(first), raftEntryKey(lastIndex+1)); err != nil {
			return fmt.Errorf("truncate entries from %d: %w", first, err)
		}
	}
	var buf []byte
	for i, e := range ents {
		if e.GetIndex() != first+uint64(i) {
			return fmt.Errorf("%w: entries not contiguous at %d", ErrCorruptRaftLog, e.GetIndex())
		}
		var err error
		buf, err = raftMarshal.MarshalAppend(buf[:0], e)
		if err != nil {
			return fmt.Errorf("marshal entry %d: %w", e.GetIndex(), err)
		}
		// Pebble copies key and value into the batch, so buf can be reused.
		if err := b.set(raftEntryKey(e.GetIndex()), buf); err != nil {
			return fmt.Errorf("save entry %d: %w", e.GetIndex(), err)
		}
	}
	return nil
}

// SaveConfState records the membership as of the batch's applied index. The
// consensus loop writes it in the apply batch of every conf change, so that a
// restart with raft.Config.Applied = the state machine's applied index starts
// from the right configuration.
func (b *Batch) SaveConfState(cs *raftpb.ConfState) error {
	v, err := raftMarshal.Marshal(raftpb.EnsureConfState(cs))
	if err != nil {
		return fmt.Errorf("marshal confstate: %w", err)
	}
	if err := b.set(raftKeyCS, v); err != nil {
		return fmt.Errorf("save confstate: %w", err)
	}
	return nil
}

// CompactRaftLog records md as the snapshot (compaction point) and deletes
// every persisted entry with an index ≤ md.Index. The entries after it stay;
// a restart loads them on top of the snapshot.
func (b *Batch) CompactRaftLog(md *raftpb.SnapshotMetadata) error {
	if md.GetIndex() == 0 {
		return fmt.Errorf("compact raft log: empty snapshot metadata")
	}
	if err := b.saveSnapshotMeta(md); err != nil {
		return err
	}
	if err := b.delRange(raftEntryKey(0), raftEntryKey(md.GetIndex()+1)); err != nil {
		return fmt.Errorf("compact raft log to %d: %w", md.GetIndex(), err)
	}
	return nil
}

func (b *Batch) saveSnapshotMeta(md *raftpb.SnapshotMetadata) error {
	v, err := raftMarshal.Marshal(md)
	if err != nil {
		return fmt.Errorf("marshal snapshot metadata: %w", err)
	}
	if err := b.set(raftKeySnap, v); err != nil {
		return fmt.Errorf("save snapshot metadata %d: %w", md.GetIndex(), err)
	}
	return nil
}

// RaftLog is the persisted raft state loaded on restart.
type RaftLog struct {
	// HardState is empty (never nil) for a new member.
	HardState *raftpb.HardState
	// ConfState is the membership as of the state machine's applied index:
	// the ConfState record if present, otherwise the snapshot's.
	ConfState *raftpb.ConfState
	// Snapshot is the metadata of the last snapshot or compaction point;
	// empty (never nil, index 0) when the log was never compacted.
	Snapshot *raftpb.SnapshotMetadata
	// Entries are the persisted entries after Snapshot.Index, contiguous.
	Entries []*raftpb.Entry
}

// Empty reports whether nothing was ever persisted: a new member.
func (l *RaftLog) Empty() bool {
	hs := l.HardState
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0 &&
		l.Snapshot.GetIndex() == 0 && len(l.Entries) == 0 && len(l.ConfState.GetVoters()) == 0 &&
		len(l.ConfState.GetLearners()) == 0
}

// LastIndex is the index of the last persisted entry (or of the snapshot).
func (l *RaftLog) LastIndex() uint64 {
	if n := len(l.Entries); n > 0 {
		return l.Entries[n-1].GetIndex()
	}
	return l.Snapshot.GetIndex()
}

// LoadRaftLog reads the persisted raft state for a restart.
func (e *Engine) LoadRaftLog() (*RaftLog, error) {
	l := &RaftLog{
		HardState: &raftpb.HardState{},
		Snapshot:  &raftpb.SnapshotMetadata{},
	}
	if err := e.loadRaftRecord(raftKeyHS, l.HardState); err != nil {
		return nil, fmt.Errorf("load hardstate: %w", err)
	}
	if err := e.loadRaftRecord(raftKeySnap, l.Snapshot); err != nil {
		return nil, fmt.Errorf("load snapshot metadata: %w", err)
	}
	cs := &raftpb.ConfState{}
	found, err := e.loadRaftRecordFound(raftKeyCS, cs)
	if err != nil {
		return nil, fmt.Errorf("load confstate: %w", err)
	}
	if !found && l.Snapshot.GetConfState() != nil {
		cs = proto.Clone(l.Snapshot.GetConfState()).(*raftpb.ConfState)
	}
	l.ConfState = cs

	start := l.Snapshot.GetIndex() + 1
	next := start
	err = e.scan(raftEntryKey(start), raftEntriesEnd, func(k, v []byte) error {
		if len(k) != 10 {
			return fmt.Errorf("%w: entry key of %d bytes", ErrCorruptRaftLog, len(k))
		}
		idx := binary.BigEndian.Uint64(k[2:])
		ent := &raftpb.Entry{}
		if err := proto.Unmarshal(v, ent); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrCorruptRaftLog, idx, err)
		}
		if ent.GetIndex() != idx || idx != next {
			return fmt.Errorf("%w: entry %d found where %d was expected (key %d)", ErrCorruptRaftLog, ent.GetIndex(), next, idx)
		}
		l.Entries = append(l.Entries, ent)
		if next == math.MaxUint64 {
			return fmt.Errorf("%w: index overflow", ErrCorruptRaftLog)
		}
		next++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load raft entries after %d: %w", start-1, err)
	}
	return l, nil
}

func (e *Engine) loadRaftRecord(key []byte, m proto.Message) error {
	_, err := e.loadRaftRecordFound(key, m)
	return err
}

func (e *Engine) loadRaftRecordFound(key []byte, m proto.Message) (bool, error) {
	v, found, err := e.get(key)
	if err != nil || !found {
		return false, err
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("%w: %v", ErrCorruptRaftLog, err)
	}
	return true, nil
}
