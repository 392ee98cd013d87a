package httpapi

import (
	"net/http"

	"cairn/api"
)

const errNoWatches = constError("etcdserver: watches are not available on this member")

// serveWatch answers GET ?wait=true (spec §5). quorum is ignored [D-9]. The
// headers are flushed at once; the body is one event (long poll) or every
// event (stream=true), each followed by "\n". The response ends when the
// event is written (long poll), the watcher's channel closes (slow stream
// consumer), or the client goes away.
func (rt *router) serveWatch(w http.ResponseWriter, r *http.Request, kr *keyRequest) {
	setRoute(w, routeWatch)
	if rt.opt.Watches == nil {
		rt.writeKeyError(w, r, errNoWatches)
		return
	}
	wa, e := rt.opt.Watches.Watch(kr.key, kr.recursive, kr.stream, kr.waitIndex)
	if e != nil {
		rt.writeKeyError(w, r, e)
		return
	}
	defer wa.Remove()

	st := rt.raft.Status()
	v := numbers(wa.StartIndex(), st.Commit, st.Term)
	h := w.Header()
	h[hContentType] = hvJSON
	h[api.HeaderEtcdIndex] = v[0:1:1]
	h[api.HeaderRaftIndex] = v[1:2:2]
	h[api.HeaderRaftTerm] = v[2:3:3]
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}

	b := getBuf()
	defer putBuf(b)
	ch := wa.EventChan()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev == nil || ev.Refresh {
				continue // refresh events are never shown to watchers
			}
			b.Reset()
			ev.AppendJSON(b, rt.now())
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			if !kr.stream {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}
