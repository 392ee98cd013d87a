// Package lincheck checks histories of single-key v2 operations for
// linearizability with porcupine (DESIGN §1.8, layer 5).
//
// The model covers get, set, compare-and-swap by prevValue, create
// (prevExist=false) and delete of one key, partitioned by key. Besides
// values it tracks each key's modifiedIndex: a read or a write that reports
// a node or a previous node must agree with the index the model knows, and a
// write's new index must exceed the key's last one.
//
// A write whose outcome is unknown (a timeout, a lost connection) is recorded
// with Output.Unknown and a Return later than every other operation's: the
// model applies it without checking anything, and because the checker may
// place it after every other operation, that also covers "never applied".
// A client that saw an unknown outcome continues under a new ClientId.
// Failed reads are not recorded at all.
package lincheck

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"

	"cairn/api"
)

// Kind is the kind of a single-key operation.
type Kind uint8

// The operations the model knows.
const (
	Get    Kind = iota + 1 // GET (quorum=true), or a local GET on a quiescent cluster
	Set                    // PUT value
	CAS                    // PUT value with prevValue
	Create                 // PUT value with prevExist=false
	Delete                 // DELETE
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Set:
		return "set"
	case CAS:
		return "cas"
	case Create:
		return "create"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// IsWrite reports whether operations of kind k change the key space.
func (k Kind) IsWrite() bool { return k != Get }

// Input is an operation as called.
type Input struct {
	Kind      Kind
	Key       string
	Value     string // Set, CAS, Create
	PrevValue string // CAS
}

// Output is an operation's result.
type Output struct {
	// Unknown: a write whose outcome the client could not learn. Nothing
	// else is set.
	Unknown bool
	// Err is the v2 error code (100 key not found, 101 compare failed,
	// 105 key already exists), 0 on success.
	Err int
	// Found: for a get, the key exists and Value/Index are its value and
	// modifiedIndex; for a successful write, the answer carried a
	// prevNode, and Value/PrevIndex are its value and modifiedIndex.
	Found     bool
	Value     string
	PrevIndex uint64
	// Index is the modifiedIndex of the node in the answer: the key's for
	// a get, the write's own for a successful write (a delete's too).
	Index uint64
}

// State is one key's state in the model. Index 0 means unknown: the key
// was last changed by a write of unknown outcome, or never changed.
type State struct {
	Exists bool
	Value  string
	Index  uint64
}

// Model is the porcupine model of the v2 key space for single-key
// operations, partitioned by key.
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return State{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(State), input.(Input), output.(Output))
	},
	Equal: func(a, b any) bool { return a.(State) == b.(State) },
	DescribeOperation: func(input, output any) string {
		return Describe(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string {
		s := state.(State)
		if !s.Exists {
			if s.Index == 0 {
				return "absent"
			}
			return fmt.Sprintf("absent @%d", s.Index)
		}
		if s.Index == 0 {
			return fmt.Sprintf("%q @?", s.Value)
		}
		return fmt.Sprintf("%q @%d", s.Value, s.Index)
	},
	DescribeOperationMetadata: func(info any) string {
		if s, ok := info.(string); ok {
			return s
		}
		return ""
	},
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(Input).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// indexOK: a known index must match what the operation saw.
func indexOK(known, seen uint64) bool { return known == 0 || known == seen }

// prevOK checks a successful write's prevNode against the state.
func prevOK(s State, out Output) bool {
	if out.Found != s.Exists {
		return false
	}
	return !out.Found || (out.Value == s.Value && indexOK(s.Index, out.PrevIndex))
}

// newer: a write's index must exceed the key's last known index.
func newer(s State, out Output) bool { return out.Index != 0 && out.Index > s.Index }

func step(s State, in Input, out Output) (bool, State) {
	if out.Unknown {
		// Applied, with whatever effect it has on this state; the new
		// index is not known.
		switch in.Kind {
		case Set:
			return true, State{Exists: true, Value: in.Value}
		case CAS:
			if s.Exists && s.Value == in.PrevValue {
				return true, State{Exists: true, Value: in.Value}
			}
			return true, s
		case Create:
			if !s.Exists {
				return true, State{Exists: true, Value: in.Value}
			}
			return true, s
		case Delete:
			if s.Exists {
				return true, State{}
			}
			return true, s
		}
		return false, s // an unknown read is never recorded
	}
	switch in.Kind {
	case Get:
		switch {
		case out.Err == 0 && out.Found:
			if !s.Exists || s.Value != out.Value || !indexOK(s.Index, out.Index) {
				return false, s
			}
			return true, State{Exists: true, Value: s.Value, Index: out.Index}
		case out.Err == api.EcodeKeyNotFound:
			return !s.Exists, s
		}
	case Set:
		if out.Err == 0 && prevOK(s, out) && newer(s, out) {
			return true, State{Exists: true, Value: in.Value, Index: out.Index}
		}
	case CAS:
		switch out.Err {
		case 0:
			if s.Exists && s.Value == in.PrevValue && prevOK(s, out) && newer(s, out) {
				return true, State{Exists: true, Value: in.Value, Index: out.Index}
			}
		case api.EcodeTestFailed:
			return s.Exists && s.Value != in.PrevValue, s
		case api.EcodeKeyNotFound:
			return !s.Exists, s
		}
	case Create:
		switch out.Err {
		case 0:
			if !s.Exists && !out.Found && newer(s, out) {
				return true, State{Exists: true, Value: in.Value, Index: out.Index}
			}
		case api.EcodeNodeExist:
			return s.Exists, s
		}
	case Delete:
		switch out.Err {
		case 0:
			if s.Exists && prevOK(s, out) && newer(s, out) {
				return true, State{Index: out.Index}
			}
		case api.EcodeKeyNotFound:
			return !s.Exists, s
		}
	}
	return false, s
}

// Describe renders an operation for the visualisation and for logs.
func Describe(in Input, out Output) string {
	var call string
	switch in.Kind {
	case Get:
		call = fmt.Sprintf("get(%s)", in.Key)
	case Set, Create:
		call = fmt.Sprintf("%s(%s, %q)", in.Kind, in.Key, in.Value)
	case CAS:
		call = fmt.Sprintf("cas(%s, %q→%q)", in.Key, in.PrevValue, in.Value)
	case Delete:
		call = fmt.Sprintf("delete(%s)", in.Key)
	default:
		call = fmt.Sprintf("%s(%s)", in.Kind, in.Key)
	}
	switch {
	case out.Unknown:
		return call + " → unknown"
	case out.Err != 0:
		return fmt.Sprintf("%s → error %d", call, out.Err)
	case in.Kind == Get && out.Found:
		return fmt.Sprintf("%s → %q @%d", call, out.Value, out.Index)
	case out.Found:
		return fmt.Sprintf("%s → ok @%d (prev %q @%d)", call, out.Index, out.Value, out.PrevIndex)
	default:
		return fmt.Sprintf("%s → ok @%d", call, out.Index)
	}
}
