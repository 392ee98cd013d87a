package httpapi

import (
	"context"
	"net/http"

	"cairn/api"
)

const allowKeys = "HEAD,GET,PUT,POST,DELETE"

// serveKeys handles /v2/keys and /v2/keys/* (spec §3–§6).
func (rt *router) serveKeys(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeKeys)
	// Step 1: the method.
	if !requireMethod(w, r, allowKeys, http.MethodHead, http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete) {
		return
	}
	w.Header()[api.HeaderClusterID] = rt.clusterIDHeader()
	// Step 2 starts with the body limit [D-10], then the form.
	if e := rt.limitBody(w, r); e != nil {
		rt.writeKeyError(w, r, e)
		return
	}
	kr, e := parseKeyRequest(r)
	if e != nil {
		rt.writeKeyError(w, r, e)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if kr.wait { // only GET gets here with wait (step 6)
			rt.serveWatch(w, r, &kr)
			return
		}
		rt.serveGet(w, r, &kr)
	default:
		rt.serveWrite(w, r, &kr)
	}
}

// limitBody refuses a declared Content-Length over the limit and caps an
// unsized PUT/POST body, which is the only kind ParseForm may read [D-10].
func (rt *router) limitBody(w http.ResponseWriter, r *http.Request) *api.Error {
	limit := rt.opt.MaxRequestBytes
	if r.ContentLength > limit {
		return bodyTooLarge(limit)
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody &&
		(r.Method == http.MethodPut || r.Method == http.MethodPost) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	return nil
}

// serveGet answers a GET or HEAD without wait from the local replica, after a
// read barrier for GET ?quorum=true (HEAD ignores quorum, as etcd does).
func (rt *router) serveGet(w http.ResponseWriter, r *http.Request, kr *keyRequest) {
	if kr.quorum && r.Method == http.MethodGet {
		ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
		err := rt.raft.ReadBarrier(ctx)
		cancel()
		if err != nil {
			rt.writeKeyError(w, r, err)
			return
		}
	}
	// The index is read before the tree: if a write lands in between, a
	// client resuming a watch at X-Etcd-Index+1 sees it again rather than
	// missing it. A store that fills Event.Index on gets wins.
	index := rt.store.StoreIndex()
	ev, e := rt.store.Get(kr.key, kr.recursive, kr.sorted)
	rt.store.CountGet(e == nil)
	if e != nil {
		rt.writeKeyError(w, r, e)
		return
	}
	if ev.Index != 0 {
		index = ev.Index
	}
	rt.writeEvent(w, r, ev, http.StatusOK, index, false)
}

// serveWrite proposes a PUT, POST or DELETE and answers with its event.
func (rt *router) serveWrite(w http.ResponseWriter, r *http.Request, kr *keyRequest) {
	c := kr.cmd(r.Method, rt.now())
	ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
	ev, err := rt.raft.Propose(ctx, c)
	cancel()
	if ae, ok := err.(*api.Error); ok && ae == nil {
		err = nil // a typed nil is no error
	}
	if err != nil {
		rt.writeKeyError(w, r, err)
		return
	}
	if ev == nil {
		rt.writeKeyError(w, r, errNoEvent)
		return
	}
	status := http.StatusOK
	if ev.Action == api.ActionCreate || (ev.Action == api.ActionSet && ev.PrevNode == nil) {
		status = http.StatusCreated
	}
	index := ev.Index
	if index == 0 && ev.Node != nil {
		index = ev.Node.ModifiedIndex
	}
	rt.writeEvent(w, r, ev, status, index, kr.noValueOnSuccess)
}

type constError string

func (e constError) Error() string { return string(e) }

const errNoEvent = constError("etcdserver: received response with no Event/Watcher")
