package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cairn/api"
)

const errNoWatches = constError("etcdserver: watches are not available on this member")

// DefaultSSEHeartbeat is how often an idle Server-Sent Events stream gets a
// comment line, so proxies and browsers keep the connection open.
const DefaultSSEHeartbeat = 15 * time.Second

// causeBadLastEventID is the cause of a 203 for a Last-Event-ID that is not
// an unsigned decimal store index.
const causeBadLastEventID = `invalid value for "Last-Event-ID"`

var (
	hvEventStream = []string{"text/event-stream"}
	hvNoCache     = []string{"no-cache"}
	sseHeartbeat  = []byte(": ping\n\n")
)

// serveWatch answers GET ?wait=true (spec §5). quorum is ignored [D-9].
//
// Three renderings of the same watcher:
//   - long poll (default): the first matching event, then the response ends;
//   - stream=true: every matching event, one JSON object per line;
//   - Server-Sent Events, when the request accepts text/event-stream: every
//     matching event as "id: <store index>", "event: <action>", "data:
//     <the long-poll JSON>", a ": ping" comment every Options.SSEHeartbeat,
//     and resumption from Last-Event-ID + 1 (which takes precedence over
//     waitIndex). SSE always streams, whatever stream says.
//
// The headers are flushed at once. The response ends when the one event is
// written (long poll), when the hub ends the watcher (stream: cleanly, as
// the spec says for a dropped stream watcher; SSE: after a final "error"
// event carrying the v2 error JSON, whose id is the store index to resume
// from), or when the client goes away.
func (rt *router) serveWatch(w http.ResponseWriter, r *http.Request, kr *keyRequest) {
	setRoute(w, routeWatch)
	if rt.opt.Watches == nil {
		rt.writeKeyError(w, r, errNoWatches)
		return
	}
	sse := acceptsEventStream(r)
	since := kr.waitIndex
	if sse {
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil || id == ^uint64(0) {
				rt.writeKeyError(w, r, api.NewError(api.EcodeIndexNaN, causeBadLastEventID, 0))
				return
			}
			since = id + 1
		}
	}
	stream := kr.stream || sse
	wa, e := rt.opt.Watches.Watch(kr.key, kr.recursive, stream, since)
	if e != nil {
		if sse && e.Code == api.EcodeEventIndexCleared {
			// EventSource cannot read an error response's body; a final
			// error event can be read, and its id resumes after it.
			rt.startWatchResponse(w, true, e.Index)
			b := getBuf()
			appendSSEError(b, e)
			_, _ = w.Write(b.Bytes())
			putBuf(b)
			return
		}
		rt.writeKeyError(w, r, e)
		return
	}
	if sse && rt.handOffSSE(w, r, wa) {
		return // a stream goroutine serves it now (sse.go)
	}
	defer wa.Remove()
	if !stream {
		// A long poll the history answers at once (a waitIndex at or
		// below the current index): the headers and the event leave in
		// one write, chunked as ever, instead of a flush of the headers
		// followed by the body.
		ev, err := wa.Next()
		if err == nil && ev != nil && !ev.Refresh {
			rt.setWatchHeaders(w.Header(), false, wa.StartIndex())
			w.Header()["Transfer-Encoding"] = hvChunked
			w.WriteHeader(http.StatusOK)
			b := getBuf()
			ev.AppendJSON(b, rt.now())
			_, _ = w.Write(b.Bytes())
			putBuf(b)
			return
		}
		if err != nil {
			rt.startWatchResponse(w, false, wa.StartIndex()) // over before any event
			return
		}
		// Nothing yet (or a refresh, never shown): wait below.
	}
	if !rt.startWatchResponse(w, sse, wa.StartIndex()) {
		return
	}
	rc := http.NewResponseController(w)

	var heartbeat <-chan time.Time
	if sse {
		t := time.NewTicker(rt.opt.SSEHeartbeat)
		defer t.Stop()
		heartbeat = t.C
	}
	b := getBuf()
	defer putBuf(b)
	for {
		// Write what is ready, then flush once.
		wrote, more := false, false
		for n := 0; ; n++ {
			if n == 256 {
				more = true
				break
			}
			ev, err := wa.Next()
			if err != nil {
				var ae *api.Error
				if sse && errors.As(err, &ae) {
					b.Reset()
					appendSSEError(b, ae)
					if _, werr := w.Write(b.Bytes()); werr == nil {
						wrote = true
					}
				}
				if wrote {
					_ = rc.Flush()
				}
				return
			}
			if ev == nil {
				break
			}
			if ev.Refresh {
				continue // refresh events are never shown to watchers
			}
			b.Reset()
			if sse {
				rt.appendSSEFrame(b, ev)
			} else {
				ev.AppendJSON(b, rt.now())
			}
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			wrote = true
			if !stream {
				return // long poll: one event
			}
		}
		if wrote && rc.Flush() != nil {
			return
		}
		if more {
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-wa.Ready():
		case <-heartbeat:
			if _, err := w.Write(sseHeartbeat); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// startWatchResponse writes and flushes the headers of a watch response:
// X-Etcd-Index is the store index when the watch was registered.
func (rt *router) startWatchResponse(w http.ResponseWriter, sse bool, index uint64) bool {
	rt.setWatchHeaders(w.Header(), sse, index)
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush() == nil
}

// setWatchHeaders sets the headers of a watch response.
func (rt *router) setWatchHeaders(h http.Header, sse bool, index uint64) {
	st := rt.raft.Status()
	v := numbers(index, st.Commit, st.Term)
	if sse {
		h[hContentType] = hvEventStream
		h["Cache-Control"] = hvNoCache
	} else {
		h[hContentType] = hvJSON
	}
	h[api.HeaderEtcdIndex] = v[0:1:1]
	h[api.HeaderRaftIndex] = v[1:2:2]
	h[api.HeaderRaftTerm] = v[2:3:3]
}

// acceptsEventStream reports whether the request's Accept lists
// text/event-stream (as EventSource sends it).
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// appendSSEEvent appends one event in SSE framing. The JSON is one line
// (every control character in it is escaped), so one data field holds it.
func appendSSEEvent(b *bytes.Buffer, ev *api.Event, now time.Time) {
	idx := ev.Index
	if idx == 0 && ev.Node != nil {
		idx = ev.Node.ModifiedIndex
	}
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(idx, 10))
	b.WriteString("\nevent: ")
	b.WriteString(ev.Action)
	b.WriteString("\ndata: ")
	ev.AppendJSON(b, now) // ends with "\n"
	b.WriteByte('\n')
}

// appendSSEError appends the final error event of an SSE stream: its data
// is the v2 error JSON and its id the store index to resume from, so an
// EventSource that reconnects continues after it.
func appendSSEError(b *bytes.Buffer, e *api.Error) {
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(e.Index, 10))
	b.WriteString("\nevent: error\ndata: ")
	e.AppendJSON(b) // ends with "\n"
	b.WriteByte('\n')
}
