package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"cairn/api"
)

// sseGet opens an SSE watch on srv with extra headers.
func sseGet(t *testing.T, srv *httptest.Server, target string, hdr map[string]string) *http.Response {
	t.Helper()
	r, _ := http.NewRequest("GET", srv.URL+target, nil)
	r.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readFrame reads one SSE frame (up to and including its blank line).
func readFrame(t *testing.T, rd *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for range 64 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read frame: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		if line == "\n" {
			return b.String()
		}
	}
	t.Fatalf("frame too long: %q", b.String())
	return ""
}

var (
	s1 = &api.Event{Action: "set", Index: 21, Node: node("/stream", "s1", 21, 21)}
	s2 = &api.Event{Action: "set", Index: 22, Node: node("/stream", "s2", 22, 22), PrevNode: node("/stream", "s1", 21, 21)}
)

const (
	s1Frame = "id: 21\nevent: set\ndata: {\"action\":\"set\",\"node\":{\"key\":\"/stream\",\"value\":\"s1\",\"modifiedIndex\":21,\"createdIndex\":21}}\n\n"
	s2Frame = "id: 22\nevent: set\ndata: {\"action\":\"set\",\"node\":{\"key\":\"/stream\",\"value\":\"s2\",\"modifiedIndex\":22,\"createdIndex\":22},\"prevNode\":{\"key\":\"/stream\",\"value\":\"s1\",\"modifiedIndex\":21,\"createdIndex\":21}}\n\n"
)

// TestSSEFraming: W29–W31 over Server-Sent Events: headers at once, then
// each event as id/event/data with the long-poll JSON on one line; the
// stream goes on after the first event although stream=true is absent.
func TestSSEFraming(t *testing.T) {
	wa := newFakeWatcher(20)
	_, fw, srv := watchEnv(t, wa, nil)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Etcd-Index": "20",
		"X-Raft-Index": "7", "X-Raft-Term": "2", "X-Etcd-Cluster-Id": "156c5310fedaaf52", "Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	rd := bufio.NewReader(resp.Body)
	wa.push(&api.Event{Action: "set", Index: 20, Refresh: true, Node: node("/stream", "x", 20, 20)}, s1) // refresh never shown
	if f := readFrame(t, rd); f != s1Frame {
		t.Errorf("frame %q, want %q", f, s1Frame)
	}
	wa.push(s2)
	if f := readFrame(t, rd); f != s2Frame {
		t.Errorf("frame %q, want %q", f, s2Frame)
	}
	// A plain end (shutdown) closes the stream without an error event.
	wa.end(nil)
	if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
		t.Errorf("after the end: %q, %v", rest, err)
	}
	wa.waitRemoved(t)
	if want := (watchCall{"/stream", false, true, 0}); fw.calls[0] != want {
		t.Errorf("Watch call %+v, want %+v (SSE always streams)", fw.calls[0], want)
	}
}

// TestSSEWithStreamTrue: stream=true together with SSE changes nothing:
// SSE wins (same framing, same Watch call).
func TestSSEWithStreamTrue(t *testing.T) {
	wa := newFakeWatcher(20)
	_, fw, srv := watchEnv(t, wa, nil)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true&stream=true&recursive=true", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	wa.push(s1, s2)
	rd := bufio.NewReader(resp.Body)
	if f := readFrame(t, rd) + readFrame(t, rd); f != s1Frame+s2Frame {
		t.Errorf("frames %q", f)
	}
	if want := (watchCall{"/stream", true, true, 0}); fw.calls[0] != want {
		t.Errorf("Watch call %+v, want %+v", fw.calls[0], want)
	}
}

// TestSSELastEventID: Last-Event-ID resumes at id+1 and beats waitIndex;
// without SSE it is ignored.
func TestSSELastEventID(t *testing.T) {
	wa := newFakeWatcher(50)
	_, fw, srv := watchEnv(t, wa, nil)
	resp := sseGet(t, srv, "/v2/keys/k?wait=true&waitIndex=5", map[string]string{"Last-Event-ID": "41"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	wa.end(nil)
	_, _ = io.ReadAll(resp.Body)
	if want := (watchCall{"/k", false, true, 42}); fw.calls[0] != want {
		t.Errorf("Watch call %+v, want %+v", fw.calls[0], want)
	}
	wa2 := newFakeWatcher(50)
	_, fw2, srv2 := watchEnv(t, wa2, nil)
	r, _ := http.NewRequest("GET", srv2.URL+"/v2/keys/k?wait=true&waitIndex=5", nil)
	r.Header.Set("Last-Event-ID", "41")
	resp2, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	wa2.push(w27)
	_, _ = io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if want := (watchCall{"/k", false, false, 5}); fw2.calls[0] != want {
		t.Errorf("long poll Watch call %+v, want %+v", fw2.calls[0], want)
	}
}

func TestSSEBadInput(t *testing.T) {
	for _, id := range []string{"abc", "-1", "1.5", "18446744073709551615", "99999999999999999999"} {
		t.Run("Last-Event-ID "+id, func(t *testing.T) {
			e, fw, _ := watchEnv(t, newFakeWatcher(1), nil)
			w := e.do(t, req{method: "GET", target: "/v2/keys/k?wait=true", header: map[string]string{"Accept": "text/event-stream", "Last-Event-ID": id}})
			if w.Code != 400 || w.Body.String() != errBody(203, `invalid value for "Last-Event-ID"`, 0) {
				t.Errorf("got %d %q", w.Code, w.Body)
			}
			wantHeader(t, w.Header(), "Content-Type", "application/json")
			wantHeader(t, w.Header(), "X-Etcd-Index", "0")
			if len(fw.calls) != 0 {
				t.Error("watch registered")
			}
		})
	}
	t.Run("waitIndex NaN", func(t *testing.T) {
		e, _, _ := watchEnv(t, newFakeWatcher(1), nil)
		w := e.do(t, req{method: "GET", target: "/v2/keys/k?wait=true&waitIndex=x", header: map[string]string{"Accept": "text/event-stream"}})
		if w.Code != 400 || w.Body.String() != errBody(203, `invalid value for "waitIndex"`, 0) {
			t.Errorf("got %d %q", w.Code, w.Body)
		}
	})
	t.Run("history cleared: final error event", func(t *testing.T) {
		cleared := api.NewError(401, "the requested history has been cleared [35/8]", 1034)
		e, _, _ := watchEnv(t, nil, cleared)
		w := e.do(t, req{method: "GET", target: "/v2/keys/message?wait=true", header: map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "7"}})
		want := "id: 1034\nevent: error\ndata: " + errBody(401, "the requested history has been cleared [35/8]", 1034) + "\n"
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("got %d %q, want 200 %q", w.Code, w.Body, want)
		}
		wantHeader(t, w.Header(), "Content-Type", "text/event-stream")
		wantHeader(t, w.Header(), "X-Etcd-Index", "1034")
	})
	t.Run("other watch errors stay JSON", func(t *testing.T) {
		e, _, _ := watchEnv(t, nil, api.NewError(300, "etcdserver: too many watchers (--max-watchers 1)", 0))
		w := e.do(t, req{method: "GET", target: "/v2/keys/k?wait=true", header: map[string]string{"Accept": "text/event-stream"}})
		if w.Code != 500 || w.Body.String() != errBody(300, "etcdserver: too many watchers (--max-watchers 1)", 0) {
			t.Errorf("got %d %q", w.Code, w.Body)
		}
	})
}

// TestSSEEvictedEndsWithErrorEvent: a watcher the hub drops ends an SSE
// stream with a final error event (id = the index to resume from), after
// the events it still had.
func TestSSEEvictedEndsWithErrorEvent(t *testing.T) {
	wa := newFakeWatcher(20)
	_, _, srv := watchEnv(t, wa, nil)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true", nil)
	evicted := api.NewError(401, "the watcher fell more than 100 events behind and was dropped", 400)
	wa.push(s1)
	wa.end(evicted)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := s1Frame + "id: 400\nevent: error\ndata: " + errBody(401, "the watcher fell more than 100 events behind and was dropped", 400) + "\n"
	if string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
	wa.waitRemoved(t)

	// A stream=true (non-SSE) watcher dropped the same way just ends.
	wb := newFakeWatcher(20)
	_, _, srv2 := watchEnv(t, wb, nil)
	resp2, err := http.Get(srv2.URL + "/v2/keys/stream?wait=true&stream=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	wb.push(s1)
	wb.end(evicted)
	body, _ = io.ReadAll(resp2.Body)
	if want, _ := s1.MarshalJSON(); string(body) != string(want)+"\n" {
		t.Errorf("stream body %q", body)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	wa := newFakeWatcher(3)
	fw := &fakeWatches{watchFn: func(string, bool, bool, uint64) (Watcher, *api.Error) { return wa, nil }}
	e := newEnv(t, func(e *env) { e.opt.Watches, e.opt.SSEHeartbeat = fw, 20*time.Millisecond })
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close) // after the response body is closed
	resp := sseGet(t, srv, "/v2/keys/k?wait=true", nil)
	rd := bufio.NewReader(resp.Body)
	done := make(chan string, 1)
	go func() {
		var b strings.Builder
		for range 2 {
			line, _ := rd.ReadString('\n')
			b.WriteString(line)
		}
		done <- b.String()
	}()
	select {
	case got := <-done:
		if got != ": ping\n\n" {
			t.Errorf("heartbeat %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat")
	}
}

func TestAcceptsEventStream(t *testing.T) {
	for accept, want := range map[string]bool{
		"text/event-stream":                    true,
		"TEXT/Event-Stream":                    true,
		"text/html, text/event-stream;q=0.9":   true,
		"application/json":                     false,
		"*/*":                                  false,
		"":                                     false,
		"text/event-streamx, application/json": false,
	} {
		r := httptest.NewRequest("GET", "/v2/keys/a?wait=true", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := acceptsEventStream(r); got != want {
			t.Errorf("Accept %q: %v, want %v", accept, got, want)
		}
	}
}

// TestSSECORS: with an origin list, an SSE watch from a listed origin gets
// the origin echoed and the index headers exposed [D-11]; a preflight for
// Last-Event-ID (an EventSource resuming) is allowed; every other response
// keeps the spec's headers byte for byte.
func TestSSECORS(t *testing.T) {
	wa := newFakeWatcher(20)
	fw := &fakeWatches{watchFn: func(string, bool, bool, uint64) (Watcher, *api.Error) { return wa, nil }}
	e := newEnv(t, func(e *env) { e.opt.Watches, e.opt.CORSOrigins = fw, []string{"http://ui.example"} })
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	resp := sseGet(t, srv, "/v2/keys/k?wait=true", map[string]string{"Origin": "http://ui.example"})
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":   "http://ui.example",
		"Access-Control-Allow-Methods":  "POST, GET, OPTIONS, PUT, DELETE",
		"Access-Control-Allow-Headers":  "accept, content-type, authorization",
		"Access-Control-Expose-Headers": "X-Etcd-Index, X-Raft-Index, X-Raft-Term, X-Etcd-Cluster-Id",
		"Vary":                          "",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	wa.end(nil)

	for _, tc := range []struct {
		origin, reqHeaders, want string
	}{
		{"http://ui.example", "last-event-id", "accept, content-type, authorization, last-event-id"},
		{"http://ui.example", "Accept, Last-Event-ID", "accept, content-type, authorization, last-event-id"},
		{"http://ui.example", "content-type", "accept, content-type, authorization"},
		{"http://ui.example", "", "accept, content-type, authorization"},
		{"http://other.example", "last-event-id", ""},
	} {
		hdr := map[string]string{"Origin": tc.origin}
		if tc.reqHeaders != "" {
			hdr["Access-Control-Request-Headers"] = tc.reqHeaders
		}
		w := e.do(t, req{method: "OPTIONS", target: "/v2/keys/k", header: hdr})
		if w.Code != 200 || w.Body.Len() != 0 {
			t.Errorf("preflight %+v: %d %q", tc, w.Code, w.Body)
		}
		wantHeader(t, w.Header(), "Access-Control-Allow-Headers", tc.want)
		wantHeader(t, w.Header(), "Vary", "")
	}
	// Default "*": the preflight for Last-Event-ID is allowed too.
	d := newEnv(t, nil)
	w := d.do(t, req{method: "OPTIONS", target: "/v2/keys/k", header: map[string]string{"Origin": "http://x", "Access-Control-Request-Headers": "last-event-id"}})
	wantHeader(t, w.Header(), "Access-Control-Allow-Origin", "*")
	wantHeader(t, w.Header(), "Access-Control-Allow-Headers", "accept, content-type, authorization, last-event-id")
}

func TestUIWatchPage(t *testing.T) {
	e := newEnv(t, nil)
	w := e.do(t, req{method: "GET", target: "/ui/watch.html"})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "new EventSource(") {
		t.Fatalf("GET: %d %.100q", w.Code, w.Body)
	}
	wantHeader(t, w.Header(), "Content-Type", "text/html; charset=utf-8")
	wantHeader(t, w.Header(), "Access-Control-Allow-Origin", "*")
	if h := e.do(t, req{method: "HEAD", target: "/ui/watch.html"}); h.Code != 200 || h.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", h.Code, h.Body)
	}
	p := e.do(t, req{method: "POST", target: "/ui/watch.html"})
	if p.Code != 405 {
		t.Errorf("POST: %d", p.Code)
	}
	wantHeader(t, p.Header(), "Allow", "GET,HEAD")
}

// TestSSEOpenAPI validates SSE responses and the page against openapi.yaml.
func TestSSEOpenAPI(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	for _, tc := range []struct {
		name   string
		target string
		hdr    map[string]string
		werr   *api.Error
	}{
		{"events", "/v2/keys/stream?wait=true", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "20"}, nil},
		{"cleared", "/v2/keys/stream?wait=true", map[string]string{"Accept": "text/event-stream"}, api.NewError(401, "the requested history has been cleared [35/8]", 1034)},
		{"bad id", "/v2/keys/stream?wait=true", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "x"}, nil},
		{"page", "/ui/watch.html", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wa := newFakeWatcher(20)
			wa.push(s1, s2)
			wa.end(errors.New("shutdown"))
			e, _, _ := watchEnv(t, wa, tc.werr)
			w := e.do(t, req{method: "GET", target: tc.target, header: tc.hdr})
			u, _ := url.Parse("http://localhost:2379" + tc.target)
			if rest, ok := strings.CutPrefix(u.Path, "/v2/keys/"); ok {
				u.Path = "/v2/keys/" + url.PathEscape(rest)
			}
			r, _ := http.NewRequest("GET", u.String(), nil)
			route, params, err := router.FindRoute(r)
			if err != nil {
				t.Fatalf("no route: %v", err)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route},
				Status:                 w.Code,
				Header:                 w.Header(),
				Body:                   io.NopCloser(strings.NewReader(w.Body.String())),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true},
			}
			if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
				t.Errorf("status %d body %.200q: %v", w.Code, w.Body, err)
			}
		})
	}
}

// handOffEnv is watchEnv with Options.Streams: SSE watches leave their
// handler for a stream goroutine (sse.go).
func handOffEnv(t *testing.T, wa *fakeWatcher) (*Streams, *httptest.Server) {
	st := NewStreams()
	fw := &fakeWatches{watchFn: func(string, bool, bool, uint64) (Watcher, *api.Error) { return wa, nil }}
	e := newEnv(t, func(e *env) { e.opt.Watches, e.opt.Streams = fw, st })
	srv := httptest.NewServer(e.h)
	t.Cleanup(func() { st.Close(time.Second); srv.Close() })
	return st, srv
}

// TestSSEHandOff: a handed-off stream writes exactly what the handler
// would (headers, frames, final error event, clean end of the chunked
// body) and removes its watcher.
func TestSSEHandOff(t *testing.T) {
	wa := newFakeWatcher(20)
	st, srv := handOffEnv(t, wa)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true", nil)
	for k, v := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Etcd-Index": "20",
		"X-Raft-Index": "7", "X-Raft-Term": "2", "X-Etcd-Cluster-Id": "156c5310fedaaf52", "Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v", resp.TransferEncoding)
	}
	rd := bufio.NewReader(resp.Body)
	wa.push(&api.Event{Action: "set", Index: 20, Refresh: true, Node: node("/stream", "x", 20, 20)}, s1)
	if f := readFrame(t, rd); f != s1Frame {
		t.Errorf("frame %q, want %q", f, s1Frame)
	}
	if st.Len() != 1 {
		t.Errorf("streams %d, want 1", st.Len())
	}
	wa.push(s2)
	evicted := api.NewError(401, "the watcher fell more than 100 events behind and was dropped", 400)
	wa.end(evicted)
	rest, err := io.ReadAll(rd)
	want := s2Frame + "id: 400\nevent: error\ndata: " + errBody(401, "the watcher fell more than 100 events behind and was dropped", 400) + "\n"
	if err != nil || string(rest) != want {
		t.Errorf("rest %q, %v; want %q", rest, err, want)
	}
	wa.waitRemoved(t)
	for i := 0; st.Len() != 0 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if st.Len() != 0 {
		t.Errorf("streams %d after the end", st.Len())
	}
}

// TestSSEHandOffClose: Close ends running streams with a clean end of the
// body (the client sees EOF, not a broken connection).
func TestSSEHandOffClose(t *testing.T) {
	wa := newFakeWatcher(20)
	st, srv := handOffEnv(t, wa)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true", nil)
	wa.push(s1)
	rd := bufio.NewReader(resp.Body)
	readFrame(t, rd)
	st.Close(time.Second)
	if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
		t.Errorf("after Close: %q, %v", rest, err)
	}
	wa.waitRemoved(t)
}

// TestSSEHandOffClientGone: the stream notices a client that closed its
// connection without any event or heartbeat to write, and removes the
// watcher.
func TestSSEHandOffClientGone(t *testing.T) {
	wa := newFakeWatcher(20)
	st, srv := handOffEnv(t, wa)
	resp := sseGet(t, srv, "/v2/keys/stream?wait=true", nil)
	for i := 0; st.Len() != 1 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	resp.Body.Close()
	wa.waitRemoved(t) // within probeInterval (2 s); waitRemoved allows 5 s
}

func TestWriteChunk(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() {
		_ = writeChunk(c1, []byte("hello, world: a payload of 31 b"), true)
		c1.Close()
	}()
	got, _ := io.ReadAll(c2)
	if want := "1f\r\nhello, world: a payload of 31 b\r\n0\r\n\r\n"; string(got) != want {
		t.Errorf("chunk %q, want %q", got, want)
	}
}
