package bench

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name      string
		raw       string
		head      bool
		status    int
		keepAlive bool
		rest      string // what must remain unread: the next response
		wantErr   bool
	}{
		{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Etcd-Index: 7\r\n\r\nhelloNEXT", status: 200, keepAlive: true, rest: "NEXT"},
		{name: "header names any case", raw: "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}NEXT", status: 201, keepAlive: true, rest: "NEXT"},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nNEXT", status: 200, keepAlive: true, rest: "NEXT"},
		{name: "connection close", raw: "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 404},
		{name: "http/1.0", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200},
		{name: "http/1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nxNEXT", status: 200, keepAlive: true, rest: "NEXT"},
		{name: "body until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200},
		{name: "no content", raw: "HTTP/1.1 204 No Content\r\n\r\nNEXT", status: 204, keepAlive: true, rest: "NEXT"},
		{name: "head has no body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nNEXT", head: true, status: 200, keepAlive: true, rest: "NEXT"},
		{name: "bad status line", raw: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: true},
		{name: "not http", raw: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: true},
		{name: "header without colon", raw: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", wantErr: true},
		{name: "bad length", raw: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: true},
		{name: "bad chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: true},
		{name: "chunk without CRLF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", wantErr: true},
		{name: "truncated body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", wantErr: true},
		{name: "truncated headers", raw: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.raw))
			status, keepAlive, err := readResponse(br, c.head)
			if c.wantErr {
				if err == nil {
					t.Fatalf("accepted: status %d", status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest := make([]byte, 64)
			n, _ := br.Read(rest)
			if status != c.status || keepAlive != c.keepAlive || string(rest[:n]) != c.rest {
				t.Fatalf("got status %d keep-alive %v rest %q, want %d %v %q", status, keepAlive, rest[:n], c.status, c.keepAlive, c.rest)
			}
		})
	}
}

// TestWireConn runs the wire client against net/http's server: the request
// must arrive as sent, connections are reused, a "Connection: close" is
// honoured by dialling again, and statuses of 300 and up are errors.
func TestWireConn(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPut || r.URL.Path != "/v2/keys/a b" ||
			r.PostForm.Get("value") != "x&y" || r.Form.Get("ttl") != "5" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		if r.Header.Get("X-Close") == "" && r.Form.Get("close") == "1" {
			w.Header().Set("Connection", "close")
		}
		if r.Form.Get("fail") == "1" {
			http.Error(w, `{"errorCode":100}`, http.StatusNotFound)
			return
		}
		w.Write([]byte(`{"action":"set"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ep, err := parseEndpoint(ClientWire, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rq := ep.open(context.Background())
	defer rq.close()
	put := func(query string) error {
		return rq.do(http.MethodPut, "/v2/keys/a%20b?ttl=5"+query, "application/x-www-form-urlencoded", "value=x%26y")
	}
	for i := range 3 {
		if err := put(""); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 requests took %d connections, want 1", n)
	}
	if err := put("&close=1"); err != nil {
		t.Fatal(err)
	}
	if err := put(""); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("after Connection: close, %d connections, want 2", n)
	}
	if err := put("&fail=1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404 answered %v", err)
	}
	if err := rq.do(http.MethodPut, "/v2/keys/other", "", ""); err == nil || !strings.Contains(err.Error(), "418") {
		t.Fatalf("418 answered %v", err)
	}
}

// TestWireConnCancel: cancelling the run ends a request the server never
// answers.
func TestWireConnCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	ep, err := parseEndpoint(ClientWire, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rq := ep.open(ctx)
	defer rq.close()
	done := make(chan error, 1)
	go func() { done <- rq.do(http.MethodGet, "/v2/keys/a", "", "") }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled request succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request outlived its cancellation by 5 s")
	}
	if err := rq.do(http.MethodGet, "/v2/keys/a", "", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		kind, ep string
		ok       bool
	}{
		{ClientWire, "http://127.0.0.1:2379", true},
		{ClientWire, "https://127.0.0.1:2379", true}, // through net/http
		{ClientStd, "http://127.0.0.1:2379", true},
		{ClientWire, "127.0.0.1:2379", false},
		{ClientWire, "unix:///tmp/x", false},
		{"curl", "http://127.0.0.1:2379", false},
	} {
		_, err := parseEndpoint(c.kind, c.ep)
		if (err == nil) != c.ok {
			t.Errorf("%s %s: %v", c.kind, c.ep, err)
		}
	}
}
