package server_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"cairn/server"
)

// memberVersion is server.Config.Version's default ("etcdserver" of /version).
const memberVersion = "0.1.0"

// TestSpecWorkedExamples replays every worked example of spec §11 (W1–W40)
// and every row of §11.1, in order, against one real in-process member.
// Indexes are shifted: etcd spends indexes 1–3 internally, Cairn does not, so
// {{i N}} is etcd's N moved by (Cairn's empty-root X-Etcd-Index − 3).
func TestSpecWorkedExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("TTL waits and 1005 writes")
	}
	// Both client-port servers (--client-http): the lean one and net/http
	// must give the same answers.
	for _, mode := range []string{server.ClientHTTPLean, server.ClientHTTPStd} {
		t.Run(mode, func(t *testing.T) {
			m := startMember(t, etcdHistory, func(c *server.Config) { c.ClientHTTP = mode })
			s := newSuite(t, m, memberVersion)
			s.run(t, workedExamples())
		})
	}
}

// etcdHistory keeps etcd's watch history window, the last 1000 events
// (§5.2), so that W40's 1005 writes clear the history as in etcd.
func etcdHistory(c *server.Config) { c.WatchHistoryEvents = 1000 }

// statsStoreGolden is /v2/stats/store with every counter captured as
// {{n prefix.field}}.
func statsStoreGolden(prefix string) string {
	g := "{"
	for i, f := range storeCounters {
		if i > 0 {
			g += ","
		}
		g += fmt.Sprintf(`"%s":{{n %s.%s}}`, f, prefix, f)
	}
	return g + "}"
}

var storeCounters = []string{"getsSuccess", "getsFail", "setsSuccess", "setsFail", "deleteSuccess", "deleteFail",
	"updateSuccess", "updateFail", "createSuccess", "createFail", "compareAndSwapSuccess", "compareAndSwapFail",
	"compareAndDeleteSuccess", "compareAndDeleteFail", "expireCount", "watchers"}

const (
	msgJSON   = "application/json"
	textPlain = "text/plain; charset=utf-8"
)

func workedExamples() []step {
	keysAllow := map[string]string{
		"Allow": "HEAD,GET,PUT,POST,DELETE", "Content-Type": textPlain, "X-Content-Type-Options": "nosniff",
		"X-Etcd-Index": absent, "X-Etcd-Cluster-Id": absent, "X-Raft-Index": absent, "X-Raft-Term": absent,
	}
	return []step{
		req(hcase{name: "W1 version", req: get("/version"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON},
			body: `{"etcdserver":"{{ver}}","etcdcluster":"3.5.0"}`}),

		custom("W2 empty root (sets the index base)", func(t *testing.T, s *suite) {
			r := s.send(t, get("/v2/keys/"))
			base, err := strconv.ParseInt(r.header.Get("X-Etcd-Index"), 10, 64)
			if err != nil {
				t.Fatalf("X-Etcd-Index %q: %v", r.header.Get("X-Etcd-Index"), err)
			}
			s.tp.delta = base - 3
			t.Logf("Cairn's empty-root index is %d (etcd: 3); delta %d", base, s.tp.delta)
			s.check(t, hcase{name: "W2", req: get("/v2/keys/"), status: 200, hdr: idx("{{i 3}}"),
				body: nl(`{"action":"get","node":{"dir":true}}`)}, r)
		}),

		req(hcase{name: "W3 set a new key → 201", req: put("/v2/keys/message", "value", "Hello"), status: 201,
			hdr:  idx("{{i 4}}"),
			body: nl(`{"action":"set","node":{"key":"/message","value":"Hello","modifiedIndex":{{i 4}},"createdIndex":{{i 4}}}}`)}),
		req(hcase{name: "W4 overwrite → 200 with prevNode", req: put("/v2/keys/message", "value", "Hello+world"), status: 200,
			hdr:  idx("{{i 5}}"),
			body: nl(`{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":{{i 5}},"createdIndex":{{i 5}}},"prevNode":{"key":"/message","value":"Hello","modifiedIndex":{{i 4}},"createdIndex":{{i 4}}}}`)}),
		req(hcase{name: "W5 HEAD", req: head("/v2/keys/message"), status: 200, hdr: idx("{{i 5}}"),
			headLenOf: nl(`{"action":"get","node":{"key":"/message","value":"Hello world","modifiedIndex":{{i 5}},"createdIndex":{{i 5}}}}`)}),
		req(hcase{name: "W5 the GET behind the HEAD", req: get("/v2/keys/message"), status: 200, hdr: idx("{{i 5}}"),
			body: nl(`{"action":"get","node":{"key":"/message","value":"Hello world","modifiedIndex":{{i 5}},"createdIndex":{{i 5}}}}`)}),
		req(hcase{name: "W6 create on an existing key → 412/105", req: put("/v2/keys/message", "value", "x", "prevExist", "false"),
			status: 412, hdr: errHdr("{{i 5}}"),
			body: nl(`{"errorCode":105,"message":"Key already exists","cause":"/message","index":{{i 5}}}`)}),
		req(hcase{name: "W7 create a new key → 201", req: put("/v2/keys/newkey", "value", "first", "prevExist", "false"),
			status: 201, hdr: idx("{{i 6}}"),
			body: nl(`{"action":"create","node":{"key":"/newkey","value":"first","modifiedIndex":{{i 6}},"createdIndex":{{i 6}}}}`)}),
		req(hcase{name: "W8 update → 200, createdIndex kept", req: put("/v2/keys/message", "value", "Hi", "prevExist", "true"),
			status: 200, hdr: idx("{{i 7}}"),
			body: nl(`{"action":"update","node":{"key":"/message","value":"Hi","modifiedIndex":{{i 7}},"createdIndex":{{i 5}}},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":{{i 5}},"createdIndex":{{i 5}}}}`)}),
		req(hcase{name: "W9 compare-and-swap on value", req: put("/v2/keys/message", "value", "Bye", "prevValue", "Hi"),
			status: 200, hdr: idx("{{i 8}}"),
			body: nl(`{"action":"compareAndSwap","node":{"key":"/message","value":"Bye","modifiedIndex":{{i 8}},"createdIndex":{{i 5}}},"prevNode":{"key":"/message","value":"Hi","modifiedIndex":{{i 7}},"createdIndex":{{i 5}}}}`)}),
		req(hcase{name: "W10 failed CAS, both conditions", req: put("/v2/keys/message", "value", "Again", "prevValue", "Nope", "prevIndex", "1"),
			status: 412, hdr: errHdr("{{i 8}}"),
			body: nl(`{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye] [1 != {{i 8}}]","index":{{i 8}}}`)}),
		req(hcase{name: "W10 failed CAS, value only", req: put("/v2/keys/message", "value", "Again", "prevValue", "Nope"),
			status: 412, hdr: errHdr("{{i 8}}"),
			body: nl(`{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye]","index":{{i 8}}}`)}),
		req(hcase{name: "W10 failed CAS, index only", req: put("/v2/keys/message", "value", "Again", "prevIndex", "1"),
			status: 412, hdr: errHdr("{{i 8}}"),
			body: nl(`{"errorCode":101,"message":"Compare failed","cause":"[1 != {{i 8}}]","index":{{i 8}}}`)}),
		req(hcase{name: "W10 empty prevValue → 201", req: put("/v2/keys/message", "value", "Again", "prevValue", ""),
			status: 400, hdr: errHdr("0"),
			body: nl(`{"errorCode":201,"message":"PrevValue is Required in POST form","cause":"\"prevValue\" cannot be empty","index":0}`)}),
		req(hcase{name: "W11 noValueOnSuccess", req: put("/v2/keys/quiet", "value", "shh", "noValueOnSuccess", "true"),
			status: 201, hdr: idx("{{i 9}}"), body: nl(`{"action":"set"}`)}),
		req(hcase{name: "W12 a lock key", req: put("/v2/keys/lock", "value", "owner1"), status: 201, hdr: idx("{{i 10}}"),
			body: nl(`{"action":"set","node":{"key":"/lock","value":"owner1","modifiedIndex":{{i 10}},"createdIndex":{{i 10}}}}`)}),
		req(hcase{name: "W13 failed compare-and-delete", req: del("/v2/keys/lock?prevValue=owner2"), status: 412, hdr: errHdr("{{i 10}}"),
			body: nl(`{"errorCode":101,"message":"Compare failed","cause":"[owner2 != owner1]","index":{{i 10}}}`)}),
		req(hcase{name: "W14 compare-and-delete on index", req: del("/v2/keys/lock?prevIndex={{i 10}}"), status: 200, hdr: idx("{{i 11}}"),
			body: nl(`{"action":"compareAndDelete","node":{"key":"/lock","modifiedIndex":{{i 11}},"createdIndex":{{i 10}}},"prevNode":{"key":"/lock","value":"owner1","modifiedIndex":{{i 10}},"createdIndex":{{i 10}}}}`)}),
		req(hcase{name: "W15 PUT dir=true", req: put("/v2/keys/dir", "dir", "true"), status: 201, hdr: idx("{{i 12}}"),
			body: nl(`{"action":"set","node":{"key":"/dir","dir":true,"modifiedIndex":{{i 12}},"createdIndex":{{i 12}}}}`)}),
		req(hcase{name: "W16 /dir/b", req: put("/v2/keys/dir/b", "value", "2"), status: 201, hdr: idx("{{i 13}}"),
			body: nl(`{"action":"set","node":{"key":"/dir/b","value":"2","modifiedIndex":{{i 13}},"createdIndex":{{i 13}}}}`)}),
		req(hcase{name: "W17 /dir/a", req: put("/v2/keys/dir/a", "value", "1"), status: 201, hdr: idx("{{i 14}}"),
			body: nl(`{"action":"set","node":{"key":"/dir/a","value":"1","modifiedIndex":{{i 14}},"createdIndex":{{i 14}}}}`)}),
		req(hcase{name: "W18 /dir/sub/c", req: put("/v2/keys/dir/sub/c", "value", "3"), status: 201, hdr: idx("{{i 15}}"),
			body: nl(`{"action":"set","node":{"key":"/dir/sub/c","value":"3","modifiedIndex":{{i 15}},"createdIndex":{{i 15}}}}`)}),
		req(hcase{name: "W19 recursive sorted listing", req: get("/v2/keys/dir?recursive=true&sorted=true"), status: 200, hdr: idx("{{i 15}}"),
			body: nl(`{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":{{i 14}},"createdIndex":{{i 14}}},{"key":"/dir/b","value":"2","modifiedIndex":{{i 13}},"createdIndex":{{i 13}}},{"key":"/dir/sub","dir":true,"nodes":[{"key":"/dir/sub/c","value":"3","modifiedIndex":{{i 15}},"createdIndex":{{i 15}}}],"modifiedIndex":{{i 15}},"createdIndex":{{i 15}}}],"modifiedIndex":{{i 12}},"createdIndex":{{i 12}}}}`)}),
		req(hcase{name: "W19 sorted listing without recursive", req: get("/v2/keys/dir?sorted=true"), status: 200, hdr: idx("{{i 15}}"),
			body: nl(`{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":{{i 14}},"createdIndex":{{i 14}}},{"key":"/dir/b","value":"2","modifiedIndex":{{i 13}},"createdIndex":{{i 13}}},{"key":"/dir/sub","dir":true,"modifiedIndex":{{i 15}},"createdIndex":{{i 15}}}],"modifiedIndex":{{i 12}},"createdIndex":{{i 12}}}}`)}),
		req(hcase{name: "W20 DELETE a directory without flags → 403/102", req: del("/v2/keys/dir"), status: 403, hdr: errHdr("{{i 15}}"),
			body: nl(`{"errorCode":102,"message":"Not a file","cause":"/dir","index":{{i 15}}}`)}),
		req(hcase{name: "W21 DELETE a non-empty directory with dir=true → 403/108", req: del("/v2/keys/dir?dir=true"), status: 403, hdr: errHdr("{{i 15}}"),
			body: nl(`{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":{{i 15}}}`)}),
		watchStart("W22", "/v2/keys/dir/sub/c?wait=true", idx("{{i 15}}")),
		req(hcase{name: "W23 recursive DELETE", req: del("/v2/keys/dir?recursive=true"), status: 200, hdr: idx("{{i 16}}"),
			body: nl(`{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":{{i 16}},"createdIndex":{{i 12}}},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":{{i 12}},"createdIndex":{{i 12}}}}`)}),
		watchGot("W22", false,
			nl(`{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":{{i 16}},"createdIndex":{{i 12}}},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":{{i 12}},"createdIndex":{{i 12}}}}`)),
		req(hcase{name: "W24 POST in-order key", req: post("/v2/keys/queue", "value", "job1"), status: 201, hdr: idx("{{i 17}}"),
			body: nl(`{"action":"create","node":{"key":"/queue/{{k 17}}","value":"job1","modifiedIndex":{{i 17}},"createdIndex":{{i 17}}}}`)}),
		req(hcase{name: "W25 POST in-order key", req: post("/v2/keys/queue", "value", "job2"), status: 201, hdr: idx("{{i 18}}"),
			body: nl(`{"action":"create","node":{"key":"/queue/{{k 18}}","value":"job2","modifiedIndex":{{i 18}},"createdIndex":{{i 18}}}}`)}),
		req(hcase{name: "§11.1 POST on a file → 400/104", req: post("/v2/keys/message", "value", "x"), status: 400, hdr: errHdr("{{i 18}}"),
			body: nl(`{"errorCode":104,"message":"Not a directory","cause":"/message","index":{{i 18}}}`)}),
		watchStart("W26", "/v2/keys/watched?wait=true", idx("{{i 18}}")),
		req(hcase{name: "W27 the write W26 waits for", req: put("/v2/keys/watched", "value", "v1"), status: 201, hdr: idx("{{i 19}}"),
			body: nl(`{"action":"set","node":{"key":"/watched","value":"v1","modifiedIndex":{{i 19}},"createdIndex":{{i 19}}}}`)}),
		watchGot("W26", false, nl(`{"action":"set","node":{"key":"/watched","value":"v1","modifiedIndex":{{i 19}},"createdIndex":{{i 19}}}}`)),
		req(hcase{name: "W28 watch from history answers at once", req: get("/v2/keys/newkey?wait=true&waitIndex={{i 6}}"), status: 200,
			kind: kindWatch, hdr: idx("{{i 19}}"),
			body: nl(`{"action":"create","node":{"key":"/newkey","value":"first","modifiedIndex":{{i 6}},"createdIndex":{{i 6}}}}`)}),
		req(hcase{name: "index 20: a plain set of another key", req: put("/v2/keys/other", "value", "x"), status: 201, hdr: idx("{{i 20}}"),
			body: nl(`{"action":"set","node":{"key":"/other","value":"x","modifiedIndex":{{i 20}},"createdIndex":{{i 20}}}}`)}),
		watchStart("W29", "/v2/keys/stream?wait=true&stream=true", idx("{{i 20}}")),
		req(hcase{name: "W30 first streamed write", req: put("/v2/keys/stream", "value", "s1"), status: 201, hdr: idx("{{i 21}}"),
			body: nl(`{"action":"set","node":{"key":"/stream","value":"s1","modifiedIndex":{{i 21}},"createdIndex":{{i 21}}}}`)}),
		req(hcase{name: "W31 second streamed write", req: put("/v2/keys/stream", "value", "s2"), status: 200, hdr: idx("{{i 22}}"),
			body: nl(`{"action":"set","node":{"key":"/stream","value":"s2","modifiedIndex":{{i 22}},"createdIndex":{{i 22}}},"prevNode":{"key":"/stream","value":"s1","modifiedIndex":{{i 21}},"createdIndex":{{i 21}}}}`)}),
		watchGot("W29", true,
			nl(`{"action":"set","node":{"key":"/stream","value":"s1","modifiedIndex":{{i 21}},"createdIndex":{{i 21}}}}`),
			nl(`{"action":"set","node":{"key":"/stream","value":"s2","modifiedIndex":{{i 22}},"createdIndex":{{i 22}}},"prevNode":{"key":"/stream","value":"s1","modifiedIndex":{{i 21}},"createdIndex":{{i 21}}}}`)),
		req(hcase{name: "index 23: hidden /app/_internal", req: put("/v2/keys/app/_internal", "value", "secret"), status: 201, hdr: idx("{{i 23}}"),
			body: nl(`{"action":"set","node":{"key":"/app/_internal","value":"secret","modifiedIndex":{{i 23}},"createdIndex":{{i 23}}}}`)}),
		req(hcase{name: "index 24: /app/public", req: put("/v2/keys/app/public", "value", "open"), status: 201, hdr: idx("{{i 24}}"),
			body: nl(`{"action":"set","node":{"key":"/app/public","value":"open","modifiedIndex":{{i 24}},"createdIndex":{{i 24}}}}`)}),
		req(hcase{name: "recursive GET of /app hides /app/_internal", req: get("/v2/keys/app?recursive=true"), status: 200, hdr: idx("{{i 24}}"),
			body: nl(`{"action":"get","node":{"key":"/app","dir":true,"nodes":[{"key":"/app/public","value":"open","modifiedIndex":{{i 24}},"createdIndex":{{i 24}}}],"modifiedIndex":{{i 23}},"createdIndex":{{i 23}}}}`)}),
		req(hcase{name: "direct GET of /app/_internal", req: get("/v2/keys/app/_internal"), status: 200, hdr: idx("{{i 24}}"),
			body: nl(`{"action":"get","node":{"key":"/app/_internal","value":"secret","modifiedIndex":{{i 23}},"createdIndex":{{i 23}}}}`)}),
		req(hcase{name: "W32 key with a 2 s TTL", req: put("/v2/keys/tmp", "value", "soon", "ttl", "2"), status: 201, hdr: idx("{{i 25}}"),
			body: nl(`{"action":"set","node":{"key":"/tmp","value":"soon","expiration":"{{exp tmp +2}}","ttl":{{ttl 1 2}},"modifiedIndex":{{i 25}},"createdIndex":{{i 25}}}}`)}),
		watchStart("W33", "/v2/keys/tmp?wait=true", idx("{{i 25}}")),
		custom("W34 read it 1.2 s in: ttl counts down, expiration unchanged", func(t *testing.T, s *suite) {
			exp, err := time.Parse(time.RFC3339Nano, s.tp.exps["tmp"])
			if err != nil {
				t.Fatalf("W32 expiration: %v", err)
			}
			// TTL wait: until 0.8 s before the expiration (1.2 s after the write).
			if d := time.Until(exp.Add(-800 * time.Millisecond)); d > 0 && d < 3*time.Second {
				time.Sleep(d)
			}
			s.check(t, hcase{name: "W34", req: get("/v2/keys/tmp"), status: 200, hdr: idx("{{i 25}}"),
				body: nl(`{"action":"get","node":{"key":"/tmp","value":"soon","expiration":"{{exp tmp}}","ttl":1,"modifiedIndex":{{i 25}},"createdIndex":{{i 25}}}}`)},
				s.send(t, get("/v2/keys/tmp")))
		}),
		// W35: the expiry is awaited through the W33 watcher (bounded), then read.
		watchGot("W33", false,
			nl(`{"action":"expire","node":{"key":"/tmp","modifiedIndex":{{i 26}},"createdIndex":{{i 25}}},"prevNode":{"key":"/tmp","value":"soon","expiration":"{{exp tmp}}","modifiedIndex":{{i 25}},"createdIndex":{{i 25}}}}`)),
		req(hcase{name: "W35 gone after the expiry", req: get("/v2/keys/tmp"), status: 404, hdr: errHdr("{{i 26}}"),
			body: nl(`{"errorCode":100,"message":"Key not found","cause":"/tmp","index":{{i 26}}}`)}),
		req(hcase{name: "W36 a session key with ttl=30", req: put("/v2/keys/session", "value", "s", "ttl", "30"), status: 201, hdr: idx("{{i 27}}"),
			body: nl(`{"action":"set","node":{"key":"/session","value":"s","expiration":"{{exp session +30}}","ttl":{{ttl 29 30}},"modifiedIndex":{{i 27}},"createdIndex":{{i 27}}}}`)}),
		// A watcher open during the refresh gets nothing; it is checked at the
		// very end, where its first event must be the final delete.
		watchStart("W36-watch", "/v2/keys/session?wait=true", idx("{{i 27}}")),
		req(hcase{name: "W37 refresh with prevExist=true", req: put("/v2/keys/session", "ttl", "60", "refresh", "true", "prevExist", "true"),
			status: 200, hdr: idx("{{i 28}}"),
			body: nl(`{"action":"update","node":{"key":"/session","value":"s","expiration":"{{exp session2 +60}}","ttl":{{ttl 59 60}},"modifiedIndex":{{i 28}},"createdIndex":{{i 27}}},"prevNode":{"key":"/session","value":"s","expiration":"{{exp session}}","ttl":{{ttl 28 30}},"modifiedIndex":{{i 27}},"createdIndex":{{i 27}}}}`)}),
		req(hcase{name: "W37 refresh with a value → 211", req: put("/v2/keys/session", "ttl", "60", "refresh", "true", "prevExist", "true", "value", "new"),
			status: 400, hdr: errHdr("0"),
			body: nl(`{"errorCode":211,"message":"Value provided on refresh","cause":"A value was provided on a refresh","index":0}`)}),
		req(hcase{name: "W37 refresh without ttl → 212", req: put("/v2/keys/session", "refresh", "true", "prevExist", "true"),
			status: 400, hdr: errHdr("0"),
			body: nl(`{"errorCode":212,"message":"A TTL must be provided on refresh","cause":"No TTL value set","index":0}`)}),
		req(hcase{name: "W38 directory with a TTL", req: put("/v2/keys/tdir", "dir", "true", "ttl", "30"), status: 201, hdr: idx("{{i 29}}"),
			body: nl(`{"action":"set","node":{"key":"/tdir","dir":true,"expiration":"{{exp tdir +30}}","ttl":{{ttl 29 30}},"modifiedIndex":{{i 29}},"createdIndex":{{i 29}}}}`)}),

		// §11.1, at store index 29.
		req(hcase{name: "§11.1 PUT on the root → 107", req: put("/v2/keys/", "value", "x"), status: 400, hdr: errHdr("{{i 29}}"),
			body: nl(`{"errorCode":107,"message":"Root is read only","cause":"/","index":{{i 29}}}`)}),
		req(hcase{name: "§11.1 GET a missing path → 100, first missing segment", req: get("/v2/keys/no/such/key"), status: 404, hdr: errHdr("{{i 29}}"),
			body: nl(`{"errorCode":100,"message":"Key not found","cause":"/no","index":{{i 29}}}`)}),
		req(hcase{name: "§11.1 GET below a file → 104", req: get("/v2/keys/message/child"), status: 400, hdr: errHdr("{{i 29}}"),
			body: nl(`{"errorCode":104,"message":"Not a directory","cause":"/message","index":{{i 29}}}`)}),
		req(hcase{name: "§11.1 PUT ?wait=true → 209", req: put("/v2/keys/x?wait=true"), status: 400, hdr: errHdr("0"),
			body: nl(`{"errorCode":209,"message":"Invalid field","cause":"\"wait\" can only be used with GET requests","index":0}`)}),
		req(hcase{name: "§11.1 PUT body value=%zz → 210", req: rawReq{method: "PUT", target: "/v2/keys/x", body: "value=%zz", ctype: "form"},
			status: 400, hdr: errHdr("0"),
			body: nl(`{"errorCode":210,"message":"Invalid POST form","cause":"invalid URL escape \"%zz\"","index":0}`)}),
		req(hcase{name: "§11.1 PATCH → 405", req: rawReq{method: "PATCH", target: "/v2/keys/x"}, status: 405, kind: kindOther,
			hdr: keysAllow, body: "Method Not Allowed\n"}),
		req(hcase{name: "§11.1 unclean path → 307", req: get("/v2/keys//message/./?sorted=true"), status: 307, kind: kindOther,
			hdr: map[string]string{"Location": "/v2/keys/message/?sorted=true", "Content-Type": "text/html; charset=utf-8",
				"X-Etcd-Index": absent, "X-Raft-Index": absent},
			body: `<a href="/v2/keys/message/?sorted=true">Temporary Redirect</a>.` + "\n\n"}),
		req(hcase{name: "§11.1 PUT on an unclean path → 307 without body", req: put("/v2/keys//message/.", "value", "no"), status: 307, kind: kindOther,
			hdr: map[string]string{"Location": "/v2/keys/message", "X-Etcd-Index": absent}, body: ""}),
		req(hcase{name: "§11.1 trailing slash means the file", req: get("/v2/keys/message/"), status: 200, hdr: idx("{{i 29}}"),
			body: nl(`{"action":"get","node":{"key":"/message","value":"Bye","modifiedIndex":{{i 8}},"createdIndex":{{i 5}}}}`)}),
		req(hcase{name: "§11.1 GET /v2/members/leader", req: get("/v2/members/leader"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: nl(`{"id":"{{id}}","name":"{{name}}","peerURLs":["{{peer}}"],"clientURLs":["{{client}}"]}`)}),
		req(hcase{name: "§11.1 POST /v2/members with a form → 415",
			req:    rawReq{method: "POST", target: "/v2/members", body: "peerURLs=x", ctype: "form"},
			status: 415, kind: kindOther, hdr: map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: `{"message":"Bad Content-Type application/x-www-form-urlencoded, accept application/json"}`}),
		req(hcase{name: "§11.1 POST /v2/members with an existing peer URL → 409",
			req:    rawReq{method: "POST", target: "/v2/members", body: `{"peerURLs":["{{peer}}"]}`, ctype: "application/json"},
			status: 409, kind: kindOther, hdr: map[string]string{"Content-Type": msgJSON},
			body: `{"message":"membership: peerURL exists"}`}),
		req(hcase{name: "§11.1 PUT /v2/members/<id> with the same peer URL → 204",
			req:    rawReq{method: "PUT", target: "/v2/members/{{id}}", body: `{"peerURLs":["{{peer}}"]}`, ctype: "application/json"},
			status: 204, kind: kindOther, hdr: map[string]string{"X-Etcd-Cluster-Id": "{{cid}}"}, body: ""}),
		req(hcase{name: "§11.1 DELETE an unknown member → 404", req: del("/v2/members/1234"), status: 404, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: `{"message":"No such member: 1234"}`}),
		req(hcase{name: "§11.1 GET /v2/stats/store (16 counters in order)", req: get("/v2/stats/store"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: statsStoreGolden("s1"),
			after: func(t *testing.T, s *suite, _ response) {
				// [D-7]: exactly the client operations above, failures as
				// failures (etcd shows inflated getsFail and 2 CAD successes).
				want := map[string]uint64{
					"getsSuccess":             9,  // W2, W5 HEAD and GET, W19 ×2, /app ×2, W34, message/
					"getsFail":                3,  // W35, no/such/key, message/child
					"setsSuccess":             17, // W3, W4, W11, W12, W15–18, 20, W27, W30, W31, 23, 24, W32, W36, W38
					"setsFail":                1,  // PUT on the root
					"deleteSuccess":           1,  // W23
					"deleteFail":              2,  // W20, W21
					"updateSuccess":           2,  // W8, W37
					"updateFail":              0,  //
					"createSuccess":           3,  // W7, W24, W25
					"createFail":              2,  // W6, POST on a file
					"compareAndSwapSuccess":   1,  // W9
					"compareAndSwapFail":      3,  // W10 ×3
					"compareAndDeleteSuccess": 1,  // W14
					"compareAndDeleteFail":    1,  // W13
					"expireCount":             1,  // W35
					"watchers":                1,  // the W36 watch
				}
				for _, f := range storeCounters {
					if v := s.tp.nums["s1."+f]; v != want[f] {
						t.Errorf("%s %d, want %d", f, v, want[f])
					}
				}
			}}),
		req(hcase{name: "§11.1 peer port GET /members", req: rawReq{method: "GET", base: "{{peer}}", target: "/members"},
			status: 200, kind: kindPeer, hdr: map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: nl(`[{"id":{{did}},"peerURLs":["{{peer}}"],"name":"{{name}}","clientURLs":["{{client}}"]}]`)}),

		req(hcase{name: "W39 changing a directory's TTL → update [D-1]", req: put("/v2/keys/tdir", "dir", "true", "ttl", "60", "prevExist", "true"),
			status: 200, hdr: idx("{{i 30}}"),
			body: nl(`{"action":"update","node":{"key":"/tdir","dir":true,"expiration":"{{exp tdir2 +60}}","ttl":{{ttl 59 60}},"modifiedIndex":{{i 30}},"createdIndex":{{i 29}}},"prevNode":{"key":"/tdir","dir":true,"expiration":"{{exp tdir}}","ttl":{{ttl 28 30}},"modifiedIndex":{{i 29}},"createdIndex":{{i 29}}}}`)}),

		custom("W40 1005 writes to /churn", func(t *testing.T, s *suite) {
			var last uint64
			for i := 0; i < 1005; i++ {
				r := s.m.do(t, put("/v2/keys/churn", "value", strconv.Itoa(i)))
				if r.status != http.StatusOK && r.status != http.StatusCreated {
					t.Fatalf("churn write %d: %d %s", i, r.status, r.body)
				}
				n, err := strconv.ParseUint(r.header.Get("X-Etcd-Index"), 10, 64)
				if err != nil || (last != 0 && n != last+1) {
					t.Fatalf("churn write %d: X-Etcd-Index %q after %d", i, r.header.Get("X-Etcd-Index"), last)
				}
				last = n
			}
			// etcd reached 1034 with a failed W39; Cairn's W39 took an index.
			if want := s.tp.shift(1034) + 1; last != want {
				t.Errorf("store index after the churn %d, want %d", last, want)
			}
			s.tp.nums["newest"] = last
		}),
		req(hcase{name: "W40 history window exceeded → 401", req: get("/v2/keys/message?wait=true&waitIndex={{i 8}}"),
			status: 400, hdr: errHdr("{{n newest}}"),
			body: nl(`{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [{{n oldest}}/{{i 8}}]","index":{{n newest}}}`),
			after: func(t *testing.T, s *suite, _ response) {
				o, ok := s.tp.nums["oldest"]
				if !ok {
					t.Fatalf("no 401: the later W40 steps cannot run")
				}
				if n := s.tp.nums["newest"]; o != n-999 {
					t.Errorf("oldest retained %d, want newest−999 = %d (1000 events kept)", o, n-999)
				}
				s.tp.nums["oldest-1"] = s.tp.nums["oldest"] - 1
				s.tp.nums["oldest-2"] = s.tp.nums["oldest"] - 2
			}}),
		req(hcase{name: "W40 the oldest retained event is still served", req: get("/v2/keys/churn?wait=true&waitIndex={{n oldest}}"),
			status: 200, kind: kindWatch, hdr: idx("{{n newest}}"),
			body: nl(`{"action":"set","node":{"key":"/churn","value":"{{any}}","modifiedIndex":{{n oldest}},"createdIndex":{{n oldest}}},"prevNode":{"key":"/churn","value":"{{any}}","modifiedIndex":{{n oldest-1}},"createdIndex":{{n oldest-1}}}}`)}),
		req(hcase{name: "W40 one below the oldest → 401", req: get("/v2/keys/churn?wait=true&waitIndex={{n oldest-1}}"),
			status: 400, hdr: errHdr("{{n newest}}"),
			body: nl(`{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [{{n oldest}}/{{n oldest-1}}]","index":{{n newest}}}`)}),

		// The W36 watcher saw neither the W37 refresh nor anything else.
		custom("mark the next index", func(t *testing.T, s *suite) { s.tp.mark = s.tp.nums["newest"] + 1 }),
		req(hcase{name: "delete /session", req: del("/v2/keys/session"), status: 200, hdr: idx("{{m 0}}"),
			body: nl(`{"action":"delete","node":{"key":"/session","modifiedIndex":{{m 0}},"createdIndex":{{i 27}}},"prevNode":{"key":"/session","value":"s","expiration":"{{exp session2}}","ttl":{{ttl 1 60}},"modifiedIndex":{{i 28}},"createdIndex":{{i 27}}}}`)}),
		watchGot("W36-watch", false,
			nl(`{"action":"delete","node":{"key":"/session","modifiedIndex":{{m 0}},"createdIndex":{{i 27}}},"prevNode":{"key":"/session","value":"s","expiration":"{{exp session2}}","ttl":{{ttl 0 60}},"modifiedIndex":{{i 28}},"createdIndex":{{i 27}}}}`)),
	}
}
