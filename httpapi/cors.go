package httpapi

import (
	"net/http"
	"strings"
)

// CORS header values (spec §8), shared read-only.
var (
	hvAllowMethods  = []string{"POST, GET, OPTIONS, PUT, DELETE"}
	hvAllowHeaders  = []string{"accept, content-type, authorization"}
	hvStar          = []string{"*"}
	hvExposeHeaders = []string{"X-Etcd-Index, X-Raft-Index, X-Raft-Term, X-Etcd-Cluster-Id"}
	// hvAllowHeadersSSE answers only a preflight that asks for
	// Last-Event-ID: an EventSource on another origin resuming a
	// Server-Sent Events watch. Every other response keeps etcd's list.
	hvAllowHeadersSSE = []string{"accept, content-type, authorization, last-event-id"}
)

// corsPolicy decides the CORS headers of every client-port response.
type corsPolicy struct {
	any     bool                // "*": always Allow-Origin: *
	origins map[string]struct{} // otherwise: echo only these
}

func newCORSPolicy(origins []string) corsPolicy {
	p := corsPolicy{any: len(origins) == 0}
	if !p.any {
		p.origins = make(map[string]struct{}, len(origins))
		for _, o := range origins {
			if o == "*" {
				p.any = true
			}
			p.origins[o] = struct{}{}
		}
	}
	return p
}

// apply sets the CORS headers for r: "*" by default; with an origin list,
// the request's Origin when listed, plus Access-Control-Expose-Headers so
// browser code can read the index headers [D-11]; nothing otherwise. No Vary.
func (p *corsPolicy) apply(h http.Header, r *http.Request) {
	if p.any {
		h["Access-Control-Allow-Methods"] = hvAllowMethods
		h["Access-Control-Allow-Origin"] = hvStar
		h["Access-Control-Allow-Headers"] = hvAllowHeaders
		return
	}
	origin := r.Header.Get("Origin")
	if _, ok := p.origins[origin]; !ok || origin == "" {
		return
	}
	h["Access-Control-Allow-Methods"] = hvAllowMethods
	h["Access-Control-Allow-Origin"] = []string{origin}
	h["Access-Control-Allow-Headers"] = hvAllowHeaders
	h["Access-Control-Expose-Headers"] = hvExposeHeaders
}

// corsAndOptions writes the CORS headers on every response and answers any
// OPTIONS request with an empty 200 before routing, so unknown paths get 200
// too (spec §1, §8).
func (rt *router) corsAndOptions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.cors.apply(w.Header(), r)
		if r.Method == http.MethodOptions {
			if _, ok := w.Header()["Access-Control-Allow-Headers"]; ok && asksLastEventID(r) {
				w.Header()["Access-Control-Allow-Headers"] = hvAllowHeadersSSE
			}
			setRoute(w, routeOptions)
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// asksLastEventID reports whether a preflight asks to send Last-Event-ID.
func asksLastEventID(r *http.Request) bool {
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "last-event-id") {
				return true
			}
		}
	}
	return false
}
