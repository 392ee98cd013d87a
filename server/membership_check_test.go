package server

import (
	"testing"
	"time"

	"cairn/storage"
)

// TestConnectedToQuorumAfterAdd is etcd's second strict check for adding
// a voter: the new member counts as unreachable, so the voters reached for
// at least 5 s (the member itself included) must be a quorum of the
// voters plus one; learners count for nothing; one member may always grow.
func TestConnectedToQuorumAfterAdd(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	long, recent := now.Add(-time.Minute), now.Add(-time.Second)
	three := []storage.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	cases := []struct {
		name    string
		members []storage.Member
		active  map[uint64]time.Time
		want    bool
	}{
		{"one member", []storage.Member{{ID: 1}}, nil, true},
		{"one member and a learner", []storage.Member{{ID: 1}, {ID: 9, IsLearner: true}}, nil, true},
		{"two members, the other down", []storage.Member{{ID: 1}, {ID: 2}}, nil, false},
		{"two members, both up", []storage.Member{{ID: 1}, {ID: 2}}, map[uint64]time.Time{2: long}, true},
		{"three, all reached for long", three, map[uint64]time.Time{2: long, 3: long}, true},
		{"three, one down", three, map[uint64]time.Time{2: long}, false},
		{"three, one reached only a second ago", three, map[uint64]time.Time{2: long, 3: recent}, false},
		{"three and learners reached, one voter down", append(three, storage.Member{ID: 8, IsLearner: true}, storage.Member{ID: 9, IsLearner: true}),
			map[uint64]time.Time{2: long, 8: long, 9: long}, false},
		{"five, one down", []storage.Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}, {ID: 5}}, map[uint64]time.Time{2: long, 3: long, 4: long}, true},
		{"five, two down", []storage.Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}, {ID: 5}}, map[uint64]time.Time{2: long, 3: long}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			active := func(id uint64) time.Time { return tc.active[id] }
			if got := connectedToQuorumAfterAdd(tc.members, 1, active, now); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
