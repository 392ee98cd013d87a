package consensus

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// SnapshotStage keeps the snapshots a member receives in files rather than
// in memory: the transport streams a snapshot's data into a file of the
// stage and hands raft a MsgSnap whose data only names that file; the
// loop restores from the file and then removes it, as etcd stages its own
// in member/snap. The transport thus holds one chunk at a time, and raft's
// MemoryStorage no copy of the data after the restore. (The restore itself
// still writes the whole key space into one Pebble batch, so that it is
// atomic with the snapshot record.) A nil *SnapshotStage keeps snapshots in
// memory (the in-memory storage mode, the simulation).
type SnapshotStage struct {
	dir string
	// token is random for each process. Data that names a staged file
	// carries it, so snapshot data from a peer can never pass for such a
	// name, whatever its bytes.
	token string
	seq   atomic.Uint64
}

const (
	stagedPrefix = "cairn-staged-snapshot:"
	stagedSuffix = ".snap"
)

// NewSnapshotStage stages snapshots in dir, creating it, and removes the
// staged files a previous run left (a crash between receiving a snapshot
// and restoring it).
func NewSnapshotStage(dir string) (*SnapshotStage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot stage: %w", err)
	}
	var t [16]byte
	if _, err := rand.Read(t[:]); err != nil {
		return nil, fmt.Errorf("snapshot stage token: %w", err)
	}
	s := &SnapshotStage{dir: dir, token: hex.EncodeToString(t[:])}
	s.removeUpTo(^uint64(0))
	return s, nil
}

// create opens a new staged file for the snapshot at index.
func (s *SnapshotStage) create(index uint64) (*os.File, error) {
	name := fmt.Sprintf("%016x-%d%s", index, s.seq.Add(1), stagedSuffix)
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("stage snapshot: %w", err)
	}
	return f, nil
}

// reference is what a MsgSnap carries as data for the staged file f.
func (s *SnapshotStage) reference(f *os.File) []byte {
	return []byte(stagedPrefix + s.token + "/" + filepath.Base(f.Name()))
}

// open opens the staged file data refers to. staged is false when data is
// a snapshot's own data (what a stage-less member or the simulation
// sends).
func (s *SnapshotStage) open(data []byte) (f *os.File, staged bool, err error) {
	path, staged := s.path(data)
	if !staged {
		return nil, false, nil
	}
	if f, err = os.Open(path); err != nil {
		return nil, true, fmt.Errorf("open staged snapshot: %w", err)
	}
	return f, true, nil
}

// path is the staged file data refers to; false when data is a snapshot's
// own data, or names no file of this process's stage.
func (s *SnapshotStage) path(data []byte) (string, bool) {
	if s == nil || !bytes.HasPrefix(data, []byte(stagedPrefix)) {
		return "", false
	}
	rest, ok := strings.CutPrefix(string(data[len(stagedPrefix):]), s.token+"/")
	if !ok || strings.ContainsAny(rest, `/\`) || !strings.HasSuffix(rest, stagedSuffix) {
		return "", false
	}
	return filepath.Join(s.dir, rest), true
}

// drop deletes the staged file data refers to, if any: a snapshot that
// never reached raft.
func (s *SnapshotStage) drop(data []byte) {
	if path, staged := s.path(data); staged {
		_ = os.Remove(path)
	}
}

// remove deletes the staged file f, already closed or not.
func (s *SnapshotStage) remove(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// removeUpTo deletes the staged files of snapshots at or below index: once
// one is restored, those older than it can never be (raft refuses a
// snapshot behind its state), whether raft took them or dropped them.
func (s *SnapshotStage) removeUpTo(index uint64) {
	if s == nil {
		return
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		hexIndex, _, ok := strings.Cut(name, "-")
		if !ok || !strings.HasSuffix(name, stagedSuffix) {
			continue
		}
		if i, err := strconv.ParseUint(hexIndex, 16, 64); err == nil && i <= index {
			_ = os.Remove(filepath.Join(s.dir, name))
		}
	}
}
