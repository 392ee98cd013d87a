package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"cairn/api"
)

// Tree is the v2 key space: THE deterministic state machine of a member.
//
// The whole tree lives in memory (reads never touch Pebble) and every
// mutation is also written, as node records, into the Batch handed to Apply,
// together with the raft applied index and the store index, so that OpenTree
// can rebuild exactly the committed state after a restart.
//
// Concurrency: Apply, ApplyExpire, SetApplied and Restore are called by the
// single apply goroutine of the consensus layer and take the write lock. Get,
// Export and the accessors may be called from any goroutine. Every *api.Event
// and *api.Node returned is a fresh copy that shares no mutable memory with
// the tree, so it may be rendered after the lock is released.
//
// Determinism: Apply never reads a clock or a random source; time enters only
// through Cmd.Expiration and the Now of expire commands. Two trees fed the
// same commands at the same raft indexes end in byte-identical Export output.
//
// Memory runs ahead of the disk: Apply mutates the in-memory tree at once,
// and the caller commits the batch afterwards. A failed commit is a storage
// failure after which the member must stop (DESIGN §1.7).
type Tree struct {
	e *Engine

	mu   sync.RWMutex
	root *treeNode
	exp  treeExpHeap // every node with an expiration, ordered by (expiration, path)

	// Scratch buffers for record keys and values, reused under mu: the
	// batch copies what it is given.
	keyBuf []byte
	valBuf []byte

	// Written only under mu, readable without it.
	applied atomic.Uint64
	index   atomic.Uint64 // the v2 store (etcd) index
	nextExp atomic.Int64  // earliest expiration, 0 if none

	stats treeCounters

	// events is the durable watch history, written in the same batch as
	// the records each event describes (nil for detached trees).
	events *EventLog
}

// Meta record names (prefix 0x02) owned by the tree; both are big-endian u64
// and are written into the same batch as the data they describe.
const (
	treeMetaApplied    = "applied"
	treeMetaStoreIndex = "store-index"
)

// ErrApplyOrder reports an attempt to apply a raft index at or below the
// one already applied: re-applying a command would corrupt the tree.
var ErrApplyOrder = errors.New("storage: raft index already applied")

func newTree(e *Engine) *Tree {
	return &Tree{e: e, root: newTreeRoot()}
}

// OpenTree loads the tree, the applied index and the store index from e.
// A fresh database yields an empty tree with both indexes at 0.
func OpenTree(e *Engine) (*Tree, error) {
	t := newTree(e)
	applied, err := readTreeMeta(e.db, treeMetaApplied)
	if err != nil {
		return nil, err
	}
	index, err := readTreeMeta(e.db, treeMetaStoreIndex)
	if err != nil {
		return nil, err
	}
	if err := t.load(); err != nil {
		return nil, fmt.Errorf("open tree: %w", err)
	}
	t.applied.Store(applied)
	t.index.Store(index)
	t.updateNextExpiration()
	if t.events, err = openEventLog(e, t.index.Load); err != nil {
		return nil, err
	}
	return t, nil
}

// load rebuilds the in-memory tree from the node records. Keys come in
// byte order, and a parent's path is a prefix of its children's, so every
// parent is met before its children.
func (t *Tree) load() error {
	var (
		lastDirPath = "/"
		lastDir     = t.root
	)
	start, end := []byte{prefixTree}, []byte{prefixTree + 1}
	return t.e.scan(start, end, func(k, v []byte) error {
		p := string(k[1:])
		if !isCleanTreePath(p) || p == "/" {
			return fmt.Errorf("%w: node key %q", ErrTreeCorrupt, p)
		}
		rec, err := decodeTreeRecord(v)
		if err != nil {
			return fmt.Errorf("node %q: %w", p, err)
		}
		dp, name := splitTreePath(p)
		parent := lastDir
		if dp != lastDirPath {
			if parent, err = t.dirAt(dp); err != nil {
				return fmt.Errorf("node %q: %w", p, err)
			}
			lastDirPath, lastDir = dp, parent
		}
		if err := t.insertRecord(parent, name, p, &rec); err != nil {
			return err
		}
		return nil
	})
}

// dirAt returns the existing directory at p, or ErrTreeCorrupt.
func (t *Tree) dirAt(p string) (*treeNode, error) {
	n, aerr := t.lookup(p)
	if aerr != nil || !n.dir {
		return nil, fmt.Errorf("%w: parent %q is missing or not a directory", ErrTreeCorrupt, p)
	}
	return n, nil
}

// insertRecord attaches a decoded record below parent (load and restore).
func (t *Tree) insertRecord(parent *treeNode, name, p string, rec *treeRecord) error {
	if parent.children[name] != nil {
		return fmt.Errorf("%w: duplicate node %q", ErrTreeCorrupt, p)
	}
	value := rec.Value
	if rec.Dir {
		value = ""
	}
	t.attach(parent, name, p, rec.Dir, value, rec.Created, rec.Modified, rec.Expiration)
	return nil
}

func readTreeMeta(r pebble.Reader, name string) (uint64, error) {
	v, found, err := readKey(r, treeMetaKey(name))
	if err != nil {
		return 0, fmt.Errorf("read meta %q: %w", name, err)
	}
	if !found {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: meta %q has %d bytes", ErrTreeCorrupt, name, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func treeMetaKey(name string) []byte {
	return append([]byte{prefixMeta}, name...)
}

// Apply applies one command at raftIndex: it mutates the tree and writes
// the changed node records, the applied index and (if it moved) the store
// index into b.
//
// A semantic failure is returned as *api.Error carrying the current store
// index; the store index does not move but the applied index still does.
// The error result reports a storage failure (or a raft index that was
// already applied), after which the member must stop.
//
// OpExpire may remove several nodes; Apply then returns only the first
// event, so callers that need every event use ApplyExpire.
func (t *Tree) Apply(b *Batch, raftIndex uint64, c *Cmd) (*api.Event, *api.Error, error) {
	if c.Op == OpExpire {
		evs, err := t.ApplyExpire(b, raftIndex, c.Now)
		if err != nil || len(evs) == 0 {
			return nil, nil, err
		}
		return evs[0], nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkOrder(raftIndex); err != nil {
		return nil, nil, err
	}
	before := t.index.Load()
	ev, aerr, err := t.dispatch(b, c)
	if err != nil {
		return nil, nil, fmt.Errorf("apply %s %q at raft index %d: %w", c.Op, c.Path, raftIndex, err)
	}
	if ev != nil && ev.HasTTL() {
		ev.At = c.Now // the instant its TTLs are shown as of (api.Event.At)
	}
	t.stats.countWrite(c.Op, aerr == nil)
	logged := ev // the watch history records successes only
	if aerr != nil {
		logged = nil
	}
	if err := t.finish(b, raftIndex, before, logged); err != nil {
		return nil, nil, err
	}
	return ev, aerr, nil
}

// dispatch runs one key-space operation. Paths normally arrive clean; an
// unclean one is cleaned (deterministically) rather than trusted.
func (t *Tree) dispatch(b *Batch, c *Cmd) (*api.Event, *api.Error, error) {
	p := cleanTreePath(c.Path)
	switch c.Op {
	case OpSet:
		return t.applySet(b, p, c)
	case OpCreate:
		return t.applyCreate(b, p, c, false)
	case OpCreateInOrder:
		return t.applyCreate(b, p, c, true)
	case OpUpdate:
		return t.applyUpdate(b, p, c)
	case OpCAS:
		return t.applyCAS(b, p, c)
	case OpDelete:
		return t.applyDelete(b, p, c)
	case OpCAD:
		return t.applyCAD(b, p, c)
	}
	return nil, nil, fmt.Errorf("unknown op %d", uint8(c.Op))
}

// SetApplied records raftIndex as applied for a raft entry that carries no
// key-space command (empty entries, conf changes).
func (t *Tree) SetApplied(b *Batch, raftIndex uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkOrder(raftIndex); err != nil {
		return err
	}
	return t.finish(b, raftIndex, t.index.Load())
}

func (t *Tree) checkOrder(raftIndex uint64) error {
	if applied := t.applied.Load(); raftIndex <= applied {
		return fmt.Errorf("%w: raft index %d, applied %d", ErrApplyOrder, raftIndex, applied)
	}
	return nil
}

// finish writes the meta records of one apply and the events it produced
// (the watch history, see EventLog), and publishes the indexes.
func (t *Tree) finish(b *Batch, raftIndex, indexBefore uint64, evs ...*api.Event) error {
	if t.events != nil { // put skips nil events
		for _, ev := range evs {
			if err := t.events.put(b, ev); err != nil {
				return err
			}
		}
	}
	if err := t.putMeta(b, treeMetaApplied, raftIndex); err != nil {
		return err
	}
	if idx := t.index.Load(); idx != indexBefore {
		if err := t.putMeta(b, treeMetaStoreIndex, idx); err != nil {
			return err
		}
	}
	t.applied.Store(raftIndex)
	t.updateNextExpiration()
	return nil
}

func (t *Tree) putMeta(b *Batch, name string, v uint64) error {
	t.keyBuf = append(append(t.keyBuf[:0], prefixMeta), name...)
	t.valBuf = binary.BigEndian.AppendUint64(t.valBuf[:0], v)
	if err := b.set(t.keyBuf, t.valBuf); err != nil {
		return fmt.Errorf("write meta %q: %w", name, err)
	}
	return nil
}

// AppliedIndex is the last raft index applied to the tree.
func (t *Tree) AppliedIndex() uint64 { return t.applied.Load() }

// StoreIndex is the v2 store index (X-Etcd-Index): the index of the last
// successful key-space mutation.
func (t *Tree) StoreIndex() uint64 { return t.index.Load() }

// Events is the durable watch history written by Apply and ApplyExpire.
func (t *Tree) Events() *EventLog { return t.events }

// NextExpiration is the earliest expiration (unix ns) of any node, 0 if no
// node has a TTL. It takes no lock.
func (t *Tree) NextExpiration() int64 { return t.nextExp.Load() }

// Get reads the node at path (action "get", §4.1). Directories list their
// visible children, recursively with recursive, sorted bytewise by key at
// every level with sorted. Errors carry the current store index, and so
// does Event.Index: the X-Etcd-Index of a GET, read under the same lock.
func (t *Tree) Get(path string, recursive, sorted bool) (*api.Event, *api.Error) {
	p := cleanTreePath(path)
	t.mu.RLock()
	defer t.mu.RUnlock()
	n, aerr := t.lookup(p)
	if aerr != nil {
		return nil, aerr
	}
	var v *api.Node
	if n == t.root {
		// The root has no key and no indexes (§4.1).
		v = &api.Node{Dir: true, Nodes: listChildren(n, "", recursive, sorted)}
	} else {
		v = n.view(p)
		if n.dir {
			v.Nodes = listChildren(n, p, recursive, sorted)
		}
	}
	return &api.Event{Action: api.ActionGet, Node: v, Index: t.index.Load()}, nil
}
