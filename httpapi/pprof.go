package httpapi

import (
	"net/http/pprof"

	"github.com/go-chi/chi/v5"
)

// mountPprof serves Go's profiles as net/http/pprof names them:
// /debug/pprof/ (the index and the named profiles), cmdline, profile
// (CPU, ?seconds=), symbol and trace (?seconds=).
func mountPprof(mux *chi.Mux) {
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/*", pprof.Index)
}
