package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"cairn/api"
)

// Shared header values. Each slice has len == cap, so Header.Add on the same
// key appends to a fresh array and never writes into these.
var (
	hvJSON    = []string{"application/json"}
	hvText    = []string{"text/plain; charset=utf-8"}
	hvNosniff = []string{"nosniff"}
	hvZero    = []string{"0"}
)

// Canonical header keys used with direct map assignment.
const (
	hContentType   = "Content-Type"
	hContentLength = "Content-Length"
	hNosniff       = "X-Content-Type-Options"
)

// maxPooledBuf is the largest buffer returned to the pool; bigger ones (a
// huge recursive GET) are left to the garbage collector.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuf {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

// toAPIError turns any error from the layers below into the v2 error it is
// answered with: an *api.Error as is, anything else as 300 with the error's
// text as cause and index 0 (spec §7.1).
func toAPIError(err error) (e *api.Error, infra bool) {
	if errors.As(err, &e) && e != nil {
		return e, false
	}
	return api.NewError(api.EcodeRaftInternal, consensusCause(err), 0), true
}

// consensusCause is the 300 cause for an infrastructure error: bare context
// errors become etcd's texts, anything else keeps its own text.
func consensusCause(err error) string {
	s := err.Error()
	if strings.HasPrefix(s, "etcdserver: ") {
		return s
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "etcdserver: request timed out"
	case errors.Is(err, context.Canceled):
		return "etcdserver: request cancelled"
	}
	return s
}

// writeKeyError is THE one function that answers a /v2/keys request with an
// error: status from api's table, JSON body with its newline, Content-Type,
// X-Etcd-Index = the error's index, Content-Length; no X-Raft-* headers. A
// HEAD request gets the same headers without the body.
func (rt *router) writeKeyError(w http.ResponseWriter, r *http.Request, err error) {
	e, infra := toAPIError(err)
	if infra {
		rt.log.Warn("v2 request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	b := getBuf()
	e.AppendJSON(b)
	h := w.Header()
	delete(h, api.HeaderRaftIndex)
	delete(h, api.HeaderRaftTerm)
	h[hContentType] = hvJSON
	if e.Index == 0 {
		h[api.HeaderEtcdIndex] = hvZero
		h[hContentLength] = []string{strconv.Itoa(b.Len())}
	} else {
		v := numbers(e.Index, uint64(b.Len()))
		h[api.HeaderEtcdIndex] = v[0:1:1]
		h[hContentLength] = v[1:2:2]
	}
	w.WriteHeader(e.StatusCode())
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
	putBuf(b)
}

// writeEvent answers a /v2/keys request with an event (spec §2.3, §8):
// Content-Type, X-Etcd-Index, X-Raft-Index, X-Raft-Term, Content-Length.
// With noValue, set/create/update/compareAndSwap bodies carry the action
// only.
func (rt *router) writeEvent(w http.ResponseWriter, r *http.Request, ev *api.Event, status int, etcdIndex uint64, noValue bool) {
	st := rt.raft.Status()
	b := getBuf()
	if noValue && hidesNodes(ev.Action) {
		(&api.Event{Action: ev.Action}).AppendJSON(b, time.Time{})
	} else {
		ev.AppendJSON(b, rt.now())
	}
	v := numbers(etcdIndex, st.Commit, st.Term, uint64(b.Len()))
	h := w.Header()
	h[hContentType] = hvJSON
	h[api.HeaderEtcdIndex] = v[0:1:1]
	h[api.HeaderRaftIndex] = v[1:2:2]
	h[api.HeaderRaftTerm] = v[2:3:3]
	if r.Method == http.MethodHead || b.Len() > autoLengthMax {
		h[hContentLength] = v[3:4:4]
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
	putBuf(b)
}

// autoLengthMax is the largest body net/http frames with a Content-Length
// of its own when the handler returns without flushing (its
// bufferBeforeChunkingSize); larger ones, and HEAD answers, get ours.
// Leaving it to net/http keeps a response's header map at eight entries, the
// most a Go map holds before it grows a table: about 2 % of a GET's CPU.
const autoLengthMax = 2048

func hidesNodes(action string) bool {
	switch action {
	case api.ActionSet, api.ActionCreate, api.ActionUpdate, api.ActionCompareAndSwap:
		return true
	}
	return false
}

// numbers formats up to four unsigned integers as header values with two
// allocations in total (one string, one slice).
func numbers(ns ...uint64) []string {
	var scratch [4 * 20]byte
	var ends [4]int
	b := scratch[:0]
	for i, n := range ns {
		b = strconv.AppendUint(b, n, 10)
		ends[i] = len(b)
	}
	s := string(b)
	out := make([]string, len(ns))
	start := 0
	for i := range ns {
		out[i] = s[start:ends[i]]
		start = ends[i]
	}
	return out
}

// writeBody writes a complete non-streaming body with its Content-Type and
// Content-Length; HEAD gets the headers only.
func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType []string, body []byte) {
	h := w.Header()
	h[hContentType] = contentType
	h[hContentLength] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeMessage answers members/stats errors: {"message":"…"} without a
// trailing newline, application/json (spec §7.2).
func writeMessage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	writeBody(w, r, status, hvJSON, body)
}

// writeTextError is http.Error (text/plain, nosniff, body + "\n") with a
// Content-Length.
func writeTextError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header()[hNosniff] = hvNosniff
	writeBody(w, r, status, hvText, []byte(msg+"\n"))
}
