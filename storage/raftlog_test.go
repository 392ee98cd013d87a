package storage

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

func openRaftTestEngine(t *testing.T, fs vfs.FS) *Engine {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return e
}

func raftTestEntries(first, last, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := first; i <= last; i++ {
		out = append(out, &raftpb.Entry{Index: new(i), Term: new(term), Type: raftpb.EntryNormal.Enum(), Data: []byte{byte(i)}})
	}
	return out
}

func raftTestSave(t *testing.T, e *Engine, hs *raftpb.HardState, es []*raftpb.Entry, snap *raftpb.Snapshot, last uint64) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	if err := b.SaveRaftReady(hs, es, snap, last); err != nil {
		t.Fatalf("save: %v", err)
	}
	if err := e.Commit(b, true); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func raftTestLoad(t *testing.T, e *Engine) *RaftLog {
	t.Helper()
	l, err := e.LoadRaftLog()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return l
}

// checkEntries asserts that l holds exactly first..last with the given terms.
func checkRaftEntries(t *testing.T, l *RaftLog, first uint64, terms ...uint64) {
	t.Helper()
	if len(l.Entries) != len(terms) {
		t.Fatalf("got %d entries, want %d", len(l.Entries), len(terms))
	}
	for i, e := range l.Entries {
		if e.GetIndex() != first+uint64(i) || e.GetTerm() != terms[i] {
			t.Fatalf("entry %d: got index %d term %d, want index %d term %d",
				i, e.GetIndex(), e.GetTerm(), first+uint64(i), terms[i])
		}
		if e.GetData()[0] != byte(e.GetIndex()) {
			t.Fatalf("entry %d: data %v", e.GetIndex(), e.GetData())
		}
	}
}

func TestRaftLogEmpty(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	l := raftTestLoad(t, e)
	if !l.Empty() || l.LastIndex() != 0 || l.HardState == nil || l.Snapshot == nil || l.ConfState == nil {
		t.Fatalf("new member: %+v", l)
	}
}

func TestRaftLogSaveLoad(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	hs := &raftpb.HardState{Term: new(uint64(3)), Vote: new(uint64(1)), Commit: new(uint64(7))}
	raftTestSave(t, e, hs, raftTestEntries(1, 10, 3), nil, 0)
	// A commit-only HardState update with no entries.
	raftTestSave(t, e, &raftpb.HardState{Term: new(uint64(3)), Vote: new(uint64(1)), Commit: new(uint64(10))}, nil, nil, 10)
	// An empty HardState must not overwrite the stored one.
	raftTestSave(t, e, &raftpb.HardState{}, nil, nil, 10)

	l := raftTestLoad(t, e)
	if l.Empty() {
		t.Fatal("log reported empty")
	}
	if l.HardState.GetTerm() != 3 || l.HardState.GetVote() != 1 || l.HardState.GetCommit() != 10 {
		t.Fatalf("hardstate: %v", l.HardState)
	}
	checkRaftEntries(t, l, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
	if l.LastIndex() != 10 {
		t.Fatalf("last index %d", l.LastIndex())
	}
}

func TestRaftLogConflictingSuffix(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	raftTestSave(t, e, nil, raftTestEntries(1, 10, 1), nil, 0)
	// A new leader overwrites 6..10 with a shorter suffix from term 2.
	raftTestSave(t, e, nil, raftTestEntries(6, 8, 2), nil, 10)
	l := raftTestLoad(t, e)
	checkRaftEntries(t, l, 1, 1, 1, 1, 1, 1, 2, 2, 2)
	// Appending after the suffix needs no deletion.
	raftTestSave(t, e, nil, raftTestEntries(9, 9, 2), nil, 8)
	checkRaftEntries(t, raftTestLoad(t, e), 1, 1, 1, 1, 1, 1, 2, 2, 2, 2)
}

func TestRaftLogNonContiguousRejected(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	b := e.NewBatch()
	defer b.Close()
	es := append(raftTestEntries(1, 2, 1), raftTestEntries(4, 4, 1)...)
	if err := b.SaveRaftReady(nil, es, nil, 0); !errors.Is(err, ErrCorruptRaftLog) {
		t.Fatalf("got %v, want ErrCorruptRaftLog", err)
	}
}

func TestRaftLogCompact(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	raftTestSave(t, e, nil, raftTestEntries(1, 20, 1), nil, 0)
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	b := e.NewBatch()
	if err := b.CompactRaftLog(&raftpb.SnapshotMetadata{Index: new(uint64(12)), Term: new(uint64(1)), ConfState: cs}); err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()

	l := raftTestLoad(t, e)
	if l.Snapshot.GetIndex() != 12 || l.Snapshot.GetTerm() != 1 {
		t.Fatalf("snapshot meta %v", l.Snapshot)
	}
	if got := l.ConfState.GetVoters(); len(got) != 3 {
		t.Fatalf("confstate from snapshot: %v", l.ConfState)
	}
	checkRaftEntries(t, l, 13, 1, 1, 1, 1, 1, 1, 1, 1)
	// The compacted keys are gone from the engine, not just skipped.
	n := 0
	if err := e.scan(raftEntryKey(0), raftEntryKey(13), func(k, v []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d compacted entries still stored", n)
	}

	// A ConfState record (written by the apply batch) wins over the snapshot's.
	b = e.NewBatch()
	if err := b.SaveConfState(&raftpb.ConfState{Voters: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := raftTestLoad(t, e).ConfState.GetVoters(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("confstate record: %v", got)
	}
}

func TestRaftLogSnapshot(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	raftTestSave(t, e, nil, raftTestEntries(1, 10, 1), nil, 0)
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(50)), Term: new(uint64(4)),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
	}}
	hs := &raftpb.HardState{Term: new(uint64(4)), Commit: new(uint64(50))}
	raftTestSave(t, e, hs, raftTestEntries(51, 52, 4), snap, 10)
	l := raftTestLoad(t, e)
	if l.Snapshot.GetIndex() != 50 || l.HardState.GetCommit() != 50 || len(l.ConfState.GetVoters()) != 2 {
		t.Fatalf("after snapshot: %+v", l)
	}
	checkRaftEntries(t, l, 51, 4, 4)
	n := 0
	if err := e.scan(raftEntryKey(0), raftEntriesEnd, func(k, v []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d entries stored, want 2", n)
	}
}

func TestRaftLogGapIsCorrupt(t *testing.T) {
	e := openRaftTestEngine(t, nil)
	defer e.Close()
	raftTestSave(t, e, nil, raftTestEntries(1, 5, 1), nil, 0)
	b := e.NewBatch()
	if err := b.del(raftEntryKey(3)); err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := e.LoadRaftLog(); !errors.Is(err, ErrCorruptRaftLog) {
		t.Fatalf("got %v, want ErrCorruptRaftLog", err)
	}
}

// TestRaftLogCrash checks that a synced Ready survives a crash and an
// unsynced one may be lost but never leaves a torn log.
func TestRaftLogCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := openRaftTestEngine(t, fs)
	raftTestSave(t, e, &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}, raftTestEntries(1, 5, 1), nil, 0)
	b := e.NewBatch()
	if err := b.SaveRaftReady(nil, raftTestEntries(6, 9, 1), nil, 5); err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := openRaftTestEngine(t, crashed)
	defer e2.Close()
	l := raftTestLoad(t, e2)
	if l.HardState.GetCommit() != 5 {
		t.Fatalf("hardstate after crash: %v", l.HardState)
	}
	if n := len(l.Entries); n != 5 && n != 9 {
		t.Fatalf("%d entries after crash, want 5 or 9", n)
	}
	checkRaftEntries(t, &RaftLog{Entries: l.Entries[:5]}, 1, 1, 1, 1, 1, 1)
}
