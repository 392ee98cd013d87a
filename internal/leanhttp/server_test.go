package leanhttp

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDifferential protects the promise that a plain request gets from
// leanhttp what net/http would answer: each raw request goes to net/http
// alone and to leanhttp (which must serve it itself), and the answers, and
// whether the connection is still usable afterwards, must agree.
func TestDifferential(t *testing.T) {
	std, lean := startBoth(t, app(), nil)
	big := strings.Repeat("x", 300<<10)
	cases := []struct {
		name   string
		raw    string
		method string
		async  bool // the server may not read all of raw
		alive  bool // the connection serves a next request
		// leanCloses: leanhttp announces with Connection: close the close
		// net/http does without a word (its head went out first).
		leanCloses bool
		check      func(t *testing.T, r *reply)
	}{
		{name: "GET", raw: req("GET", "/text", ""), alive: true},
		{name: "GET sniffed Content-Type", raw: req("GET", "/sniff", ""), alive: true, check: wantHeader("Content-Type", "text/html; charset=utf-8")},
		{name: "GET empty body", raw: req("GET", "/empty", ""), alive: true, check: wantHeader("Content-Length", "0")},
		{name: "GET handler Date", raw: req("GET", "/date", ""), alive: true, check: wantHeader("Date", "Mon, 02 Jan 2006 15:04:05 GMT")},
		{name: "GET multi-valued headers", raw: req("GET", "/headers", ""), alive: true},
		{name: "GET request view", raw: req("GET", "/req?x=1&y=%20z", "", "accept: */*", "X-Dup: 1", "x-dup: 2", "Cookie: a=b", "User-Agent:  spaced\t "), alive: true},
		{name: "GET Pragma no-cache", raw: req("GET", "/req", "", "Pragma: no-cache"), alive: true},
		{name: "HEAD body written", raw: req("HEAD", "/text", ""), method: "HEAD", alive: true, check: wantHeader("Content-Length", "13")},
		{name: "HEAD sniffed", raw: req("HEAD", "/sniff", ""), method: "HEAD", alive: true, check: wantHeader("Content-Type", "text/html; charset=utf-8")},
		{name: "HEAD handler Content-Length", raw: req("HEAD", "/head-cl", ""), method: "HEAD", alive: true, check: wantHeader("Content-Length", "5")},
		{name: "HEAD nothing written", raw: req("HEAD", "/empty", ""), method: "HEAD", alive: true, check: wantNoHeader("Content-Length")},
		{name: "PUT form", raw: req("PUT", "/form", "a=1&b=two+words", "Content-Type: application/x-www-form-urlencoded"), alive: true},
		{name: "POST form", raw: req("POST", "/form", "a=%3D&b=", "Content-Type: application/x-www-form-urlencoded"), alive: true},
		{name: "POST request view", raw: req("POST", "/req", "some body", "Content-Type: text/plain"), alive: true},
		{name: "POST empty body", raw: req("POST", "/req", "", "Content-Length: 0"), alive: true},
		{name: "DELETE", raw: req("DELETE", "/req?recursive=true", ""), alive: true},
		{name: "PATCH", raw: req("PATCH", "/req", "p"), alive: true},
		{name: "OPTIONS", raw: req("OPTIONS", "/v2/keys", ""), alive: true, check: wantHeader("Content-Length", "0")},
		{name: "404", raw: req("GET", "/nowhere", ""), alive: true},
		{name: "unread small body", raw: req("POST", "/ignore", strings.Repeat("y", 1000)), alive: true},
		{name: "unread body over 256 KiB", raw: req("POST", "/ignore", big), async: true, alive: false},
		{name: "204", raw: req("GET", "/status?code=204", ""), alive: true, check: wantNoHeader("Content-Length")},
		{name: "204 handler Content-Length", raw: req("GET", "/status?code=204&cl=3&body=abc", ""), alive: true, check: wantNoHeader("Content-Length")},
		{name: "304", raw: req("GET", "/status?code=304&ct=1", ""), alive: true, check: wantNoHeader("Content-Length")},
		{name: "201 with body", raw: req("PUT", "/status?code=201&body=created", "v=1"), alive: true},
		{name: "599 unknown status", raw: req("GET", "/status?code=599&body=x", ""), alive: true},
		{name: "over 64 KiB in small writes", raw: req("GET", "/big?n=100000&w=1000", ""), alive: true, check: wantChunked},
		{name: "over 64 KiB in one write", raw: req("GET", "/big?n=100000", ""), alive: true, check: wantChunked},
		{name: "over 64 KiB with Content-Length", raw: req("GET", "/big?n=100000&w=7000&cl=1", ""), alive: true, check: wantHeader("Content-Length", "100000")},
		{name: "10 KB body", raw: req("GET", "/big?n=10000&w=100", ""), alive: true},
		{name: "2048 bytes", raw: req("GET", "/big?n=2048", ""), alive: true},
		{name: "2049 bytes", raw: req("GET", "/big?n=2049", ""), alive: true},
		{name: "exactly 64 KiB", raw: req("GET", "/big?n=65536&w=4096", ""), alive: true},
		{name: "header CR LF neutralised", raw: req("GET", "/crlf", ""), alive: true, check: wantNoHeader("Injected")},
		{name: "request Connection close", raw: req("GET", "/text", "", "Connection: close"), alive: false},
		{name: "request Connection list with close", raw: req("GET", "/text", "", "Connection: keep-alive, CLOSE"), alive: false},
		{name: "handler Connection close", raw: req("GET", "/close", ""), alive: false},
		{name: "handler short of its Content-Length", raw: req("GET", "/short", ""), alive: false, leanCloses: true},
		{name: "Content-Length set after Write", raw: req("GET", "/late-cl", ""), alive: true, check: wantHeader("Content-Length", "3")},
		{name: "Content-Encoding not sniffed", raw: req("GET", "/gzip", ""), alive: true, check: wantNoHeader("Content-Type")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			var replies [2]*reply
			for i, addr := range []string{std, lean} {
				c := dial(t, addr)
				if tc.async {
					c.sendAsync(tc.raw)
				} else {
					c.send(tc.raw)
				}
				r, err := c.next(method)
				if err != nil {
					t.Fatalf("%s: %v", []string{"std", "lean"}[i], err)
				}
				replies[i] = r
				alive, who := c.alive()
				if alive != tc.alive {
					t.Errorf("%s: connection alive = %v, want %v", r.who(), alive, tc.alive)
				}
				if alive && who != r.who() {
					t.Errorf("next request served by %q, want %q", who, r.who())
				}
			}
			if who := replies[1].who(); who != "lean" {
				t.Fatalf("served by %q, want lean", who)
			}
			if tc.leanCloses {
				if !replies[1].Close {
					t.Error("no Connection: close")
				}
				replies[1].Close = false
				delete(replies[1].Header, "Connection")
			}
			compareReplies(t, replies[0], replies[1])
			if tc.check != nil {
				tc.check(t, replies[1])
			}
		})
	}
}

func wantHeader(k, v string) func(*testing.T, *reply) {
	return func(t *testing.T, r *reply) {
		t.Helper()
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

func wantNoHeader(k string) func(*testing.T, *reply) {
	return func(t *testing.T, r *reply) {
		t.Helper()
		if got, ok := r.Header[k]; ok {
			t.Errorf("%s: %q, want none", k, got)
		}
	}
}

func wantChunked(t *testing.T, r *reply) {
	t.Helper()
	if len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %q, want chunked", r.TransferEncoding)
	}
}

// TestSniffLargeBody checks the sniffed type of a large
// body is computed from its first bytes, as net/http does, however the
// handler splits its writes.
func TestSniffLargeBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<!DOCTYPE html>"))
		_, _ = w.Write([]byte(strings.Repeat("<p>x</p>", 20000)))
	})
	std, lean := startBoth(t, h, nil)
	var replies []*reply
	for _, addr := range []string{std, lean} {
		replies = append(replies, dial(t, addr).do(req("GET", "/", ""), "GET")...)
	}
	compareReplies(t, replies[0], replies[1])
	wantHeader("Content-Type", "text/html; charset=utf-8")(t, replies[1])
}

// TestPipelining protects keep-alive with pipelining: requests written
// in one write on one connection are all answered, in order, by leanhttp.
func TestPipelining(t *testing.T) {
	ls := startLean(t, app(), nil)
	c := dial(t, ls.addr)
	raw := req("GET", "/req?n=1", "") +
		req("HEAD", "/text", "") +
		req("POST", "/req?n=3", "body-3") +
		req("PUT", "/ignore", "unread") +
		req("OPTIONS", "/x", "") +
		req("GET", "/big?n=70000&w=10000", "") +
		req("DELETE", "/req?n=7", "")
	rs := c.do(raw, "GET", "HEAD", "POST", "PUT", "OPTIONS", "GET", "DELETE")
	want := []func(r *reply) bool{
		func(r *reply) bool { return strings.Contains(string(r.body), "uri=/req?n=1 ") },
		func(r *reply) bool { return len(r.body) == 0 && r.ContentLength == 13 },
		func(r *reply) bool { return strings.Contains(string(r.body), `body="body-3"`) },
		func(r *reply) bool { return string(r.body) == "ignored" },
		func(r *reply) bool { return r.Header.Get("Allow") != "" },
		func(r *reply) bool { return len(r.body) == 70000 },
		func(r *reply) bool { return strings.Contains(string(r.body), "method=DELETE uri=/req?n=7 ") },
	}
	for i, r := range rs {
		if r.who() != "lean" || r.StatusCode != 200 || !want[i](r) {
			t.Errorf("response %d: %s by %q, body %q", i, r.Status, r.who(), abbrev(string(r.body)))
		}
	}
	if ok, who := c.alive(); !ok || who != "lean" {
		t.Errorf("after the pipeline: alive %v, served by %q", ok, who)
	}
}

// TestManySequential protects connection reuse: many requests one after
// the other on one connection, all served by leanhttp.
func TestManySequential(t *testing.T) {
	ls := startLean(t, app(), nil)
	c := dial(t, ls.addr)
	for i := range 300 {
		body := fmt.Sprintf("v=%d", i)
		r := c.do(req("PUT", fmt.Sprintf("/req?i=%d", i), body), "PUT")[0]
		if r.who() != "lean" || !strings.Contains(string(r.body), fmt.Sprintf("uri=/req?i=%d ", i)) ||
			!strings.Contains(string(r.body), fmt.Sprintf("body=%q", body)) {
			t.Fatalf("request %d: %s by %q: %q", i, r.Status, r.who(), r.body)
		}
	}
}

// TestCRLFAfterPost protects the tolerance net/http has for the stray CRLF
// old clients send after a POST body: the next request is still served.
func TestCRLFAfterPost(t *testing.T) {
	std, lean := startBoth(t, app(), nil)
	raw := req("POST", "/req", "abc") + "\r\n" + req("GET", "/req?second", "")
	var replies [][]*reply
	for _, addr := range []string{std, lean} {
		replies = append(replies, dial(t, addr).do(raw, "POST", "GET"))
	}
	for i := range 2 {
		compareReplies(t, replies[0][i], replies[1][i])
	}
	if who := replies[1][1].who(); who != "lean" {
		t.Errorf("request after the CRLF served by %q, want lean", who)
	}
}
