package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"cairn/api"
	"cairn/storage"
)

func node(key, value string, mod, created uint64) *api.Node {
	return &api.Node{Key: key, Value: value, ModifiedIndex: mod, CreatedIndex: created}
}

// TestWriteResponses checks status, headers and body of successful and
// failed writes (spec §4.2, §4.5, §7.1, §8), built from the worked examples.
func TestWriteResponses(t *testing.T) {
	hello := node("/message", "Hello", 4, 4)
	cases := []struct {
		name       string
		q          req
		ev         *api.Event
		err        error
		wantStatus int
		wantBody   string
		wantIndex  string
		wantRaft   bool
	}{
		{"W3 set new → 201",
			req{method: "PUT", target: "/v2/keys/message", body: "value=Hello", ctype: "form"},
			&api.Event{Action: "set", Index: 4, Node: hello}, nil,
			201, `{"action":"set","node":{"key":"/message","value":"Hello","modifiedIndex":4,"createdIndex":4}}` + "\n", "4", true},
		{"W4 overwrite → 200 with prevNode",
			req{method: "PUT", target: "/v2/keys/message", body: "value=Hello+world", ctype: "form"},
			&api.Event{Action: "set", Index: 5, Node: node("/message", "Hello world", 5, 5), PrevNode: hello}, nil,
			200, `{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":5,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello","modifiedIndex":4,"createdIndex":4}}` + "\n", "5", true},
		{"W7 create → 201",
			req{method: "PUT", target: "/v2/keys/newkey?value=first&prevExist=false"},
			&api.Event{Action: "create", Index: 6, Node: node("/newkey", "first", 6, 6)}, nil,
			201, `{"action":"create","node":{"key":"/newkey","value":"first","modifiedIndex":6,"createdIndex":6}}` + "\n", "6", true},
		{"W8 update → 200",
			req{method: "PUT", target: "/v2/keys/message?value=Hi&prevExist=true"},
			&api.Event{Action: "update", Index: 7, Node: node("/message", "Hi", 7, 5), PrevNode: node("/message", "Hello world", 5, 5)}, nil,
			200, `{"action":"update","node":{"key":"/message","value":"Hi","modifiedIndex":7,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":5,"createdIndex":5}}` + "\n", "7", true},
		{"refresh alone is a 200 set",
			req{method: "PUT", target: "/v2/keys/s?refresh=true&ttl=5"},
			&api.Event{Action: "set", Index: 8, Node: node("/s", "s", 8, 8), PrevNode: node("/s", "s", 7, 7)}, nil,
			200, `{"action":"set","node":{"key":"/s","value":"s","modifiedIndex":8,"createdIndex":8},"prevNode":{"key":"/s","value":"s","modifiedIndex":7,"createdIndex":7}}` + "\n", "8", true},
		{"W11 noValueOnSuccess",
			req{method: "PUT", target: "/v2/keys/quiet?value=shh&noValueOnSuccess=true"},
			&api.Event{Action: "set", Index: 9, Node: node("/quiet", "shh", 9, 9)}, nil,
			201, `{"action":"set"}` + "\n", "9", true},
		{"noValueOnSuccess on cas",
			req{method: "PUT", target: "/v2/keys/m?value=b&prevValue=a&noValueOnSuccess=1"},
			&api.Event{Action: "compareAndSwap", Index: 9, Node: node("/m", "b", 9, 2), PrevNode: node("/m", "a", 2, 2)}, nil,
			200, `{"action":"compareAndSwap"}` + "\n", "9", true},
		{"noValueOnSuccess on POST",
			req{method: "POST", target: "/v2/keys/q?value=b&noValueOnSuccess=1"},
			&api.Event{Action: "create", Index: 17, Node: node("/q/00000000000000000017", "b", 17, 17)}, nil,
			201, `{"action":"create"}` + "\n", "17", true},
		{"noValueOnSuccess has no effect on delete",
			req{method: "DELETE", target: "/v2/keys/m?noValueOnSuccess=true"},
			&api.Event{Action: "delete", Index: 9, Node: &api.Node{Key: "/m", HideValue: true, ModifiedIndex: 9, CreatedIndex: 2}, PrevNode: node("/m", "a", 2, 2)}, nil,
			200, `{"action":"delete","node":{"key":"/m","modifiedIndex":9,"createdIndex":2},"prevNode":{"key":"/m","value":"a","modifiedIndex":2,"createdIndex":2}}` + "\n", "9", true},
		{"W14 compare-and-delete",
			req{method: "DELETE", target: "/v2/keys/lock?prevIndex=10"},
			&api.Event{Action: "compareAndDelete", Index: 11, Node: &api.Node{Key: "/lock", HideValue: true, ModifiedIndex: 11, CreatedIndex: 10}, PrevNode: node("/lock", "owner1", 10, 10)}, nil,
			200, `{"action":"compareAndDelete","node":{"key":"/lock","modifiedIndex":11,"createdIndex":10},"prevNode":{"key":"/lock","value":"owner1","modifiedIndex":10,"createdIndex":10}}` + "\n", "11", true},
		{"W24 POST in-order → 201",
			req{method: "POST", target: "/v2/keys/queue", body: "value=job1", ctype: "form"},
			&api.Event{Action: "create", Index: 17, Node: node("/queue/00000000000000000017", "job1", 17, 17)}, nil,
			201, `{"action":"create","node":{"key":"/queue/00000000000000000017","value":"job1","modifiedIndex":17,"createdIndex":17}}` + "\n", "17", true},
		{"X-Etcd-Index falls back to modifiedIndex",
			req{method: "PUT", target: "/v2/keys/a?value=1"},
			&api.Event{Action: "set", Node: node("/a", "1", 12, 12)}, nil,
			201, `{"action":"set","node":{"key":"/a","value":"1","modifiedIndex":12,"createdIndex":12}}` + "\n", "12", true},
		{"W32 ttl rendered with the clock",
			req{method: "PUT", target: "/v2/keys/tmp?value=soon&ttl=2"},
			&api.Event{Action: "set", Index: 25, Node: &api.Node{Key: "/tmp", Value: "soon", Expiration: fixedNow.Add(2 * time.Second).UnixNano(), ModifiedIndex: 25, CreatedIndex: 25}}, nil,
			201, `{"action":"set","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:24.954115175Z","ttl":2,"modifiedIndex":25,"createdIndex":25}}` + "\n", "25", true},
		{"W6 store error 105 → 412",
			req{method: "PUT", target: "/v2/keys/message?value=x&prevExist=false"},
			nil, api.NewError(105, "/message", 5),
			412, `{"errorCode":105,"message":"Key already exists","cause":"/message","index":5}` + "\n", "5", false},
		{"W10 compare failed → 412",
			req{method: "PUT", target: "/v2/keys/message?value=Again&prevValue=Nope&prevIndex=1"},
			nil, api.NewError(101, "[Nope != Bye] [1 != 8]", 8),
			412, `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye] [1 != 8]","index":8}` + "\n", "8", false},
		{"W20 not a file → 403",
			req{method: "DELETE", target: "/v2/keys/dir"},
			nil, api.NewError(102, "/dir", 15),
			403, `{"errorCode":102,"message":"Not a file","cause":"/dir","index":15}` + "\n", "15", false},
		{"root read only → 400",
			req{method: "PUT", target: "/v2/keys/?value=x"},
			nil, api.NewError(107, "/", 29),
			400, `{"errorCode":107,"message":"Root is read only","cause":"/","index":29}` + "\n", "29", false},
		{"CAD on root: 102 without cause",
			req{method: "DELETE", target: "/v2/keys/?prevValue=x"},
			nil, api.NewError(102, "", 3),
			403, `{"errorCode":102,"message":"Not a file","index":3}` + "\n", "3", false},
		{"wrapped store error",
			req{method: "PUT", target: "/v2/keys/a?value=1"},
			nil, fmt.Errorf("apply: %w", api.NewError(104, "/a", 6)),
			400, `{"errorCode":104,"message":"Not a directory","cause":"/a","index":6}` + "\n", "6", false},
		{"consensus timeout → 500 / 300",
			req{method: "PUT", target: "/v2/keys/a?value=1"},
			nil, errors.New("etcdserver: request timed out"),
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out","index":0}` + "\n", "0", false},
		{"context deadline → etcd's timeout text",
			req{method: "PUT", target: "/v2/keys/a?value=1"},
			nil, fmt.Errorf("propose: %w", context.DeadlineExceeded),
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out","index":0}` + "\n", "0", false},
		{"context canceled → etcd's cancelled text",
			req{method: "DELETE", target: "/v2/keys/a"},
			nil, context.Canceled,
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request cancelled","index":0}` + "\n", "0", false},
		{"leader-failure timeout keeps its text",
			req{method: "POST", target: "/v2/keys/q"},
			nil, fmt.Errorf("etcdserver: request timed out, possibly due to previous leader failure: %w", context.DeadlineExceeded),
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out, possibly due to previous leader failure: context deadline exceeded","index":0}` + "\n", "0", false},
		{"no event and no error → 300",
			req{method: "PUT", target: "/v2/keys/a?value=1"},
			nil, nil,
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: received response with no Event/Watcher","index":0}` + "\n", "0", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) {
				e.raft.ProposeFn = func(context.Context, storage.Cmd) (*api.Event, error) { return tc.ev, tc.err }
			})
			w := e.do(t, tc.q)
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Body.String(); got != tc.wantBody {
				t.Errorf("body = %s\nwant   %s", got, tc.wantBody)
			}
			h := w.Header()
			wantHeader(t, h, "Content-Type", "application/json")
			wantLength(t, h, len(tc.wantBody))
			wantHeader(t, h, "X-Etcd-Index", tc.wantIndex)
			wantHeader(t, h, "X-Etcd-Cluster-Id", "156c5310fedaaf52")
			raftIndex, raftTerm := "", ""
			if tc.wantRaft {
				raftIndex, raftTerm = "7", "2"
			}
			wantHeader(t, h, "X-Raft-Index", raftIndex)
			wantHeader(t, h, "X-Raft-Term", raftTerm)
		})
	}
}

// TestProposeContext checks that proposals carry the request timeout.
func TestProposeContext(t *testing.T) {
	var deadline time.Time
	e := newEnv(t, func(e *env) {
		e.opt.RequestTimeout = 3 * time.Second
		e.raft.ProposeFn = func(ctx context.Context, c storage.Cmd) (*api.Event, error) {
			deadline, _ = ctx.Deadline()
			return &api.Event{Action: "set", Index: 1, Node: node(c.Path, "", 1, 1)}, nil
		}
	})
	start := time.Now()
	e.do(t, req{method: "PUT", target: "/v2/keys/a"})
	if d := deadline.Sub(start); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("propose deadline %v after the request, want about 3s", d)
	}
}

// TestGet checks plain, quorum and HEAD reads (spec §4.1, §8).
func TestGet(t *testing.T) {
	dirEv := &api.Event{Action: "get", Node: &api.Node{Key: "/dir", Dir: true, ModifiedIndex: 12, CreatedIndex: 12,
		Nodes: []*api.Node{node("/dir/a", "1", 14, 14)}}}
	dirBody := `{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":14,"createdIndex":14}],"modifiedIndex":12,"createdIndex":12}}` + "\n"
	cases := []struct {
		name         string
		q            req
		ev           *api.Event
		err          *api.Error
		barrierErr   error
		wantStatus   int
		wantBody     string
		wantIndex    string
		wantBarriers int
		wantGets     int
		wantCount    []bool
	}{
		{"W2 empty root", req{method: "GET", target: "/v2/keys/"},
			&api.Event{Action: "get", Node: &api.Node{Dir: true}}, nil, nil,
			200, `{"action":"get","node":{"dir":true}}` + "\n", "3", 0, 1, []bool{true}},
		{"directory", req{method: "GET", target: "/v2/keys/dir?sorted=true"},
			dirEv, nil, nil, 200, dirBody, "3", 0, 1, []bool{true}},
		{"store fills the index", req{method: "GET", target: "/v2/keys/dir"},
			&api.Event{Action: "get", Index: 15, Node: node("/dir", "x", 1, 1)}, nil, nil,
			200, `{"action":"get","node":{"key":"/dir","value":"x","modifiedIndex":1,"createdIndex":1}}` + "\n", "15", 0, 1, []bool{true}},
		{"missing → 404 with store index", req{method: "GET", target: "/v2/keys/no/such/key"},
			nil, api.NewError(100, "/no", 29), nil,
			404, `{"errorCode":100,"message":"Key not found","cause":"/no","index":29}` + "\n", "29", 0, 1, []bool{false}},
		{"not a directory → 400", req{method: "GET", target: "/v2/keys/message/child"},
			nil, api.NewError(104, "/message", 29), nil,
			400, `{"errorCode":104,"message":"Not a directory","cause":"/message","index":29}` + "\n", "29", 0, 1, []bool{false}},
		{"quorum read", req{method: "GET", target: "/v2/keys/dir?quorum=true"},
			dirEv, nil, nil, 200, dirBody, "3", 1, 1, []bool{true}},
		{"quorum read fails → 300", req{method: "GET", target: "/v2/keys/dir?quorum=true"},
			dirEv, nil, errors.New("etcdserver: request timed out"),
			500, `{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out","index":0}` + "\n", "0", 1, 0, nil},
		{"HEAD ignores quorum", req{method: "HEAD", target: "/v2/keys/dir?quorum=true"},
			dirEv, nil, errors.New("must not be called"), 200, "", "3", 0, 1, []bool{true}},
		{"HEAD error has headers only", req{method: "HEAD", target: "/v2/keys/nope"},
			nil, api.NewError(100, "/nope", 3), nil, 404, "", "3", 0, 1, []bool{false}},
		{"noValueOnSuccess has no effect on GET", req{method: "GET", target: "/v2/keys/dir?noValueOnSuccess=true"},
			dirEv, nil, nil, 200, dirBody, "3", 0, 1, []bool{true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) {
				e.store.GetFn = func(string, bool, bool) (*api.Event, *api.Error) { return tc.ev, tc.err }
				e.raft.BarrierFn = func(context.Context) error { return tc.barrierErr }
			})
			w := e.do(t, tc.q)
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Body.String(); got != tc.wantBody {
				t.Errorf("body = %s\nwant   %s", got, tc.wantBody)
			}
			h := w.Header()
			wantHeader(t, h, "X-Etcd-Index", tc.wantIndex)
			wantHeader(t, h, "X-Etcd-Cluster-Id", "156c5310fedaaf52")
			wantHeader(t, h, "Content-Type", "application/json")
			if e.raft.barriers != tc.wantBarriers {
				t.Errorf("%d read barriers, want %d", e.raft.barriers, tc.wantBarriers)
			}
			if len(e.store.gets) != tc.wantGets {
				t.Errorf("%d store reads, want %d", len(e.store.gets), tc.wantGets)
			}
			if fmt.Sprint(e.store.counted) != fmt.Sprint(tc.wantCount) {
				t.Errorf("CountGet calls %v, want %v", e.store.counted, tc.wantCount)
			}
			if len(e.raft.proposed()) != 0 {
				t.Errorf("a read proposed a command")
			}
		})
	}
}

// TestHeadMatchesGet: HEAD has GET's status and headers, Content-Length
// included, and no body (spec §4.1, W5).
func TestHeadMatchesGet(t *testing.T) {
	for _, target := range []string{"/v2/keys/message", "/v2/keys/missing", "/v2/keys/x?ttl=bad"} {
		e := newEnv(t, func(e *env) {
			e.store.GetFn = func(p string, _, _ bool) (*api.Event, *api.Error) {
				if p == "/missing" {
					return nil, api.NewError(100, p, 5)
				}
				return &api.Event{Action: "get", Node: node(p, "Hello world", 5, 5)}, nil
			}
		})
		get := e.do(t, req{method: "GET", target: target})
		head := e.do(t, req{method: "HEAD", target: target})
		if head.Code != get.Code {
			t.Errorf("%s: HEAD status %d, GET %d", target, head.Code, get.Code)
		}
		if head.Body.Len() != 0 {
			t.Errorf("%s: HEAD body %q", target, head.Body)
		}
		if cl := head.Header().Get("Content-Length"); cl != strconv.Itoa(get.Body.Len()) {
			t.Errorf("%s: HEAD Content-Length %s, GET body %d bytes", target, cl, get.Body.Len())
		}
		getHeader := get.Header().Clone()
		wantLength(t, getHeader, get.Body.Len())
		getHeader.Set("Content-Length", strconv.Itoa(get.Body.Len()))
		if fmt.Sprint(head.Header()) != fmt.Sprint(getHeader) {
			t.Errorf("%s: headers differ\nHEAD %v\nGET  %v", target, head.Header(), getHeader)
		}
	}
}

// TestClusterIDFollowsCluster: the hex form is re-formatted when the ID
// changes.
func TestClusterIDFollowsCluster(t *testing.T) {
	e := newEnv(t, nil)
	wantHeader(t, e.do(t, req{method: "GET", target: "/v2/keys/a"}).Header(), "X-Etcd-Cluster-Id", "156c5310fedaaf52")
	e.cluster.ID = 0xa
	wantHeader(t, e.do(t, req{method: "GET", target: "/v2/keys/a"}).Header(), "X-Etcd-Cluster-Id", "a")
}

func TestBodyLimit(t *testing.T) {
	big := func(n int) string {
		b := make([]byte, n)
		copy(b, "value=")
		for i := 6; i < n; i++ {
			b[i] = 'x'
		}
		return string(b)
	}
	cases := []struct {
		name       string
		limit      int64
		q          req
		wantStatus int
		wantCause  string
	}{
		{"default limit exceeded", 0, req{method: "PUT", target: "/v2/keys/a", body: big(1572865), ctype: "form"},
			413, "request body exceeds 1572864 bytes"},
		{"default limit met", 0, req{method: "PUT", target: "/v2/keys/a", body: big(1572864), ctype: "form"}, 201, ""},
		{"small limit", 100, req{method: "POST", target: "/v2/keys/q", body: big(101), ctype: "form"},
			413, "request body exceeds 100 bytes"},
		{"declared length over the limit, not a form", 100, req{method: "PUT", target: "/v2/keys/a", body: big(101), ctype: "application/json"},
			413, "request body exceeds 100 bytes"},
		{"limit above 10 MiB is clamped", 20 << 20, req{method: "PUT", target: "/v2/keys/a", body: big(10<<20 + 1), ctype: "form"},
			413, "request body exceeds 10485760 bytes"},
		{"method checked first", 100, req{method: "PATCH", target: "/v2/keys/a", body: big(101), ctype: "form"}, 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) { e.opt.MaxRequestBytes = tc.limit })
			w := e.do(t, tc.q)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %.200q)", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantCause != "" {
				if got, want := w.Body.String(), errBody(api.EcodeInvalidForm, tc.wantCause, 0); got != want {
					t.Errorf("body %q, want %q", got, want)
				}
				wantHeader(t, w.Header(), "X-Etcd-Index", "0")
				if n := len(e.raft.proposed()); n != 0 {
					t.Errorf("%d commands proposed", n)
				}
			}
		})
	}
}
