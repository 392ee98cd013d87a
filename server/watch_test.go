package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn/api"
)

// Watch tests against a real member: durable history, restart, SSE over
// real sockets, slow consumers, and a checker comparing every watcher's
// sequence with the acknowledged writes.

// wtMember starts a member on loopback ports chosen by the kernel (or the
// client port given in cfg), on disk in dir ("" = in memory).
func wtMember(t *testing.T, dir string, mod func(*Config)) *Server {
	t.Helper()
	loop := []string{"http://127.0.0.1:0"}
	cfg := Config{
		Name: "w", DataDir: dir, InMemory: dir == "",
		ListenClientURLs: loop, AdvertiseClientURLs: loop, ListenPeerURLs: loop, InitialAdvertisePeerURLs: loop,
		Logger: slog.New(slog.DiscardHandler),
	}
	if dir == "" {
		cfg.DataDir = t.TempDir()
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("start member: %v", err)
	}
	t.Cleanup(func() { wtStop(t, s) })
	wtWaitLeader(t, s)
	return s
}

func wtStop(t *testing.T, s *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("stop member: %v", err)
	}
}

func wtWaitLeader(t *testing.T, s *Server) {
	t.Helper()
	for range 300 {
		if st := s.node.Status(); st.Leader != 0 && st.Leader == st.ID {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 3 s")
}

var wtClient = &http.Client{Timeout: 30 * time.Second}

// wtPut sets key=value and returns the event.
func wtPut(t testing.TB, s *Server, key, value string) *api.Event {
	t.Helper()
	r, _ := http.NewRequest("PUT", s.ClientURLs()[0]+"/v2/keys"+key, strings.NewReader(url.Values{"value": {value}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := wtClient.Do(r)
	if err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT %s: %d %s", key, resp.StatusCode, body)
	}
	var ev api.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	ev.Index = ev.Node.ModifiedIndex
	return &ev
}

func wtGet(t *testing.T, s *Server, target string) (int, string, http.Header) {
	t.Helper()
	resp, err := wtClient.Get(s.ClientURLs()[0] + target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// sseFrame is one parsed Server-Sent Event.
type sseFrame struct {
	id, event, data string
}

// sseStream reads SSE frames from a response.
type sseStream struct {
	resp *http.Response
	rd   *bufio.Reader
}

func openSSE(t *testing.T, base, target string, hdr map[string]string, dialer *net.Dialer) *sseStream {
	t.Helper()
	hc := wtClient
	if dialer != nil {
		hc = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	}
	r, _ := http.NewRequest("GET", base+target, nil)
	r.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: hc.Transport}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("SSE watch: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &sseStream{resp: resp, rd: bufio.NewReaderSize(resp.Body, 64<<10)}
}

// next returns the next event frame (heartbeats skipped); io.EOF at the end.
func (s *sseStream) next() (sseFrame, error) {
	var f sseFrame
	for range 1 << 20 {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return f, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f.event != "" {
				return f, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			f.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			f.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			f.data = line[6:]
		}
	}
	return f, fmt.Errorf("no frame")
}

// nextWithin is next with a deadline (the connection is closed on timeout).
func (s *sseStream) nextWithin(t *testing.T, d time.Duration) sseFrame {
	t.Helper()
	type res struct {
		f   sseFrame
		err error
	}
	ch := make(chan res, 1)
	go func() { f, err := s.next(); ch <- res{f, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("SSE read: %v", r.err)
		}
		return r.f
	case <-time.After(d):
		s.resp.Body.Close()
		t.Fatalf("no SSE event within %v", d)
	}
	return sseFrame{}
}

func frameIndex(t *testing.T, f sseFrame) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(f.id, 10, 64)
	if err != nil {
		t.Fatalf("frame id %q", f.id)
	}
	return n
}

// TestSSEEndToEnd: the same event a PUT answers arrives as SSE data, with
// the store index as id and the action as event name.
func TestSSEEndToEnd(t *testing.T) {
	s := wtMember(t, "", nil)
	base := s.ClientURLs()[0]
	st := openSSE(t, base, "/v2/keys/app?wait=true&recursive=true", nil, nil)
	for i, v := range []string{"one", "two"} {
		ev := wtPut(t, s, "/app/k", v)
		f := st.nextWithin(t, 5*time.Second)
		want := renderEvent(ev)
		if f.event != "set" || f.id != strconv.FormatUint(ev.Node.ModifiedIndex, 10) || f.data != want {
			t.Fatalf("frame %d: %+v, want id %d data %s", i, f, ev.Node.ModifiedIndex, want)
		}
	}
	// A delete of the directory reaches it too (rule 3), as "delete".
	r, _ := http.NewRequest("DELETE", base+"/v2/keys/app?recursive=true", nil)
	resp, err := wtClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f := st.nextWithin(t, 5*time.Second); f.event != "delete" || !strings.Contains(f.data, `"dir":true`) {
		t.Fatalf("delete frame %+v", f)
	}
}

// renderEvent is the event's JSON as the member writes it.
func renderEvent(ev *api.Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// TestWatchReplayBeyondMemory: waitIndex older than the 1000 events kept
// in memory is answered from the durable history: exactly the events after
// it, in order, then live with no gap and no duplicate.
func TestWatchReplayBeyondMemory(t *testing.T) {
	s := wtMember(t, "", nil)
	const n = 1500
	for i := 1; i <= n; i++ {
		wtPut(t, s, fmt.Sprintf("/r/k%d", i%5), strconv.Itoa(i))
	}
	// Long poll: the first matching event from index 1.
	code, body, hdr := wtGet(t, s, "/v2/keys/r/k1?wait=true&waitIndex=1")
	if code != 200 || !strings.Contains(body, `"modifiedIndex":1,`) || hdr.Get("X-Etcd-Index") != strconv.Itoa(n) {
		t.Fatalf("long poll from 1: %d %s (X-Etcd-Index %s)", code, body, hdr.Get("X-Etcd-Index"))
	}
	// Stream from 2: 1499 replayed lines, then live.
	resp, err := http.Get(s.ClientURLs()[0] + "/v2/keys/r?wait=true&recursive=true&stream=true&waitIndex=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	readIdx := func() uint64 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stream line %q: %v", line, err)
		}
		return ev.Node.ModifiedIndex
	}
	for want := uint64(2); want <= n; want++ {
		if got := readIdx(); got != want {
			t.Fatalf("replayed %d, want %d", got, want)
		}
	}
	wtPut(t, s, "/r/live", "x")
	if got := readIdx(); got != n+1 {
		t.Fatalf("live event %d, want %d", got, n+1)
	}
}

// TestWatchHistoryCountLimit is W40 with --watch-history-events 1000: the
// count limit is exact.
func TestWatchHistoryCountLimit(t *testing.T) {
	s := wtMember(t, "", func(c *Config) { c.WatchHistoryEvents = 1000 })
	for i := 1; i <= 1034; i++ {
		wtPut(t, s, "/churn", strconv.Itoa(i))
	}
	code, body, hdr := wtGet(t, s, "/v2/keys/message?wait=true&waitIndex=8")
	want := `{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [35/8]","index":1034}` + "\n"
	if code != 400 || body != want || hdr.Get("X-Etcd-Index") != "1034" {
		t.Fatalf("got %d %q (X-Etcd-Index %s)", code, body, hdr.Get("X-Etcd-Index"))
	}
	if code, body, _ := wtGet(t, s, "/v2/keys/churn?wait=true&waitIndex=35"); code != 200 || !strings.Contains(body, `"modifiedIndex":35,`) {
		t.Fatalf("oldest retained: %d %s", code, body)
	}
	// SSE: the same condition is a final error event naming where to resume.
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/message?wait=true", map[string]string{"Last-Event-ID": "7"}, nil)
	f := st.nextWithin(t, 5*time.Second)
	if f.event != "error" || f.id != "1034" || f.data+"\n" != want {
		t.Fatalf("SSE error frame %+v", f)
	}
	if _, err := st.next(); err != io.EOF {
		t.Fatalf("after the error event: %v, want EOF", err)
	}
}

// TestWatchHistorySurvivesRestart: after a restart, waitIndex and
// Last-Event-ID reach events written before it.
func TestWatchHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := wtMember(t, dir, nil)
	for i := 1; i <= 20; i++ {
		wtPut(t, s, "/p/k", strconv.Itoa(i))
	}
	wtStop(t, s)
	s = wtMember(t, dir, nil)
	code, body, _ := wtGet(t, s, "/v2/keys/p/k?wait=true&waitIndex=3")
	if code != 200 || !strings.Contains(body, `"value":"3","modifiedIndex":3,`) {
		t.Fatalf("long poll after restart: %d %s", code, body)
	}
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/p?wait=true&recursive=true", map[string]string{"Last-Event-ID": "10"}, nil)
	for want := uint64(11); want <= 20; want++ {
		if got := frameIndex(t, st.nextWithin(t, 5*time.Second)); got != want {
			t.Fatalf("resumed at %d, want %d", got, want)
		}
	}
	wtPut(t, s, "/p/k", "21")
	if got := frameIndex(t, st.nextWithin(t, 5*time.Second)); got != 21 {
		t.Fatalf("live after resume: %d", got)
	}
	if code, body, _ := wtGet(t, s, "/metrics"); code != 200 || !strings.Contains(body, "cairn_watch_history_oldest_index 1") {
		t.Errorf("oldest index metric missing: %.300s", body)
	}
}

// TestWatchCheckerConcurrentWrites: writers and watchers (SSE and
// stream=true, live and replaying from history) run at once; every
// watcher's sequence must be the acknowledged writes it matches, in index
// order, nothing missing, nothing twice.
func TestWatchCheckerConcurrentWrites(t *testing.T) {
	s := wtMember(t, "", nil)
	base := s.ClientURLs()[0]
	keys := []string{"/c/a/x", "/c/a/y", "/c/b/x", "/c/b/y", "/c/_h/x"}
	const writers, perWriter = 4, 400
	var (
		mu    sync.Mutex
		acked []*api.Event
	)
	// Some history first, so that watchers can start deep in it.
	for i := range 1200 {
		ev := wtPut(t, s, keys[i%len(keys)], "pre")
		acked = append(acked, ev)
	}
	type wspec struct {
		path      string
		recursive bool
		sse       bool
		since     uint64
	}
	specs := []wspec{
		{"/c", true, true, 0}, {"/c", true, false, 1}, {"/c/a", true, true, 5},
		{"/c/b/x", false, false, 0}, {"/c/_h", true, true, 1}, {"/c", true, true, 1100},
		{"/c/a/y", false, true, 700},
	}
	type result struct {
		spec  wspec
		start uint64
		got   []uint64
		err   error
	}
	results := make([]*result, len(specs))
	stop := make(chan struct{})
	var wwg sync.WaitGroup
	for i, sp := range specs {
		res := &result{spec: sp}
		results[i] = res
		target := fmt.Sprintf("/v2/keys%s?wait=true&recursive=%v", sp.path, sp.recursive)
		if sp.since > 0 {
			target += fmt.Sprintf("&waitIndex=%d", sp.since)
		}
		r, _ := http.NewRequest("GET", base+target, nil)
		if sp.sse {
			r.Header.Set("Accept", "text/event-stream")
		} else {
			r.URL.RawQuery += "&stream=true"
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.start, _ = strconv.ParseUint(resp.Header.Get("X-Etcd-Index"), 10, 64)
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			defer resp.Body.Close()
			go func() { <-stop; resp.Body.Close() }()
			rd := bufio.NewReader(resp.Body)
			st := &sseStream{resp: resp, rd: rd}
			for range 1 << 20 {
				var idx uint64
				if sp.sse {
					f, err := st.next()
					if err != nil {
						res.err = err
						return
					}
					if f.event == "error" {
						res.err = fmt.Errorf("error event %s", f.data)
						return
					}
					idx, _ = strconv.ParseUint(f.id, 10, 64)
				} else {
					line, err := rd.ReadString('\n')
					if err != nil {
						res.err = err
						return
					}
					var ev api.Event
					if err := json.Unmarshal([]byte(line), &ev); err != nil {
						res.err = err
						return
					}
					idx = ev.Node.ModifiedIndex
				}
				mu.Lock()
				res.got = append(res.got, idx)
				mu.Unlock()
			}
		}()
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				ev := wtPut(t, s, keys[(w+i)%len(keys)], fmt.Sprintf("w%d-%d", w, i))
				mu.Lock()
				acked = append(acked, ev)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(acked, func(a, b *api.Event) int { return int(a.Index) - int(b.Index) })
	for i, ev := range acked {
		if ev.Index != uint64(i+1) {
			t.Fatalf("acknowledged indexes not dense at %d: %d", i, ev.Index)
		}
	}
	expect := func(sp wspec, start uint64) []uint64 {
		from := sp.since
		if from == 0 {
			from = start + 1
		}
		var out []uint64
		for _, ev := range acked {
			k := ev.Node.Key
			match := k == sp.path || sp.recursive && strings.HasPrefix(k, sp.path+"/") && !strings.Contains(k[len(sp.path):], "/_")
			if ev.Index >= from && match {
				out = append(out, ev.Index)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, res := range results {
		want := expect(res.spec, res.start)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := len(res.got)
			mu.Unlock()
			if n >= len(want) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wwg.Wait()
	for _, res := range results {
		want := expect(res.spec, res.start)
		if !slices.Equal(res.got, want) {
			t.Errorf("%+v (start %d, end %v): %d events, want %d; first difference at %d", res.spec, res.start, res.err,
				len(res.got), len(want), firstDiff(res.got, want))
		}
	}
	if n := s.hub.Evictions(); n != 0 {
		t.Errorf("%d evictions", n)
	}
}

func firstDiff(a, b []uint64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// smallBufferDialer gives the client a tiny receive buffer, so a client
// that stops reading stalls the server's writes quickly.
func smallBufferDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
}

// TestSlowSSEConsumerCatchesUp: an SSE client that stops reading while
// thousands of events are written overflows its buffer; it is caught up
// from the durable history instead of being dropped, and receives every
// event once, in order.
func TestSlowSSEConsumerCatchesUp(t *testing.T) {
	s := wtMember(t, "", nil)
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/slow?wait=true&recursive=true", nil, smallBufferDialer())
	value := strings.Repeat("v", 4096)
	const n = 2500
	for i := 1; i <= n; i++ {
		wtPut(t, s, fmt.Sprintf("/slow/k%d", i%7), value)
	}
	for want := uint64(1); want <= n; want++ {
		f := st.nextWithin(t, 10*time.Second)
		if f.event != "set" || frameIndex(t, f) != want {
			t.Fatalf("frame %+v, want set at %d", f, want)
		}
	}
	if s.hub.CatchUps() == 0 {
		t.Errorf("the client never fell behind (socket buffers absorbed %d events): the test proves nothing", n)
	}
	if s.hub.Evictions() != 0 {
		t.Errorf("%d evictions", s.hub.Evictions())
	}
	_, body, _ := wtGet(t, s, "/metrics")
	for _, m := range []string{"cairn_watchers_open 1", "cairn_watchers_evicted_total 0", "cairn_watchers_caught_up_total "} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// TestSlowSSEConsumerPastHistory: with a history too short to catch up
// from, the slow SSE client gets a final error event (401) whose id is the
// index to resume from, then the response ends; the eviction is counted.
func TestSlowSSEConsumerPastHistory(t *testing.T) {
	s := wtMember(t, "", func(c *Config) { c.WatchHistoryEvents = 50 })
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/slow?wait=true&recursive=true", nil, smallBufferDialer())
	value := strings.Repeat("v", 4096)
	const n = 2500
	for i := 1; i <= n; i++ {
		wtPut(t, s, "/slow/k", value)
	}
	var last uint64
	for range n + 1 {
		f := st.nextWithin(t, 10*time.Second)
		if f.event == "error" {
			var e api.Error
			if err := json.Unmarshal([]byte(f.data), &e); err != nil || e.Code != 401 || f.id != strconv.FormatUint(e.Index, 10) || e.Index != n {
				t.Fatalf("error frame %+v (%v)", f, err)
			}
			break
		}
		idx := frameIndex(t, f)
		if idx != last+1 {
			t.Fatalf("event %d after %d", idx, last)
		}
		last = idx
	}
	if last == n {
		t.Fatal("the client kept up: the test proves nothing")
	}
	if _, err := st.next(); err != io.EOF {
		t.Fatalf("after the error event: %v, want EOF", err)
	}
	if s.hub.Evictions() != 1 {
		t.Errorf("evictions %d, want 1", s.hub.Evictions())
	}
}

// TestSSEDisconnectAndHeartbeat: a member's SSE stream sends ": ping"
// heartbeats while idle, and a client that goes away is noticed without
// any write: the watcher count drops.
func TestSSEDisconnectAndHeartbeat(t *testing.T) {
	s := wtMember(t, "", func(c *Config) { c.SSEHeartbeat = 50 * time.Millisecond })
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/idle?wait=true", nil, nil)
	line, err := st.rd.ReadString('\n')
	if err != nil || line != ": ping\n" {
		t.Fatalf("first line %q, %v; want a heartbeat", line, err)
	}
	if n := s.hub.Count(); n != 1 {
		t.Fatalf("watchers %d", n)
	}
	// A long idle heartbeat, so that only the disconnect probe can notice.
	s2 := wtMember(t, "", nil)
	st2 := openSSE(t, s2.ClientURLs()[0], "/v2/keys/idle?wait=true", nil, nil)
	for i := 0; s2.hub.Count() != 1 && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	st2.resp.Body.Close()
	for i := 0; s2.hub.Count() != 0; i++ {
		if i == 1000 {
			t.Fatal("the watcher of a closed SSE client was not removed within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMaxWatchers: past --max-watchers a watch (long poll or SSE) gets a
// JSON error naming the limit; closing one makes room.
func TestMaxWatchers(t *testing.T) {
	s := wtMember(t, "", func(c *Config) { c.MaxWatchers = 1 })
	st := openSSE(t, s.ClientURLs()[0], "/v2/keys/a?wait=true", nil, nil)
	want := `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: too many watchers (--max-watchers 1)","index":0}` + "\n"
	if code, body, _ := wtGet(t, s, "/v2/keys/b?wait=true"); code != 500 || body != want {
		t.Fatalf("second watch: %d %q", code, body)
	}
	st.resp.Body.Close()
	for i := 0; s.hub.Count() != 0; i++ {
		if i == 1000 {
			t.Fatal("the first watcher was not removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(s.ClientURLs()[0] + "/v2/keys/b?wait=true&waitIndex=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("watch after room was made: %d", resp.StatusCode)
	}
}
