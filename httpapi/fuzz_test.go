package httpapi

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cairn/api"
)

// FuzzKeyPath: normalisation always yields a rooted, clean key, never
// escapes the root, and is idempotent — for raw and percent-decoded input.
func FuzzKeyPath(f *testing.F) {
	for _, s := range []string{"", "/", "//", "/a/", "a", "/a/./b", "/../../x", "..", "/..", "/a/b/../../..",
		"%2E%2E", "..%2F..%2Fzzz", "/a%2F%2Fb", "/%2e%2e/%2e%2e/1", "/✓", "/a b?c", "/.hidden/..x", "/_x/./../y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(in string) {
			k := keyPath(in)
			if !strings.HasPrefix(k, "/") {
				t.Fatalf("keyPath(%q) = %q: not rooted", in, k)
			}
			if keyPath(k) != k {
				t.Fatalf("keyPath not idempotent: %q → %q → %q", in, k, keyPath(k))
			}
			if k != "/" && strings.HasSuffix(k, "/") {
				t.Fatalf("keyPath(%q) = %q: trailing slash", in, k)
			}
			if strings.Contains(k, "//") {
				t.Fatalf("keyPath(%q) = %q: empty segment", in, k)
			}
			for _, seg := range strings.Split(k, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("keyPath(%q) = %q: dot segment escapes", in, k)
				}
			}
		}
		check(s)
		if d, err := url.PathUnescape(s); err == nil {
			check(d)
		}
	})
}

var fuzzMethods = []string{"GET", "HEAD", "PUT", "POST", "DELETE"}

// knownParseCodes are the codes parseKeyRequest may reject with.
var knownParseCodes = map[int]bool{201: true, 202: true, 203: true, 209: true, 210: true, 211: true, 212: true}

// FuzzParseKeyRequest: parsing never panics, every rejection is an
// *api.Error with a known code and index 0, and an accepted request yields
// a clean key and a well-formed command.
func FuzzParseKeyRequest(f *testing.F) {
	seeds := []struct {
		m                  uint8
		query, ctype, body string
	}{
		{0, "", "", ""},
		{2, "value=1&ttl=5", "", ""},
		{2, "", formType, "value=Hello&prevExist=false"},
		{2, "value=q2", formType + "; charset=utf-8", "value=body&value=x"},
		{2, "refresh=true&ttl=60&prevExist=true", "", ""},
		{2, "refresh=true&value=x", "", ""},
		{2, "refresh=true&ttl=", "", ""},
		{2, "prevValue=&value=1", "", ""},
		{2, "ttl=9223372037", "", ""},
		{2, "ttl=18446744073709551616", "", ""},
		{0, "recursive&sorted=true", "", ""},
		{0, "wait=true&waitIndex=7&stream=1&quorum=t", "", ""},
		{1, "wait=true", "", ""},
		{3, "", formType, "value=%zz"},
		{3, "a=1;b=2", "", ""},
		{4, "prevIndex=10&recursive=true", formType, "prevValue=x"},
		{4, "prevIndex=-1", "", ""},
		{2, "noValueOnSuccess=maybe", "", ""},
		{2, "", formType + "; charset", "value=1"},
		{2, "", "multipart/form-data; boundary=x", "--x--"},
		{2, "", "garbage/", "value=1"},
	}
	for _, s := range seeds {
		f.Add(s.m, "/a/b", s.query, s.ctype, s.body)
	}
	f.Add(uint8(2), "/%2E%2E/0", "value=z", "", "")
	f.Add(uint8(0), "/..%2F..%2F1", "", "", "")
	now := time.Unix(0, 1_800_000_000_000_000_000)
	f.Fuzz(func(t *testing.T, m uint8, p, query, ctype, body string) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		u := &url.URL{Path: "/v2/keys" + p, RawQuery: query}
		r := &http.Request{Method: method, URL: u, Header: http.Header{}, ContentLength: int64(len(body)),
			Body: io.NopCloser(strings.NewReader(body))}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		if len(body) > 1<<10 {
			r.ContentLength = -1
			r.Body = http.MaxBytesReader(nil, r.Body, 1<<10)
		}
		kr, e := parseKeyRequest(r)
		if e != nil {
			if !knownParseCodes[e.Code] {
				t.Fatalf("unknown code %d (%v)", e.Code, e)
			}
			if e.Index != 0 {
				t.Fatalf("index %d on a validation error", e.Index)
			}
			if e.Status != 0 && (e.Status != http.StatusRequestEntityTooLarge || e.Code != api.EcodeInvalidForm) {
				t.Fatalf("status %d with code %d", e.Status, e.Code)
			}
			return
		}
		if keyPath(kr.key) != kr.key || !strings.HasPrefix(kr.key, "/") {
			t.Fatalf("key %q not clean", kr.key)
		}
		if kr.wait && method != "GET" {
			t.Fatalf("wait accepted on %s", method)
		}
		if kr.refresh && (!kr.hasTTL || kr.value != "") {
			t.Fatalf("refresh accepted with value %q, ttl %v", kr.value, kr.hasTTL)
		}
		switch method {
		case "PUT", "POST", "DELETE":
			c := kr.cmd(method, now)
			if c.Path != kr.key || c.Op == 0 {
				t.Fatalf("cmd %+v for key %q", c, kr.key)
			}
			if kr.hasTTL && method != "DELETE" && c.Expiration < now.UnixNano() {
				t.Fatalf("expiration %d before now", c.Expiration)
			}
			if !kr.hasTTL && c.Expiration != 0 {
				t.Fatalf("expiration without ttl")
			}
		}
	})
}
