package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The differential tests send the same requests to a real etcd v3.5 (with
// its v2 API enabled) and to a cairn member, both fresh, and compare what a
// client sees: status, Content-Type, X-Etcd-Index and the JSON body. Indexes
// are compared relative to each server's index at the start (etcd's store
// starts at 3 after its own membership entries, Cairn's at 0), expirations
// are compared only for presence and TTLs to within a second, and the
// children of a directory listed without sorted=true in key order (etcd
// lists them in map order). The spec's deliberate deviations (D-n) are
// recognised by deviation() and reported, not failed.
//
// The etcd binary comes from CAIRN_ETCD or bin/etcd (make etcd); without it
// the tests skip, saying so loudly.

var (
	diffSeed = flag.Uint64("etcddiff.seed", 0, "seed of TestRandomAgainstEtcd (0: from the clock)")
	diffOps  = flag.Int("etcddiff.ops", 600, "requests per random sequence of TestRandomAgainstEtcd")
	diffShow = flag.Bool("etcddiff.show", false, "log every request with both answers")
)

// etcdBinary returns the reference etcd's path, or skips the test.
func etcdBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CAIRN_ETCD")
	if p == "" {
		p = filepath.Join("..", "bin", "etcd")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("SKIPPED LOUDLY: no reference etcd at %s (run `make etcd`, or set CAIRN_ETCD): the differential tests against etcd v3.5 did not run", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// startEtcd runs a single-member etcd with the v2 API and returns its client URL.
func startEtcd(t *testing.T, bin string) string {
	t.Helper()
	return startEtcdCluster(t, bin, 1)[0].clientURL
}

// startCairnForDiff runs a cairn member with the same name and peer URL
// shape as the etcd one, so that cluster and member IDs can agree.
func startCairnForDiff(t *testing.T, extra ...string) string {
	t.Helper()
	m := newMember(t)
	m.name = "diff"
	m.flags = append([]string{"--storage", "memory", "--initial-cluster", "diff=" + m.peerURL}, extra...)
	m.start()
	return m.clientURL
}

// diffTarget is one server under comparison.
type diffTarget struct {
	name string
	base string // client URL
	idx0 uint64 // X-Etcd-Index at the start
	hc   *http.Client
}

func newDiffTarget(t *testing.T, name, base string) *diffTarget {
	t.Helper()
	d := &diffTarget{name: name, base: base, hc: &http.Client{Timeout: 10 * time.Second}}
	r := d.do(t, diffReq{method: "GET", path: "/v2/keys/"})
	d.idx0 = r.etcdIndex
	return d
}

// diffReq is one request: path with its raw query, and an optional form body.
// Indexes in rel are relative; they are added to each server's start index
// as the query parameter of that name.
type diffReq struct {
	method string
	path   string // "/v2/keys/a?recursive=true"
	form   url.Values
	raw    string            // a raw body instead of form (Content-Type form-urlencoded)
	rel    map[string]uint64 // prevIndex, waitIndex: relative
	wait   bool              // a watch: a short client timeout is expected to end it
	json   bool              // raw is sent as application/json
}

func (q diffReq) String() string {
	s := q.method + " " + q.path
	for k, v := range q.rel {
		s += fmt.Sprintf(" %s=+%d", k, v)
	}
	if len(q.form) > 0 {
		s += " body:" + q.form.Encode()
	}
	if q.raw != "" {
		s += " body:" + q.raw
	}
	return s
}

// diffResp is what a client sees, normalised for comparison.
type diffResp struct {
	status    int
	ctype     string
	etcdIndex uint64 // raw
	hasIndex  bool
	body      any    // normalised JSON, or the trimmed text
	timedOut  bool   // a watch that saw nothing
	raw       string // for messages
}

func (d *diffTarget) do(t *testing.T, q diffReq) diffResp {
	t.Helper()
	u := d.base + q.path
	if len(q.rel) > 0 {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		keys := make([]string, 0, len(q.rel))
		for k := range q.rel {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			u += fmt.Sprintf("%s%s=%d", sep, k, d.idx0+q.rel[k])
			sep = "&"
		}
	}
	var body io.Reader
	if q.raw != "" {
		body = strings.NewReader(q.raw)
	} else if len(q.form) > 0 {
		body = strings.NewReader(q.form.Encode())
	}
	req, err := http.NewRequest(q.method, u, body)
	if err != nil {
		t.Errorf("%s: %v", q, err) // not Fatal: watches run do off the test goroutine
		return diffResp{raw: err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if q.json {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	hc := d.hc
	if q.wait {
		hc = &http.Client{Timeout: 700 * time.Millisecond}
	}
	resp, err := hc.Do(req)
	if err != nil {
		if q.wait {
			return diffResp{timedOut: true}
		}
		t.Fatalf("%s %s: %v", d.name, q, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		if q.wait {
			return diffResp{timedOut: true}
		}
		t.Fatalf("%s %s: read body: %v", d.name, q, err)
	}
	r := diffResp{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), raw: string(b)}
	if h := resp.Header.Get("X-Etcd-Index"); h != "" {
		r.hasIndex = true
		r.etcdIndex, _ = strconv.ParseUint(h, 10, 64)
	}
	var v any
	if json.Unmarshal(b, &v) == nil {
		if m, ok := v.(map[string]any); ok {
			if cause, ok := m["cause"].(string); ok {
				if q.rel["prevIndex"] != 0 {
					cause = d.relCompareCause(cause, d.idx0+q.rel["prevIndex"])
				}
				m["cause"] = d.relClearedCause(cause)
			}
		}
		r.body = d.normalise(v, "")
	} else {
		r.body = strings.TrimSpace(string(b))
	}
	return r
}

// normalise makes indexes relative, expirations and TTLs comparable and
// unsorted listings ordered.
func (d *diffTarget) normalise(v any, field string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = d.normalise(e, k)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = d.normalise(e, field)
		}
		if field == "nodes" {
			sort.SliceStable(out, func(i, j int) bool { return nodeKey(out[i]) < nodeKey(out[j]) })
		}
		return out
	case float64:
		switch field {
		case "createdIndex", "modifiedIndex", "index":
			if x == 0 { // an error found before the store was consulted
				return x
			}
			return x - float64(d.idx0)
		}
		return x
	case string:
		switch field {
		case "expiration":
			return "<expiration>"
		case "key":
			return d.relKey(x)
		}
		return x
	}
	return v
}

// compareGroup is one "[want != have]" of a Compare failed cause.
var compareGroup = regexp.MustCompile(`\[(\d+) != (\d+)\]`)

// relCompareCause rewrites the indexes of a failed prevIndex comparison,
// "[<prevIndex> != <modifiedIndex>]" (after "[<prevValue> != <value>]"
// when both failed), relative to the start index.
func (d *diffTarget) relCompareCause(cause string, prevIndex uint64) string {
	return compareGroup.ReplaceAllStringFunc(cause, func(g string) string {
		m := compareGroup.FindStringSubmatch(g)
		a, _ := strconv.ParseUint(m[1], 10, 64)
		b, _ := strconv.ParseUint(m[2], 10, 64)
		if a != prevIndex {
			return g // a value comparison
		}
		return fmt.Sprintf("[%d != %d]", relIndex(a, d.idx0), relIndex(b, d.idx0))
	})
}

// clearedCause is error 401's cause, "[<oldest kept>/<requested>]".
var clearedCause = regexp.MustCompile(`^the requested history has been cleared \[(\d+)/(\d+)\]$`)

// relClearedCause rewrites the indexes of error 401's cause relative to
// the start index.
func (d *diffTarget) relClearedCause(cause string) string {
	m := clearedCause.FindStringSubmatch(cause)
	if m == nil {
		return cause
	}
	a, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return fmt.Sprintf("the requested history has been cleared [%d/%d]", relIndex(a, d.idx0), relIndex(b, d.idx0))
}

// relKey rewrites the names made by in-order creation (POST), which are the
// creating index in 20 digits, relative to the start index.
func (d *diffTarget) relKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		if len(s) != 20 {
			continue
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= d.idx0 {
			segs[i] = fmt.Sprintf("%020d", n-d.idx0)
		}
	}
	return strings.Join(segs, "/")
}

func nodeKey(v any) string {
	if m, ok := v.(map[string]any); ok {
		if s, ok := m["key"].(string); ok {
			return s
		}
	}
	return ""
}

// compare returns "" when a client could not tell the answers apart.
func compareDiff(e, c diffResp, idx0e, idx0c uint64) string {
	var diffs []string
	if e.timedOut != c.timedOut {
		return fmt.Sprintf("etcd timed out: %v, cairn timed out: %v (etcd %q, cairn %q)", e.timedOut, c.timedOut, e.raw, c.raw)
	}
	if e.timedOut {
		return ""
	}
	if e.status != c.status {
		diffs = append(diffs, fmt.Sprintf("status %d vs %d", e.status, c.status))
	}
	if mediaType(e.ctype) != mediaType(c.ctype) {
		diffs = append(diffs, fmt.Sprintf("Content-Type %q vs %q", e.ctype, c.ctype))
	}
	if e.hasIndex != c.hasIndex {
		diffs = append(diffs, fmt.Sprintf("X-Etcd-Index present %v vs %v", e.hasIndex, c.hasIndex))
	} else if e.hasIndex && relIndex(e.etcdIndex, idx0e) != relIndex(c.etcdIndex, idx0c) {
		diffs = append(diffs, fmt.Sprintf("X-Etcd-Index %d vs %d", relIndex(e.etcdIndex, idx0e), relIndex(c.etcdIndex, idx0c)))
	}
	if !sameJSON(e.body, c.body) {
		diffs = append(diffs, "body differs")
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("%s\n    etcd:  %d %s\n    cairn: %d %s", strings.Join(diffs, "; "), e.status, strings.TrimSpace(e.raw), c.status, strings.TrimSpace(c.raw))
}

// relIndex is an index relative to the server's start; 0 stays 0 (errors
// found before the store was consulted carry index 0 on both).
func relIndex(i, idx0 uint64) int64 {
	if i == 0 {
		return 0
	}
	return int64(i) - int64(idx0)
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(strings.ToLower(mt))
}

// sameJSON compares normalised bodies; TTLs may differ by one second (the
// two servers answer at different instants).
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return false
			}
			if k == "ttl" {
				f, ok1 := v.(float64)
				g, ok2 := w.(float64)
				if ok1 && ok2 && f-g <= 1 && g-f <= 1 {
					continue
				}
			}
			if !sameJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// runDiff sends q to both and reports a difference that is not a documented deviation.
func runDiff(t *testing.T, e, c *diffTarget, q diffReq) (diffResp, diffResp, bool) {
	t.Helper()
	var er, cr diffResp
	if q.wait {
		// A watch that matches nothing waits out its timeout: both at once.
		done := make(chan struct{})
		go func() { defer close(done); cr = c.do(t, q) }()
		er = e.do(t, q)
		<-done
	} else {
		er = e.do(t, q)
		cr = c.do(t, q)
	}
	if *diffShow {
		t.Logf("%s\n    etcd:  %d %s\n    cairn: %d %s", q, er.status, strings.TrimSpace(er.raw), cr.status, strings.TrimSpace(cr.raw))
	}
	if msg := compareDiff(er, cr, e.idx0, c.idx0); msg != "" {
		if dev := deviation(q, er, cr); dev != "" {
			t.Logf("%s: documented deviation %s", q, dev)
			return er, cr, true
		}
		t.Errorf("%s: %s", q, msg)
		return er, cr, false
	}
	return er, cr, true
}

// deviation names the spec's deliberate deviation that explains a
// difference, or "".
func deviation(q diffReq, e, c diffResp) string {
	// D-1: a directory's TTL changed with prevExist=true: etcd answers 500
	// "Not a file"; Cairn the update event.
	if e.status == 500 && strings.Contains(e.raw, "Not a file") && c.status == 200 && strings.Contains(c.raw, `"action":"update"`) {
		return "D-1"
	}
	// D-12: a recursive watch replayed from the history: etcd returns an
	// event on a hidden key below it, Cairn skips it (as both do live).
	if q.wait && strings.Contains(q.path, "recursive=true") && e.status == 200 {
		var ev struct{ Node struct{ Key string } }
		if json.Unmarshal([]byte(e.raw), &ev) == nil && strings.Contains(ev.Node.Key, "/_") {
			return "D-12"
		}
	}
	return ""
}

func TestRequestsAgainstEtcd(t *testing.T) {
	bin := etcdBinary(t)
	e := newDiffTarget(t, "etcd", startEtcd(t, bin))
	c := newDiffTarget(t, "cairn", startCairnForDiff(t))
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	put := func(path string, kv ...string) diffReq { return diffReq{method: "PUT", path: path, form: form(kv...)} }
	get := func(path string) diffReq { return diffReq{method: "GET", path: path} }
	del := func(path string) diffReq { return diffReq{method: "DELETE", path: path} }
	reqs := []diffReq{
		get("/v2/keys/"),
		get("/v2/keys/missing"),
		put("/v2/keys/a", "value", "1"),
		put("/v2/keys/a", "value", "2", "prevExist", "true"),
		put("/v2/keys/a", "value", "3", "prevExist", "false"),
		put("/v2/keys/a", "value", "3", "prevExist", "maybe"),
		put("/v2/keys/a", "value", "4", "prevValue", "2"),
		put("/v2/keys/a", "value", "4", "prevValue", "nope"),
		put("/v2/keys/a", "value", "5", "prevIndex", "abc"),
		put("/v2/keys/a", "value", "5", "prevIndex", "0"),
		put("/v2/keys/a", "value", "5", "prevIndex", "-1"),
		put("/v2/keys/a", "value", "5", "prevValue", ""),
		put("/v2/keys/a", "value", "6", "prevValue", "4", "prevExist", "false"),
		put("/v2/keys/a", "value", "6", "prevValue", "4", "prevExist", "true"),
		put("/v2/keys/a", "value", "x", "ttl", "abc"),
		put("/v2/keys/a", "value", "x", "ttl", "-5"),
		put("/v2/keys/zero", "value", "x", "ttl", "0"),
		// etcd expires keys up to 500 ms late, Cairn within 100 ms: wait
		// until both have (the expiry takes an index on both).
		{method: "SLEEP"},
		get("/v2/keys/zero"),
		{method: "GET", path: "/v2/keys/zero?wait=true", rel: map[string]uint64{"waitIndex": 1}},
		// A file and a directory with children expire; watches replay it.
		put("/v2/keys/exp", "value", "soon", "ttl", "1"),
		put("/v2/keys/expdir", "dir", "true", "ttl", "1"),
		put("/v2/keys/expdir/child", "value", "c"),
		get("/v2/keys/expdir?recursive=true"),
		{method: "SLEEP"},
		{method: "SLEEP"},
		get("/v2/keys/exp"),
		get("/v2/keys/expdir/child"),
		{method: "GET", path: "/v2/keys/exp?wait=true", rel: map[string]uint64{"waitIndex": 5}},
		{method: "GET", path: "/v2/keys/exp?wait=true", rel: map[string]uint64{"waitIndex": 10}},
		{method: "GET", path: "/v2/keys/expdir/child?wait=true", rel: map[string]uint64{"waitIndex": 10}},
		{method: "GET", path: "/v2/keys/expdir?wait=true&recursive=true", rel: map[string]uint64{"waitIndex": 5}},
		{method: "GET", path: "/v2/keys/expdir?wait=true&recursive=true", rel: map[string]uint64{"waitIndex": 10}},
		{method: "GET", path: "/v2/keys/?wait=true&recursive=true", rel: map[string]uint64{"waitIndex": 11}},
		put("/v2/keys/a", "value", "x", "ttl", "1000"),
		get("/v2/keys/a"),
		put("/v2/keys/a", "value", "y", "ttl", ""),
		get("/v2/keys/a"),
		put("/v2/keys/a", "ttl", "500", "refresh", "true"),
		put("/v2/keys/a", "ttl", "500", "refresh", "true", "prevExist", "true"),
		put("/v2/keys/a", "value", "z", "ttl", "500", "refresh", "true"),
		put("/v2/keys/a", "refresh", "true"),
		put("/v2/keys/nope", "ttl", "500", "refresh", "true"),
		put("/v2/keys/a/b", "value", "under a file"),
		put("/v2/keys/d", "dir", "true"),
		put("/v2/keys/d", "dir", "true"),
		put("/v2/keys/d", "value", "v"),
		put("/v2/keys/d", "dir", "true", "value", "v"),
		put("/v2/keys/d", "dir", "true", "prevExist", "false"),
		put("/v2/keys/d/e", "value", "1"),
		put("/v2/keys/d/f/g", "value", "2"),
		put("/v2/keys/d", "dir", "false"),
		put("/v2/keys/d", "dir", "maybe"),
		put("/v2/keys/d/e", "dir", "true", "prevExist", "true"),
		get("/v2/keys/d"),
		get("/v2/keys/d?recursive=true"),
		get("/v2/keys/d?recursive=true&sorted=true"),
		get("/v2/keys/d?sorted=true"),
		get("/v2/keys/d?recursive=maybe"),
		get("/v2/keys/d?sorted=1"),
		get("/v2/keys/d?quorum=true"),
		get("/v2/keys/d/f/g?recursive=true"),
		get("/v2/keys/?recursive=true"),
		{method: "POST", path: "/v2/keys/q", form: form("value", "first")},
		{method: "POST", path: "/v2/keys/q", form: form("value", "second")},
		{method: "POST", path: "/v2/keys/a", form: form("value", "on a file")},
		{method: "POST", path: "/v2/keys/q", form: form("value", "x", "ttl", "abc")},
		get("/v2/keys/q?recursive=true&sorted=true"),
		del("/v2/keys/d"),
		del("/v2/keys/d?dir=true"),
		del("/v2/keys/d?recursive=maybe"),
		del("/v2/keys/d/e?dir=true"),
		del("/v2/keys/d/e?prevValue=2"),
		del("/v2/keys/d/e?prevValue=1"),
		del("/v2/keys/d/e?prevIndex=abc"),
		del("/v2/keys/missing"),
		del("/v2/keys/missing?recursive=true"),
		put("/v2/keys/emptydir", "dir", "true"),
		del("/v2/keys/emptydir?dir=true"),
		put("/v2/keys/d2", "dir", "true"),
		del("/v2/keys/d2?prevValue=x&dir=true"),
		del("/v2/keys/d/f?recursive=true"),
		del("/v2/keys/d?recursive=true"),
		del("/v2/keys/?recursive=true"),
		del("/v2/keys/"),
		put("/v2/keys/", "value", "root"),
		{method: "POST", path: "/v2/keys/", form: form("value", "at root")},
		put("/v2/keys/_hidden", "value", "h"),
		get("/v2/keys/_hidden"),
		get("/v2/keys/?recursive=true&sorted=true"),
		put("/v2/keys/hd/_h", "value", "h"),
		put("/v2/keys/hd/v", "value", "v"),
		get("/v2/keys/hd?recursive=true"),
		put("/v2/keys/sp%20ace", "value", "s p"),
		get("/v2/keys/sp%20ace"),
		put("/v2/keys/%C3%BC/%E2%82%AC", "value", "ü€"),
		get("/v2/keys/%C3%BC?recursive=true"),
		put("/v2/keys/amp", "value", "a&b=c"),
		get("/v2/keys/amp"),
		put("/v2/keys/empty", "value", ""),
		get("/v2/keys/empty"),
		put("/v2/keys/novalue"),
		get("/v2/keys/novalue"),
		put("/v2/keys/dup", "value", "1", "value", "2"),
		get("/v2/keys/dup"),
		{method: "PUT", path: "/v2/keys/qs?value=fromquery"},
		get("/v2/keys/qs"),
		{method: "PUT", path: "/v2/keys/qs2?value=fromquery", form: form("value", "frombody")},
		get("/v2/keys/qs2"),
		put("/v2/keys/a//b", "value", "double slash"),
		get("/v2/keys/a//b"),
		put("/v2/keys/trail/", "value", "trailing"),
		get("/v2/keys/trail"),
		get("/v2/keys/trail/"),
		{method: "PATCH", path: "/v2/keys/a"},
		{method: "HEAD", path: "/v2/keys/a"},
		{method: "PUT", path: "/v2/keys/bad", raw: "value=%zz"},
		get("/v2/keys/a?wait=maybe"),
		get("/v2/keys/a?wait=true&waitIndex=abc"),
		{method: "GET", path: "/v2/keys/a?wait=true", rel: map[string]uint64{"waitIndex": 1}},
		{method: "GET", path: "/v2/keys/?wait=true&recursive=true", rel: map[string]uint64{"waitIndex": 2}},
		{method: "GET", path: "/v2/keys/d?wait=true&recursive=true", rel: map[string]uint64{"waitIndex": 1}},
		get("/v2/nothing"),
		get("/v2/keys"),
		get("/health"),
		get("/"),
		// Query spelling: booleans as strconv.ParseBool reads them,
		// repeated and valueless parameters, encoded slashes and plus signs.
		put("/v2/keys/qd/x", "value", "1"),
		get("/v2/keys/qd?recursive=TRUE"),
		get("/v2/keys/qd?recursive=1"),
		get("/v2/keys/qd?recursive=t"),
		get("/v2/keys/qd?recursive=yes"),
		get("/v2/keys/qd?recursive=false&recursive=true"),
		get("/v2/keys/qd?recursive=true&recursive=false"),
		get("/v2/keys/qd?recursive"),
		get("/v2/keys/qd?recursive="),
		get("/v2/keys/qd?sorted=true;recursive=true"),
		get("/v2/keys/qd%2Fx"),
		put("/v2/keys/plus+sign", "value", "a+b"),
		get("/v2/keys/plus+sign"),
		get("/v2/keys/plus%2Bsign"),
		{method: "PUT", path: "/v2/keys/qv?value=a+b%20c"},
		get("/v2/keys/qv"),
		{method: "PUT", path: "/v2/keys/qd/x?prevExist=TRUE&value=2"},
		{method: "PUT", path: "/v2/keys/qd/x?prevExist=&value=3"},
		{method: "PUT", path: "/v2/keys/qd/x?dir=1"},
		{method: "PUT", path: "/v2/keys/qd/x", raw: "value=4&ttl=%20"},
		{method: "PUT", path: "/v2/keys/qd/x", raw: "value=5&ttl=+10"},
		{method: "PUT", path: "/v2/keys/qd/x", raw: "value=6&prevIndex=%2B1"},
		{method: "PUT", path: "/v2/keys/qd/x", raw: "value=7;ttl=5"},
		{method: "POST", path: "/v2/stats/self"},
		{method: "DELETE", path: "/v2/members"},
		get("/v2/members/1234"),
		{method: "DELETE", path: "/v2/members/abc"},
		{method: "DELETE", path: "/v2/members/1234"},
		{method: "POST", path: "/v2/members", raw: `{"peerURLs":["http://127.0.0.1:9"]}`}, // form Content-Type: 415
		{method: "POST", path: "/v2/members", raw: `{bad`, json: true},
		{method: "POST", path: "/v2/members", raw: `{}`, json: true},
		{method: "POST", path: "/v2/members", raw: `{"peerURLs":["notaurl"]}`, json: true},
		{method: "PUT", path: "/v2/members/1234", raw: `{"peerURLs":["http://127.0.0.1:9"]}`, json: true},
	}
	for _, q := range reqs {
		if q.method == "SLEEP" {
			time.Sleep(1200 * time.Millisecond)
			continue
		}
		runDiff(t, e, c, q)
	}
}

// TestLiveWatchesAgainstEtcd: long polls and a stream=true watch waiting on
// both servers see the same events, headers included, when the same
// writes follow.
func TestLiveWatchesAgainstEtcd(t *testing.T) {
	bin := etcdBinary(t)
	e := newDiffTarget(t, "etcd", startEtcd(t, bin))
	c := newDiffTarget(t, "cairn", startCairnForDiff(t))
	watches := []string{
		"/v2/keys/lw?wait=true",
		"/v2/keys/lwd?wait=true&recursive=true",
		"/v2/keys/lwd/x?wait=true",
		"/v2/keys/_lh?wait=true",
		"/v2/keys/lr?wait=true", // a refresh is never shown: the set after it is
		// (A stream on the deleted directory itself gets its delete twice
		// from etcd: D-3.)
		"/v2/keys/?wait=true&recursive=true&stream=true",
	}
	type answer struct {
		status int
		header http.Header
		events []string
	}
	// watch opens every watch on d and returns what each saw within 3 s
	// (a stream: its first three events).
	watch := func(d *diffTarget) func() []answer {
		out := make([]answer, len(watches))
		done := make(chan int, len(watches))
		for i, w := range watches {
			go func() {
				defer func() { done <- i }()
				hc := &http.Client{Timeout: 3 * time.Second}
				resp, err := hc.Get(d.base + w)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				out[i].status, out[i].header = resp.StatusCode, resp.Header
				dec := json.NewDecoder(resp.Body)
				for len(out[i].events) < 3 {
					var v any
					if dec.Decode(&v) != nil {
						return
					}
					b, _ := json.Marshal(d.normalise(v, ""))
					out[i].events = append(out[i].events, string(b))
				}
			}()
		}
		return func() []answer {
			for range watches {
				<-done
			}
			return out
		}
	}
	runDiff(t, e, c, diffReq{method: "PUT", path: "/v2/keys/lr", form: url.Values{"value": {"a"}, "ttl": {"100"}}})
	waitE, waitC := watch(e), watch(c)
	time.Sleep(300 * time.Millisecond) // the watches are registered
	for _, q := range []diffReq{
		{method: "PUT", path: "/v2/keys/lr", form: url.Values{"ttl": {"200"}, "refresh": {"true"}}},
		{method: "PUT", path: "/v2/keys/lr", form: url.Values{"ttl": {"300"}, "refresh": {"true"}, "prevExist": {"true"}}},
		{method: "PUT", path: "/v2/keys/lr", form: url.Values{"value": {"b"}}},
		{method: "PUT", path: "/v2/keys/lwd/x", form: url.Values{"value": {"1"}}},
		{method: "PUT", path: "/v2/keys/_lh", form: url.Values{"value": {"h"}}},
		{method: "PUT", path: "/v2/keys/lwd/_hidden", form: url.Values{"value": {"h"}}},
		{method: "PUT", path: "/v2/keys/lw", form: url.Values{"value": {"2"}, "ttl": {"100"}}},
		{method: "DELETE", path: "/v2/keys/lwd?recursive=true"},
	} {
		runDiff(t, e, c, q)
	}
	ae, ac := waitE(), waitC()
	for i, w := range watches {
		if ae[i].status != ac[i].status || len(ae[i].events) != len(ac[i].events) {
			t.Errorf("%s: etcd %d %q, cairn %d %q", w, ae[i].status, ae[i].events, ac[i].status, ac[i].events)
			continue
		}
		for j := range ae[i].events {
			if ae[i].events[j] != ac[i].events[j] {
				t.Errorf("%s: event %d: etcd %s, cairn %s", w, j, ae[i].events[j], ac[i].events[j])
			}
		}
		for _, h := range []string{"Content-Type", "X-Etcd-Index"} {
			ve, vc := ae[i].header.Get(h), ac[i].header.Get(h)
			if h == "X-Etcd-Index" {
				ie, _ := strconv.ParseUint(ve, 10, 64)
				ic, _ := strconv.ParseUint(vc, 10, 64)
				ve, vc = fmt.Sprint(relIndex(ie, e.idx0)), fmt.Sprint(relIndex(ic, c.idx0))
			}
			if ve != vc {
				t.Errorf("%s: %s etcd %q, cairn %q", w, h, ve, vc)
			}
		}
		if len(ae[i].events) == 0 {
			t.Errorf("%s: no event on either server", w)
		}
	}
}

// TestHistoryWindowAgainstEtcd: with --watch-history-events 1000, the
// window of etcd's in-memory history, a watch from an index that fell out
// of it gets the same 401 from both, and one from the oldest kept index
// the same event.
func TestHistoryWindowAgainstEtcd(t *testing.T) {
	bin := etcdBinary(t)
	e := newDiffTarget(t, "etcd", startEtcd(t, bin))
	c := newDiffTarget(t, "cairn", startCairnForDiff(t, "--watch-history-events", "1000"))
	for _, d := range []*diffTarget{e, c} {
		for i := range 1100 {
			q := diffReq{method: "PUT", path: fmt.Sprintf("/v2/keys/h/k%d", i%37), form: url.Values{"value": {strconv.Itoa(i)}}}
			if r := d.do(t, q); r.status >= 300 {
				t.Fatalf("%s: %s: %d %s", d.name, q, r.status, r.raw)
			}
		}
	}
	// 1,100 events: the oldest kept is the 101st.
	for _, w := range []uint64{1, 99, 100, 101, 102, 1100} {
		runDiff(t, e, c, diffReq{method: "GET", path: "/v2/keys/h?wait=true&recursive=true", wait: true, rel: map[string]uint64{"waitIndex": w}})
	}
	for _, w := range []uint64{100, 101} {
		runDiff(t, e, c, diffReq{method: "GET", path: "/v2/keys/h/k3?wait=true", wait: true, rel: map[string]uint64{"waitIndex": w}})
	}
}

// TestRandomAgainstEtcd runs a seeded random sequence of writes, reads,
// deletes and history watches over a small key space on both servers.
func TestRandomAgainstEtcd(t *testing.T) {
	bin := etcdBinary(t)
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./e2e -run TestRandomAgainstEtcd -etcddiff.seed=%d)", seed, seed)
	e := newDiffTarget(t, "etcd", startEtcd(t, bin))
	c := newDiffTarget(t, "cairn", startCairnForDiff(t))
	rng := rand.New(rand.NewPCG(seed, 7))
	paths := []string{"/a", "/a/b", "/a/b/c", "/a/x", "/d", "/d/e", "/d/f/g", "/q", "/k", "/k/_h", "/_top", "/k/_h/in"}
	values := []string{"1", "2", "v", "", "x y", "a&b=c", "ü"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	var lastIndex uint64 // relative, from the responses
	failures := 0
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < *diffOps && time.Now().Before(deadline); i++ {
		p := pick(paths)
		var q diffReq
		form := url.Values{}
		switch op := rng.IntN(100); {
		case op < 35: // set, with or without conditions
			q = diffReq{method: "PUT", path: "/v2/keys" + p}
			if rng.IntN(8) == 0 {
				form.Set("dir", "true")
			} else {
				form.Set("value", pick(values))
			}
			for range 1 + rng.IntN(2) { // one condition, or two combined
				switch rng.IntN(8) {
				case 0:
					form.Set("prevExist", "true")
				case 1:
					form.Set("prevExist", "false")
				case 2:
					form.Set("prevValue", pick(values))
				case 3:
					if lastIndex > 0 {
						q.rel = map[string]uint64{"prevIndex": 1 + rng.Uint64N(lastIndex)}
					}
				case 4:
					form.Set("ttl", strconv.Itoa(500+rng.IntN(500)))
					if rng.IntN(3) == 0 {
						form.Set("noValueOnSuccess", "true")
					}
				case 5:
					form.Set("ttl", "")
				case 6:
					form.Set("ttl", "600")
					form.Set("refresh", "true")
					form.Del("value")
				}
			}
			// An update with no value on a directory changes its TTL in
			// Cairn (D-1) and fails in etcd; the two stores would part.
			if form.Get("prevExist") == "true" && (form.Get("value") == "" || form.Has("dir")) {
				form.Set("value", "v")
				form.Del("dir")
			}
		case op < 45: // in-order create
			q = diffReq{method: "POST", path: "/v2/keys" + p}
			switch rng.IntN(6) {
			case 0:
				form.Set("dir", "true")
			case 1:
				form.Set("ttl", "900")
				form.Set("value", pick(values))
			default:
				form.Set("value", pick(values))
			}
		case op < 70: // get
			q = diffReq{method: "GET", path: "/v2/keys" + p}
			var params []string
			if rng.IntN(2) == 0 {
				params = append(params, "recursive=true")
			}
			if rng.IntN(3) == 0 {
				params = append(params, "sorted=true")
			}
			if rng.IntN(5) == 0 {
				params = append(params, "quorum=true")
			}
			if len(params) > 0 {
				q.path += "?" + strings.Join(params, "&")
			}
		case op < 90: // delete
			q = diffReq{method: "DELETE", path: "/v2/keys" + p}
			var params []string
			for range 1 + rng.IntN(2) {
				switch rng.IntN(5) {
				case 0:
					params = append(params, "dir=true")
				case 1:
					params = append(params, "recursive=true")
				case 2:
					params = append(params, "prevValue="+url.QueryEscape(pick(values)))
				case 3:
					if lastIndex > 0 {
						q.rel = map[string]uint64{"prevIndex": 1 + rng.Uint64N(lastIndex)}
					}
				}
			}
			if len(params) > 0 {
				q.path += "?" + strings.Join(params, "&")
			}
		default: // a watch replayed from history
			if lastIndex == 0 {
				continue
			}
			// Within etcd's 1,000-event history (Cairn keeps more).
			q = diffReq{method: "GET", path: "/v2/keys" + p + "?wait=true", wait: true,
				rel: map[string]uint64{"waitIndex": lastIndex - rng.Uint64N(min(lastIndex, 900))}}
			if rng.IntN(10) == 0 { // in the future: neither answers
				q.rel["waitIndex"] = lastIndex + 5
			}
			if rng.IntN(2) == 0 {
				q.path += "&recursive=true"
			}
		}
		if len(form) > 0 {
			q.form = form
		}
		er, _, ok := runDiff(t, e, c, q)
		if er.hasIndex && er.etcdIndex >= e.idx0 {
			lastIndex = max(lastIndex, er.etcdIndex-e.idx0)
		}
		if !ok {
			failures++
			if failures >= 10 {
				t.Fatalf("stopping after %d differences (seed %d)", failures, seed)
			}
		}
	}
}

// etcdMember is one process of a reference etcd cluster.
type etcdMember struct {
	name, clientURL, peerURL string
	cmd                      *exec.Cmd
	logs                     bytes.Buffer // read only once the process has exited
	exited                   chan struct{}
}

func (m *etcdMember) kill() {
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// startEtcdCluster runs n etcd members (m1..mn, the v2 API enabled, the
// same heartbeat and election timeout as the cairn clusters of these tests)
// and waits until each is healthy.
func startEtcdCluster(t *testing.T, bin string, n int) []*etcdMember {
	t.Helper()
	ms := make([]*etcdMember, n)
	var parts []string
	for i := range ms {
		ms[i] = &etcdMember{name: fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		parts = append(parts, ms[i].name+"="+ms[i].peerURL)
	}
	dir := t.TempDir()
	for _, m := range ms {
		m.cmd = exec.Command(bin, "--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--enable-v2", "--log-level", "error",
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(parts, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "etcddiff",
			"--heartbeat-interval", strconv.Itoa(heartbeatMS), "--election-timeout", strconv.Itoa(electionMS))
		m.cmd.Stdout, m.cmd.Stderr = &m.logs, &m.logs
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m.exited = make(chan struct{})
		go func() { _ = m.cmd.Wait(); close(m.exited) }()
		t.Cleanup(m.kill)
	}
	for _, m := range ms {
		m.waitHealthy(t)
	}
	return ms
}

// waitHealthy waits up to 20 s for m's /health to say true.
func (m *etcdMember) waitHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"health":"true"`) {
				return
			}
		}
		select {
		case <-m.exited:
			t.Fatalf("etcd %s exited during start:\n%s", m.name, m.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	m.kill()
	t.Fatalf("etcd %s not healthy within 20s:\n%s", m.name, m.logs.String())
}

// memberIDs maps the names of a cluster's members to their hex IDs.
func memberIDs(t *testing.T, clientURL string) map[string]string {
	t.Helper()
	var list struct {
		Members []struct{ ID, Name string }
	}
	if code := getJSON(t, clientURL+"/v2/members", &list); code != http.StatusOK {
		t.Fatalf("GET /v2/members: %d", code)
	}
	ids := map[string]string{}
	for _, m := range list.Members {
		ids[m.Name] = m.ID
	}
	return ids
}

// TestMembershipAgainstEtcd: the same membership changes on a
// three-member etcd and a three-member cairn get the same answers,
// including etcd's strict checks once a member is down. Member IDs and
// peer URLs differ (they come from different ports) and are compared as
// placeholders.
func TestMembershipAgainstEtcd(t *testing.T) {
	bin := etcdBinary(t)
	es := startEtcdCluster(t, bin, 3)
	cs := newCluster(t, 3, "etcddiff")
	startCluster(t, cs)
	// The strict checks count peers reached for 5 s.
	time.Sleep(6 * time.Second)

	type side struct {
		name    string
		client  string // member 1's client URL: every request goes there
		ids     map[string]string
		newPeer []string // peer URLs for the members added here
		kill3   func()
	}
	sides := []*side{
		{name: "etcd", client: es[0].clientURL, kill3: es[2].kill},
		{name: "cairn", client: cs[0].clientURL, kill3: cs[2].kill},
	}
	for _, s := range sides {
		s.ids = memberIDs(t, s.client)
		s.newPeer = []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	}
	idRE := regexp.MustCompile(`[0-9a-f]{13,16}`)
	// do sends one request built for each side and returns status and the
	// body with IDs and URLs replaced by placeholders.
	do := func(s *side, method, path, body string) (int, string) {
		req, err := http.NewRequest(method, s.client+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s %s: %v", s.name, method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := strings.TrimSpace(string(b))
		for i, u := range s.newPeer {
			out = strings.ReplaceAll(out, u, fmt.Sprintf("<new peer %d>", i))
		}
		return resp.StatusCode, idRE.ReplaceAllString(out, "<id>")
	}
	var added = map[string]string{} // side → the added member's ID
	steps := []struct {
		what string
		req  func(s *side) (method, path, body string)
		want int
	}{
		{"add a voter", func(s *side) (string, string, string) {
			return "POST", "/v2/members", fmt.Sprintf(`{"peerURLs":[%q]}`, s.newPeer[0])
		}, http.StatusCreated},
		// (etcd derives a new member's ID from its URLs and the second of
		// the request: an add of the same URLs within the second answers
		// "membership: ID exists" instead.)
		{"wait a second", nil, 0},
		{"add its peer URL again", func(s *side) (string, string, string) {
			return "POST", "/v2/members", fmt.Sprintf(`{"peerURLs":[%q]}`, s.newPeer[0])
		}, http.StatusConflict},
		{"move it to another URL", func(s *side) (string, string, string) {
			return "PUT", "/v2/members/" + added[s.name], fmt.Sprintf(`{"peerURLs":[%q]}`, s.newPeer[1])
		}, http.StatusNoContent},
		{"move m2 to m1's URL", func(s *side) (string, string, string) {
			m1 := es[0].peerURL
			if s.name == "cairn" {
				m1 = cs[0].peerURL
			}
			return "PUT", "/v2/members/" + s.ids["m2"], fmt.Sprintf(`{"peerURLs":[%q]}`, m1)
		}, http.StatusConflict},
		{"remove it, by an upper-case ID", func(s *side) (string, string, string) {
			return "DELETE", "/v2/members/" + strings.ToUpper(added[s.name]), ""
		}, http.StatusNoContent},
		{"remove it again", func(s *side) (string, string, string) { return "DELETE", "/v2/members/" + added[s.name], "" }, http.StatusGone},
		{"kill m3", nil, 0},
		{"add a voter with m3 down", func(s *side) (string, string, string) {
			return "POST", "/v2/members", fmt.Sprintf(`{"peerURLs":[%q]}`, s.newPeer[0])
		}, http.StatusInternalServerError},
		{"remove the live m2 with m3 down", func(s *side) (string, string, string) { return "DELETE", "/v2/members/" + s.ids["m2"], "" }, http.StatusInternalServerError},
		{"remove the dead m3", func(s *side) (string, string, string) { return "DELETE", "/v2/members/" + s.ids["m3"], "" }, http.StatusNoContent},
	}
	for _, st := range steps {
		switch st.what {
		case "wait a second":
			time.Sleep(1100 * time.Millisecond)
			continue
		case "kill m3": // on both, and let the peers notice
			for _, s := range sides {
				s.kill3()
			}
			time.Sleep(3 * time.Second)
			continue
		}
		var codes [2]int
		var bodies [2]string
		for i, s := range sides {
			method, path, body := st.req(s)
			codes[i], bodies[i] = do(s, method, path, body)
			if codes[i] == http.StatusCreated {
				added[s.name] = memberIDs(t, s.client)[""] // not started: no name yet
			}
		}
		if codes[0] != st.want || codes[1] != codes[0] || bodies[1] != bodies[0] {
			t.Errorf("%s: etcd %d %s, cairn %d %s (want %d)", st.what, codes[0], bodies[0], codes[1], bodies[1], st.want)
		}
	}
}
