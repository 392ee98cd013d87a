package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Options.
const (
	DefaultMaxRequestBytes = 1572864         // 1.5 MiB [D-10]
	MaxMaxRequestBytes     = 10 << 20        // etcd's own form-body limit (10 MiB)
	DefaultRequestTimeout  = 7 * time.Second // 5 s + 2 × election timeout
	HealthTimeout          = 1 * time.Second // quorum read of /health
	clusterVersion         = "3.5.0"         // "etcdcluster" of /version
	defaultServerVersion   = "0.0.0-dev"     // "etcdserver" when Options.Version is empty
)

// Options configure NewRouter. The zero value is usable.
type Options struct {
	// MaxRequestBytes caps a request body [D-10]: larger bodies get 413 /
	// error 210 before anything is proposed. 0 means 1.5 MiB; values above
	// 10 MiB are clamped to 10 MiB (etcd's form limit).
	MaxRequestBytes int64
	// RequestTimeout bounds each proposal and quorum read. 0 means 7 s.
	RequestTimeout time.Duration
	// CORSOrigins lists the allowed origins. Empty means "*" (etcd's
	// default). A list containing "*" behaves like "*". Otherwise only
	// listed origins are echoed, with Access-Control-Expose-Headers [D-11].
	CORSOrigins []string
	// Clock stamps TTLs and computes remaining TTLs. nil means time.Now.
	Clock func() time.Time
	// Logger receives panics and infrastructure errors. nil discards.
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics. nil
	// means a private registry.
	Registry *prometheus.Registry
	// Version is "etcdserver" in /version.
	Version string
	// StartTime is the process start time of /v2/stats/self. Zero means
	// Clock() when NewRouter runs.
	StartTime time.Time
	// SSEHeartbeat is the interval of the ": ping" comment on idle
	// Server-Sent Events watch streams. 0 means 15 s.
	SSEHeartbeat time.Duration
	// Streams, when set, lets SSE watches leave their handler: the
	// connection is hijacked and served by one small goroutine (sse.go),
	// which costs far less memory per watcher. The owner closes it at
	// shutdown. nil serves SSE inside the handler.
	Streams *Streams
	// EnablePprof serves Go's profiler under /debug/pprof/ (etcd's
	// --enable-pprof). Off by default: a profile costs the member CPU.
	EnablePprof bool

	// Watches answers GET ?wait=true; nil answers such requests with 300.
	Watches Watches
	// Members performs membership changes; nil answers them with 500.
	Members MembershipChanger
	// PeerStats feeds /v2/stats/self counters and /v2/stats/leader
	// followers; nil means zero counters and no followers.
	PeerStats PeerStats
}

// router holds the dependencies shared by every handler.
type router struct {
	raft    Raft
	store   Store
	cluster Cluster
	opt     Options
	log     *slog.Logger
	now     func() time.Time
	cors    corsPolicy
	metrics *httpMetrics
	frames  sseFrameCache // rendered SSE frames of recent events

	cid atomic.Pointer[clusterIDText] // cached hex form of the cluster ID
}

type clusterIDText struct {
	id  uint64
	hex []string // header value, shared read-only
}

// NewRouter returns the client-port handler. r, s and c must be non-nil.
func NewRouter(r Raft, s Store, c Cluster, opt Options) http.Handler {
	if opt.MaxRequestBytes <= 0 {
		opt.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opt.MaxRequestBytes > MaxMaxRequestBytes {
		opt.MaxRequestBytes = MaxMaxRequestBytes
	}
	if opt.RequestTimeout <= 0 {
		opt.RequestTimeout = DefaultRequestTimeout
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.Version == "" {
		opt.Version = defaultServerVersion
	}
	if opt.StartTime.IsZero() {
		opt.StartTime = opt.Clock()
	}
	if opt.SSEHeartbeat <= 0 {
		opt.SSEHeartbeat = DefaultSSEHeartbeat
	}
	rt := &router{
		raft:    r,
		store:   s,
		cluster: c,
		opt:     opt,
		log:     opt.Logger,
		now:     opt.Clock,
		cors:    newCORSPolicy(opt.CORSOrigins),
		metrics: newHTTPMetrics(opt.Registry),
	}

	mux := chi.NewMux()
	mux.NotFound(http.NotFound)
	mux.Handle("/v2/keys", http.HandlerFunc(rt.serveKeys))
	mux.Handle("/v2/keys/*", http.HandlerFunc(rt.serveKeys))
	mux.Handle("/v2/members", http.HandlerFunc(rt.serveMembers))
	mux.Handle("/v2/members/*", http.HandlerFunc(rt.serveMembers))
	mux.Handle("/v2/stats/self", http.HandlerFunc(rt.serveStatsSelf))
	mux.Handle("/v2/stats/leader", http.HandlerFunc(rt.serveStatsLeader))
	mux.Handle("/v2/stats/store", http.HandlerFunc(rt.serveStatsStore))
	mux.Handle("/v2/machines", http.HandlerFunc(rt.serveMachines))
	mux.Handle("/version", http.HandlerFunc(rt.serveVersion))
	mux.Handle("/health", http.HandlerFunc(rt.serveHealth))
	mux.Handle(uiWatchPath, http.HandlerFunc(rt.serveUIWatch))
	metricsHandler := promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{})
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRoute(w, routeMetrics)
		metricsHandler.ServeHTTP(w, r)
	}))
	if opt.EnablePprof {
		mountPprof(mux)
	}

	// Outermost first: metrics and panic recovery, CORS and OPTIONS, path
	// cleaning, then chi routing on the path alone (handlers check methods).
	return rt.instrument(rt.corsAndOptions(redirectUnclean(routeByPath(mux))))
}

// routeCtxPool recycles the chi routing contexts injected by routeByPath.
var routeCtxPool = sync.Pool{New: func() any { return chi.NewRouteContext() }}

// routeByPath makes chi route on the path only. Every route is registered
// for all methods and each handler checks the method itself (answering 405
// with etcd's Allow list), so a routing context with a fixed RouteMethod is
// injected; without it chi would answer unknown methods ("FOO") on its own.
func routeByPath(mux *chi.Mux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx := routeCtxPool.Get().(*chi.Context)
		rctx.Reset()
		rctx.Routes = mux
		rctx.RouteMethod = http.MethodGet
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		mux.ServeHTTP(w, r)
		routeCtxPool.Put(rctx)
	})
}

// clusterIDHeader returns the X-Etcd-Cluster-Id header value, formatting the
// ID only when it changes.
func (rt *router) clusterIDHeader() []string {
	id := rt.cluster.ClusterID()
	if c := rt.cid.Load(); c != nil && c.id == id {
		return c.hex
	}
	c := &clusterIDText{id: id, hex: []string{strconv.FormatUint(id, 16)}}
	rt.cid.Store(c)
	return c.hex
}

// requireMethod answers 405 with the Allow list unless r.Method is listed.
func requireMethod(w http.ResponseWriter, r *http.Request, allow string, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", allow)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

// Plain reports whether r can be answered by a response writer that cannot
// flush, hijack or notice the client leaving (internal/leanhttp): every
// request but watches (wait or stream in the query; SSE is a watch), a
// request that accepts text/event-stream, and the profiler, whose profiles
// run for seconds and stream. Every handler a plain request reaches bounds
// its waits by Options.RequestTimeout or HealthTimeout, so none waits on a
// client that left for longer than that.
func Plain(r *http.Request) bool {
	q := r.URL.RawQuery
	if strings.Contains(q, "wait") || strings.Contains(q, "stream") {
		return false
	}
	if strings.IndexByte(q, '%') >= 0 {
		// A parameter name may be percent-encoded ("%77ait").
		for k := range r.URL.Query() {
			if k == "wait" || k == "stream" {
				return false
			}
		}
	}
	if strings.HasPrefix(r.URL.Path, "/debug/") {
		return false
	}
	for _, v := range r.Header["Accept"] {
		if strings.Contains(v, "event-stream") {
			return false
		}
	}
	return true
}
