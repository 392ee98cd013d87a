package server_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// absent as a wanted header value means "the header must not be sent".
const absent = "\x00absent"

// kind selects the default header checks of a response.
type kind int

const (
	kindKeys  kind = iota // a /v2/keys answer (JSON, X-Etcd-*, X-Raft-* on success)
	kindWatch             // a /v2/keys watch answered at once (chunked, no Content-Length)
	kindOther             // any other client-port answer (CORS only)
	kindPeer              // a peer-port answer (no CORS)
)

// hcase is one request with its wanted answer. Targets, bodies, header values
// and goldens may use the placeholders of tmpl.
type hcase struct {
	name   string
	req    rawReq
	status int
	hdr    map[string]string
	body   string
	kind   kind
	// headLenOf, for a HEAD, is the golden GET body whose length the
	// Content-Length must equal.
	headLenOf string
	// after runs extra checks on the response.
	after func(t *testing.T, s *suite, r response)
}

// step is one named action of an ordered scenario.
type step struct {
	name string
	run  func(t *testing.T, s *suite)
}

// suite is the state shared by the steps of one scenario.
type suite struct {
	m       *member
	tp      *tmpl
	watches map[string]*watch
	lastRI  uint64 // highest X-Raft-Index seen
	term    string // X-Raft-Term of the first success
}

func newSuite(t *testing.T, m *member, version string) *suite {
	t.Helper()
	s := &suite{m: m, watches: map[string]*watch{}}
	s.tp = &tmpl{exps: map[string]string{}, nums: map[string]uint64{}, vars: map[string]string{
		"client": m.clientURL,
		"peer":   m.peerURL,
		"name":   m.name,
		"ver":    version,
	}}
	// Member and cluster IDs from the member list (checked elsewhere).
	r := m.do(t, rawReq{method: "GET", target: "/v2/members/leader"})
	id := between(r.body, `"id":"`, `"`)
	did, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		t.Fatalf("leader id %q: %v", id, err)
	}
	s.tp.vars["id"] = id
	s.tp.vars["did"] = strconv.FormatUint(did, 10)
	s.tp.vars["cid"] = r.header.Get("X-Etcd-Cluster-Id")
	if s.tp.vars["cid"] == "" {
		t.Fatalf("no X-Etcd-Cluster-Id on /v2/members/leader")
	}
	t.Cleanup(func() {
		for _, w := range s.watches {
			w.stop()
		}
	})
	return s
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// run executes steps in order, each as a subtest. A failing step does not
// stop the later ones (their own checks name what went wrong).
func (s *suite) run(t *testing.T, steps []step) {
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) { st.run(t, s) })
	}
}

func (s *suite) mustRender(t *testing.T, v string) string {
	t.Helper()
	out, err := s.tp.render(v)
	if err != nil {
		t.Fatalf("render %q: %v", v, err)
	}
	return out
}

// send renders and sends a request.
func (s *suite) send(t *testing.T, r rawReq) response {
	t.Helper()
	r.base = s.mustRender(t, r.base)
	r.target = s.mustRender(t, r.target)
	r.body = s.mustRender(t, r.body)
	s.tp.sent = time.Now()
	resp := s.m.do(t, r)
	s.tp.receivd = time.Now()
	return resp
}

func req(c hcase) step {
	return step{name: c.name, run: func(t *testing.T, s *suite) {
		resp := s.send(t, c.req)
		s.check(t, c, resp)
	}}
}

// check applies the wanted status, headers and body of c to resp.
func (s *suite) check(t *testing.T, c hcase, resp response) {
	t.Helper()
	wantBody := c.body
	if c.status == http.StatusTemporaryRedirect && resp.status == http.StatusMovedPermanently {
		// §3.1, S-10: etcd built with Go < 1.26 answers 301; tests accept both.
		wantBody = strings.Replace(wantBody, "Temporary Redirect", "Moved Permanently", 1)
	} else if resp.status != c.status {
		t.Errorf("status %d, want %d (body %q)", resp.status, c.status, resp.body)
	}
	want := map[string]string{}
	if c.status == http.StatusTemporaryRedirect {
		// Path cleaning happens before routing: no /v2/keys headers.
		for _, h := range []string{"X-Etcd-Index", "X-Etcd-Cluster-Id", "X-Raft-Index", "X-Raft-Term"} {
			want[h] = absent
		}
	}
	switch c.kind {
	case kindKeys, kindWatch:
		want["Content-Type"] = "application/json"
		want["X-Etcd-Cluster-Id"] = "{{cid}}"
		if _, ok := c.hdr["X-Etcd-Index"]; !ok {
			t.Fatalf("test bug: case %s has no X-Etcd-Index", c.name)
		}
	case kindPeer:
		for _, h := range corsHeaders {
			want[h] = absent
		}
	}
	if c.kind != kindPeer {
		want["Access-Control-Allow-Origin"] = "*"
		want["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS, PUT, DELETE"
		want["Access-Control-Allow-Headers"] = "accept, content-type, authorization"
		want["Access-Control-Expose-Headers"] = absent
	}
	want["Vary"] = absent
	for k, v := range c.hdr {
		want[k] = v
	}
	for k, v := range want {
		got, ok := resp.header[http.CanonicalHeaderKey(k)]
		if v == absent {
			if ok {
				t.Errorf("header %s: %q, want none", k, got)
			}
			continue
		}
		if !ok {
			t.Errorf("header %s missing, want %q", k, s.mustRender(t, v))
			continue
		}
		if len(got) != 1 {
			t.Errorf("header %s sent %d times: %q", k, len(got), got)
		}
		if err := s.tp.match(v, got[0]); err != nil {
			t.Errorf("header %s: %v", k, err)
		}
	}
	// X-Raft-* on /v2/keys: on success only; the raft index never goes back
	// and the term of a lone member does not change.
	if c.kind == kindKeys || c.kind == kindWatch {
		ri, rt := resp.header.Get("X-Raft-Index"), resp.header.Get("X-Raft-Term")
		if resp.status >= 200 && resp.status < 300 {
			n, err := strconv.ParseUint(ri, 10, 64)
			if err != nil {
				t.Errorf("X-Raft-Index %q: %v", ri, err)
			} else if n < s.lastRI {
				t.Errorf("X-Raft-Index went back: %d after %d", n, s.lastRI)
			} else {
				s.lastRI = n
			}
			if _, err := strconv.ParseUint(rt, 10, 64); err != nil {
				t.Errorf("X-Raft-Term %q: %v", rt, err)
			} else if s.term == "" {
				s.term = rt
			} else if rt != s.term {
				t.Errorf("X-Raft-Term %s, earlier %s", rt, s.term)
			}
		} else {
			for _, h := range []string{"X-Raft-Index", "X-Raft-Term"} {
				if v, ok := resp.header[h]; ok {
					t.Errorf("error response carries %s: %q", h, v)
				}
			}
		}
	}
	// Length framing.
	switch {
	case c.req.method == http.MethodHead:
		if resp.body != "" {
			t.Errorf("HEAD has a body: %q", resp.body)
		}
		if c.headLenOf != "" {
			wantLen := len(s.mustRender(t, c.headLenOf))
			if resp.contentLength != int64(wantLen) {
				t.Errorf("HEAD Content-Length %d, want %d (the GET body's length)", resp.contentLength, wantLen)
			}
		}
	case c.kind == kindWatch:
		if resp.contentLength != -1 || len(resp.transferEncoding) != 1 || resp.transferEncoding[0] != "chunked" {
			t.Errorf("watch answer: Content-Length %d, Transfer-Encoding %q; want chunked", resp.contentLength, resp.transferEncoding)
		}
	case resp.status == http.StatusNoContent || resp.status == http.StatusTemporaryRedirect || resp.status == http.StatusMovedPermanently:
	default:
		if resp.contentLength != int64(len(resp.body)) {
			t.Errorf("Content-Length %d, body has %d bytes", resp.contentLength, len(resp.body))
		}
	}
	if c.req.method != http.MethodHead {
		if err := s.tp.match(wantBody, resp.body); err != nil {
			t.Errorf("body %v", err)
		}
	}
	if c.after != nil {
		c.after(t, s, resp)
	}
}

var corsHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"}

// watchStart opens a background watch and checks its headers, which must
// arrive before any event.
func watchStart(name, target string, hdr map[string]string) step {
	return step{name: name + " (watch opened)", run: func(t *testing.T, s *suite) {
		w := s.m.startWatch(t, name, rawReq{method: "GET", target: s.mustRender(t, target)})
		s.watches[name] = w
		resp := response{status: w.resp.StatusCode, header: w.resp.Header, contentLength: w.resp.ContentLength,
			transferEncoding: w.resp.TransferEncoding}
		// The body is checked by watchGot; only the headers here.
		c := hcase{name: name, req: rawReq{method: "GET", target: target}, status: 200, hdr: hdr, kind: kindWatch}
		s.checkHeadersOnly(t, c, resp)
	}}
}

func (s *suite) checkHeadersOnly(t *testing.T, c hcase, resp response) {
	t.Helper()
	c.after = nil
	c.req.method = http.MethodHead // skip the body comparison
	c.headLenOf = ""
	if resp.contentLength != -1 || len(resp.transferEncoding) != 1 || resp.transferEncoding[0] != "chunked" {
		t.Errorf("watch: Content-Length %d, Transfer-Encoding %q; want chunked", resp.contentLength, resp.transferEncoding)
	}
	s.check(t, c, resp)
}

// watchGot checks the events a background watch received: exactly lines,
// in order. A long poll must then end cleanly; a stream is closed by the
// client (after checking nothing else arrived so far).
func watchGot(name string, stream bool, lines ...string) step {
	return step{name: name + " (watch result)", run: func(t *testing.T, s *suite) {
		w := s.watches[name]
		if w == nil {
			t.Fatalf("no watch %s", name)
		}
		for i, want := range lines {
			got := w.next(t, 10*time.Second)
			if err := s.tp.match(want, got); err != nil {
				t.Errorf("event %d: %v", i, err)
			}
		}
		if !stream {
			rest, err := w.waitEnd(t, 10*time.Second)
			if rest != "" || err != nil {
				t.Errorf("after its event the long poll must end cleanly: tail %q, err %v", rest, err)
			}
		} else {
			select {
			case extra := <-w.lines:
				t.Errorf("unexpected extra stream event %q", extra)
			default:
			}
		}
		w.stop()
		delete(s.watches, name)
	}}
}

func custom(name string, fn func(t *testing.T, s *suite)) step { return step{name: name, run: fn} }

// nl appends the newline every /v2/keys body carries.
func nl(s string) string { return s + "\n" }

func idx(n string) map[string]string { return map[string]string{"X-Etcd-Index": n} }

// errHdr is the header set of a /v2/keys error with the given index.
func errHdr(n string) map[string]string { return idx(n) }

func form(kv ...string) rawReq {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(kv[i+1])
	}
	return rawReq{body: b.String(), ctype: "form"}
}

// put, post, del and get build requests; put and post take a form body.
func put(target string, kv ...string) rawReq {
	r := form(kv...)
	r.method, r.target = "PUT", target
	if len(kv) == 0 {
		r.body, r.ctype = "", ""
	}
	return r
}

func post(target string, kv ...string) rawReq {
	r := put(target, kv...)
	r.method = "POST"
	return r
}

func del(target string) rawReq  { return rawReq{method: "DELETE", target: target} }
func get(target string) rawReq  { return rawReq{method: "GET", target: target} }
func head(target string) rawReq { return rawReq{method: "HEAD", target: target} }
