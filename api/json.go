package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// MarshalJSON renders the node in etcd's field order. The remaining TTL is
// computed against the wall clock at encoding time, as etcd does.
func (n *Node) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	n.appendJSON(&b, time.Now())
	return b.Bytes(), nil
}

// AppendJSON appends the compact JSON of n to b with the TTL computed as of now.
func (n *Node) AppendJSON(b *bytes.Buffer, now time.Time) { n.appendJSON(b, now) }

func (n *Node) appendJSON(b *bytes.Buffer, now time.Time) {
	b.WriteByte('{')
	first := true
	field := func(name string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteString(`":`)
	}
	if n.Key != "" {
		field("key")
		writeString(b, n.Key)
	}
	if !n.Dir && !n.HideValue {
		field("value")
		writeString(b, n.Value)
	}
	if n.Dir {
		field("dir")
		b.WriteString("true")
	}
	if n.Expiration != 0 {
		field("expiration")
		b.WriteByte('"')
		b.WriteString(time.Unix(0, n.Expiration).UTC().Format(time.RFC3339Nano))
		b.WriteByte('"')
		if !n.HideTTL {
			if ttl := n.TTL(now); ttl != 0 {
				field("ttl")
				b.WriteString(strconv.FormatInt(ttl, 10))
			}
		}
	}
	if len(n.Nodes) > 0 {
		field("nodes")
		b.WriteByte('[')
		for i, c := range n.Nodes {
			if i > 0 {
				b.WriteByte(',')
			}
			c.appendJSON(b, now)
		}
		b.WriteByte(']')
	}
	if n.ModifiedIndex != 0 {
		field("modifiedIndex")
		b.WriteString(strconv.FormatUint(n.ModifiedIndex, 10))
	}
	if n.CreatedIndex != 0 {
		field("createdIndex")
		b.WriteString(strconv.FormatUint(n.CreatedIndex, 10))
	}
	b.WriteByte('}')
}

// UnmarshalJSON reads a node as etcd writes it (used by clients and tests).
func (n *Node) UnmarshalJSON(data []byte) error {
	var w struct {
		Key           string     `json:"key"`
		Value         *string    `json:"value"`
		Dir           bool       `json:"dir"`
		Expiration    *time.Time `json:"expiration"`
		Nodes         []*Node    `json:"nodes"`
		ModifiedIndex uint64     `json:"modifiedIndex"`
		CreatedIndex  uint64     `json:"createdIndex"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*n = Node{Key: w.Key, Dir: w.Dir, Nodes: w.Nodes, ModifiedIndex: w.ModifiedIndex, CreatedIndex: w.CreatedIndex}
	if w.Value != nil {
		n.Value = *w.Value
	} else if !w.Dir {
		n.HideValue = true
	}
	if w.Expiration != nil {
		n.Expiration = w.Expiration.UnixNano()
	}
	return nil
}

// AppendJSON appends the event's compact JSON and a trailing newline to b,
// exactly as a /v2/keys response or watch notification carries it. TTLs are
// computed as of e.At when it is set, else as of now.
func (e *Event) AppendJSON(b *bytes.Buffer, now time.Time) {
	if e.At != 0 {
		now = time.Unix(0, e.At)
	}
	b.WriteString(`{"action":`)
	writeString(b, e.Action)
	if e.Node != nil {
		b.WriteString(`,"node":`)
		e.Node.appendJSON(b, now)
	}
	if e.PrevNode != nil {
		b.WriteString(`,"prevNode":`)
		e.PrevNode.appendJSON(b, now)
	}
	b.WriteString("}\n")
}

// MarshalJSON renders the event like AppendJSON, without the newline.
func (e *Event) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	e.AppendJSON(&b, time.Now())
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeString writes s as a JSON string with encoding/json's escaping rules
// (HTML-safe, U+2028/U+2029 escaped, invalid UTF-8 replaced by U+FFFD).
func writeString(b *bytes.Buffer, s string) {
	if isPlain(s) {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc)
}

// isPlain reports whether s needs no escaping at all (the common case).
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

// plainByte marks the bytes encoding/json copies unchanged into a string:
// printable ASCII but for '"', '\\' and the HTML-sensitive '<', '>', '&'.
// One table load per byte; a value's bytes are checked on every read.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
