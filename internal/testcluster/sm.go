package testcluster

import (
	"fmt"

	"cairn/api"
	"cairn/storage"
)

// recordingSM is a member's key tree that reports, for every raft index it
// applies, a description of what it applied there, so that the checker can
// compare the applies of every member and incarnation at each index.
type recordingSM struct {
	*storage.Tree
	record  func(index uint64, digest string)
	corrupt func(index uint64, c *storage.Cmd) // nil but in the tests of the checks
}

func (s *recordingSM) Apply(b *storage.Batch, raftIndex uint64, c *storage.Cmd) (*api.Event, *api.Error, error) {
	s.record(raftIndex, fmt.Sprintf("cmd %+v", *c))
	if s.corrupt != nil {
		cc := *c
		s.corrupt(raftIndex, &cc)
		c = &cc
	}
	return s.Tree.Apply(b, raftIndex, c)
}

func (s *recordingSM) ApplyExpire(b *storage.Batch, raftIndex uint64, now int64) ([]*api.Event, error) {
	s.record(raftIndex, fmt.Sprint("expire ", now))
	return s.Tree.ApplyExpire(b, raftIndex, now)
}

func (s *recordingSM) SetApplied(b *storage.Batch, raftIndex uint64) error {
	// An empty entry or a conf change. They are alike on every member only
	// if the entries are, which the commands around them show; a command
	// at this index elsewhere is a divergence.
	s.record(raftIndex, "no command")
	return s.Tree.SetApplied(b, raftIndex)
}
