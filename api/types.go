// Package api holds the v2 wire types shared by the server and its clients:
// events, nodes, errors with their one code→status table, and header names.
// It imports only the standard library.
package api

import (
	"math"
	"time"
)

// Header names of the v2 API. Go canonicalises header keys, so the cluster ID
// travels as X-Etcd-Cluster-Id on the wire, as etcd's does.
const (
	HeaderEtcdIndex = "X-Etcd-Index"
	HeaderRaftIndex = "X-Raft-Index"
	HeaderRaftTerm  = "X-Raft-Term"
	HeaderClusterID = "X-Etcd-Cluster-Id"
)

// Action names of v2 events, spelled exactly as on the wire.
const (
	ActionGet              = "get"
	ActionSet              = "set"
	ActionCreate           = "create"
	ActionUpdate           = "update"
	ActionCompareAndSwap   = "compareAndSwap"
	ActionDelete           = "delete"
	ActionCompareAndDelete = "compareAndDelete"
	ActionExpire           = "expire"
)

// Event is the body of every successful /v2/keys response and of every
// watch notification. Field order matches etcd's output byte for byte.
type Event struct {
	Action   string `json:"action"`
	Node     *Node  `json:"node,omitempty"`
	PrevNode *Node  `json:"prevNode,omitempty"`

	// Refresh marks a TTL refresh: it takes a store index but is never shown
	// to watchers. It is not part of the wire format.
	Refresh bool `json:"-"`
	// Index is the store index the event took (0 for gets). Not on the wire.
	Index uint64 `json:"-"`
	// At is when the write arrived at the member that took it, in unix
	// nanoseconds (0: unknown; set only on events with a TTL). The
	// remaining TTLs of the event's nodes are shown as of then, as etcd
	// shows them: its history keeps each event as the write answered it,
	// so a watch replayed minutes later gets the same JSON.
	At int64 `json:"-"`
}

// HasTTL reports whether a node of the event has an expiration.
func (e *Event) HasTTL() bool {
	return e.Node != nil && e.Node.Expiration != 0 || e.PrevNode != nil && e.PrevNode.Expiration != 0
}

// Node is a file or a directory. Expiration is kept as unix nanoseconds (0 =
// permanent) and rendered by MarshalJSON together with the remaining TTL.
type Node struct {
	Key           string
	Value         string
	Dir           bool
	Expiration    int64 // unix nanoseconds; 0 means no TTL
	Nodes         []*Node
	ModifiedIndex uint64
	CreatedIndex  uint64

	// HideValue leaves "value" out (delete, compareAndDelete, expire events).
	HideValue bool
	// HideTTL leaves "ttl" out even when the node has an expiration (expire
	// events, whose remaining TTL is ≤ 0 by definition).
	HideTTL bool
}

// TTL returns the remaining time to live in whole seconds, rounded up, as of
// now; 0 when the node has no expiration. It may be negative for a node read
// after its expiration and before the expiry entry removed it.
func (n *Node) TTL(now time.Time) int64 {
	if n.Expiration == 0 {
		return 0
	}
	d := n.Expiration - now.UnixNano()
	s := d / int64(time.Second)
	if d%int64(time.Second) > 0 {
		s++
	}
	return s
}

// Clone returns a copy of n without its children.
func (n *Node) Clone() *Node {
	c := *n
	c.Nodes = nil
	return &c
}

// MaxTTLSeconds is the largest TTL that fits int64 nanoseconds from now on
// [D-6]: anything larger is rejected with error 202.
const MaxTTLSeconds = math.MaxInt64 / int64(time.Second)

// Member is one member of the cluster as /v2/members shows it.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	// IsLearner marks a non-voting member (a Cairn extension of the v2
	// API). Left out for voters, so their bodies stay etcd's byte for byte.
	IsLearner bool `json:"isLearner,omitempty"`
}

// MemberList is the body of GET /v2/members.
type MemberList struct {
	Members []Member `json:"members"`
}

// Version is the body of /version.
type Version struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
}
