// Package httpapi serves etcd's v2 HTTP/JSON client API (shared/spec/v2-api.md)
// on a go-chi router: /v2/keys, /v2/members, /v2/stats/*, /v2/machines,
// /version, /health and /metrics.
//
// The package owns small consumer-side interfaces (Raft, Store, Cluster and
// the optional Watches, MembershipChanger and PeerStats) that other packages
// satisfy and main.go wires in. It imports storage only for the replicated
// command type (storage.Cmd, storage.Op); it never opens Pebble or touches
// raft.
//
// Concurrency: every method of the interfaces below may be called from many
// request goroutines at once and must be safe for that.
package httpapi

import (
	"context"
	"errors"
	"time"

	"cairn/api"
	"cairn/storage"
)

// Raft is the consensus member as the HTTP layer sees it. Satisfied by
// *consensus.Node (through a small adapter in main.go for Status).
type Raft interface {
	// Propose replicates c and waits until it is applied locally. A semantic
	// failure (key not found, compare failed, …) is returned as *api.Error.
	// Any other error is an infrastructure failure; its Error() text is used
	// as the cause of a 500 / errorCode 300 answer with index 0, so it
	// should be one of etcd's texts ("etcdserver: request timed out", …).
	// context.DeadlineExceeded and context.Canceled are mapped to etcd's
	// "request timed out" / "request cancelled" texts by this package.
	Propose(ctx context.Context, c storage.Cmd) (*api.Event, error)
	// ReadBarrier returns once the local state machine has applied
	// everything committed when it was called (raft ReadIndex).
	ReadBarrier(ctx context.Context) error
	// Status is a cheap snapshot of the member's raft state.
	Status() RaftStatus
}

// RaftStatus is the raft state the HTTP layer reports.
type RaftStatus struct {
	ID      uint64 // this member's ID
	Leader  uint64 // current leader's ID; 0 when there is none
	Term    uint64 // current term (X-Raft-Term)
	Commit  uint64 // committed raft index (X-Raft-Index)
	Applied uint64 // applied raft index
	// Role is the live raft role as raft.StateType.String() spells it:
	// "StateFollower", "StateCandidate", "StateLeader" or
	// "StatePreCandidate". The short forms "follower", "candidate",
	// "leader" and "pre-candidate"/"precandidate" are accepted too.
	Role string
	// LeaderSince is when the current leader became leader (or was first
	// seen by this member); zero when unknown.
	LeaderSince time.Time
}

// Store is the local replica of the v2 key tree. Satisfied by *storage.Tree
// (Stats through a small adapter in main.go).
type Store interface {
	// Get reads path (normalised: "/" or "/a/b") from the local replica.
	// Errors are store errors carrying the current store index.
	Get(path string, recursive, sorted bool) (*api.Event, *api.Error)
	// StoreIndex is the current store (etcd) index.
	StoreIndex() uint64
	// CountGet records one client GET for /v2/stats/store [D-7].
	CountGet(ok bool)
	// Stats returns the store counters of /v2/stats/store.
	Stats() StoreStats
}

// StoreStats are the first 15 counters of /v2/stats/store, in wire order.
// The 16th, "watchers", comes from Options.Watches.
type StoreStats struct {
	GetsSuccess             uint64
	GetsFail                uint64
	SetsSuccess             uint64
	SetsFail                uint64
	DeleteSuccess           uint64
	DeleteFail              uint64
	UpdateSuccess           uint64
	UpdateFail              uint64
	CreateSuccess           uint64
	CreateFail              uint64
	CompareAndSwapSuccess   uint64
	CompareAndSwapFail      uint64
	CompareAndDeleteSuccess uint64
	CompareAndDeleteFail    uint64
	ExpireCount             uint64
}

// Cluster is the membership as this member knows it.
type Cluster interface {
	// ClusterID is the cluster's ID (X-Etcd-Cluster-Id, lowercase hex).
	ClusterID() uint64
	// Members lists every member, in any order (the handlers sort them by
	// numeric ID). Member.ID is lowercase hex without padding.
	Members() []api.Member
	// Self is this member.
	Self() api.Member
}

// Watches is the seam for GET ?wait=true (the watch hub). When
// Options.Watches is nil, a watch request is answered with error 300.
type Watches interface {
	// Watch registers a watcher on key (normalised). sinceIndex 0 means
	// "the first event after the current store index". A sinceIndex older
	// than the retained history fails with *api.Error 401 carrying the
	// current store index. stream is false only for a long poll, whose
	// watcher ends after its first event.
	Watch(key string, recursive, stream bool, sinceIndex uint64) (Watcher, *api.Error)
	// Count is the number of watchers currently registered ("watchers" in
	// /v2/stats/store).
	Count() int
}

// Watcher is one registered watch, consumed by the one request goroutine
// serving it.
type Watcher interface {
	// Next returns the next matching event without waiting, in store-index
	// order: (ev, nil) an event; (nil, nil) nothing yet — wait on Ready;
	// (nil, err) the watch is over. An *api.Error end (401: the watcher
	// fell behind further than the history reaches, its Index the store
	// index to resume from) is shown to SSE clients as a final error
	// event; any other error ends the response silently.
	Next() (*api.Event, error)
	// Ready is signalled whenever Next may have something new.
	Ready() <-chan struct{}
	// StartIndex is the store index when the watch was registered
	// (X-Etcd-Index of the watch response).
	StartIndex() uint64
	// Remove unregisters the watcher; it is called exactly once when the
	// response ends and must be safe after the watch ended on its own.
	Remove()
}

// MembershipChanger performs /v2/members reconfigurations. Optional: when
// Options.Members is nil, valid POST/PUT/DELETE requests answer 500
// {"message":"Internal Server Error"} after the checks that need no change.
//
// Errors are mapped by errors.Is against ErrMemberIDExists, ErrPeerURLExists,
// ErrMemberNotFound, ErrMemberRemoved, ErrMemberNotLearner,
// ErrLearnerNotReady and ErrTooManyLearners, or by an identical Error() text anywhere in the
// wrapped chain, so an implementation may define its own sentinels with
// etcd's texts. Anything else is a 500.
type MembershipChanger interface {
	// AddMember adds a member with the given peer URLs (validated, sorted),
	// a learner (non-voting member) when isLearner is set, and returns it
	// as /v2/members shows it.
	AddMember(ctx context.Context, peerURLs []string, isLearner bool) (api.Member, error)
	// UpdateMember replaces the peer URLs of member id.
	UpdateMember(ctx context.Context, id uint64, peerURLs []string) error
	// RemoveMember removes member id.
	RemoveMember(ctx context.Context, id uint64) error
	// PromoteMember makes learner id a voter and returns it as
	// /v2/members shows it afterwards.
	PromoteMember(ctx context.Context, id uint64) (api.Member, error)
}

// Membership errors with etcd's texts.
var (
	ErrMemberIDExists   = errors.New("membership: ID exists")
	ErrPeerURLExists    = errors.New("membership: peerURL exists")
	ErrMemberNotFound   = errors.New("membership: ID not found")
	ErrMemberRemoved    = errors.New("membership: ID removed")
	ErrMemberNotLearner = errors.New("etcdserver: can only promote a learner member")
	ErrLearnerNotReady  = errors.New("etcdserver: can only promote a learner member which is in sync with leader")
	ErrTooManyLearners  = errors.New("etcdserver: too many learner members in cluster")
)

// PeerStats supplies the transport counters of /v2/stats/self and the
// follower table of /v2/stats/leader. Optional: when nil, the counters are 0
// and "followers" is {}.
type PeerStats interface {
	SelfStats() SelfStats
	// Followers is keyed by the follower's hex ID; only used on the leader.
	Followers() map[string]FollowerStats
}

// SelfStats are the transport counters of /v2/stats/self. Rates that are 0
// are left out of the body, as etcd does.
type SelfStats struct {
	RecvAppendRequestCnt uint64
	RecvPkgRate          float64
	RecvBandwidthRate    float64
	SendAppendRequestCnt uint64
	SendPkgRate          float64
	SendBandwidthRate    float64
}

// FollowerStats is one entry of /v2/stats/leader "followers".
type FollowerStats struct {
	Latency struct {
		Current           float64 `json:"current"`
		Average           float64 `json:"average"`
		StandardDeviation float64 `json:"standardDeviation"`
		Minimum           float64 `json:"minimum"`
		Maximum           float64 `json:"maximum"`
	} `json:"latency"`
	Counts struct {
		Fail    uint64 `json:"fail"`
		Success uint64 `json:"success"`
	} `json:"counts"`
}
