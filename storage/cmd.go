package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is the kind of a replicated command.
type Op uint8

// Operations of the v2 key space. The HTTP layer picks one from the request
// (the PUT dispatch table of the spec) before proposing.
const (
	OpSet           Op = 1 // PUT without conditions
	OpCreate        Op = 2 // PUT prevExist=false
	OpCreateInOrder Op = 3 // POST: child named after the new store index
	OpUpdate        Op = 4 // PUT prevExist=true
	OpCAS           Op = 5 // PUT with prevValue and/or prevIndex
	OpDelete        Op = 6 // DELETE without conditions (Dir, Recursive)
	OpCAD           Op = 7 // DELETE with prevValue and/or prevIndex
	OpExpire        Op = 8 // remove every node whose expiration ≤ Now (leader's clock)
	opMax           Op = 8
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpCreate:
		return "create"
	case OpCreateInOrder:
		return "createInOrder"
	case OpUpdate:
		return "update"
	case OpCAS:
		return "compareAndSwap"
	case OpDelete:
		return "delete"
	case OpCAD:
		return "compareAndDelete"
	case OpExpire:
		return "expire"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cmd is one replicated command. Everything apply needs is in it: time and
// randomness are stamped at the edge, never read during apply.
type Cmd struct {
	Op        Op
	Path      string // normalised: "/" or "/a/b", no trailing slash
	Value     string
	Dir       bool
	Recursive bool // OpDelete
	Refresh   bool // PUT refresh=true: keep the value, replace the TTL, notify no watcher
	PrevValue string
	PrevIndex uint64
	// Expiration is the absolute expiry in unix nanoseconds (0: permanent),
	// computed as arrival time + ttl by the member that took the request.
	Expiration int64
	// Now is a clock reading in unix nanoseconds: the leader's for
	// OpExpire (what has expired), the receiving member's arrival time for
	// the other writes (their events show remaining TTLs as of then, see
	// api.Event.At; 0 in entries written before it was stamped).
	Now int64
}

const cmdCodecVersion = 1

const (
	flagDir = 1 << iota
	flagRecursive
	flagRefresh
)

// ErrBadCmd reports a command record that cannot be decoded.
var ErrBadCmd = errors.New("storage: malformed command")

// AppendCmd appends the encoding of c to dst: a version byte, the op, a
// flags byte, then the fields as varints and length-prefixed strings.
func AppendCmd(dst []byte, c *Cmd) []byte {
	var flags byte
	if c.Dir {
		flags |= flagDir
	}
	if c.Recursive {
		flags |= flagRecursive
	}
	if c.Refresh {
		flags |= flagRefresh
	}
	dst = append(dst, cmdCodecVersion, byte(c.Op), flags)
	dst = appendString(dst, c.Path)
	dst = appendString(dst, c.Value)
	dst = appendString(dst, c.PrevValue)
	dst = binary.AppendUvarint(dst, c.PrevIndex)
	dst = binary.AppendVarint(dst, c.Expiration)
	dst = binary.AppendVarint(dst, c.Now)
	return dst
}

// DecodeCmd decodes a record written by AppendCmd.
func DecodeCmd(b []byte) (Cmd, error) {
	var c Cmd
	if len(b) < 3 {
		return c, fmt.Errorf("%w: %d bytes", ErrBadCmd, len(b))
	}
	if b[0] != cmdCodecVersion {
		return c, fmt.Errorf("%w: version %d", ErrBadCmd, b[0])
	}
	c.Op = Op(b[1])
	if c.Op == 0 || c.Op > opMax {
		return c, fmt.Errorf("%w: op %d", ErrBadCmd, b[1])
	}
	flags := b[2]
	c.Dir = flags&flagDir != 0
	c.Recursive = flags&flagRecursive != 0
	c.Refresh = flags&flagRefresh != 0
	r := reader{b: b[3:]}
	c.Path = r.string()
	c.Value = r.string()
	c.PrevValue = r.string()
	c.PrevIndex = r.uvarint()
	c.Expiration = r.varint()
	c.Now = r.varint()
	if r.err != nil {
		return Cmd{}, r.err
	}
	if len(r.b) != 0 {
		return Cmd{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCmd, len(r.b))
	}
	return c, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// reader decodes varints and strings, remembering the first error. Every
// record codec of the package uses it; corrupt is the sentinel its errors
// wrap (ErrBadCmd when nil).
type reader struct {
	b       []byte
	err     error
	corrupt error
}

// fail records the first error and stops further decoding.
func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		sentinel := r.corrupt
		if sentinel == nil {
			sentinel = ErrBadCmd
		}
		r.err = fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("string of %d bytes past the end", n)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
