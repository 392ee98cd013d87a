package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"cairn/api"
	"cairn/storage"
)

func TestMethodNotAllowed(t *testing.T) {
	cases := []struct {
		method, target, allow string
	}{
		{"PATCH", "/v2/keys/x", "HEAD,GET,PUT,POST,DELETE"},
		{"PATCH", "/v2/keys", "HEAD,GET,PUT,POST,DELETE"},
		{"FOO", "/v2/keys/x", "HEAD,GET,PUT,POST,DELETE"},
		{"TRACE", "/v2/keys/", "HEAD,GET,PUT,POST,DELETE"},
		{"PATCH", "/v2/members", "GET,POST,DELETE,PUT"},
		{"HEAD", "/v2/members/leader", "GET,POST,DELETE,PUT"},
		{"HEAD", "/v2/stats/self", "GET"},
		{"POST", "/v2/stats/leader", "GET"},
		{"PUT", "/v2/stats/store", "GET"},
		{"HEAD", "/version", "GET"},
		{"POST", "/health", "GET"},
		{"HEAD", "/health", "GET"},
		{"POST", "/v2/machines", "GET,HEAD"},
		{"BREW", "/version", "GET"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, req{method: tc.method, target: tc.target})
			if w.Code != http.StatusMethodNotAllowed {
				t.Fatalf("status %d, want 405", w.Code)
			}
			h := w.Header()
			wantHeader(t, h, "Allow", tc.allow)
			wantHeader(t, h, "Content-Type", "text/plain; charset=utf-8")
			wantHeader(t, h, "X-Content-Type-Options", "nosniff")
			wantHeader(t, h, "X-Etcd-Cluster-Id", "")
			wantHeader(t, h, "X-Etcd-Index", "")
			wantHeader(t, h, "Access-Control-Allow-Origin", "*")
			if tc.method != "HEAD" && w.Body.String() != "Method Not Allowed\n" {
				t.Errorf("body %q", w.Body)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	for _, target := range []string{"/", "/v2/", "/v2", "/v2/stats", "/v2/stats/", "/v2/stats/self/", "/readyz", "/livez",
		"/v2/keysx", "/v2/keys%2Fa", "/v2/machines/", "/version/", "/health/", "/v2/auth/users", "/debug/vars", "/v3/kv/range"} {
		for _, method := range []string{"GET", "PUT", "FOO"} {
			t.Run(method+" "+target, func(t *testing.T) {
				e := newEnv(t, nil)
				w := e.do(t, req{method: method, target: target})
				if w.Code != http.StatusNotFound {
					t.Fatalf("status %d, want 404", w.Code)
				}
				if w.Body.String() != "404 page not found\n" {
					t.Errorf("body %q", w.Body)
				}
				wantHeader(t, w.Header(), "Content-Type", "text/plain; charset=utf-8")
				wantHeader(t, w.Header(), "X-Content-Type-Options", "nosniff")
				wantHeader(t, w.Header(), "Access-Control-Allow-Origin", "*")
			})
		}
	}
}

func TestOptions(t *testing.T) {
	for _, target := range []string{"/v2/keys/x", "/nope", "/v2/members/leader", "/v2//keys/./x", "*"} {
		t.Run(target, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, req{method: "OPTIONS", target: target})
			if w.Code != http.StatusOK || w.Body.Len() != 0 {
				t.Fatalf("status %d body %q, want 200 empty", w.Code, w.Body)
			}
			h := w.Header()
			wantHeader(t, h, "Access-Control-Allow-Origin", "*")
			wantHeader(t, h, "Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
			wantHeader(t, h, "Access-Control-Allow-Headers", "accept, content-type, authorization")
			wantHeader(t, h, "X-Etcd-Cluster-Id", "")
			if len(e.raft.proposed()) != 0 || len(e.store.gets) != 0 {
				t.Error("OPTIONS reached a handler")
			}
		})
	}
}

func TestCORS(t *testing.T) {
	cases := []struct {
		name    string
		origins []string
		origin  string
		target  string
		want    map[string]string
	}{
		{"default star", nil, "", "/v2/keys/a", map[string]string{
			"Access-Control-Allow-Origin":   "*",
			"Access-Control-Allow-Methods":  "POST, GET, OPTIONS, PUT, DELETE",
			"Access-Control-Allow-Headers":  "accept, content-type, authorization",
			"Access-Control-Expose-Headers": "",
		}},
		{"default star ignores Origin", nil, "http://evil", "/version", map[string]string{
			"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "",
		}},
		{"star in list", []string{"http://a", "*"}, "http://b", "/v2/keys/a", map[string]string{
			"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "",
		}},
		{"listed origin echoed [D-11]", []string{"http://a", "http://b"}, "http://b", "/v2/keys/a", map[string]string{
			"Access-Control-Allow-Origin":   "http://b",
			"Access-Control-Allow-Methods":  "POST, GET, OPTIONS, PUT, DELETE",
			"Access-Control-Allow-Headers":  "accept, content-type, authorization",
			"Access-Control-Expose-Headers": "X-Etcd-Index, X-Raft-Index, X-Raft-Term, X-Etcd-Cluster-Id",
		}},
		{"listed origin on 404", []string{"http://a"}, "http://a", "/nope", map[string]string{
			"Access-Control-Allow-Origin": "http://a",
		}},
		{"unlisted origin", []string{"http://a"}, "http://c", "/v2/keys/a", map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "",
			"Access-Control-Allow-Headers": "", "Access-Control-Expose-Headers": "",
		}},
		{"no origin with a list", []string{"http://a"}, "", "/v2/keys/a", map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) { e.opt.CORSOrigins = tc.origins })
			for _, method := range []string{"GET", "OPTIONS"} {
				q := req{method: method, target: tc.target}
				if tc.origin != "" {
					q.header = map[string]string{"Origin": tc.origin}
				}
				w := e.do(t, q)
				for k, v := range tc.want {
					wantHeader(t, w.Header(), k, v)
				}
				wantHeader(t, w.Header(), "Vary", "")
			}
		})
	}
}

func TestRedirectUncleanPath(t *testing.T) {
	cases := []struct {
		method, target, location string
	}{
		{"GET", "/v2/keys//message/./?sorted=true", "/v2/keys/message/?sorted=true"},
		{"PUT", "/v2/keys//message?value=x", "/v2/keys/message?value=x"},
		{"DELETE", "/v2/keys/a/../b", "/v2/keys/b"},
		{"POST", "/v2/keys/a/.", "/v2/keys/a"},
		{"HEAD", "/v2/keys/a/..", "/v2/keys"},
		{"GET", "/v2/keys/a/../../../../x", "/x"},
		{"GET", "//version", "/version"},
		{"GET", "/v2/stats/./self", "/v2/stats/self"},
		{"GET", "/nope//x", "/nope/x"},
		{"GET", "/v2/keys//a%20b", "/v2/keys/a%2520b"}, // as Go's ServeMux (and so etcd) builds it
		{"PATCH", "/v2/keys//x", "/v2/keys/x"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, req{method: tc.method, target: tc.target})
			if w.Code != http.StatusTemporaryRedirect {
				t.Fatalf("status %d, want 307", w.Code)
			}
			h := w.Header()
			wantHeader(t, h, "Location", tc.location)
			wantHeader(t, h, "X-Etcd-Index", "")
			wantHeader(t, h, "X-Etcd-Cluster-Id", "")
			wantHeader(t, h, "Access-Control-Allow-Origin", "*")
			switch tc.method {
			case "GET":
				wantHeader(t, h, "Content-Type", "text/html; charset=utf-8")
				if want := `<a href="` + tc.location + `">Temporary Redirect</a>.` + "\n\n"; w.Body.String() != want {
					t.Errorf("body %q, want %q", w.Body, want)
				}
			case "HEAD":
				wantHeader(t, h, "Content-Type", "text/html; charset=utf-8")
			default:
				wantHeader(t, h, "Content-Type", "")
				if w.Body.Len() != 0 {
					t.Errorf("body %q, want none", w.Body)
				}
			}
			if len(e.raft.proposed()) != 0 || len(e.store.gets) != 0 {
				t.Error("the operation ran")
			}
		})
	}
	// Encoded dots and slashes pass the router and are clamped [D-2].
	for _, target := range []string{"/v2/keys/%2E%2E/0", "/v2/keys/..%2F..%2Fx", "/v2/keys/%2e", "/v2/keys/.hidden", "/v2/keys/a%2F%2Fb"} {
		e := newEnv(t, nil)
		if w := e.do(t, req{method: "GET", target: target}); w.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", target, w.Code)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.store.GetFn = func(string, bool, bool) (*api.Event, *api.Error) { panic("boom") }
	})
	w := e.do(t, req{method: "GET", target: "/v2/keys/a"})
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	if want := errBody(300, "internal server error", 0); w.Body.String() != want {
		t.Errorf("body %q, want %q", w.Body, want)
	}
	wantHeader(t, w.Header(), "Content-Type", "application/json")
	logs := e.logText()
	if !strings.Contains(logs, "boom") || !strings.Contains(logs, "goroutine") {
		t.Errorf("panic not logged with its stack: %s", logs)
	}
	// The router keeps serving.
	e.store.GetFn = nil
	if w := e.do(t, req{method: "GET", target: "/v2/keys/a"}); w.Code != http.StatusOK {
		t.Errorf("after a panic: status %d", w.Code)
	}
}

// TestPanicAfterWrite: once the response has started, the connection is
// aborted rather than a truncated body looking whole.
func TestPanicAfterWrite(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.opt.Watches = &fakeWatches{watchFn: func(string, bool, bool, uint64) (Watcher, *api.Error) {
			return &panicWatcher{}, nil // the response ends at once; Remove then panics
		}}
	})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/keys/a?wait=true")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("want a broken response after a late panic")
	}
	srv.Close() // waits for the handler to finish
	if !strings.Contains(e.logText(), "late boom") {
		t.Error("panic not logged")
	}
}

type panicWatcher struct{}

func (p *panicWatcher) Next() (*api.Event, error) { return nil, errors.New("ended") }
func (p *panicWatcher) Ready() <-chan struct{}    { return nil }
func (p *panicWatcher) StartIndex() uint64        { return 1 }
func (p *panicWatcher) Remove()                   { panic("late boom") }

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(e *env) { e.opt.Registry = reg })
	e.do(t, req{method: "GET", target: "/v2/keys/a"})
	e.do(t, req{method: "PUT", target: "/v2/keys/a?value=1"})
	e.do(t, req{method: "GET", target: "/nope"})
	// A second router on the same registry must not panic.
	NewRouter(e.raft, e.store, e.cluster, e.opt)
	w := e.do(t, req{method: "GET", target: "/metrics"})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	body := w.Body.String()
	for _, want := range []string{
		`cairn_http_requests_total{code="200",method="GET",route="keys"} 1`,
		`cairn_http_requests_total{code="201",method="PUT",route="keys"} 1`,
		`cairn_http_requests_total{code="404",method="GET",route="other"} 1`,
		`cairn_http_request_duration_seconds_count{method="GET",route="keys"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestRealServer runs a few cases over a real listener: chunked bodies,
// HEAD framing and redirects as a client sees them.
func TestRealServer(t *testing.T) {
	e := newEnv(t, func(e *env) { e.opt.MaxRequestBytes = 1000 })
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	t.Run("chunked form body over the limit → 413", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader("value="), strings.NewReader(strings.Repeat("x", 2000)))
		r, _ := http.NewRequest("PUT", srv.URL+"/v2/keys/a", io.NopCloser(body))
		r.Header.Set("Content-Type", formType)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || string(b) != errBody(210, "request body exceeds 1000 bytes", 0) {
			t.Errorf("got %d %q", resp.StatusCode, b)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(b))
		}
	})
	t.Run("chunked form body under the limit", func(t *testing.T) {
		r, _ := http.NewRequest("PUT", srv.URL+"/v2/keys/a", io.NopCloser(strings.NewReader("value=small")))
		r.Header.Set("Content-Type", formType)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Errorf("status %d", resp.StatusCode)
		}
		if cmds := e.raft.proposed(); len(cmds) == 0 || cmds[len(cmds)-1].Value != "small" {
			t.Errorf("cmds %+v", cmds)
		}
	})
	t.Run("Content-Length on either side of net/http's own", func(t *testing.T) {
		for _, n := range []int{1, 1900, 1940, 1960, 1980, 2000, 2100, 4000, 6000} { // bodies around net/http's 2048-byte buffer
			value := strings.Repeat("v", n)
			e.store.GetFn = func(p string, _, _ bool) (*api.Event, *api.Error) {
				return &api.Event{Action: "get", Node: node(p, value, 5, 5)}, nil
			}
			resp, err := client.Get(srv.URL + "/v2/keys/big")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ContentLength != int64(len(b)) || len(resp.TransferEncoding) != 0 || !strings.Contains(string(b), value) {
				t.Errorf("%d-byte value: status %d, Content-Length %d, Transfer-Encoding %v, %d bytes read",
					n, resp.StatusCode, resp.ContentLength, resp.TransferEncoding, len(b))
			}
		}
		e.store.GetFn = nil
	})
	t.Run("HEAD framing", func(t *testing.T) {
		resp, err := client.Head(srv.URL + "/v2/keys/message")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength <= 0 {
			t.Errorf("status %d Content-Length %d", resp.StatusCode, resp.ContentLength)
		}
	})
	t.Run("redirect keeps the method and query", func(t *testing.T) {
		r, _ := http.NewRequest("PUT", srv.URL+"/v2/keys//message/./?value=x", nil)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 307 || resp.Header.Get("Location") != "/v2/keys/message/?value=x" {
			t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("keep-alive after a watch-free GET", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			resp, err := client.Get(srv.URL + "/v2/keys/a")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// TestConcurrentRequests exercises the pools under the race detector.
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.raft.ProposeFn = func(_ context.Context, c storage.Cmd) (*api.Event, error) {
			return &api.Event{Action: "set", Index: 9, Node: node(c.Path, c.Value, 9, 9)}, nil
		}
	})
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				v := strings.Repeat(string(rune('a'+g)), i%50)
				w := e.do(t, req{method: "PUT", target: "/v2/keys/k?value=" + v})
				want := `{"action":"set","node":{"key":"/k","value":"` + v + `","modifiedIndex":9,"createdIndex":9}}` + "\n"
				if w.Body.String() != want {
					t.Errorf("body %q, want %q", w.Body, want)
					return
				}
			}
		}(g)
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}
