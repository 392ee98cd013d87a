package lincheck

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"cairn/api"
	"cairn/client"
)

// History records operations with a monotonic clock. It is safe for
// concurrent use; each Client records its own operations.
type History struct {
	start time.Time

	mu       sync.Mutex
	ops      []porcupine.Operation
	clients  int
	unknown  int
	dropped  int
	failures int // definite failures (100, 101, 105)
}

// NewHistory starts an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// now is nanoseconds since the history started, on the monotonic clock.
func (h *History) now() int64 { return int64(time.Since(h.start)) }

// pendingReturn marks an unknown outcome until Operations fixes it.
const pendingReturn = math.MaxInt64

func (h *History) newClientID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.clients
	h.clients++
	return id
}

// Record adds one completed operation (for recorders not built on
// Client). An out.Unknown write gets its Return fixed by Operations; a
// read must not be Unknown (drop it instead).
func (h *History) Record(clientID int, in Input, call int64, out Output, ret int64, meta string) {
	if out.Unknown {
		ret = pendingReturn
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case out.Unknown:
		h.unknown++
	case out.Err != 0:
		h.failures++
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
}

// Stats are a history's counts.
type Stats struct {
	Ops      int // recorded operations
	Unknown  int // writes of unknown outcome (among Ops)
	Failures int // definite failures: 100, 101, 105 (among Ops)
	Dropped  int // operations not recorded: failed reads, writes never sent
	Clients  int // ClientIds used
}

func (s Stats) String() string {
	return fmt.Sprintf("%d operations (%d definite failures, %d unknown outcomes), %d not recorded, %d client IDs",
		s.Ops, s.Failures, s.Unknown, s.Dropped, s.Clients)
}

// Stats counts what was recorded so far.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Ops: len(h.ops), Unknown: h.unknown, Failures: h.failures, Dropped: h.dropped, Clients: h.clients}
}

// Operations returns a copy of the history in which every write of unknown
// outcome returns after every other operation.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	var last int64
	for _, op := range ops {
		last = max(last, op.Call)
		if op.Return != pendingReturn {
			last = max(last, op.Return)
		}
	}
	for i := range ops {
		if ops[i].Return == pendingReturn {
			ops[i].Return = last + 1
		}
	}
	return ops
}

// Client is one sequential client of a history: its operations never
// overlap, so it must not be used from two goroutines at once. After a
// write of unknown outcome it continues under a new ClientId.
type Client struct {
	h  *History
	id int
}

// NewClient starts a client with a fresh ClientId.
func (h *History) NewClient() *Client { return &Client{h: h, id: h.newClientID()} }

// ID is the client's current ClientId.
func (c *Client) ID() int { return c.id }

// Outcome says what became of an operation.
type Outcome int

// Outcomes of Client.Do.
const (
	Recorded Outcome = iota // a definite answer, recorded
	Unknown                 // a write of unknown outcome, recorded as such
	Dropped                 // not recorded: a failed read, or a write that was never sent
)

// Do performs in through kv (one member's client) and records it; meta is
// shown with the operation in the visualisation (e.g. the member's name).
// ctx bounds the request.
func (c *Client) Do(ctx context.Context, kv *client.Client, in Input, meta string) (Output, Outcome) {
	call := c.h.now()
	resp, err := perform(ctx, kv, in)
	ret := c.h.now()
	out, outcome := Classify(in, resp, err)
	switch outcome {
	case Dropped:
		c.h.mu.Lock()
		c.h.dropped++
		c.h.mu.Unlock()
		return out, outcome
	case Unknown:
		meta = fmt.Sprintf("%s: %v", meta, err)
	}
	c.h.Record(c.id, in, call, out, ret, meta)
	if outcome == Unknown {
		c.id = c.h.newClientID()
	}
	return out, outcome
}

func perform(ctx context.Context, kv *client.Client, in Input) (*client.Response, error) {
	switch in.Kind {
	case Get:
		return kv.Get(ctx, in.Key, client.GetOptions{Quorum: true})
	case Set:
		return kv.Set(ctx, in.Key, in.Value, client.SetOptions{})
	case CAS:
		return kv.Set(ctx, in.Key, in.Value, client.SetOptions{PrevValue: in.PrevValue})
	case Create:
		no := false
		return kv.Set(ctx, in.Key, in.Value, client.SetOptions{PrevExist: &no})
	case Delete:
		return kv.Delete(ctx, in.Key, client.DeleteOptions{})
	}
	return nil, fmt.Errorf("lincheck: unknown operation kind %d", in.Kind)
}

// Classify turns a client answer into an Output and says whether it is
// definite. A read that failed for any reason other than "key not found"
// is dropped; so is a write whose connection was never established (it was
// not sent). A write answered with a store error (100, 101, 105, …) is
// definite: the entry was applied and failed. Any other write error — a
// timeout (300), a lost connection, the client's deadline — is unknown.
func Classify(in Input, resp *client.Response, err error) (Output, Outcome) {
	if err == nil {
		if resp == nil || resp.Event == nil || resp.Event.Node == nil {
			if in.Kind.IsWrite() {
				return Output{Unknown: true}, Unknown
			}
			return Output{}, Dropped
		}
		ev := resp.Event
		out := Output{Index: ev.Node.ModifiedIndex}
		if in.Kind == Get {
			out.Found, out.Value = true, ev.Node.Value
			return out, Recorded
		}
		if ev.PrevNode != nil {
			out.Found, out.Value, out.PrevIndex = true, ev.PrevNode.Value, ev.PrevNode.ModifiedIndex
		}
		return out, Recorded
	}
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code < api.EcodeRaftInternal && ae.Code >= api.EcodeKeyNotFound {
		// A store error: the request reached the state machine (or, for
		// a read, the replica) and got a definite answer.
		if in.Kind == Get && ae.Code != api.EcodeKeyNotFound {
			return Output{}, Dropped
		}
		return Output{Err: ae.Code}, Recorded
	}
	if in.Kind == Get {
		return Output{}, Dropped
	}
	if notSent(err) {
		return Output{}, Dropped
	}
	return Output{Unknown: true}, Unknown
}

// notSent reports whether err says the connection was never made (dial
// refused or timed out), so the request never left the client.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
