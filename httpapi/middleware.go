package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cairn/api"
)

// route names the endpoint of a request for the metrics labels.
type route uint8

const (
	routeOther route = iota
	routeKeys
	routeWatch
	routeMembers
	routeStats
	routeMachines
	routeVersion
	routeHealth
	routeMetrics
	routeOptions
	routeUI
	routeCount
)

var routeNames = [routeCount]string{"other", "keys", "watch", "members", "stats", "machines", "version", "health", "metrics", "options", "ui"}

// respWriter records the status and the route of a response. It is pooled;
// it implements Flush and Unwrap so http.ResponseController reaches the
// connection.
type respWriter struct {
	http.ResponseWriter
	status int
	route  route
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data; it is what watches use.
func (w *respWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap exposes the server's writer to http.ResponseController.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var respWriterPool = sync.Pool{New: func() any { return new(respWriter) }}

// setRoute labels the request's metrics with rt.
func setRoute(w http.ResponseWriter, rt route) {
	if sw, ok := w.(*respWriter); ok {
		sw.route = rt
	}
}

// instrument is the outermost middleware: it counts requests and their
// latency on the injected registry, and turns a handler panic into a logged
// 500 / errorCode 300 JSON answer (or, once the response has started, an
// aborted connection) instead of a crash.
func (rt *router) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := respWriterPool.Get().(*respWriter)
		*sw = respWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel value of panic
					panic(v)
				}
				rt.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
					"panic", v, "stack", string(debug.Stack()))
				if sw.status != 0 {
					// Too late for an error body: abort the connection so the
					// client cannot take a truncated body for a whole one.
					panic(http.ErrAbortHandler)
				}
				rt.writePanic(sw, r)
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			rt.metrics.observe(sw.route, r.Method, status, time.Since(start))
			*sw = respWriter{}
			respWriterPool.Put(sw)
		}()
		next.ServeHTTP(sw, r)
	})
}

// writePanic answers a request whose handler panicked before writing.
func (rt *router) writePanic(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for _, k := range []string{hContentLength, "Allow", api.HeaderRaftIndex, api.HeaderRaftTerm, api.HeaderEtcdIndex} {
		delete(h, k)
	}
	rt.writeKeyError(w, r, api.NewError(api.EcodeRaftInternal, "internal server error", 0))
}

// redirectUnclean answers a request whose raw path has an empty, "." or ".."
// segment with a 307 to the cleaned path, keeping the query, exactly as Go's
// ServeMux does for etcd (spec §3.1). Encoded dots (%2E) do not trigger it;
// keyPath clamps what they resolve to [D-2].
func redirectUnclean(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			p := r.URL.EscapedPath()
			if mayBeUnclean(p) {
				if c := cleanURLPath(p); c != p {
					u := &url.URL{Path: c, RawQuery: r.URL.RawQuery}
					http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// mayBeUnclean is a fast pre-check: a rooted path without "//" and "/." is
// already clean.
func mayBeUnclean(p string) bool {
	return p == "" || p[0] != '/' || strings.Contains(p, "//") || strings.Contains(p, "/.")
}

// cleanURLPath is net/http's cleanPath: path.Clean, keeping a trailing slash.
func cleanURLPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			np = p
		} else {
			np += "/"
		}
	}
	return np
}

// httpMetrics are the request counter and latency histogram, registered on
// the injected registry (never the global one).
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cache    sync.Map // metricKey → *metricPair
}

type metricKey struct {
	route  route
	method string
	code   int
}

type metricPair struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "http", Name: "requests_total",
			Help: "Client-port HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Client-port HTTP request latency by route and method (watches until they end).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 100 µs … 13 s
		}, []string{"route", "method"}),
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

// register registers c, or reuses the collector already registered under
// the same description (a second router on one registry).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *httpMetrics) observe(rt route, method string, code int, d time.Duration) {
	method = methodLabel(method)
	k := metricKey{rt, method, code}
	p, ok := m.cache.Load(k)
	if !ok {
		name := routeNames[rt]
		p, _ = m.cache.LoadOrStore(k, &metricPair{
			count: m.requests.WithLabelValues(name, method, strconv.Itoa(code)),
			dur:   m.duration.WithLabelValues(name, method),
		})
	}
	mp := p.(*metricPair)
	mp.count.Inc()
	mp.dur.Observe(d.Seconds())
}

// methodLabel bounds the method label's cardinality.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodOptions, http.MethodPatch:
		return m
	}
	return "other"
}
