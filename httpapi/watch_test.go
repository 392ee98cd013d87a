package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"cairn/api"
)

type watchCall struct {
	key               string
	recursive, stream bool
	since             uint64
}

type fakeWatches struct {
	watchFn func(key string, recursive, stream bool, since uint64) (Watcher, *api.Error)
	count   int
	mu      sync.Mutex
	calls   []watchCall
}

func (f *fakeWatches) Watch(key string, recursive, stream bool, since uint64) (Watcher, *api.Error) {
	f.mu.Lock()
	f.calls = append(f.calls, watchCall{key, recursive, stream, since})
	f.mu.Unlock()
	return f.watchFn(key, recursive, stream, since)
}

func (f *fakeWatches) Count() int { return f.count }

// fakeWatcher queues what the test pushes; end finishes it with an error.
type fakeWatcher struct {
	mu      sync.Mutex
	queue   []*api.Event
	ended   bool
	err     error
	ready   chan struct{}
	start   uint64
	removed chan struct{}
	once    sync.Once
}

func newFakeWatcher(start uint64) *fakeWatcher {
	return &fakeWatcher{ready: make(chan struct{}, 1), start: start, removed: make(chan struct{})}
}

func (w *fakeWatcher) push(evs ...*api.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, evs...)
	w.mu.Unlock()
	w.signal()
}

// end finishes the watch after what is queued; nil means a plain end.
func (w *fakeWatcher) end(err error) {
	w.mu.Lock()
	w.ended, w.err = true, err
	if err == nil {
		w.err = errors.New("ended")
	}
	w.mu.Unlock()
	w.signal()
}

func (w *fakeWatcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

func (w *fakeWatcher) Next() (*api.Event, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 {
		ev := w.queue[0]
		w.queue = w.queue[1:]
		return ev, nil
	}
	if w.ended {
		return nil, w.err
	}
	return nil, nil
}

func (w *fakeWatcher) Ready() <-chan struct{} { return w.ready }
func (w *fakeWatcher) StartIndex() uint64     { return w.start }
func (w *fakeWatcher) Remove()                { w.once.Do(func() { close(w.removed) }) }

func (w *fakeWatcher) waitRemoved(t *testing.T) {
	t.Helper()
	select {
	case <-w.removed:
	case <-time.After(5 * time.Second):
		t.Fatal("watcher not removed")
	}
}

func watchEnv(t *testing.T, wa *fakeWatcher, werr *api.Error) (*env, *fakeWatches, *httptest.Server) {
	fw := &fakeWatches{watchFn: func(string, bool, bool, uint64) (Watcher, *api.Error) {
		if werr != nil {
			return nil, werr
		}
		return wa, nil
	}}
	e := newEnv(t, func(e *env) { e.opt.Watches = fw })
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	return e, fw, srv
}

var w27 = &api.Event{Action: "set", Index: 19, Node: node("/watched", "v1", 19, 19)}

const w27Body = `{"action":"set","node":{"key":"/watched","value":"v1","modifiedIndex":19,"createdIndex":19}}` + "\n"

// TestWatchLongPoll: headers are flushed at once with the registration
// index, then one event ends the response (spec §5.1, W26).
func TestWatchLongPoll(t *testing.T) {
	wa := newFakeWatcher(18)
	e, fw, srv := watchEnv(t, wa, nil)
	resp, err := http.Get(srv.URL + "/v2/keys/watched?wait=true&quorum=true&waitIndex=0&sorted=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Headers arrived before any event.
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "X-Etcd-Index": "18", "X-Raft-Index": "7", "X-Raft-Term": "2",
		"X-Etcd-Cluster-Id": "156c5310fedaaf52", "Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length %d on a watch", resp.ContentLength)
	}
	wa.push(&api.Event{Action: "set", Refresh: true, Node: node("/watched", "v0", 18, 18)}) // never shown
	wa.push(w27)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != w27Body {
		t.Errorf("body %q, want %q", b, w27Body)
	}
	wa.waitRemoved(t)
	if e.raft.barriers != 0 {
		t.Error("quorum was not ignored on a watch [D-9]")
	}
	if want := (watchCall{"/watched", false, false, 0}); len(fw.calls) != 1 || fw.calls[0] != want {
		t.Errorf("Watch calls %+v, want %+v", fw.calls, want)
	}
}

// TestWatchLongPollAnsweredAtOnce: a long poll whose event is already in
// the history gets the same response (chunked, the registration index in
// the headers) in one write; one that is over before any event gets the
// headers and no body, as when it ends while waiting.
func TestWatchLongPollAnsweredAtOnce(t *testing.T) {
	for _, refresh := range []bool{false, true} {
		wa := newFakeWatcher(18)
		if refresh {
			wa.push(&api.Event{Action: "set", Refresh: true, Node: node("/watched", "v0", 18, 18)}) // never shown
		}
		wa.push(w27)
		_, _, srv := watchEnv(t, wa, nil)
		resp, err := http.Get(srv.URL + "/v2/keys/watched?wait=true&waitIndex=19")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Etcd-Index") != "18" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("refresh=%v: status %d, headers %v", refresh, resp.StatusCode, resp.Header)
		}
		if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("refresh=%v: Content-Length %d, Transfer-Encoding %v; want chunked", refresh, resp.ContentLength, resp.TransferEncoding)
		}
		if string(b) != w27Body {
			t.Errorf("refresh=%v: body %q, want %q", refresh, b, w27Body)
		}
		wa.waitRemoved(t)
	}

	wa := newFakeWatcher(18)
	wa.end(nil)
	_, _, srv := watchEnv(t, wa, nil)
	resp, err := http.Get(srv.URL + "/v2/keys/watched?wait=true")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Etcd-Index") != "18" || len(b) != 0 {
		t.Errorf("ended watch: status %d, X-Etcd-Index %q, body %q", resp.StatusCode, resp.Header.Get("X-Etcd-Index"), b)
	}
	wa.waitRemoved(t)
}

// TestWatchStream: every event is flushed as it comes; a closed channel ends
// the response cleanly (spec §5.4, W29).
func TestWatchStream(t *testing.T) {
	wa := newFakeWatcher(20)
	_, fw, srv := watchEnv(t, wa, nil)
	resp, err := http.Get(srv.URL + "/v2/keys/stream?wait=true&stream=true&recursive=true&waitIndex=21")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	s1 := &api.Event{Action: "set", Index: 21, Node: node("/stream", "s1", 21, 21)}
	s2 := &api.Event{Action: "set", Index: 22, Node: node("/stream", "s2", 22, 22), PrevNode: node("/stream", "s1", 21, 21)}
	for _, ev := range []*api.Event{s1, s2} {
		wa.push(ev)
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ev.MarshalJSON()
		if line != string(want)+"\n" {
			t.Errorf("line %q, want %q", line, want)
		}
	}
	wa.end(nil)
	if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
		t.Errorf("after close: %q, %v", rest, err)
	}
	wa.waitRemoved(t)
	if want := (watchCall{"/stream", true, true, 21}); fw.calls[0] != want {
		t.Errorf("Watch call %+v, want %+v", fw.calls[0], want)
	}
}

// TestWatchClientGone: the watcher is removed when the client leaves.
func TestWatchClientGone(t *testing.T) {
	wa := newFakeWatcher(5)
	_, _, srv := watchEnv(t, wa, nil)
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/keys/a?wait=true", nil)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	wa.waitRemoved(t)
}

func TestWatchErrors(t *testing.T) {
	t.Run("history cleared → 401", func(t *testing.T) {
		e, _, _ := watchEnv(t, nil, api.NewError(401, "the requested history has been cleared [35/8]", 1034))
		w := e.do(t, req{method: "GET", target: "/v2/keys/message?wait=true&waitIndex=8"})
		want := `{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [35/8]","index":1034}` + "\n"
		if w.Code != 400 || w.Body.String() != want {
			t.Errorf("got %d %q", w.Code, w.Body)
		}
		wantHeader(t, w.Header(), "X-Etcd-Index", "1034")
		wantHeader(t, w.Header(), "X-Raft-Index", "")
	})
	t.Run("no watch hub → 300", func(t *testing.T) {
		e := newEnv(t, nil)
		w := e.do(t, req{method: "GET", target: "/v2/keys/a?wait=true"})
		if w.Code != 500 || w.Body.String() != errBody(300, "etcdserver: watches are not available on this member", 0) {
			t.Errorf("got %d %q", w.Code, w.Body)
		}
	})
	t.Run("wait=false is a plain GET", func(t *testing.T) {
		e, fw, _ := watchEnv(t, nil, nil)
		if w := e.do(t, req{method: "GET", target: "/v2/keys/a?wait=false&stream=true"}); w.Code != 200 {
			t.Errorf("status %d", w.Code)
		}
		if len(fw.calls) != 0 {
			t.Error("watch registered")
		}
	})
}
