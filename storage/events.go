package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"cairn/api"
)

// EventLog is the member's durable watch history: every event the tree
// produces, keyed by its store index (prefix 0x05), written by Tree.Apply
// and Tree.ApplyExpire into the same batch as the node records it
// describes, so the history and the key space can never disagree after a
// crash.
//
// Retention is node-local (the history is not replicated state, only a
// by-product of applying it): at most MaxEvents events and events younger
// than MaxAge. The count limit is exact and logical (Oldest moves with every
// write); the physical deletion, and the age limit, are done by Trim, which
// the server calls off the apply path (once a second). Age is tracked with
// node-local wall-clock marks ("at time T the store index was I") kept in
// the meta namespace, so Apply never reads a clock and the limits survive a
// restart.
//
// Concurrency: put and reset run on the apply goroutine under the tree's
// lock; Range, Oldest and Trim may be called from any goroutine. Events read
// by Range are fresh copies.
type EventLog struct {
	e          *Engine
	storeIndex func() uint64 // the tree's store index (may run ahead of the disk by one batch)

	// floor is the physical lower bound: every event from floor up to the
	// committed store index is on disk. It only rises (Trim) except on a
	// snapshot restore.
	floor     atomic.Uint64
	maxEvents atomic.Uint64 // 0: no count limit
	maxAge    atomic.Int64  // ns; 0: no age limit

	mu    sync.Mutex // Trim and reset
	marks []eventMark

	keyBuf, valBuf []byte // put's scratch, used under the tree's lock
}

// eventMark records that by wall time t (unix ns) every event up to index
// had been applied on this member.
type eventMark struct {
	t     int64
	index uint64
}

// Default retention of the watch history.
const (
	DefaultHistoryEvents = 100000
	DefaultHistoryAge    = time.Hour
)

// eventMarkPrefix is the meta record name prefix of the age marks:
// "watch-mark/" + BE u64 unix ns → BE u64 store index.
const (
	eventMarkPrefix = "watch-mark/"
	eventMarkEnd    = "watch-mark0" // '/'+1: the end of the marks' range
)

// ErrEventCorrupt reports an event record that cannot be decoded.
var ErrEventCorrupt = errors.New("storage: corrupt event record")

func eventKey(dst []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixEvents), index)
}

func eventMarkKey(t int64) []byte {
	return binary.BigEndian.AppendUint64(metaKey(eventMarkPrefix), uint64(t))
}

// openEventLog loads the retention state: the oldest event on disk (or,
// without any, the next store index) and the age marks.
func openEventLog(e *Engine, storeIndex func() uint64) (*EventLog, error) {
	l := &EventLog{e: e, storeIndex: storeIndex}
	l.maxEvents.Store(DefaultHistoryEvents)
	l.maxAge.Store(int64(DefaultHistoryAge))
	floor := storeIndex() + 1
	errFound := errors.New("found")
	err := e.scan([]byte{prefixEvents}, []byte{prefixEvents + 1}, func(k, _ []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("%w: key of %d bytes", ErrEventCorrupt, len(k))
		}
		floor = binary.BigEndian.Uint64(k[1:])
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	l.floor.Store(floor)
	start, end := metaKey(eventMarkPrefix), metaKey(eventMarkEnd)
	err = e.scan(start, end, func(k, v []byte) error {
		if len(k) != len(start)+8 || len(v) != 8 {
			return fmt.Errorf("%w: age mark", ErrEventCorrupt)
		}
		l.marks = append(l.marks, eventMark{t: int64(binary.BigEndian.Uint64(k[len(start):])), index: binary.BigEndian.Uint64(v)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	return l, nil
}

// SetRetention sets the limits: at most maxEvents events (0: no count
// limit) and, once Trim runs, none older than maxAge (0: no age limit).
func (l *EventLog) SetRetention(maxEvents uint64, maxAge time.Duration) {
	l.maxEvents.Store(maxEvents)
	l.maxAge.Store(int64(maxAge))
}

// Oldest is the lowest store index the log answers for: every event from
// Oldest up to the newest applied one is retained (Range returns them).
// With nothing retained it is the next store index.
func (l *EventLog) Oldest() uint64 {
	o := l.floor.Load()
	if m := l.maxEvents.Load(); m > 0 {
		if n := l.storeIndex(); n >= m && n-m+1 > o {
			o = n - m + 1
		}
	}
	return o
}

// Range calls fn with every retained event whose store index lies in
// [from, to], in index order, until fn returns false. A caller that needs
// every event from `from` on checks Oldest() ≤ from after Range returns:
// Trim raises Oldest before it deletes anything.
func (l *EventLog) Range(from, to uint64, fn func(*api.Event) bool) error {
	if from > to {
		return nil
	}
	start := eventKey(nil, from)
	var end []byte
	if to == ^uint64(0) {
		end = []byte{prefixEvents + 1}
	} else {
		end = eventKey(nil, to+1)
	}
	errStop := errors.New("stop")
	err := l.e.scan(start, end, func(k, v []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("%w: key of %d bytes", ErrEventCorrupt, len(k))
		}
		ev, err := decodeEventRecord(v)
		if err != nil {
			return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k[1:]), err)
		}
		ev.Index = binary.BigEndian.Uint64(k[1:])
		if !fn(ev) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// put writes ev into b under its store index (apply goroutine, tree lock held).
func (l *EventLog) put(b *Batch, ev *api.Event) error {
	if ev == nil || ev.Index == 0 {
		return nil
	}
	var err error
	l.keyBuf = eventKey(l.keyBuf[:0], ev.Index)
	if l.valBuf, err = appendEventRecord(l.valBuf[:0], ev); err != nil {
		return fmt.Errorf("encode event %d: %w", ev.Index, err)
	}
	if err := b.set(l.keyBuf, l.valBuf); err != nil {
		return fmt.Errorf("write event %d: %w", ev.Index, err)
	}
	return nil
}

// reset empties the history into b after a snapshot install at store
// index: the events before it no longer describe how the key space got
// there, so none is offered.
func (l *EventLog) reset(b *Batch, index uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.delRange([]byte{prefixEvents}, []byte{prefixEvents + 1}); err != nil {
		return err
	}
	for _, m := range l.marks {
		if err := b.del(eventMarkKey(m.t)); err != nil {
			return err
		}
	}
	l.marks = nil
	l.floor.Store(index + 1)
	return nil
}

// Trim applies the retention limits as of now: it range-deletes the events
// past the count limit or older than the age limit, and records an age mark
// for the current store index. Node-local, and meant to run off the apply
// path (the server calls it once a second); the batch is not synced, since
// the history's limits are a matter of disk space, not of correctness.
func (l *EventLog) Trim(now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	newest := l.storeIndex()
	nowNs := now.UnixNano()
	var cut uint64 // delete every event ≤ cut
	if m := l.maxEvents.Load(); m > 0 && newest > m {
		cut = newest - m
	}
	b := l.e.NewBatch()
	defer b.Close()
	keep := l.marks[:0]
	if age := l.maxAge.Load(); age > 0 {
		for _, m := range l.marks {
			if m.t <= nowNs-age {
				cut = max(cut, m.index)
				if err := b.del(eventMarkKey(m.t)); err != nil {
					return err
				}
				continue
			}
			keep = append(keep, m)
		}
		l.marks = keep
	}
	n := len(l.marks)
	if l.maxAge.Load() > 0 && newest > 0 && (n == 0 || l.marks[n-1].index < newest && l.marks[n-1].t < nowNs) {
		l.marks = append(l.marks, eventMark{t: nowNs, index: newest})
		if err := b.set(eventMarkKey(nowNs), binary.BigEndian.AppendUint64(nil, newest)); err != nil {
			return err
		}
	}
	if floor := l.floor.Load(); cut >= floor {
		// Raise the floor before deleting: a reader that checks Oldest()
		// after its scan then knows whether it may have lost events. The
		// range starts at the old floor, so tombstones never overlap.
		l.floor.Store(cut + 1)
		if err := b.delRange(eventKey(nil, floor), eventKey(nil, cut+1)); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	return l.e.Commit(b, false)
}

// Event records: the value stored under prefixEvents + BE store index.
//
//	byte    version (eventRecordVersion)
//	byte    action code (eventActions; 0: the action follows as uvarint-length bytes)
//	byte    flags (evRecRefresh, evRecNode, evRecPrevNode, evRecAt)
//	node    when evRecNode
//	node    when evRecPrevNode
//	varint  Event.At (unix ns) when evRecAt: only when a node has an
//	        expiration (records without it show TTLs as of the read)
//
// node:
//
//	byte    flags (evNodeDir, evNodeHideValue, evNodeHideTTL)
//	uvarint len(key), key
//	uvarint createdIndex
//	uvarint modifiedIndex
//	varint  expiration (unix ns, 0 = permanent)
//	uvarint len(value), value
//
// Children (Node.Nodes) never occur in write events and are not stored.
const eventRecordVersion = 1

const (
	evRecRefresh byte = 1 << iota
	evRecNode
	evRecPrevNode
	evRecAt
	evRecKnownFlags = evRecRefresh | evRecNode | evRecPrevNode | evRecAt
)

const (
	evNodeDir byte = 1 << iota
	evNodeHideValue
	evNodeHideTTL
	evNodeKnownFlags = evNodeDir | evNodeHideValue | evNodeHideTTL
)

// eventActions are the action codes 1…7 of event records.
var eventActions = [...]string{"", api.ActionSet, api.ActionCreate, api.ActionUpdate,
	api.ActionCompareAndSwap, api.ActionDelete, api.ActionCompareAndDelete, api.ActionExpire}

func appendEventRecord(dst []byte, ev *api.Event) ([]byte, error) {
	code := byte(0)
	for i := 1; i < len(eventActions); i++ {
		if eventActions[i] == ev.Action {
			code = byte(i)
		}
	}
	var flags byte
	if ev.Refresh {
		flags |= evRecRefresh
	}
	if ev.Node != nil {
		flags |= evRecNode
	}
	if ev.PrevNode != nil {
		flags |= evRecPrevNode
	}
	if ev.At != 0 && ev.HasTTL() {
		flags |= evRecAt // only a TTL makes the time show
	}
	dst = append(dst, eventRecordVersion, code, flags)
	if code == 0 {
		dst = binary.AppendUvarint(dst, uint64(len(ev.Action)))
		dst = append(dst, ev.Action...)
	}
	if ev.Node != nil {
		dst = appendEventNode(dst, ev.Node)
	}
	if ev.PrevNode != nil {
		dst = appendEventNode(dst, ev.PrevNode)
	}
	if flags&evRecAt != 0 {
		dst = binary.AppendVarint(dst, ev.At)
	}
	return dst, nil
}

func appendEventNode(dst []byte, n *api.Node) []byte {
	var flags byte
	if n.Dir {
		flags |= evNodeDir
	}
	if n.HideValue {
		flags |= evNodeHideValue
	}
	if n.HideTTL {
		flags |= evNodeHideTTL
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(n.Key)))
	dst = append(dst, n.Key...)
	dst = binary.AppendUvarint(dst, n.CreatedIndex)
	dst = binary.AppendUvarint(dst, n.ModifiedIndex)
	dst = binary.AppendVarint(dst, n.Expiration)
	dst = binary.AppendUvarint(dst, uint64(len(n.Value)))
	return append(dst, n.Value...)
}

// decodeEventRecord decodes a record written by appendEventRecord; the
// strings are copied. Index is left 0 (it is the record's key).
func decodeEventRecord(b []byte) (*api.Event, error) {
	if len(b) < 3 {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrEventCorrupt, len(b))
	}
	if b[0] != eventRecordVersion {
		return nil, fmt.Errorf("%w: version %d", ErrEventCorrupt, b[0])
	}
	code, flags := b[1], b[2]
	if flags&^evRecKnownFlags != 0 {
		return nil, fmt.Errorf("%w: flags %#x", ErrEventCorrupt, flags)
	}
	d := eventDecoder{reader{b: b[3:], corrupt: ErrEventCorrupt}}
	ev := &api.Event{Refresh: flags&evRecRefresh != 0}
	switch {
	case code == 0:
		ev.Action = d.string()
	case int(code) < len(eventActions):
		ev.Action = eventActions[code]
	default:
		return nil, fmt.Errorf("%w: action code %d", ErrEventCorrupt, code)
	}
	if flags&evRecNode != 0 {
		ev.Node = d.node()
	}
	if flags&evRecPrevNode != 0 {
		ev.PrevNode = d.node()
	}
	if flags&evRecAt != 0 {
		if ev.At = d.varint(); d.err == nil && (ev.At == 0 || !ev.HasTTL()) {
			d.fail("event time without a TTL to show")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrEventCorrupt, len(d.b))
	}
	return ev, nil
}

// eventDecoder reads event records with the package's record reader.
type eventDecoder struct{ reader }

func (d *eventDecoder) node() *api.Node {
	if len(d.b) == 0 {
		d.fail("node flags")
		return nil
	}
	flags := d.b[0]
	d.b = d.b[1:]
	if flags&^evNodeKnownFlags != 0 {
		d.fail("node flags")
		return nil
	}
	n := &api.Node{Dir: flags&evNodeDir != 0, HideValue: flags&evNodeHideValue != 0, HideTTL: flags&evNodeHideTTL != 0}
	n.Key = d.string()
	n.CreatedIndex = d.uvarint()
	n.ModifiedIndex = d.uvarint()
	n.Expiration = d.varint()
	n.Value = d.string()
	return n
}
