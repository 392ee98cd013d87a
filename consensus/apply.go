package consensus

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"cairn/storage"
)

// apply applies committed entries into one batch (b, carried over from
// persist, or a new one) and commits it without sync: the entries are
// already durable in the synced raft log, and a crash replays them from
// there (the applied index is in the same batch, so replay is idempotent).
// Only after the commit are proposers answered, read barriers released and
// the observer told, in index order.
func (c *core) apply(ents []*raftpb.Entry, b *storage.Batch) error {
	if len(ents) == 0 && b == nil {
		return nil
	}
	start := time.Now()
	if b == nil {
		b = c.eng.NewBatch()
	}
	defer b.Close()

	c.results = c.results[:0]
	c.events = nil // handed to the observer, which may keep it
	prevApplied := c.applied
	commands := 0
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= c.applied {
			continue // applied before a restart, or covered by a snapshot
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) == 0 {
				if err := c.sm.SetApplied(b, idx); err != nil {
					return fmt.Errorf("set applied %d: %w", idx, err)
				}
				break
			}
			if err := c.applyCommand(b, idx, e.GetData()); err != nil {
				return err
			}
			commands++
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			if err := c.applyConfChange(b, e); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %d: unknown type %v", idx, e.GetType())
		}
		c.applied = idx
	}

	if !b.Empty() {
		if err := c.eng.Commit(b, false); err != nil {
			return fmt.Errorf("commit apply batch up to %d: %w", c.applied, err)
		}
	}
	if c.applied == prevApplied {
		return nil
	}
	c.met.applyDuration.Observe(time.Since(start).Seconds())
	c.met.proposalsCommitted.Add(float64(commands))

	// The batch is committed: make the index visible, tell the observers
	// (watch hub, expirer), then answer. Observers first: a client that got
	// its answer and then opens a watch must be registered after its own
	// write, not see it again.
	c.publish()
	if c.obs != nil {
		c.obs.Applied(c.applied, c.events)
	}
	c.events = nil
	for i := range c.results {
		c.waits.trigger(c.results[i].id, c.results[i].r)
		c.results[i] = waiterResult{}
	}
	c.appliedWaits.release(c.applied)
	return nil
}

// applyCommand decodes one proposal envelope and applies its command. A
// malformed envelope is a broken invariant (only this code proposes): it
// stops the member rather than let it skip what others may apply.
func (c *core) applyCommand(b *storage.Batch, idx uint64, data []byte) error {
	if data[0] == envelopeAttributes {
		id, rec, err := decodeAttributesEnvelope(data)
		if err != nil {
			return fmt.Errorf("entry %d: %w", idx, err)
		}
		return c.applyAttributes(b, idx, id, &rec)
	}
	id, cmd, err := decodeEnvelope(data)
	if err != nil {
		return fmt.Errorf("entry %d: %w", idx, err)
	}
	var r result
	if cmd.Op == storage.OpExpire {
		evs, err := c.sm.ApplyExpire(b, idx, cmd.Now)
		if err != nil {
			return fmt.Errorf("apply expire at %d: %w", idx, err)
		}
		r.events = evs
		for _, ev := range evs {
			if ev != nil {
				c.events = append(c.events, ev)
			}
		}
	} else {
		ev, apiErr, err := c.sm.Apply(b, idx, &cmd)
		if err != nil {
			return fmt.Errorf("apply %s %q at %d: %w", cmd.Op, cmd.Path, idx, err)
		}
		if apiErr != nil {
			r.err = apiErr
		} else {
			r.ev = ev
			if ev != nil {
				c.events = append(c.events, ev)
			}
		}
	}
	c.results = append(c.results, waiterResult{id: id, r: r})
	return nil
}

// applyConfChange applies a membership change to raft and records the new
// ConfState in the apply batch, next to the applied index, so that a
// restart at that applied index starts from this configuration.
//
// A v1 change (the only kind Cairn proposes) carries the member record as
// its context and the proposer's request ID as its ID. It is validated
// against the member records first, as etcd does: a refused change is
// applied to raft as a no-op (node ID 0) and its proposer gets the
// membership error. An accepted one updates the member records in the
// same batch and the transport's peers. A promotion is a ConfChangeAddNode
// for an existing learner, marked by its context (promoteContext): raft
// turns the learner into a voter.
func (c *core) applyConfChange(b *storage.Batch, e *raftpb.Entry) error {
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryConfChange {
		v1 := &raftpb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), v1); err != nil {
			return fmt.Errorf("entry %d: decode conf change: %w", e.GetIndex(), err)
		}
		cc = v1
		rec, promote, err := confChangeContext(v1)
		if err != nil {
			return fmt.Errorf("entry %d: conf change context: %w", e.GetIndex(), err)
		}
		if err := c.members.validate(v1.GetType(), v1.GetNodeId(), rec, promote); err != nil {
			c.log.Warn("refused conf change", "index", e.GetIndex(), "type", v1.GetType().String(), "member", fmt.Sprintf("%x", v1.GetNodeId()), "err", err)
			v1.NodeId = new(uint64(0))
			c.results = append(c.results, waiterResult{id: v1.GetId(), r: result{err: err}})
		} else {
			if err := c.applyMemberChange(b, v1, rec, promote); err != nil {
				return fmt.Errorf("entry %d: member records: %w", e.GetIndex(), err)
			}
			c.results = append(c.results, waiterResult{id: v1.GetId()})
		}
	} else {
		v2 := &raftpb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), v2); err != nil {
			return fmt.Errorf("entry %d: decode conf change v2: %w", e.GetIndex(), err)
		}
		cc = v2
	}
	c.confState = c.rn.ApplyConfChange(cc)
	if err := b.SaveConfState(c.confState); err != nil {
		return err
	}
	if err := c.sm.SetApplied(b, e.GetIndex()); err != nil {
		return fmt.Errorf("set applied %d: %w", e.GetIndex(), err)
	}
	c.log.Info("applied conf change", "index", e.GetIndex(), "voters", c.confState.GetVoters(), "learners", c.confState.GetLearners())
	return nil
}
