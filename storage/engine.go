// Package storage keeps everything that is replicated or durable, in one
// Pebble database per member: the raft log and hard state (raftlog.go), and
// the v2 key tree, the deterministic state machine (tree.go).
//
// Key schema (first byte is the prefix):
//
//	0x01 raft   'e'+index(BE u64) → raftpb.Entry; 'h' HardState; 'c' ConfState; 's' snapshot meta
//	0x02 meta   "applied", "store-index", "cluster-id", "members/<id>" …
//	0x03 tree   full node path ("/a/b") → versioned node record
//	0x05 events store index (BE u64) → event record (watch history)
package storage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Key prefixes of the schema above.
const (
	prefixRaft   byte = 0x01
	prefixMeta   byte = 0x02
	prefixTree   byte = 0x03
	prefixEvents byte = 0x05
)

// Options configure Open.
type Options struct {
	// InMemory runs Pebble on an in-memory filesystem: nothing reaches disk.
	InMemory bool
	// FS overrides the filesystem (tests pass a crashable vfs.MemFS).
	FS vfs.FS
	// Logger receives Pebble's informational messages at debug level.
	Logger *slog.Logger
	// CacheBytes is the block cache size; 0 means 32 MiB.
	CacheBytes int64
}

// Engine is one member's Pebble database.
type Engine struct {
	db *pebble.DB
}

// ErrClosed is returned by operations on a closed engine.
var ErrClosed = errors.New("storage: engine closed")

// Open opens (creating if needed) the database in dir.
func Open(dir string, opts Options) (*Engine, error) {
	fs := opts.FS
	if fs == nil {
		if opts.InMemory {
			fs = vfs.NewMem()
		} else {
			fs = vfs.Default
		}
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = 32 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// Small memtables. A member's writes are mostly short-lived (raft
	// entries deleted at log compaction, tree records overwritten, history
	// events trimmed), so a bigger memtable lets more of them die before
	// they reach an sstable: 16 MiB cut compaction output from 1.9 KB to
	// 0.75 KB per write and the CPU per write by a fifth
	// (consensus BenchmarkSteadyWrites64Clients). But Pebble keeps about
	// four WAL files of 1.1 memtables each (live and recycled), so 16 MiB
	// took a data directory of 100,000 keys from 75 MB to 125 MB, past the
	// 90 MB Cairn promises; 8 MiB gained only 4 %.
	//
	// A deep L0. Reads never touch Pebble (the tree and the newest events
	// are in memory; only start-up and old history replays read it), so
	// L0's read amplification costs little, while compacting L0 less often
	// rewrites the key space's level less often: with 16 sublevels before
	// an L0 compaction instead of Pebble's 4, compaction output fell from
	// 1.2 KB to 0.86 KB per write and CPU per write from 29.6 to 25.4 µs
	// (median of 5 alternating runs of BenchmarkSteadyWrites64Clients), and
	// neither the data directory of 100,000 keys (74 MB) nor its peak under
	// 30 s of overwrites (about 145 MB) grew.
	po := &pebble.Options{
		FS:                          fs,
		Cache:                       cache,
		MemTableSize:                4 << 20,
		MemTableStopWritesThreshold: 2,
		L0CompactionThreshold:       16,
		L0StopWritesThreshold:       48,
		Logger:                      pebbleLogger{logger},
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open pebble at %q: %w", dir, err)
	}
	return &Engine{db: db}, nil
}

// Close flushes nothing extra: every acknowledged write is already in a
// synced WAL. It closes the database cleanly.
func (e *Engine) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// Batch is a set of writes committed atomically.
type Batch struct {
	b *pebble.Batch
}

// NewBatch starts an empty batch.
func (e *Engine) NewBatch() *Batch { return &Batch{b: e.db.NewBatch()} }

// NewBatchWithSize is NewBatch with room for about size bytes of records
// from the start (0: as NewBatch).
func (e *Engine) NewBatchWithSize(size int) *Batch {
	if size <= 0 {
		return e.NewBatch()
	}
	return &Batch{b: e.db.NewBatchWithSize(size)}
}

// Commit writes the batch; with sync it returns only after an fsync.
func (e *Engine) Commit(b *Batch, sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.b.Commit(opt); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	return nil
}

// Close releases the batch's memory; a batch must not be used afterwards.
func (b *Batch) Close() { _ = b.b.Close() }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

func (b *Batch) set(key, value []byte) error {
	if err := b.b.Set(key, value, nil); err != nil {
		return fmt.Errorf("batch set: %w", err)
	}
	return nil
}

func (b *Batch) del(key []byte) error {
	if err := b.b.Delete(key, nil); err != nil {
		return fmt.Errorf("batch delete: %w", err)
	}
	return nil
}

func (b *Batch) delRange(start, end []byte) error {
	if err := b.b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("batch delete range: %w", err)
	}
	return nil
}

// get reads a key; found is false when it does not exist.
func (e *Engine) get(key []byte) (value []byte, found bool, err error) { return readKey(e.db, key) }

// readKey reads a key from r (the database or a snapshot of it); found is
// false when it does not exist.
func readKey(r pebble.Reader, key []byte) (value []byte, found bool, err error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get: %w", err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, true, nil
}

// scan calls fn for every key in [start, end) in order. The slices are only
// valid during the call.
func (e *Engine) scan(start, end []byte, fn func(k, v []byte) error) error {
	return scanKeys(e.db, start, end, fn)
}

// scanKeys is scan on r: the database or a snapshot of it.
func scanKeys(r pebble.Reader, start, end []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return fmt.Errorf("new iterator: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("iterate: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("close iterator: %w", err)
	}
	return nil
}

// IOStats are the database's cumulative write volumes since it was opened.
type IOStats struct {
	WALBytes       uint64 // logical bytes written to the write-ahead log
	FlushedBytes   uint64 // sstable bytes written by memtable flushes
	CompactedBytes uint64 // sstable bytes written by compactions
	CompactionRead uint64 // sstable bytes read by compactions
	DiskBytes      uint64 // what the database occupies now (sstables, WAL, …)
}

// WriteAmplification is the bytes written to the WAL and to sstables per
// byte written to the WAL (1 would mean no flush or compaction at all).
func (s IOStats) WriteAmplification() float64 {
	if s.WALBytes == 0 {
		return 0
	}
	return float64(s.WALBytes+s.FlushedBytes+s.CompactedBytes) / float64(s.WALBytes)
}

// IOStats reports the write volumes so far, and the bytes the database
// occupies on disk.
func (e *Engine) IOStats() IOStats {
	m := e.db.Metrics()
	s := IOStats{DiskBytes: m.DiskSpaceUsage()}
	s.WALBytes = m.WAL.BytesIn
	for _, l := range m.Levels {
		s.FlushedBytes += l.TableBytesFlushed
		s.CompactedBytes += l.TableBytesCompacted
		s.CompactionRead += l.TableBytesRead
	}
	return s
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf only on unrecoverable corruption; it expects no return.
	p.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
