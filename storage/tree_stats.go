package storage

import "sync/atomic"

// StoreStats holds the counters of /v2/stats/store in their wire order
// (the HTTP layer appends "watchers"). They are per member and in memory:
// writes are counted as they are applied, on every member, failures as
// failures [D-7]; reads are counted by the member that served them.
type StoreStats struct {
	GetsSuccess             uint64 `json:"getsSuccess"`
	GetsFail                uint64 `json:"getsFail"`
	SetsSuccess             uint64 `json:"setsSuccess"`
	SetsFail                uint64 `json:"setsFail"`
	DeleteSuccess           uint64 `json:"deleteSuccess"`
	DeleteFail              uint64 `json:"deleteFail"`
	UpdateSuccess           uint64 `json:"updateSuccess"`
	UpdateFail              uint64 `json:"updateFail"`
	CreateSuccess           uint64 `json:"createSuccess"`
	CreateFail              uint64 `json:"createFail"`
	CompareAndSwapSuccess   uint64 `json:"compareAndSwapSuccess"`
	CompareAndSwapFail      uint64 `json:"compareAndSwapFail"`
	CompareAndDeleteSuccess uint64 `json:"compareAndDeleteSuccess"`
	CompareAndDeleteFail    uint64 `json:"compareAndDeleteFail"`
	ExpireCount             uint64 `json:"expireCount"`
}

// Counter slots, in StoreStats order.
const (
	treeStatGetsSuccess = iota
	treeStatGetsFail
	treeStatSetsSuccess
	treeStatSetsFail
	treeStatDeleteSuccess
	treeStatDeleteFail
	treeStatUpdateSuccess
	treeStatUpdateFail
	treeStatCreateSuccess
	treeStatCreateFail
	treeStatCASSuccess
	treeStatCASFail
	treeStatCADSuccess
	treeStatCADFail
	treeStatExpireCount
	treeStatCount
)

type treeCounters [treeStatCount]atomic.Uint64

// countWrite counts one applied write of op; POST counts as a create.
func (c *treeCounters) countWrite(op Op, ok bool) {
	var slot int
	switch op {
	case OpSet:
		slot = treeStatSetsSuccess
	case OpCreate, OpCreateInOrder:
		slot = treeStatCreateSuccess
	case OpUpdate:
		slot = treeStatUpdateSuccess
	case OpCAS:
		slot = treeStatCASSuccess
	case OpDelete:
		slot = treeStatDeleteSuccess
	case OpCAD:
		slot = treeStatCADSuccess
	default:
		return
	}
	if !ok {
		slot++ // every *Fail slot follows its *Success slot
	}
	c[slot].Add(1)
}

func (c *treeCounters) countExpired(n int) {
	if n > 0 {
		c[treeStatExpireCount].Add(uint64(n))
	}
}

// CountGet counts one read served by the HTTP layer.
func (t *Tree) CountGet(ok bool) {
	if ok {
		t.stats[treeStatGetsSuccess].Add(1)
	} else {
		t.stats[treeStatGetsFail].Add(1)
	}
}

// Stats returns a snapshot of the store counters.
func (t *Tree) Stats() StoreStats {
	c := &t.stats
	return StoreStats{
		GetsSuccess:             c[treeStatGetsSuccess].Load(),
		GetsFail:                c[treeStatGetsFail].Load(),
		SetsSuccess:             c[treeStatSetsSuccess].Load(),
		SetsFail:                c[treeStatSetsFail].Load(),
		DeleteSuccess:           c[treeStatDeleteSuccess].Load(),
		DeleteFail:              c[treeStatDeleteFail].Load(),
		UpdateSuccess:           c[treeStatUpdateSuccess].Load(),
		UpdateFail:              c[treeStatUpdateFail].Load(),
		CreateSuccess:           c[treeStatCreateSuccess].Load(),
		CreateFail:              c[treeStatCreateFail].Load(),
		CompareAndSwapSuccess:   c[treeStatCASSuccess].Load(),
		CompareAndSwapFail:      c[treeStatCASFail].Load(),
		CompareAndDeleteSuccess: c[treeStatCADSuccess].Load(),
		CompareAndDeleteFail:    c[treeStatCADFail].Load(),
		ExpireCount:             c[treeStatExpireCount].Load(),
	}
}
