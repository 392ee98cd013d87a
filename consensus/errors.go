package consensus

import "errors"

// Infrastructure errors of the consensus layer. The HTTP layer maps every one
// of them to v2 error 300 ("Raft Internal Error") with Error() as the cause,
// so the texts are etcd's own, byte for byte, where etcd has one.
var (
	// ErrTimeout: the context's deadline passed before the proposal or read
	// completed. The outcome of a proposal is unknown: it may still commit.
	ErrTimeout = errors.New("etcdserver: request timed out")
	// ErrTimeoutLeaderFail is ErrTimeout (errors.Is matches both) when the
	// request was waiting across a leader election, as etcd reports it.
	ErrTimeoutLeaderFail = &wrapped{msg: "etcdserver: request timed out, possibly due to previous leader failure", is: ErrTimeout}
	// ErrTimeoutConnectionLost is ErrTimeout (errors.Is matches both) when
	// the member could not reach what the request needed since it began: a
	// leader without a connected quorum, or a member without its leader.
	ErrTimeoutConnectionLost = &wrapped{msg: "etcdserver: request timed out, possibly due to connection lost", is: ErrTimeout}
	// ErrCanceled: the caller's context was cancelled (client went away).
	// The outcome of a proposal is unknown.
	ErrCanceled = errors.New("etcdserver: request cancelled")
	// ErrStopped: the member stopped (Stop, or a storage failure; see Err).
	ErrStopped = errors.New("etcdserver: server stopped")
	// ErrNoLeader: the member knows of no leader. Propose and ReadBarrier do
	// not return it — they wait for a leader until the context is done, as
	// etcd does — but callers that must not wait (health checks) can use it.
	ErrNoLeader = errors.New("etcdserver: no leader")
	// ErrNotLeader: the request can only be served by the leader (a
	// learner's promotion), and this member is not the leader.
	ErrNotLeader = errors.New("etcdserver: not leader")
	// ErrProposalDropped: raft refused the proposal (a leadership transfer is
	// in progress, or the uncommitted log is over its size limit). The
	// proposal was not appended; it is safe to retry.
	ErrProposalDropped = errors.New("raft proposal dropped")
)

// wrapped is an error with its own text that also matches a sentinel.
type wrapped struct {
	msg string
	is  error
}

func (w *wrapped) Error() string        { return w.msg }
func (w *wrapped) Is(target error) bool { return target == w.is }
