package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server-Sent Events watch workloads: many SSE watchers on one member, a
// writer at a fixed rate, and the time from each write's acknowledgement to
// its delivery to every watcher it matches.
const (
	WorkloadSSEShared   = "sse-shared"   // every watcher on one prefix: each write reaches all of them
	WorkloadSSEDistinct = "sse-distinct" // each watcher on its own key: each write reaches one
)

// WatchConfig describes one watch fan-out run: SSE (RunSSE) or long poll
// (RunLongPoll).
type WatchConfig struct {
	Endpoint string // the member's client URL
	Workload string // WorkloadSSEShared, WorkloadSSEDistinct or WorkloadLongPoll
	Watchers int    // concurrent watcher connections (default 10000 for SSE, 1000 for long poll)
	Rate     int    // writes per second (default 10)
	Writes   int    // writes in total (default Rate × 10 s)
	// ValueSize is the written value's size in bytes (default 256).
	ValueSize int
	// Settle is how long to wait after the last write for deliveries
	// (default 10 s; the run ends earlier once everything arrived).
	Settle time.Duration
	// Log receives progress lines; nil is silent.
	Log func(format string, args ...any)
}

// SSEConfig describes one SSE run.
type SSEConfig = WatchConfig

// WatchResult summarises a watch fan-out run.
type WatchResult struct {
	Workload string
	Watchers int
	Writes   int
	// Deliveries counts events received; Missing the matching events that
	// never arrived (should be 0); Errors write or connection failures.
	Deliveries, Missing, Errors int64
	// FirstError is the first watcher failure seen, if any.
	FirstError error
	// ToAllP50/P99/Max: per write, acknowledgement → delivery to the last
	// watcher it matches. EachP50/P99: per delivery.
	ToAllP50, ToAllP99, ToAllMax time.Duration
	EachP50, EachP99             time.Duration
	// DeliveriesPerSec is events delivered per second while writing.
	DeliveriesPerSec float64
	// Connect is the time to open every watcher.
	Connect time.Duration
	// Server memory per watcher, from the member's /metrics before and
	// after the watchers connected: resident set, and Go heap + stacks in
	// use. Negative when /metrics did not tell.
	RSSPerWatcher, HeapStackPerWatcher float64
	// ServerCPUPerDelivery is the member's CPU time (process_cpu_seconds_total)
	// while writing and delivering, per delivery, and ServerCores the same
	// CPU time over the wall time (1.0 = one core busy); negative when
	// unknown.
	ServerCPUPerDelivery time.Duration
	ServerCores          float64
}

// SSEResult summarises an SSE run.
type SSEResult = WatchResult

func (r WatchResult) String() string {
	s := fmt.Sprintf("%-12s watchers=%d writes=%d deliveries=%d missing=%d errors=%d  ack→all p50=%s p99=%s max=%s  ack→each p50=%s p99=%s  %.0f events/s  server memory/watcher: rss %.1f KiB, heap+stacks %.1f KiB  server cpu %.2f cores, %s/delivery  (connect %s)",
		r.Workload, r.Watchers, r.Writes, r.Deliveries, r.Missing, r.Errors,
		r.ToAllP50.Round(time.Microsecond), r.ToAllP99.Round(time.Microsecond), r.ToAllMax.Round(time.Microsecond),
		r.EachP50.Round(time.Microsecond), r.EachP99.Round(time.Microsecond), r.DeliveriesPerSec,
		r.RSSPerWatcher/1024, r.HeapStackPerWatcher/1024, r.ServerCores, r.ServerCPUPerDelivery.Round(100*time.Nanosecond), r.Connect.Round(time.Millisecond))
	if r.FirstError != nil {
		s += "  first error: " + r.FirstError.Error()
	}
	return s
}

// delivery is one event received by one watcher.
type delivery struct {
	index uint64
	at    time.Time
}

// sseWatcher is one raw SSE connection; its goroutine records what arrives.
type sseWatcher struct {
	conn net.Conn
	mu   sync.Mutex
	got  []delivery
}

// RunSSE opens the watchers, writes at the given rate and measures.
func RunSSE(ctx context.Context, cfg WatchConfig) (WatchResult, error) {
	switch cfg.Workload {
	case WorkloadSSEShared, WorkloadSSEDistinct:
	default:
		return WatchResult{}, fmt.Errorf("bench: unknown SSE workload %q (%s, %s)", cfg.Workload, WorkloadSSEShared, WorkloadSSEDistinct)
	}
	r, err := newWatchRun(ctx, cfg, 10000)
	if err != nil {
		return WatchResult{}, err
	}
	defer r.close()
	cfg = r.cfg
	res := r.res

	prefix := "/ssebench/" + runID()
	watchPath := func(i int) string {
		if cfg.Workload == WorkloadSSEShared {
			return prefix + "/shared?wait=true&recursive=true"
		}
		return prefix + "/d/" + strconv.Itoa(i) + "?wait=true"
	}
	writeKey := func(n int) string {
		if cfg.Workload == WorkloadSSEShared {
			return prefix + "/shared/k"
		}
		return prefix + "/d/" + strconv.Itoa(n%cfg.Watchers)
	}

	// Open every watcher, 64 dials at a time.
	start := time.Now()
	ws := make([]*sseWatcher, cfg.Watchers)
	var (
		dialWG   sync.WaitGroup
		readWG   sync.WaitGroup
		dialErr  atomic.Pointer[error]
		readErrs atomic.Int64
		sem      = make(chan struct{}, 64)
	)
	defer func() {
		for _, w := range ws {
			if w != nil {
				_ = w.conn.Close()
			}
		}
		readWG.Wait()
	}()
	for i := range ws {
		dialWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer dialWG.Done()
			defer func() { <-sem }()
			w, body, err := dialSSE(r.host, "/v2/keys"+watchPath(i))
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			if cfg.Workload == WorkloadSSEShared {
				w.got = make([]delivery, 0, cfg.Writes) // no growth (and GC) while measuring
			}
			ws[i] = w
			readWG.Add(1)
			go func() {
				defer readWG.Done()
				if err := w.read(body); err != nil && !errors.Is(err, net.ErrClosed) {
					readErrs.Add(1)
				}
			}()
		}()
		if dialErr.Load() != nil {
			break
		}
	}
	dialWG.Wait()
	if p := dialErr.Load(); p != nil {
		return *res, fmt.Errorf("bench: open SSE watcher: %w", *p)
	}
	if err := r.awaitRegistered(ctx, start, "SSE"); err != nil {
		return *res, err
	}

	acks, keyOf, err := r.write(ctx, writeKey)
	if err != nil {
		return *res, err
	}
	expected := int64(len(acks))
	if cfg.Workload == WorkloadSSEShared {
		expected *= int64(cfg.Watchers)
	}
	r.settle(ctx, expected, func() int64 {
		var n int64
		for _, w := range ws {
			n += int64(len(w.deliveries()))
		}
		return n
	})
	res.Errors += readErrs.Load()
	r.summarise(acks, expected, len(ws), func(i int) []delivery { return ws[i].deliveries() }, func(i int, idx uint64) bool {
		return cfg.Workload != WorkloadSSEDistinct || keyOf[idx] == i
	})
	return *res, nil
}

// watchRun is what every watch workload shares: the member, the client
// for its writes and gauges, the writer, and the summary.
type watchRun struct {
	cfg    WatchConfig
	ep     string // client URL without a trailing slash
	host   string // its host:port, for raw connections
	hc     *http.Client
	logf   func(format string, args ...any)
	res    *WatchResult
	before memSample // the member's gauges before any watcher connected

	// The writer's window, and the member's CPU from its start.
	writeStart, writeEnd time.Time
	cpuBefore            memSample
	cpuOK                bool
}

// newWatchRun fills in cfg's defaults, raises the open-file limit for the
// watchers, waits for a member with no watchers left from an earlier run
// and samples its memory.
func newWatchRun(ctx context.Context, cfg WatchConfig, defaultWatchers int) (*watchRun, error) {
	if cfg.Watchers <= 0 {
		cfg.Watchers = defaultWatchers
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	if cfg.Writes <= 0 {
		cfg.Writes = cfg.Rate * 10
	}
	if cfg.ValueSize <= 0 {
		cfg.ValueSize = 256
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Second
	}
	r := &watchRun{cfg: cfg, logf: cfg.Log}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	r.ep = strings.TrimRight(cfg.Endpoint, "/")
	u, err := url.Parse(r.ep)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bench: bad endpoint %q", cfg.Endpoint)
	}
	r.host = u.Host
	if lim, err := RaiseOpenFiles(uint64(cfg.Watchers) + 1024); err != nil || lim < uint64(cfg.Watchers)+64 {
		return nil, fmt.Errorf("bench: %d watchers need %d open files, the limit is %d (%v)", cfg.Watchers, cfg.Watchers+1024, lim, err)
	}
	r.res = &WatchResult{Workload: cfg.Workload, Watchers: cfg.Watchers, RSSPerWatcher: -1, HeapStackPerWatcher: -1, ServerCPUPerDelivery: -1, ServerCores: -1}
	r.hc = newHTTPClient()
	// Start from a quiet member: the watchers of an earlier run are gone.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if n, err := serverWatchers(ctx, r.hc, r.ep); err != nil || n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	r.before, _ = serverMemory(ctx, r.hc, r.ep)
	return r, nil
}

func (r *watchRun) close() { r.hc.CloseIdleConnections() }

// runID names one run's keys.
func runID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// awaitRegistered waits until the member counts every watcher (opened
// from start on), then reads its memory per watcher.
func (r *watchRun) awaitRegistered(ctx context.Context, start time.Time, kind string) error {
	for deadline := time.Now().Add(60 * time.Second); ; {
		n, err := serverWatchers(ctx, r.hc, r.ep)
		if err == nil && n >= r.cfg.Watchers {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: the member counts %d watchers, want %d (%v)", n, r.cfg.Watchers, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.res.Connect = time.Since(start)
	r.logf("%d %s watchers open in %s", r.cfg.Watchers, kind, r.res.Connect.Round(time.Millisecond))
	time.Sleep(time.Second) // let the member settle before reading its memory
	if after, ok := serverMemory(ctx, r.hc, r.ep); ok && r.before.rss > 0 {
		r.res.RSSPerWatcher = (after.rss - r.before.rss) / float64(r.cfg.Watchers)
		r.res.HeapStackPerWatcher = (after.heap + after.stack - r.before.heap - r.before.stack) / float64(r.cfg.Watchers)
	}
	return nil
}

// write puts cfg.Writes values at cfg.Rate, the n-th to key(n), and
// returns each acknowledged write's acknowledgement time and n by store
// index. A failed write counts as an error.
func (r *watchRun) write(ctx context.Context, key func(n int) string) (acks map[uint64]time.Time, keyOf map[uint64]int, err error) {
	r.cpuBefore, r.cpuOK = serverMemory(ctx, r.hc, r.ep)
	value := strings.Repeat("v", r.cfg.ValueSize)
	acks = make(map[uint64]time.Time, r.cfg.Writes)
	keyOf = make(map[uint64]int, r.cfg.Writes)
	tick := time.NewTicker(time.Second / time.Duration(r.cfg.Rate))
	defer tick.Stop()
	r.writeStart = time.Now()
	for n := 0; n < r.cfg.Writes; n++ {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
		idx, err := putIndex(ctx, r.hc, r.ep, key(n), value)
		if err != nil {
			r.res.Errors++
			continue
		}
		acks[idx] = time.Now()
		keyOf[idx] = n % r.cfg.Watchers
	}
	r.writeEnd = time.Now()
	r.res.Writes = len(acks)
	return acks, keyOf, nil
}

// settle waits until count() reaches expected (or cfg.Settle passed) and
// then reads the member's CPU time since the writer started.
func (r *watchRun) settle(ctx context.Context, expected int64, count func() int64) {
	for deadline := time.Now().Add(r.cfg.Settle); count() < expected && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	if cpuAfter, ok := serverMemory(ctx, r.hc, r.ep); ok && r.cpuOK {
		used := cpuAfter.cpu - r.cpuBefore.cpu
		r.res.ServerCores = used / time.Since(r.writeStart).Seconds()
		if n := count(); n > 0 {
			r.res.ServerCPUPerDelivery = time.Duration(used / float64(n) * 1e9)
		}
	}
}

// summarise fills in the deliveries, missing ones and latencies from what
// each of n watchers received (deliveries(i)), counting a delivery of a
// write's store index idx to watcher i only when keep(i, idx).
func (r *watchRun) summarise(acks map[uint64]time.Time, expected int64, n int, deliveries func(i int) []delivery, keep func(i int, idx uint64) bool) {
	res := r.res
	last := make(map[uint64]time.Time, len(acks))
	var each []time.Duration
	var lastDelivery time.Time
	for i := range n {
		for _, d := range deliveries(i) {
			ack, ok := acks[d.index]
			if !ok || !keep(i, d.index) {
				continue
			}
			res.Deliveries++
			each = append(each, max(0, d.at.Sub(ack)))
			if d.at.After(last[d.index]) {
				last[d.index] = d.at
			}
			if d.at.After(lastDelivery) {
				lastDelivery = d.at
			}
		}
	}
	res.Missing = expected - res.Deliveries
	var toAll []time.Duration
	for idx, ack := range acks {
		if t, ok := last[idx]; ok {
			toAll = append(toAll, max(0, t.Sub(ack)))
		}
	}
	slices.Sort(toAll)
	slices.Sort(each)
	if n := len(toAll); n > 0 {
		res.ToAllP50, res.ToAllP99, res.ToAllMax = toAll[n*50/100], toAll[min(n-1, n*99/100)], toAll[n-1]
	}
	if n := len(each); n > 0 {
		res.EachP50, res.EachP99 = each[n*50/100], each[min(n-1, n*99/100)]
	}
	if span := lastDelivery.Sub(r.writeStart); span > 0 {
		res.DeliveriesPerSec = float64(res.Deliveries) / max(span, r.writeEnd.Sub(r.writeStart)).Seconds()
	}
}

// dialSSE opens one raw HTTP/1.1 SSE request (small buffers: the point is
// the member's cost per watcher, not the load generator's).
func dialSSE(host, target string) (*sseWatcher, io.Reader, error) {
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", target, host); err != nil {
		c.Close()
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, 2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.Close()
		return nil, nil, fmt.Errorf("GET %s: %s %s", target, resp.Status, resp.Header.Get("Content-Type"))
	}
	return &sseWatcher{conn: c}, resp.Body, nil
}

// read records every event's id and arrival time until the stream ends.
func (w *sseWatcher) read(body io.Reader) error {
	br := bufio.NewReaderSize(body, 2048)
	var id uint64
	haveID := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		switch {
		case len(line) == 1: // blank line: end of a frame
			if haveID {
				now := time.Now()
				w.mu.Lock()
				w.got = append(w.got, delivery{id, now})
				w.mu.Unlock()
			}
			haveID = false
		case len(line) > 4 && string(line[:4]) == "id: ":
			id, err = strconv.ParseUint(strings.TrimSpace(string(line[4:])), 10, 64)
			haveID = err == nil
		}
	}
}

func (w *sseWatcher) deliveries() []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}

// putIndex writes key and returns the store index of the write.
func putIndex(ctx context.Context, hc *http.Client, ep, key, value string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, ep+"/v2/keys"+key, strings.NewReader("value="+url.QueryEscape(value)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return 0, fmt.Errorf("PUT %s: %s", key, resp.Status)
	}
	return strconv.ParseUint(resp.Header.Get("X-Etcd-Index"), 10, 64)
}

// serverWatchers reads "watchers" from /v2/stats/store.
func serverWatchers(ctx context.Context, hc *http.Client, ep string) (int, error) {
	body, err := getBody(ctx, hc, ep+"/v2/stats/store")
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(body, `"watchers":`)
	if !ok {
		return 0, fmt.Errorf("no watchers in %q", body)
	}
	end := strings.IndexAny(rest, ",}")
	if end < 0 {
		return 0, fmt.Errorf("bad stats %q", body)
	}
	return strconv.Atoi(strings.TrimSpace(rest[:end]))
}

type memSample struct{ rss, heap, stack, cpu float64 }

// serverMemory reads the member's memory gauges from /metrics.
func serverMemory(ctx context.Context, hc *http.Client, ep string) (memSample, bool) {
	body, err := getBody(ctx, hc, ep+"/metrics")
	if err != nil {
		return memSample{}, false
	}
	var m memSample
	found := 0
	for line := range strings.SplitSeq(body, "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.rss = f
			found++
		case "go_memstats_heap_inuse_bytes":
			m.heap = f
			found++
		case "go_memstats_stack_inuse_bytes":
			m.stack = f
			found++
		case "process_cpu_seconds_total":
			m.cpu = f
		}
	}
	return m, found == 3
}

func getBody(ctx context.Context, hc *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}
