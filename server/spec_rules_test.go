package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cairn/server"
)

// TestSpecRules checks, against one real in-process member, the rules of
// spec §2–§10 that the worked examples do not show. Indexes are relative to
// a mark (the store index read just before each group): {{m K}} is mark+K.
func TestSpecRules(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a TTL expiry")
	}
	// Both client-port servers (--client-http): the lean one and net/http
	// must give the same answers.
	for _, mode := range []string{server.ClientHTTPLean, server.ClientHTTPStd} {
		t.Run(mode, func(t *testing.T) {
			m := startMember(t, func(c *server.Config) { c.ClientHTTP = mode })
			s := newSuite(t, m, memberVersion)
			var steps []step
			for _, g := range [][]step{
				hiddenRules(), rootRules(), dirFileRules(), ttlRules(), refreshRules(), validationRules(),
				bodyLimitRules(), keyPathRules(), quorumAndHeadRules(), watchRules(), statsRules(), endpointRules(),
			} {
				steps = append(steps, g...)
			}
			s.run(t, steps)
		})
	}
}

// mark reads the current store index into the template's mark.
func mark() step {
	return custom("mark", func(t *testing.T, s *suite) {
		r := s.m.do(t, get("/v2/keys/"))
		n, err := strconv.ParseUint(r.header.Get("X-Etcd-Index"), 10, 64)
		if err != nil || r.status != 200 {
			t.Fatalf("mark: %d %q", r.status, r.header.Get("X-Etcd-Index"))
		}
		s.tp.mark = n
	})
}

func setBody(key, value, mod, created string) string {
	return nl(`{"action":"set","node":{"key":"` + key + `","value":"` + value + `","modifiedIndex":` + mod + `,"createdIndex":` + created + `}}`)
}

func keyErr(code int, msg, cause, index string) string {
	c := ""
	if cause != "" {
		c = `,"cause":` + strconv.Quote(cause)
	}
	return nl(`{"errorCode":` + strconv.Itoa(code) + `,"message":"` + msg + `"` + c + `,"index":` + index + `}`)
}

func hiddenRules() []step {
	return []step{
		mark(),
		req(hcase{name: "hidden: write /h/_secret", req: put("/v2/keys/h/_secret", "value", "s"), status: 201, hdr: idx("{{m 1}}"),
			body: setBody("/h/_secret", "s", "{{m 1}}", "{{m 1}}")}),
		req(hcase{name: "hidden: write /h/vis", req: put("/v2/keys/h/vis", "value", "v"), status: 201, hdr: idx("{{m 2}}"),
			body: setBody("/h/vis", "v", "{{m 2}}", "{{m 2}}")}),
		req(hcase{name: "hidden: write /h/sub/_hid/deep", req: put("/v2/keys/h/sub/_hid/deep", "value", "d"), status: 201, hdr: idx("{{m 3}}"),
			body: setBody("/h/sub/_hid/deep", "d", "{{m 3}}", "{{m 3}}")}),
		req(hcase{name: "hidden: write /h/sub/ok", req: put("/v2/keys/h/sub/ok", "value", "o"), status: 201, hdr: idx("{{m 4}}"),
			body: setBody("/h/sub/ok", "o", "{{m 4}}", "{{m 4}}")}),
		req(hcase{name: "hidden: write /h/_hdir/x", req: put("/v2/keys/h/_hdir/x", "value", "x"), status: 201, hdr: idx("{{m 5}}"),
			body: setBody("/h/_hdir/x", "x", "{{m 5}}", "{{m 5}}")}),
		req(hcase{name: "hidden: a direct GET returns the hidden key", req: get("/v2/keys/h/_secret"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"get","node":{"key":"/h/_secret","value":"s","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "hidden: a listing leaves hidden children out", req: get("/v2/keys/h?sorted=true"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"get","node":{"key":"/h","dir":true,"nodes":[{"key":"/h/sub","dir":true,"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}},{"key":"/h/vis","value":"v","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}],"modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "hidden: a recursive listing drops hidden nodes at every depth", req: get("/v2/keys/h?recursive=true&sorted=true"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"get","node":{"key":"/h","dir":true,"nodes":[{"key":"/h/sub","dir":true,"nodes":[{"key":"/h/sub/ok","value":"o","modifiedIndex":{{m 4}},"createdIndex":{{m 4}}}],"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}},{"key":"/h/vis","value":"v","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}],"modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "hidden: a hidden directory lists its own children", req: get("/v2/keys/h/_hdir"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"get","node":{"key":"/h/_hdir","dir":true,"nodes":[{"key":"/h/_hdir/x","value":"x","modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}],"modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "hidden: a nested hidden directory lists recursively", req: get("/v2/keys/h/sub/_hid?recursive=true"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"get","node":{"key":"/h/sub/_hid","dir":true,"nodes":[{"key":"/h/sub/_hid/deep","value":"d","modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}],"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		watchStart("hidden-rec", "/v2/keys/h?wait=true&recursive=true", idx("{{m 5}}")),
		watchStart("hidden-hdir", "/v2/keys/h/_hdir?wait=true&recursive=true", idx("{{m 5}}")),
		req(hcase{name: "hidden: rewrite /h/_secret (not seen by /h)", req: put("/v2/keys/h/_secret", "value", "s2"), status: 200, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"set","node":{"key":"/h/_secret","value":"s2","modifiedIndex":{{m 6}},"createdIndex":{{m 6}}},"prevNode":{"key":"/h/_secret","value":"s","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "hidden: rewrite /h/sub/_hid/deep (not seen by /h)", req: put("/v2/keys/h/sub/_hid/deep", "value", "d2"), status: 200, hdr: idx("{{m 7}}"),
			body: nl(`{"action":"set","node":{"key":"/h/sub/_hid/deep","value":"d2","modifiedIndex":{{m 7}},"createdIndex":{{m 7}}},"prevNode":{"key":"/h/sub/_hid/deep","value":"d","modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "hidden: rewrite /h/vis", req: put("/v2/keys/h/vis", "value", "v2"), status: 200, hdr: idx("{{m 8}}"),
			body: nl(`{"action":"set","node":{"key":"/h/vis","value":"v2","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/h/vis","value":"v","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		watchGot("hidden-rec", false,
			nl(`{"action":"set","node":{"key":"/h/vis","value":"v2","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/h/vis","value":"v","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)),
		req(hcase{name: "hidden: rewrite /h/_hdir/x", req: put("/v2/keys/h/_hdir/x", "value", "x2"), status: 200, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"set","node":{"key":"/h/_hdir/x","value":"x2","modifiedIndex":{{m 9}},"createdIndex":{{m 9}}},"prevNode":{"key":"/h/_hdir/x","value":"x","modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		watchGot("hidden-hdir", false,
			nl(`{"action":"set","node":{"key":"/h/_hdir/x","value":"x2","modifiedIndex":{{m 9}},"createdIndex":{{m 9}}},"prevNode":{"key":"/h/_hdir/x","value":"x","modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)),
		req(hcase{name: "hidden: a recursive replay skips hidden keys too [D-12]", req: get("/v2/keys/h?wait=true&recursive=true&waitIndex={{m 6}}"),
			status: 200, kind: kindWatch, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"set","node":{"key":"/h/vis","value":"v2","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/h/vis","value":"v","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		req(hcase{name: "hidden: an exact watch on a hidden key replays it", req: get("/v2/keys/h/_secret?wait=true&waitIndex={{m 6}}"),
			status: 200, kind: kindWatch, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"set","node":{"key":"/h/_secret","value":"s2","modifiedIndex":{{m 6}},"createdIndex":{{m 6}}},"prevNode":{"key":"/h/_secret","value":"s","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
	}
}

func rootRules() []step {
	return []step{
		mark(),
		req(hcase{name: "root: POST creates a top-level in-order key", req: post("/v2/keys/", "value", "r"), status: 201, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"create","node":{"key":"/{{mk 1}}","value":"r","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "root: POST on /v2/keys without slash", req: post("/v2/keys", "value", "r2"), status: 201, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"create","node":{"key":"/{{mk 2}}","value":"r2","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		req(hcase{name: "root: DELETE → 107", req: del("/v2/keys/"), status: 400, hdr: errHdr("{{m 2}}"),
			body: keyErr(107, "Root is read only", "/", "{{m 2}}")}),
		req(hcase{name: "root: DELETE recursive → 107", req: del("/v2/keys?recursive=true"), status: 400, hdr: errHdr("{{m 2}}"),
			body: keyErr(107, "Root is read only", "/", "{{m 2}}")}),
		req(hcase{name: "root: compare-and-delete → 102 without cause", req: del("/v2/keys/?prevValue=x"), status: 403, hdr: errHdr("{{m 2}}"),
			body: keyErr(102, "Not a file", "", "{{m 2}}")}),
		req(hcase{name: "root: compare-and-delete on index → 102 without cause", req: del("/v2/keys/?prevIndex=1"), status: 403, hdr: errHdr("{{m 2}}"),
			body: keyErr(102, "Not a file", "", "{{m 2}}")}),
		req(hcase{name: "root: PUT dir=true → 107", req: put("/v2/keys", "dir", "true"), status: 400, hdr: errHdr("{{m 2}}"),
			body: keyErr(107, "Root is read only", "/", "{{m 2}}")}),
		req(hcase{name: "root: create → 107", req: put("/v2/keys/", "value", "x", "prevExist", "false"), status: 400, hdr: errHdr("{{m 2}}"),
			body: keyErr(107, "Root is read only", "/", "{{m 2}}")}),
	}
}

func dirFileRules() []step {
	return []step{
		mark(),
		req(hcase{name: "dir/file: a file /f", req: put("/v2/keys/f", "value", "v"), status: 201, hdr: idx("{{m 1}}"),
			body: setBody("/f", "v", "{{m 1}}", "{{m 1}}")}),
		req(hcase{name: "dir/file: dir=true&prevExist=true on a file empties its value", req: put("/v2/keys/f", "dir", "true", "prevExist", "true"),
			status: 200, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"update","node":{"key":"/f","value":"","modifiedIndex":{{m 2}},"createdIndex":{{m 1}}},"prevNode":{"key":"/f","value":"v","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "dir/file: a file /f2", req: put("/v2/keys/f2", "value", "v"), status: 201, hdr: idx("{{m 3}}"),
			body: setBody("/f2", "v", "{{m 3}}", "{{m 3}}")}),
		req(hcase{name: "dir/file: set dir=true over a file makes an empty directory", req: put("/v2/keys/f2", "dir", "true"),
			status: 200, hdr: idx("{{m 4}}"),
			body: nl(`{"action":"set","node":{"key":"/f2","dir":true,"modifiedIndex":{{m 4}},"createdIndex":{{m 4}}},"prevNode":{"key":"/f2","value":"v","modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "dir/file: set dir=true over a directory → 102", req: put("/v2/keys/f2", "dir", "true"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: set a value over a directory → 102", req: put("/v2/keys/f2", "value", "x"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: create on a directory → 105", req: put("/v2/keys/f2", "value", "x", "prevExist", "false"), status: 412, hdr: errHdr("{{m 4}}"),
			body: keyErr(105, "Key already exists", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: update a directory with a value → 102", req: put("/v2/keys/f2", "value", "x", "prevExist", "true"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: CAS on a directory → 102", req: put("/v2/keys/f2", "value", "x", "prevValue", "a"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: update a missing key → 100", req: put("/v2/keys/nope", "value", "x", "prevExist", "true"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/nope", "{{m 4}}")}),
		req(hcase{name: "dir/file: CAS on a missing key → 100", req: put("/v2/keys/nope", "value", "x", "prevIndex", "3"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/nope", "{{m 4}}")}),
		req(hcase{name: "dir/file: PUT below a file → 104", req: put("/v2/keys/f/x/y", "value", "x"), status: 400, hdr: errHdr("{{m 4}}"),
			body: keyErr(104, "Not a directory", "/f", "{{m 4}}")}),
		req(hcase{name: "dir/file: DELETE an empty directory without flags → 102", req: del("/v2/keys/f2"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: compare-and-delete a directory → 102", req: del("/v2/keys/f2?prevIndex={{m 4}}"), status: 403, hdr: errHdr("{{m 4}}"),
			body: keyErr(102, "Not a file", "/f2", "{{m 4}}")}),
		req(hcase{name: "dir/file: compare-and-delete a missing key → 100", req: del("/v2/keys/nope?prevValue=a"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/nope", "{{m 4}}")}),
		req(hcase{name: "dir/file: DELETE a missing key → 100", req: del("/v2/keys/nope/deeper"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/nope", "{{m 4}}")}),
		req(hcase{name: "dir/file: DELETE dir=true on an empty directory", req: del("/v2/keys/f2?dir=true"), status: 200, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"delete","node":{"key":"/f2","dir":true,"modifiedIndex":{{m 5}},"createdIndex":{{m 4}}},"prevNode":{"key":"/f2","dir":true,"modifiedIndex":{{m 4}},"createdIndex":{{m 4}}}}`)}),
		req(hcase{name: "dir/file: DELETE dir=true on a file deletes it", req: del("/v2/keys/f?dir=true"), status: 200, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"delete","node":{"key":"/f","modifiedIndex":{{m 6}},"createdIndex":{{m 1}}},"prevNode":{"key":"/f","value":"","modifiedIndex":{{m 2}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "dir/file: noValueOnSuccess on update", req: put("/v2/keys/nv", "value", "1"), status: 201, hdr: idx("{{m 7}}"),
			body: setBody("/nv", "1", "{{m 7}}", "{{m 7}}")}),
		req(hcase{name: "dir/file: noValueOnSuccess on CAS", req: put("/v2/keys/nv?noValueOnSuccess=true", "value", "2", "prevValue", "1"), status: 200, hdr: idx("{{m 8}}"),
			body: nl(`{"action":"compareAndSwap"}`)}),
		req(hcase{name: "dir/file: noValueOnSuccess on POST", req: post("/v2/keys/nvq?noValueOnSuccess=1", "value", "j"), status: 201, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"create"}`)}),
		req(hcase{name: "dir/file: noValueOnSuccess has no effect on errors", req: put("/v2/keys/nv?noValueOnSuccess=true", "value", "3", "prevValue", "zz"), status: 412, hdr: errHdr("{{m 9}}"),
			body: keyErr(101, "Compare failed", "[zz != 2]", "{{m 9}}")}),
		req(hcase{name: "dir/file: noValueOnSuccess has no effect on DELETE", req: del("/v2/keys/nv?noValueOnSuccess=true"), status: 200, hdr: idx("{{m 10}}"),
			body: nl(`{"action":"delete","node":{"key":"/nv","modifiedIndex":{{m 10}},"createdIndex":{{m 7}}},"prevNode":{"key":"/nv","value":"2","modifiedIndex":{{m 8}},"createdIndex":{{m 7}}}}`)}),
		req(hcase{name: "dir/file: create ignores prevValue", req: put("/v2/keys/cr", "value", "c", "prevExist", "false", "prevValue", "zz"), status: 201, hdr: idx("{{m 11}}"),
			body: nl(`{"action":"create","node":{"key":"/cr","value":"c","modifiedIndex":{{m 11}},"createdIndex":{{m 11}}}}`)}),
		req(hcase{name: "dir/file: CAS with prevExist=true and both conditions", req: put("/v2/keys/cr", "value", "d", "prevExist", "true", "prevValue", "c", "prevIndex", "{{m 11}}"),
			status: 200, hdr: idx("{{m 12}}"),
			body: nl(`{"action":"compareAndSwap","node":{"key":"/cr","value":"d","modifiedIndex":{{m 12}},"createdIndex":{{m 11}}},"prevNode":{"key":"/cr","value":"c","modifiedIndex":{{m 11}},"createdIndex":{{m 11}}}}`)}),
		req(hcase{name: "dir/file: prevIndex=0 means no comparison (plain set)", req: put("/v2/keys/cr", "value", "e", "prevIndex", "0"), status: 200, hdr: idx("{{m 13}}"),
			body: nl(`{"action":"set","node":{"key":"/cr","value":"e","modifiedIndex":{{m 13}},"createdIndex":{{m 13}}},"prevNode":{"key":"/cr","value":"d","modifiedIndex":{{m 12}},"createdIndex":{{m 11}}}}`)}),
		req(hcase{name: "dir/file: an implicit parent takes the write's index", req: get("/v2/keys/?sorted=true"), status: 200, hdr: idx("{{m 13}}"),
			after: func(t *testing.T, s *suite, r response) {
				if !strings.Contains(r.body, s.mustRender(t, `{"key":"/nvq","dir":true,"modifiedIndex":{{m 9}},"createdIndex":{{m 9}}}`)) {
					t.Errorf("root listing lacks the implicit /nvq directory: %s", r.body)
				}
			}, body: "{{all}}\n"}),
		req(hcase{name: "dir/file: POST dir=true creates an in-order directory", req: post("/v2/keys/qd?dir=true"), status: 201, hdr: idx("{{m 14}}"),
			body: nl(`{"action":"create","node":{"key":"/qd/{{mk 14}}","dir":true,"modifiedIndex":{{m 14}},"createdIndex":{{m 14}}}}`)}),
		req(hcase{name: "dir/file: POST ignores prevExist, prevValue and prevIndex", req: post("/v2/keys/qd?prevExist=false&prevValue=zz&prevIndex=99", "value", "x"),
			status: 201, hdr: idx("{{m 15}}"),
			body: nl(`{"action":"create","node":{"key":"/qd/{{mk 15}}","value":"x","modifiedIndex":{{m 15}},"createdIndex":{{m 15}}}}`)}),
		req(hcase{name: "dir/file: a file /rf", req: put("/v2/keys/rf", "value", "1"), status: 201, hdr: idx("{{m 16}}"),
			body: setBody("/rf", "1", "{{m 16}}", "{{m 16}}")}),
		req(hcase{name: "dir/file: DELETE recursive=true on a file deletes it", req: del("/v2/keys/rf?recursive=true"), status: 200, hdr: idx("{{m 17}}"),
			body: nl(`{"action":"delete","node":{"key":"/rf","modifiedIndex":{{m 17}},"createdIndex":{{m 16}}},"prevNode":{"key":"/rf","value":"1","modifiedIndex":{{m 16}},"createdIndex":{{m 16}}}}`)}),
		req(hcase{name: "dir/file: a file /rf2", req: put("/v2/keys/rf2", "value", "1"), status: 201, hdr: idx("{{m 18}}"),
			body: setBody("/rf2", "1", "{{m 18}}", "{{m 18}}")}),
		req(hcase{name: "dir/file: compare-and-delete ignores dir and recursive", req: del("/v2/keys/rf2?dir=true&recursive=true&prevValue=1"), status: 200, hdr: idx("{{m 19}}"),
			body: nl(`{"action":"compareAndDelete","node":{"key":"/rf2","modifiedIndex":{{m 19}},"createdIndex":{{m 18}}},"prevNode":{"key":"/rf2","value":"1","modifiedIndex":{{m 18}},"createdIndex":{{m 18}}}}`)}),
		req(hcase{name: "dir/file: a GET form body is ignored", req: rawReq{method: "GET", target: "/v2/keys/cr", body: "recursive=bad", ctype: "form"},
			status: 200, hdr: idx("{{m 19}}"),
			body: nl(`{"action":"get","node":{"key":"/cr","value":"e","modifiedIndex":{{m 13}},"createdIndex":{{m 13}}}}`)}),
	}
}

func ttlRules() []step {
	tooBig := func(v string) step {
		return req(hcase{name: "ttl: " + v + " → 202", req: put("/v2/keys/big", "value", "x", "ttl", v), status: 400, hdr: errHdr("0"),
			body: keyErr(202, "The given TTL in POST form is not a number", `invalid value for "ttl"`, "0")})
	}
	return []step{
		mark(),
		req(hcase{name: "ttl: ttl=0 has an expiration and no ttl field", req: put("/v2/keys/z", "value", "v", "ttl", "0"), status: 201, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"set","node":{"key":"/z","value":"v","expiration":"{{exp z +0}}","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		watchStart("ttl0", "/v2/keys/z?wait=true&waitIndex={{m 2}}", idx("{{any}}")),
		watchGot("ttl0", false,
			nl(`{"action":"expire","node":{"key":"/z","modifiedIndex":{{m 2}},"createdIndex":{{m 1}}},"prevNode":{"key":"/z","value":"v","expiration":"{{exp z}}","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)),
		req(hcase{name: "ttl: the ttl=0 key is gone", req: get("/v2/keys/z"), status: 404, hdr: errHdr("{{m 2}}"),
			body: keyErr(100, "Key not found", "/z", "{{m 2}}")}),
		tooBig("9223372037"), tooBig("9999999999"), tooBig("18446744073709551615"), tooBig("18446744073709551616"),
		tooBig("-1"), tooBig("+5"), tooBig("abc"), tooBig("1.5"), tooBig("%205"),
		req(hcase{name: "ttl: validated on GET too", req: get("/v2/keys/z?ttl=abc"), status: 400, hdr: errHdr("0"),
			body: keyErr(202, "The given TTL in POST form is not a number", `invalid value for "ttl"`, "0")}),
		req(hcase{name: "ttl: the largest accepted TTL (9223372036 s)", req: put("/v2/keys/far", "value", "x", "ttl", "9223372036"), status: 201, hdr: idx("{{m 3}}"),
			body: nl(`{"action":"set","node":{"key":"/far","value":"x","expiration":"{{exp far}}","ttl":{{ttl 1000000000 9223372036}},"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "ttl: empty ttl means permanent", req: put("/v2/keys/far", "value", "y", "ttl", ""), status: 200, hdr: idx("{{m 4}}"),
			body: nl(`{"action":"set","node":{"key":"/far","value":"y","modifiedIndex":{{m 4}},"createdIndex":{{m 4}}},"prevNode":{"key":"/far","value":"x","expiration":"{{exp far}}","ttl":{{ttl 1000000000 9223372036}},"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "ttl: a key with a TTL", req: put("/v2/keys/tk", "value", "a", "ttl", "100"), status: 201, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"set","node":{"key":"/tk","value":"a","expiration":"{{exp tk +100}}","ttl":{{ttl 99 100}},"modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "ttl: an update without ttl makes it permanent", req: put("/v2/keys/tk", "value", "b", "prevExist", "true"), status: 200, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"update","node":{"key":"/tk","value":"b","modifiedIndex":{{m 6}},"createdIndex":{{m 5}}},"prevNode":{"key":"/tk","value":"a","expiration":"{{exp tk}}","ttl":{{ttl 98 100}},"modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "ttl: CAS sets a TTL", req: put("/v2/keys/tk", "value", "c", "prevValue", "b", "ttl", "50"), status: 200, hdr: idx("{{m 7}}"),
			body: nl(`{"action":"compareAndSwap","node":{"key":"/tk","value":"c","expiration":"{{exp tk2 +50}}","ttl":{{ttl 49 50}},"modifiedIndex":{{m 7}},"createdIndex":{{m 5}}},"prevNode":{"key":"/tk","value":"b","modifiedIndex":{{m 6}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "ttl: a file below a directory with a TTL shows none", req: put("/v2/keys/td/child", "value", "c"), status: 201, hdr: idx("{{m 8}}"),
			body: setBody("/td/child", "c", "{{m 8}}", "{{m 8}}")}),
		req(hcase{name: "ttl: the directory gets a TTL [D-1]", req: put("/v2/keys/td", "dir", "true", "prevExist", "true", "ttl", "100"), status: 200, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"update","node":{"key":"/td","dir":true,"expiration":"{{exp td +100}}","ttl":{{ttl 99 100}},"modifiedIndex":{{m 9}},"createdIndex":{{m 8}}},"prevNode":{"key":"/td","dir":true,"modifiedIndex":{{m 8}},"createdIndex":{{m 8}}}}`)}),
		req(hcase{name: "ttl: its children are untouched", req: get("/v2/keys/td?recursive=true"), status: 200, hdr: idx("{{m 9}}"),
			body: nl(`{"action":"get","node":{"key":"/td","dir":true,"expiration":"{{exp td}}","ttl":{{ttl 98 100}},"nodes":[{"key":"/td/child","value":"c","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}}],"modifiedIndex":{{m 9}},"createdIndex":{{m 8}}}}`)}),
		req(hcase{name: "ttl: an empty ttl makes the directory permanent again [D-1]", req: put("/v2/keys/td", "dir", "true", "prevExist", "true", "ttl", ""), status: 200, hdr: idx("{{m 10}}"),
			body: nl(`{"action":"update","node":{"key":"/td","dir":true,"modifiedIndex":{{m 10}},"createdIndex":{{m 8}}},"prevNode":{"key":"/td","dir":true,"expiration":"{{exp td}}","ttl":{{ttl 98 100}},"modifiedIndex":{{m 9}},"createdIndex":{{m 8}}}}`)}),
		// A directory expires in one event that reaches watchers inside it
		// (even on paths that never existed [D-5]) but not /ed3x [D-4].
		req(hcase{name: "ttl: /ed3/a/b", req: put("/v2/keys/ed3/a/b", "value", "1"), status: 201, hdr: idx("{{m 11}}"),
			body: setBody("/ed3/a/b", "1", "{{m 11}}", "{{m 11}}")}),
		watchStart("ed3-inside", "/v2/keys/ed3/a/b?wait=true", idx("{{m 11}}")),
		watchStart("ed3-none", "/v2/keys/ed3/none/deeper?wait=true", idx("{{m 11}}")),
		watchStart("ed3-rec", "/v2/keys/ed3/a?wait=true&recursive=true", idx("{{m 11}}")),
		watchStart("ed3x", "/v2/keys/ed3x?wait=true", idx("{{m 11}}")),
		req(hcase{name: "ttl: /ed3 gets a 1 s TTL [D-1]", req: put("/v2/keys/ed3", "dir", "true", "prevExist", "true", "ttl", "1"), status: 200, hdr: idx("{{m 12}}"),
			body: nl(`{"action":"update","node":{"key":"/ed3","dir":true,"expiration":"{{exp ed3 +1}}","ttl":1,"modifiedIndex":{{m 12}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed3","dir":true,"modifiedIndex":{{m 11}},"createdIndex":{{m 11}}}}`)}),
		watchGot("ed3-inside", false,
			nl(`{"action":"expire","node":{"key":"/ed3","dir":true,"modifiedIndex":{{m 13}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed3","dir":true,"expiration":"{{exp ed3}}","modifiedIndex":{{m 12}},"createdIndex":{{m 11}}}}`)),
		watchGot("ed3-none", false,
			nl(`{"action":"expire","node":{"key":"/ed3","dir":true,"modifiedIndex":{{m 13}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed3","dir":true,"expiration":"{{exp ed3}}","modifiedIndex":{{m 12}},"createdIndex":{{m 11}}}}`)),
		watchGot("ed3-rec", false,
			nl(`{"action":"expire","node":{"key":"/ed3","dir":true,"modifiedIndex":{{m 13}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed3","dir":true,"expiration":"{{exp ed3}}","modifiedIndex":{{m 12}},"createdIndex":{{m 11}}}}`)),
		req(hcase{name: "ttl: the children went with the directory", req: get("/v2/keys/ed3/a/b"), status: 404, hdr: errHdr("{{m 13}}"),
			body: keyErr(100, "Key not found", "/ed3", "{{m 13}}")}),
		req(hcase{name: "ttl: /ed3x", req: put("/v2/keys/ed3x", "value", "1"), status: 201, hdr: idx("{{m 14}}"),
			body: setBody("/ed3x", "1", "{{m 14}}", "{{m 14}}")}),
		watchGot("ed3x", false, setBody("/ed3x", "1", "{{m 14}}", "{{m 14}}")),
	}
}

func refreshRules() []step {
	return []step{
		mark(),
		req(hcase{name: "refresh: a key with ttl=30", req: put("/v2/keys/rk", "value", "a", "ttl", "30"), status: 201, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"set","node":{"key":"/rk","value":"a","expiration":"{{exp rk +30}}","ttl":{{ttl 29 30}},"modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		watchStart("refresh-watch", "/v2/keys/rk?wait=true", idx("{{m 1}}")),
		req(hcase{name: "refresh: alone is a set that recreates the node", req: put("/v2/keys/rk", "refresh", "true", "ttl", "40"), status: 200, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"set","node":{"key":"/rk","value":"a","expiration":"{{exp rk2 +40}}","ttl":{{ttl 39 40}},"modifiedIndex":{{m 2}},"createdIndex":{{m 2}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk}}","ttl":{{ttl 28 30}},"modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "refresh: an empty value is allowed", req: put("/v2/keys/rk", "refresh", "true", "ttl", "50", "value", ""), status: 200, hdr: idx("{{m 3}}"),
			body: nl(`{"action":"set","node":{"key":"/rk","value":"a","expiration":"{{exp rk3 +50}}","ttl":{{ttl 49 50}},"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk2}}","ttl":{{ttl 38 40}},"modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		req(hcase{name: "refresh: with prevValue is a compare-and-swap", req: put("/v2/keys/rk", "refresh", "true", "ttl", "60", "prevValue", "a"), status: 200, hdr: idx("{{m 4}}"),
			body: nl(`{"action":"compareAndSwap","node":{"key":"/rk","value":"a","expiration":"{{exp rk4 +60}}","ttl":{{ttl 59 60}},"modifiedIndex":{{m 4}},"createdIndex":{{m 3}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk3}}","ttl":{{ttl 48 50}},"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "refresh: a failed comparison → 101", req: put("/v2/keys/rk", "refresh", "true", "ttl", "60", "prevValue", "zz"), status: 412, hdr: errHdr("{{m 4}}"),
			body: keyErr(101, "Compare failed", "[zz != a]", "{{m 4}}")}),
		req(hcase{name: "refresh: on a missing key → 100", req: put("/v2/keys/rmissing", "refresh", "true", "ttl", "5"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/rmissing", "{{m 4}}")}),
		req(hcase{name: "refresh: with prevExist=false is a plain create", req: put("/v2/keys/rnew", "refresh", "true", "ttl", "100", "prevExist", "false"), status: 201, hdr: idx("{{m 5}}"),
			body: nl(`{"action":"create","node":{"key":"/rnew","value":"","expiration":"{{exp rnew +100}}","ttl":{{ttl 99 100}},"modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "refresh: a directory", req: put("/v2/keys/rdir", "dir", "true", "ttl", "100"), status: 201, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"set","node":{"key":"/rdir","dir":true,"expiration":"{{exp rdir +100}}","ttl":{{ttl 99 100}},"modifiedIndex":{{m 6}},"createdIndex":{{m 6}}}}`)}),
		req(hcase{name: "refresh: alone on a directory → 102", req: put("/v2/keys/rdir", "refresh", "true", "ttl", "100"), status: 403, hdr: errHdr("{{m 6}}"),
			body: keyErr(102, "Not a file", "/rdir", "{{m 6}}")}),
		req(hcase{name: "refresh: a directory's TTL with prevExist=true [D-1]", req: put("/v2/keys/rdir", "refresh", "true", "ttl", "200", "prevExist", "true", "dir", "true"), status: 200, hdr: idx("{{m 7}}"),
			body: nl(`{"action":"update","node":{"key":"/rdir","dir":true,"expiration":"{{exp rdir2 +200}}","ttl":{{ttl 199 200}},"modifiedIndex":{{m 7}},"createdIndex":{{m 6}}},"prevNode":{"key":"/rdir","dir":true,"expiration":"{{exp rdir}}","ttl":{{ttl 98 100}},"modifiedIndex":{{m 6}},"createdIndex":{{m 6}}}}`)}),
		req(hcase{name: "refresh: the value is kept", req: get("/v2/keys/rk"), status: 200, hdr: idx("{{m 7}}"),
			body: nl(`{"action":"get","node":{"key":"/rk","value":"a","expiration":"{{exp rk4}}","ttl":{{ttl 58 60}},"modifiedIndex":{{m 4}},"createdIndex":{{m 3}}}}`)}),
		req(hcase{name: "refresh: a plain write reaches the watcher", req: put("/v2/keys/rk", "value", "b"), status: 200, hdr: idx("{{m 8}}"),
			body: nl(`{"action":"set","node":{"key":"/rk","value":"b","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk4}}","ttl":{{ttl 58 60}},"modifiedIndex":{{m 4}},"createdIndex":{{m 3}}}}`)}),
		// The watcher saw none of the three refreshes, only the plain write.
		watchGot("refresh-watch", false,
			nl(`{"action":"set","node":{"key":"/rk","value":"b","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk4}}","ttl":{{ttl 58 60}},"modifiedIndex":{{m 4}},"createdIndex":{{m 3}}}}`)),
		req(hcase{name: "refresh: a replay skips refresh events", req: get("/v2/keys/rk?wait=true&waitIndex={{m 2}}"), status: 200, kind: kindWatch, hdr: idx("{{m 8}}"),
			body: nl(`{"action":"set","node":{"key":"/rk","value":"b","modifiedIndex":{{m 8}},"createdIndex":{{m 8}}},"prevNode":{"key":"/rk","value":"a","expiration":"{{exp rk4}}","ttl":{{ttl 58 60}},"modifiedIndex":{{m 4}},"createdIndex":{{m 3}}}}`)}),
	}
}

func validationRules() []step {
	v := func(name, method, target string, code int, msg, cause string) step {
		status := 400
		return req(hcase{name: "validation: " + name, req: rawReq{method: method, target: target}, status: status, hdr: errHdr("0"),
			body: keyErr(code, msg, cause, "0")})
	}
	const inv = "Invalid field"
	steps := []step{
		v("bare ?recursive", "GET", "/v2/keys/x?recursive", 209, inv, `invalid value for "recursive"`),
		v("recursive=yes", "GET", "/v2/keys/x?recursive=yes", 209, inv, `invalid value for "recursive"`),
		v("sorted=2", "GET", "/v2/keys/x?sorted=2", 209, inv, `invalid value for "sorted"`),
		v("wait=x", "GET", "/v2/keys/x?wait=x", 209, inv, `invalid value for "wait"`),
		v("dir= (empty)", "PUT", "/v2/keys/x?dir=", 209, inv, `invalid value for "dir"`),
		v("quorum=maybe", "GET", "/v2/keys/x?quorum=maybe", 209, inv, `invalid value for "quorum"`),
		v("stream=no", "GET", "/v2/keys/x?wait=true&stream=no", 209, inv, `invalid value for "stream"`),
		v("noValueOnSuccess=x", "PUT", "/v2/keys/x?noValueOnSuccess=x", 209, inv, `invalid value for "noValueOnSuccess"`),
		v("prevExist=maybe", "PUT", "/v2/keys/x?prevExist=maybe", 209, inv, `invalid value for prevExist`),
		v("refresh=x", "PUT", "/v2/keys/x?refresh=x", 209, inv, `invalid value for refresh`),
		v("recursive before sorted", "GET", "/v2/keys/x?sorted=bad&recursive=bad", 209, inv, `invalid value for "recursive"`),
		v("sorted before dir", "GET", "/v2/keys/x?dir=bad&sorted=bad", 209, inv, `invalid value for "sorted"`),
		v("prevIndex before booleans", "GET", "/v2/keys/x?recursive=bad&prevIndex=x", 203, "The given index in POST form is not a number", `invalid value for "prevIndex"`),
		v("prevIndex before waitIndex", "GET", "/v2/keys/x?waitIndex=x&prevIndex=x", 203, "The given index in POST form is not a number", `invalid value for "prevIndex"`),
		v("waitIndex=abc", "GET", "/v2/keys/x?wait=true&waitIndex=abc", 203, "The given index in POST form is not a number", `invalid value for "waitIndex"`),
		v("prevIndex=-1", "PUT", "/v2/keys/x?prevIndex=-1", 203, "The given index in POST form is not a number", `invalid value for "prevIndex"`),
		v("prevIndex=+5", "PUT", "/v2/keys/x?prevIndex=%2B5", 203, "The given index in POST form is not a number", `invalid value for "prevIndex"`),
		v("prevIndex over uint64", "DELETE", "/v2/keys/x?prevIndex=18446744073709551616", 203, "The given index in POST form is not a number", `invalid value for "prevIndex"`),
		v("wait on DELETE", "DELETE", "/v2/keys/x?wait=true", 209, inv, `"wait" can only be used with GET requests`),
		v("wait on POST", "POST", "/v2/keys/x?wait=true", 209, inv, `"wait" can only be used with GET requests`),
		v("wait checked before an empty prevValue", "PUT", "/v2/keys/x?wait=true&prevValue=", 209, inv, `"wait" can only be used with GET requests`),
		v("empty prevValue on DELETE → 201", "DELETE", "/v2/keys/x?prevValue=", 201, "PrevValue is Required in POST form", `"prevValue" cannot be empty`),
		v("empty prevValue before noValueOnSuccess", "PUT", "/v2/keys/x?noValueOnSuccess=x&prevValue=", 201, "PrevValue is Required in POST form", `"prevValue" cannot be empty`),
		v("noValueOnSuccess before ttl", "PUT", "/v2/keys/x?ttl=x&noValueOnSuccess=x", 209, inv, `invalid value for "noValueOnSuccess"`),
		v("ttl before prevExist", "PUT", "/v2/keys/x?prevExist=x&ttl=x", 202, "The given TTL in POST form is not a number", `invalid value for "ttl"`),
		v("prevExist before refresh", "PUT", "/v2/keys/x?refresh=x&prevExist=x", 209, inv, `invalid value for prevExist`),
		v("refresh with a value before a missing ttl", "PUT", "/v2/keys/x?refresh=true&value=v", 211, "Value provided on refresh", "A value was provided on a refresh"),
		v("refresh with an empty ttl", "PUT", "/v2/keys/x?refresh=true&ttl=", 212, "A TTL must be provided on refresh", "No TTL value set"),
		v("semicolon in the query → 210", "GET", "/v2/keys/x?a=1;b=2", 210, "Invalid POST form", "invalid semicolon separator in query"),
		v("bad escape in the query → 210", "GET", "/v2/keys/x?value=%zz", 210, "Invalid POST form", `invalid URL escape "%zz"`),
		v("form errors come first", "GET", "/v2/keys/x?recursive=bad;", 210, "Invalid POST form", "invalid semicolon separator in query"),
		req(hcase{name: "validation: HEAD ?wait=true → 209 without a body", req: head("/v2/keys/x?wait=true"), status: 400, hdr: errHdr("0"),
			headLenOf: keyErr(209, inv, `"wait" can only be used with GET requests`, "0")}),
		req(hcase{name: "validation: bad escape in a POST body → 210", req: rawReq{method: "POST", target: "/v2/keys/x", body: "value=%zz", ctype: "form"},
			status: 400, hdr: errHdr("0"), body: keyErr(210, "Invalid POST form", `invalid URL escape "%zz"`, "0")}),
		req(hcase{name: "validation: a DELETE body is never parsed", req: rawReq{method: "DELETE", target: "/v2/keys/x?wait=true", body: "value=%zz", ctype: "form"},
			status: 400, hdr: errHdr("0"), body: keyErr(209, inv, `"wait" can only be used with GET requests`, "0")}),
	}
	// Every accepted spelling of a boolean.
	steps = append(steps, custom("validation: accepted boolean spellings", func(t *testing.T, s *suite) {
		for _, b := range []string{"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"} {
			r := s.m.do(t, get("/v2/keys/?recursive="+b+"&sorted="+b+"&quorum="+b))
			if r.status != 200 {
				t.Errorf("boolean %q: status %d %s", b, r.status, r.body)
			}
		}
		for _, b := range []string{"yes", "no", "on", "tRUE", "2", " true", ""} {
			r := s.m.do(t, get("/v2/keys/?sorted="+qesc(b)))
			if r.status != 400 || !strings.Contains(r.body, `"errorCode":209`) {
				t.Errorf("boolean %q: status %d %s, want 209", b, r.status, r.body)
			}
		}
	}))
	// Where parameters come from (§3.2).
	steps = append(steps,
		mark(),
		req(hcase{name: "params: the body wins over the query", req: rawReq{method: "PUT", target: "/v2/keys/prec?value=q2", body: "value=body", ctype: "form"},
			status: 201, hdr: idx("{{m 1}}"), body: setBody("/prec", "body", "{{m 1}}", "{{m 1}}")}),
		req(hcase{name: "params: the first of repeated values wins", req: put("/v2/keys/prec?value=q3&value=q4"), status: 200, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"set","node":{"key":"/prec","value":"q3","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}},"prevNode":{"key":"/prec","value":"body","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "params: a form media type with parameters is a form", req: rawReq{method: "PUT", target: "/v2/keys/cs", body: "value=utf", ctype: "application/x-www-form-urlencoded; charset=utf-8"},
			status: 201, hdr: idx("{{m 3}}"), body: setBody("/cs", "utf", "{{m 3}}", "{{m 3}}")}),
		req(hcase{name: "params: a JSON body is ignored (value \"\")", req: rawReq{method: "PUT", target: "/v2/keys/js", body: `{"value":"x"}`, ctype: "application/json"},
			status: 201, hdr: idx("{{m 4}}"), body: setBody("/js", "", "{{m 4}}", "{{m 4}}")}),
		req(hcase{name: "params: a form body without a content type is ignored", req: rawReq{method: "PUT", target: "/v2/keys/js2", body: `value=x`},
			status: 201, hdr: idx("{{m 5}}"), body: setBody("/js2", "", "{{m 5}}", "{{m 5}}")}),
		req(hcase{name: "params: a DELETE form body is ignored (unconditional delete)", req: rawReq{method: "DELETE", target: "/v2/keys/js", body: "prevValue=wrong", ctype: "form"},
			status: 200, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"delete","node":{"key":"/js","modifiedIndex":{{m 6}},"createdIndex":{{m 4}}},"prevNode":{"key":"/js","value":"","modifiedIndex":{{m 4}},"createdIndex":{{m 4}}}}`)}),
		req(hcase{name: "params: unknown names are ignored", req: put("/v2/keys/unk?foo=bar&Value=no", "value", "ok", "bogus", "1"), status: 201, hdr: idx("{{m 7}}"),
			body: setBody("/unk", "ok", "{{m 7}}", "{{m 7}}")}),
	)
	return steps
}

// qesc escapes a query value.
func qesc(v string) string {
	r := strings.NewReplacer(" ", "%20", "&", "%26", "=", "%3D")
	return r.Replace(v)
}

func bodyLimitRules() []step {
	const limit = 1572864
	tooLarge := keyErr(210, "Invalid POST form", "request body exceeds 1572864 bytes", "0")
	big := "value=" + strings.Repeat("a", 2<<20)
	exact := "value=" + strings.Repeat("b", limit-len("value="))
	return []step{
		mark(),
		req(hcase{name: "limit: a 2 MiB form body → 413 [D-10]", req: rawReq{method: "PUT", target: "/v2/keys/big", body: big, ctype: "form"},
			status: 413, hdr: errHdr("0"), body: tooLarge}),
		req(hcase{name: "limit: a 2 MiB chunked form body → 413 [D-10]", req: rawReq{method: "PUT", target: "/v2/keys/big", body: big, ctype: "form", chunked: true},
			status: 413, hdr: errHdr("0"), body: tooLarge}),
		req(hcase{name: "limit: a 2 MiB POST body → 413 [D-10]", req: rawReq{method: "POST", target: "/v2/keys/bigq", body: big, ctype: "form"},
			status: 413, hdr: errHdr("0"), body: tooLarge}),
		req(hcase{name: "limit: a body of exactly the limit is accepted", req: rawReq{method: "PUT", target: "/v2/keys/big", body: exact, ctype: "form"},
			status: 201, hdr: idx("{{m 1}}"), body: `{"action":"set","node":{"key":"/big","value":"{{any}}","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}` + "\n"}),
		req(hcase{name: "limit: nothing was stored by the refused writes", req: get("/v2/keys/bigq"), status: 404, hdr: errHdr("{{m 1}}"),
			body: keyErr(100, "Key not found", "/bigq", "{{m 1}}")}),
	}
}

func keyPathRules() []step {
	return []step{
		mark(),
		req(hcase{name: "path: %2E%2E is clamped at the root [D-2]", req: put("/v2/keys/%2E%2E/zzz", "value", "x"), status: 201, hdr: idx("{{m 1}}"),
			body: setBody("/zzz", "x", "{{m 1}}", "{{m 1}}")}),
		req(hcase{name: "path: %2E%2E twice", req: get("/v2/keys/%2E%2E/%2E%2E/zzz"), status: 200, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"get","node":{"key":"/zzz","value":"x","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "path: ..%2F is clamped too", req: get("/v2/keys/a/..%2F..%2F..%2Fzzz"), status: 200, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"get","node":{"key":"/zzz","value":"x","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "path: %2E%2E alone is the root", req: del("/v2/keys/%2E%2E"), status: 400, hdr: errHdr("{{m 1}}"),
			body: keyErr(107, "Root is read only", "/", "{{m 1}}")}),
		req(hcase{name: "path: %2E%2E cannot reach /version or internal data", req: get("/v2/keys/%2E%2E/%2E%2E/%2E%2E/0"), status: 404, hdr: errHdr("{{m 1}}"),
			body: keyErr(100, "Key not found", "/0", "{{m 1}}")}),
		req(hcase{name: "path: %2F is a separator", req: put("/v2/keys/sl%2Fash", "value", "1"), status: 201, hdr: idx("{{m 2}}"),
			body: setBody("/sl/ash", "1", "{{m 2}}", "{{m 2}}")}),
		req(hcase{name: "path: a trailing %2F is dropped", req: get("/v2/keys/sl/ash%2F"), status: 200, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"get","node":{"key":"/sl/ash","value":"1","modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		req(hcase{name: "path: spaces and ? in a key", req: put("/v2/keys/a%20b%3Fc", "value", "1"), status: 201, hdr: idx("{{m 3}}"),
			body: setBody("/a b?c", "1", "{{m 3}}", "{{m 3}}")}),
		req(hcase{name: "path: non-ASCII keys", req: put("/v2/keys/%E2%9C%93", "value", "1"), status: 201, hdr: idx("{{m 4}}"),
			body: setBody("/✓", "1", "{{m 4}}", "{{m 4}}")}),
		req(hcase{name: "path: keys are case-sensitive", req: get("/v2/keys/ZZZ"), status: 404, hdr: errHdr("{{m 4}}"),
			body: keyErr(100, "Key not found", "/ZZZ", "{{m 4}}")}),
		req(hcase{name: "json: HTML characters and quotes are escaped", req: put("/v2/keys/esc", "value", "%3Ca%26b%3E%22q%22"), status: 201, hdr: idx("{{m 5}}"),
			body: setBody("/esc", `\u003ca\u0026b\u003e\"q\"`, "{{m 5}}", "{{m 5}}")}),
		req(hcase{name: "json: invalid UTF-8 becomes U+FFFD", req: put("/v2/keys/utf", "value", "%FF%FEx"), status: 201, hdr: idx("{{m 6}}"),
			body: setBody("/utf", `\ufffd\ufffdx`, "{{m 6}}", "{{m 6}}")}),
		req(hcase{name: "json: U+2028 is escaped", req: put("/v2/keys/ls", "value", "a%E2%80%A8b"), status: 201, hdr: idx("{{m 7}}"),
			body: setBody("/ls", `a\u2028b`, "{{m 7}}", "{{m 7}}")}),
		req(hcase{name: "path: /v2/keys/./x redirects", req: get("/v2/keys/./x"), status: 307, kind: kindOther,
			hdr:  map[string]string{"Location": "/v2/keys/x", "X-Etcd-Index": absent},
			body: `<a href="/v2/keys/x">Temporary Redirect</a>.` + "\n\n"}),
		req(hcase{name: "path: /v2/keys/a/../b redirects", req: del("/v2/keys/a/../b?recursive=true"), status: 307, kind: kindOther,
			hdr: map[string]string{"Location": "/v2/keys/b?recursive=true", "X-Etcd-Index": absent}, body: ""}),
	}
}

func quorumAndHeadRules() []step {
	return []step{
		mark(),
		req(hcase{name: "quorum: a key", req: put("/v2/keys/qk", "value", "1"), status: 201, hdr: idx("{{m 1}}"),
			body: setBody("/qk", "1", "{{m 1}}", "{{m 1}}")}),
		req(hcase{name: "quorum: GET ?quorum=true has the plain body", req: get("/v2/keys/qk?quorum=true"), status: 200, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"get","node":{"key":"/qk","value":"1","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "quorum: a missing key → 100", req: get("/v2/keys/qmissing?quorum=true"), status: 404, hdr: errHdr("{{m 1}}"),
			body: keyErr(100, "Key not found", "/qmissing", "{{m 1}}")}),
		req(hcase{name: "quorum: it used no store index", req: get("/v2/keys/qk"), status: 200, hdr: idx("{{m 1}}"),
			body: nl(`{"action":"get","node":{"key":"/qk","value":"1","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
		req(hcase{name: "HEAD: a missing key → 404 with the error's length", req: head("/v2/keys/hmissing"), status: 404, hdr: errHdr("{{m 1}}"),
			headLenOf: keyErr(100, "Key not found", "/hmissing", "{{m 1}}")}),
		req(hcase{name: "HEAD: the root", req: head("/v2/keys/?recursive=true&sorted=true"), status: 200, hdr: idx("{{m 1}}"),
			after: func(t *testing.T, s *suite, r response) {
				// The root lists earlier cases' keys with a TTL, whose "ttl"
				// may lose a digit between two requests (10 s → 9 s): a
				// mismatch is measured again, a few times.
				for attempt := 1; ; attempt++ {
					g := s.m.do(t, get("/v2/keys/?recursive=true&sorted=true"))
					if r.contentLength == int64(len(g.body)) {
						return
					}
					if attempt == 5 {
						t.Errorf("HEAD Content-Length %d, GET body %d bytes", r.contentLength, len(g.body))
						return
					}
					r = s.m.do(t, head("/v2/keys/?recursive=true&sorted=true"))
				}
			}}),
		req(hcase{name: "HEAD: ignores quorum like GET's body", req: head("/v2/keys/qk?quorum=true"), status: 200, hdr: idx("{{m 1}}"),
			headLenOf: nl(`{"action":"get","node":{"key":"/qk","value":"1","modifiedIndex":{{m 1}},"createdIndex":{{m 1}}}}`)}),
	}
}

func watchRules() []step {
	return []step{
		mark(),
		// D-9: quorum is ignored on a watch.
		watchStart("quorum-watch", "/v2/keys/wq?wait=true&quorum=true", idx("{{m 0}}")),
		watchStart("waitIndex-0", "/v2/keys/wq?wait=true&waitIndex=0&sorted=true", idx("{{m 0}}")),
		req(hcase{name: "watch: the write the quorum watch waits for", req: put("/v2/keys/wq", "value", "1"), status: 201, hdr: idx("{{m 1}}"),
			body: setBody("/wq", "1", "{{m 1}}", "{{m 1}}")}),
		watchGot("quorum-watch", false, setBody("/wq", "1", "{{m 1}}", "{{m 1}}")),
		watchGot("waitIndex-0", false, setBody("/wq", "1", "{{m 1}}", "{{m 1}}")),

		// A non-recursive watch on a directory sees only the directory.
		req(hcase{name: "watch: a directory /wd", req: put("/v2/keys/wd", "dir", "true"), status: 201, hdr: idx("{{m 2}}"),
			body: nl(`{"action":"set","node":{"key":"/wd","dir":true,"modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		watchStart("dir-watch", "/v2/keys/wd?wait=true", idx("{{m 2}}")),
		// D-5: a live watch on a never-created path inside /ed2.
		req(hcase{name: "watch: a directory /ed2", req: put("/v2/keys/ed2/a", "value", "1"), status: 201, hdr: idx("{{m 3}}"),
			body: setBody("/ed2/a", "1", "{{m 3}}", "{{m 3}}")}),
		watchStart("ed2-none", "/v2/keys/ed2/none?wait=true", idx("{{m 3}}")),
		// D-3: a stream on a key sees its delete once.
		watchStart("d3-stream", "/v2/keys/d3/x?wait=true&stream=true", idx("{{m 3}}")),
		// waitIndex in the future skips the events in between.
		watchStart("future", "/v2/keys/fut?wait=true&waitIndex={{m 9}}", idx("{{m 3}}")),
		req(hcase{name: "watch: a child of /wd (not seen by the directory watch)", req: put("/v2/keys/wd/child", "value", "c"), status: 201, hdr: idx("{{m 4}}"),
			body: setBody("/wd/child", "c", "{{m 4}}", "{{m 4}}")}),
		req(hcase{name: "watch: /d3/x set", req: put("/v2/keys/d3/x", "value", "1"), status: 201, hdr: idx("{{m 5}}"),
			body: setBody("/d3/x", "1", "{{m 5}}", "{{m 5}}")}),
		req(hcase{name: "watch: /d3/x delete", req: del("/v2/keys/d3/x"), status: 200, hdr: idx("{{m 6}}"),
			body: nl(`{"action":"delete","node":{"key":"/d3/x","modifiedIndex":{{m 6}},"createdIndex":{{m 5}}},"prevNode":{"key":"/d3/x","value":"1","modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`)}),
		req(hcase{name: "watch: /d3/x set again", req: put("/v2/keys/d3/x", "value", "2"), status: 201, hdr: idx("{{m 7}}"),
			body: setBody("/d3/x", "2", "{{m 7}}", "{{m 7}}")}),
		watchGot("d3-stream", true,
			setBody("/d3/x", "1", "{{m 5}}", "{{m 5}}"),
			nl(`{"action":"delete","node":{"key":"/d3/x","modifiedIndex":{{m 6}},"createdIndex":{{m 5}}},"prevNode":{"key":"/d3/x","value":"1","modifiedIndex":{{m 5}},"createdIndex":{{m 5}}}}`),
			setBody("/d3/x", "2", "{{m 7}}", "{{m 7}}")),
		req(hcase{name: "watch: recursive delete of /ed2", req: del("/v2/keys/ed2?recursive=true"), status: 200, hdr: idx("{{m 8}}"),
			body: nl(`{"action":"delete","node":{"key":"/ed2","dir":true,"modifiedIndex":{{m 8}},"createdIndex":{{m 3}}},"prevNode":{"key":"/ed2","dir":true,"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)}),
		watchGot("ed2-none", false,
			nl(`{"action":"delete","node":{"key":"/ed2","dir":true,"modifiedIndex":{{m 8}},"createdIndex":{{m 3}}},"prevNode":{"key":"/ed2","dir":true,"modifiedIndex":{{m 3}},"createdIndex":{{m 3}}}}`)),
		req(hcase{name: "watch: /fut before its waitIndex", req: put("/v2/keys/fut", "value", "early"), status: 201, hdr: idx("{{m 9}}"),
			body: setBody("/fut", "early", "{{m 9}}", "{{m 9}}")}),
		watchGot("future", false, setBody("/fut", "early", "{{m 9}}", "{{m 9}}")),
		req(hcase{name: "watch: recursive delete of /wd", req: del("/v2/keys/wd?recursive=true"), status: 200, hdr: idx("{{m 10}}"),
			body: nl(`{"action":"delete","node":{"key":"/wd","dir":true,"modifiedIndex":{{m 10}},"createdIndex":{{m 2}}},"prevNode":{"key":"/wd","dir":true,"modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)}),
		watchGot("dir-watch", false,
			nl(`{"action":"delete","node":{"key":"/wd","dir":true,"modifiedIndex":{{m 10}},"createdIndex":{{m 2}}},"prevNode":{"key":"/wd","dir":true,"modifiedIndex":{{m 2}},"createdIndex":{{m 2}}}}`)),

		// D-4: a replayed directory delete matches only paths inside it.
		req(hcase{name: "watch: /ed/a", req: put("/v2/keys/ed/a", "value", "1"), status: 201, hdr: idx("{{m 11}}"),
			body: setBody("/ed/a", "1", "{{m 11}}", "{{m 11}}")}),
		req(hcase{name: "watch: /edx", req: put("/v2/keys/edx", "value", "1"), status: 201, hdr: idx("{{m 12}}"),
			body: setBody("/edx", "1", "{{m 12}}", "{{m 12}}")}),
		req(hcase{name: "watch: delete /ed", req: del("/v2/keys/ed?recursive=true"), status: 200, hdr: idx("{{m 13}}"),
			body: nl(`{"action":"delete","node":{"key":"/ed","dir":true,"modifiedIndex":{{m 13}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed","dir":true,"modifiedIndex":{{m 11}},"createdIndex":{{m 11}}}}`)}),
		req(hcase{name: "watch: a replay on /ed/a/deeper gets the /ed delete", req: get("/v2/keys/ed/a/deeper?wait=true&waitIndex={{m 13}}"), status: 200, kind: kindWatch, hdr: idx("{{m 13}}"),
			body: nl(`{"action":"delete","node":{"key":"/ed","dir":true,"modifiedIndex":{{m 13}},"createdIndex":{{m 11}}},"prevNode":{"key":"/ed","dir":true,"modifiedIndex":{{m 11}},"createdIndex":{{m 11}}}}`)}),
		watchStart("edx-replay", "/v2/keys/edx?wait=true&waitIndex={{m 13}}", idx("{{m 13}}")),
		req(hcase{name: "watch: /edx rewritten", req: put("/v2/keys/edx", "value", "2"), status: 200, hdr: idx("{{m 14}}"),
			body: nl(`{"action":"set","node":{"key":"/edx","value":"2","modifiedIndex":{{m 14}},"createdIndex":{{m 14}}},"prevNode":{"key":"/edx","value":"1","modifiedIndex":{{m 12}},"createdIndex":{{m 12}}}}`)}),
		watchGot("edx-replay", false,
			nl(`{"action":"set","node":{"key":"/edx","value":"2","modifiedIndex":{{m 14}},"createdIndex":{{m 14}}},"prevNode":{"key":"/edx","value":"1","modifiedIndex":{{m 12}},"createdIndex":{{m 12}}}}`)),
		custom("watch: a streamed replay returns every matching event", func(t *testing.T, s *suite) {
			w := s.m.startWatch(t, "replay-stream", get(s.mustRender(t, "/v2/keys/edx?wait=true&waitIndex={{m 12}}&stream=true")))
			defer w.stop()
			if err := s.tp.match("{{m 14}}", w.resp.Header.Get("X-Etcd-Index")); err != nil {
				t.Errorf("X-Etcd-Index: %v", err)
			}
			for i, want := range []string{
				setBody("/edx", "1", "{{m 12}}", "{{m 12}}"),
				nl(`{"action":"set","node":{"key":"/edx","value":"2","modifiedIndex":{{m 14}},"createdIndex":{{m 14}}},"prevNode":{"key":"/edx","value":"1","modifiedIndex":{{m 12}},"createdIndex":{{m 12}}}}`),
			} {
				if err := s.tp.match(want, w.next(t, 5*time.Second)); err != nil {
					t.Errorf("replayed event %d: %v", i, err)
				}
			}
		}),

		// The watcher count drops when the client goes away (§5.5).
		custom("watch: the watcher count follows open watches", func(t *testing.T, s *suite) {
			// Streams closed by the client just before are removed as the
			// server notices: wait for none, open one, close it.
			waitWatchers(t, s, 0)
			w := s.m.startWatch(t, "count", get("/v2/keys/nothing?wait=true"))
			if n := watcherCount(t, s); n != 1 {
				t.Errorf("watchers %d with one open watch, want 1", n)
			}
			w.stop()
			waitWatchers(t, s, 0)
		}),
	}
}

// waitWatchers polls /v2/stats/store until "watchers" is n (bounded).
func waitWatchers(t *testing.T, s *suite, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for watcherCount(t, s) != n {
		if time.Now().After(deadline) {
			t.Fatalf("watchers still %d after 5 s, want %d", watcherCount(t, s), n)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
}

func watcherCount(t *testing.T, s *suite) uint64 {
	t.Helper()
	r := s.m.do(t, get("/v2/stats/store"))
	var st map[string]uint64
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("stats: %v: %s", err, r.body)
	}
	return st["watchers"]
}

func statsRules() []step {
	return []step{
		req(hcase{name: "stats: a key for the counters", req: put("/v2/keys/cnt", "value", "1"), status: 201, hdr: idx("{{any}}"), body: "{{all}}\n"}),
		req(hcase{name: "stats: before", req: get("/v2/stats/store"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: statsStoreGolden("a")}),
		custom("stats: operations", func(t *testing.T, s *suite) {
			for _, c := range []struct {
				r      rawReq
				status int
			}{
				{put("/v2/keys/cnt", "value", "2", "prevValue", "1"), 200},            // CAS success
				{put("/v2/keys/cnt", "value", "3", "prevValue", "zz"), 412},           // CAS fail
				{put("/v2/keys/cnt", "value", "3", "prevExist", "false"), 412},        // create fail
				{put("/v2/keys/cnt-missing", "value", "3", "prevExist", "true"), 404}, // update fail
				{put("/v2/keys/", "value", "3"), 400},                                 // set fail
				{del("/v2/keys/cnt?prevValue=zz"), 412},                               // CAD fail
				{del("/v2/keys/cnt-missing"), 404},                                    // delete fail
				{get("/v2/keys/cnt"), 200},                                            // get success
				{get("/v2/keys/cnt-missing"), 404},                                    // get fail
				{del("/v2/keys/cnt?prevValue=2"), 200},                                // CAD success
				{put("/v2/keys/cnt?x=1"), 201},                                        // set success
				{del("/v2/keys/cnt"), 200},                                            // delete success
				{put("/v2/keys/cnt", "value", "4", "prevExist", "false"), 201},        // create success
				{put("/v2/keys/cnt", "value", "5", "prevExist", "true"), 200},         // update success
			} {
				if r := s.m.do(t, c.r); r.status != c.status {
					t.Fatalf("%s %s: %d %s, want %d", c.r.method, c.r.target, r.status, r.body, c.status)
				}
			}
		}),
		req(hcase{name: "stats: after, each counter moved by one [D-7]", req: get("/v2/stats/store"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: statsStoreGolden("b"),
			after: func(t *testing.T, s *suite, _ response) {
				for _, f := range storeCounters {
					want := uint64(1)
					switch f {
					case "watchers", "expireCount":
						want = 0
					case "setsSuccess":
						want = 1
					}
					if d := s.tp.nums["b."+f] - s.tp.nums["a."+f]; d != want {
						t.Errorf("%s moved by %d, want %d", f, d, want)
					}
				}
			}}),
	}
}

func endpointRules() []step {
	text404 := map[string]string{"Content-Type": textPlain, "X-Content-Type-Options": "nosniff"}
	allow := func(a string) map[string]string {
		return map[string]string{"Allow": a, "Content-Type": textPlain, "X-Content-Type-Options": "nosniff"}
	}
	return []step{
		req(hcase{name: "endpoints: OPTIONS on an unknown path → 200", req: rawReq{method: "OPTIONS", target: "/nope"}, status: 200, kind: kindOther, body: ""}),
		req(hcase{name: "endpoints: OPTIONS on /v2/keys", req: rawReq{method: "OPTIONS", target: "/v2/keys/x"}, status: 200, kind: kindOther,
			hdr: map[string]string{"X-Etcd-Index": absent}, body: ""}),
		req(hcase{name: "endpoints: unknown path /v2/ → 404 text", req: get("/v2/"), status: 404, kind: kindOther, hdr: text404, body: "404 page not found\n"}),
		req(hcase{name: "endpoints: unknown path / → 404 text", req: get("/"), status: 404, kind: kindOther, hdr: text404, body: "404 page not found\n"}),
		req(hcase{name: "endpoints: unknown path /v2/stats → 404 text", req: get("/v2/stats"), status: 404, kind: kindOther, hdr: text404, body: "404 page not found\n"}),
		req(hcase{name: "endpoints: /readyz is not served", req: get("/readyz"), status: 404, kind: kindOther, hdr: text404, body: "404 page not found\n"}),
		req(hcase{name: "endpoints: PATCH /v2/members → 405", req: rawReq{method: "PATCH", target: "/v2/members"}, status: 405, kind: kindOther,
			hdr: allow("GET,POST,DELETE,PUT"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: POST /version → 405", req: post("/version"), status: 405, kind: kindOther, hdr: allow("GET"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: HEAD /version → 405", req: head("/version"), status: 405, kind: kindOther, hdr: allow("GET")}),
		req(hcase{name: "endpoints: POST /health → 405", req: post("/health"), status: 405, kind: kindOther, hdr: allow("GET"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: PUT /v2/stats/store → 405", req: put("/v2/stats/store"), status: 405, kind: kindOther, hdr: allow("GET"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: DELETE /v2/stats/self → 405", req: del("/v2/stats/self"), status: 405, kind: kindOther, hdr: allow("GET"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: PUT /v2/machines → 405", req: put("/v2/machines"), status: 405, kind: kindOther, hdr: allow("GET,HEAD"), body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: /v2/machines", req: get("/v2/machines"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": textPlain}, body: "{{client}}"}),
		req(hcase{name: "endpoints: HEAD /v2/machines", req: head("/v2/machines"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": textPlain}, headLenOf: "{{client}}"}),
		req(hcase{name: "endpoints: /v2/members", req: get("/v2/members"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: nl(`{"members":[{"id":"{{id}}","name":"{{name}}","peerURLs":["{{peer}}"],"clientURLs":["{{client}}"]}]}`)}),
		req(hcase{name: "endpoints: /v2/members/", req: get("/v2/members/"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: nl(`{"members":[{"id":"{{id}}","name":"{{name}}","peerURLs":["{{peer}}"],"clientURLs":["{{client}}"]}]}`)}),
		req(hcase{name: "endpoints: /v2/members/leader", req: get("/v2/members/leader"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON, "X-Etcd-Cluster-Id": "{{cid}}"},
			body: nl(`{"id":"{{id}}","name":"{{name}}","peerURLs":["{{peer}}"],"clientURLs":["{{client}}"]}`)}),
		req(hcase{name: "endpoints: /v2/members/<other> → 404", req: get("/v2/members/{{id}}"), status: 404, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: `{"message":"Not found"}`}),
		req(hcase{name: "endpoints: PUT /v2/members without an ID → 405 without Allow", req: put("/v2/members/"), status: 405, kind: kindOther,
			hdr: map[string]string{"Allow": absent, "Content-Type": textPlain}, body: "Method Not Allowed\n"}),
		req(hcase{name: "endpoints: DELETE an unparseable member ID → 404", req: del("/v2/members/xyz"), status: 404, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: `{"message":"No such member: xyz"}`}),
		req(hcase{name: "endpoints: POST /v2/members with bad JSON → 400", req: rawReq{method: "POST", target: "/v2/members", body: `{"peerURLs":`, ctype: "application/json"},
			status: 400, kind: kindOther, hdr: map[string]string{"Content-Type": msgJSON}, body: `{"message":"unexpected end of JSON input"}`}),
		req(hcase{name: "endpoints: POST /v2/members without peer URLs → 400", req: rawReq{method: "POST", target: "/v2/members", body: `{"peerURLs":[]}`, ctype: "application/json"},
			status: 400, kind: kindOther, hdr: map[string]string{"Content-Type": msgJSON}, body: `{"message":"no valid URLs given"}`}),
		req(hcase{name: "endpoints: /health", req: get("/health"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": textPlain}, body: `{"health":"true","reason":""}`}),
		req(hcase{name: "endpoints: /v2/stats/leader", req: get("/v2/stats/leader"), status: 200, kind: kindOther,
			hdr: map[string]string{"Content-Type": msgJSON}, body: `{"leader":"{{id}}","followers":{}}`}),
		req(hcase{name: "endpoints: /v2/stats/self", req: get("/v2/stats/self"), status: 200, kind: kindOther,
			hdr:  map[string]string{"Content-Type": msgJSON},
			body: `{"name":"{{name}}","id":"{{id}}","state":"StateLeader","startTime":"{{any}}","leaderInfo":{"leader":"{{id}}","uptime":"{{any}}","startTime":"{{any}}"},"recvAppendRequestCnt":0,"sendAppendRequestCnt":0}`,
			after: func(t *testing.T, s *suite, r response) {
				var st struct {
					StartTime  time.Time
					LeaderInfo struct {
						Uptime    string
						StartTime time.Time
					}
				}
				if err := json.Unmarshal([]byte(r.body), &st); err != nil {
					t.Fatalf("stats/self: %v", err)
				}
				if _, err := time.ParseDuration(st.LeaderInfo.Uptime); err != nil {
					t.Errorf("leaderInfo.uptime %q: %v", st.LeaderInfo.Uptime, err)
				}
				if st.StartTime.IsZero() || st.LeaderInfo.StartTime.Before(st.StartTime.Add(-time.Minute)) {
					t.Errorf("startTime %v, leader since %v", st.StartTime, st.LeaderInfo.StartTime)
				}
			}}),
		custom("endpoints: a request line over 1 MiB → 431 or a reset", func(t *testing.T, s *suite) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := s.m.newRequest(ctx, get("/v2/keys/x?value="+strings.Repeat("a", 2<<20)))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := s.m.hc.Do(r)
			if err != nil {
				return // the connection was closed first, as etcd's probe saw
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("status %d, want 431", resp.StatusCode)
			}
		}),
		custom("endpoints: /metrics", func(t *testing.T, s *suite) {
			r := s.m.do(t, get("/metrics"))
			if r.status != http.StatusOK || !strings.Contains(r.body, "cairn_http_requests_total") {
				t.Errorf("/metrics: %d, body lacks cairn_http_requests_total", r.status)
			}
		}),
		req(hcase{name: "peer: GET /version", req: rawReq{method: "GET", base: "{{peer}}", target: "/version"}, status: 200, kind: kindPeer,
			hdr: map[string]string{"Content-Type": msgJSON}, body: `{"etcdserver":"{{ver}}","etcdcluster":"3.5.0"}`}),
		req(hcase{name: "peer: GET /members/x → 404", req: rawReq{method: "GET", base: "{{peer}}", target: "/members/x"}, status: 404, kind: kindPeer,
			hdr: map[string]string{"Content-Type": textPlain}, body: "404 page not found\n"}),
		req(hcase{name: "peer: POST /members → 405", req: rawReq{method: "POST", base: "{{peer}}", target: "/members"}, status: 405, kind: kindPeer,
			hdr: map[string]string{"Allow": "GET"}, body: "Method Not Allowed\n"}),
		req(hcase{name: "peer: unknown path → 404", req: rawReq{method: "GET", base: "{{peer}}", target: "/v2/keys/x"}, status: 404, kind: kindPeer,
			hdr: map[string]string{"Content-Type": textPlain}, body: "404 page not found\n"}),
	}
}

// TestCORSOrigins checks the CORS headers with a configured origin list
// (spec §8, [D-11]): a listed Origin is echoed with Expose-Headers, any other
// gets no CORS headers, and OPTIONS still answers 200 everywhere.
func TestCORSOrigins(t *testing.T) {
	m := startMember(t, func(c *server.Config) { c.CORSOrigins = []string{"http://a.example", "http://b.example"} })
	for _, c := range []struct {
		name, method, target, origin string
		status                       int
		allowed                      bool
	}{
		{"listed origin on /v2/keys", "GET", "/v2/keys/", "http://b.example", 200, true},
		{"listed origin on an error", "GET", "/v2/keys/missing", "http://a.example", 404, true},
		{"listed origin on /version", "GET", "/version", "http://a.example", 200, true},
		{"OPTIONS with a listed origin", "OPTIONS", "/anything", "http://a.example", 200, true},
		{"unlisted origin", "GET", "/v2/keys/", "http://evil.example", 200, false},
		{"no origin", "GET", "/v2/keys/", "", 200, false},
		{"OPTIONS with an unlisted origin", "OPTIONS", "/v2/keys/x", "http://evil.example", 200, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			if c.origin != "" {
				h["Origin"] = c.origin
			}
			r := m.do(t, rawReq{method: c.method, target: c.target, header: h})
			if r.status != c.status {
				t.Errorf("status %d, want %d", r.status, c.status)
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":   c.origin,
				"Access-Control-Allow-Methods":  "POST, GET, OPTIONS, PUT, DELETE",
				"Access-Control-Allow-Headers":  "accept, content-type, authorization",
				"Access-Control-Expose-Headers": "X-Etcd-Index, X-Raft-Index, X-Raft-Term, X-Etcd-Cluster-Id",
			}
			for k, v := range want {
				got, ok := r.header[k]
				switch {
				case c.allowed && (!ok || len(got) != 1 || got[0] != v):
					t.Errorf("%s: %q, want %q", k, got, v)
				case !c.allowed && ok:
					t.Errorf("%s: %q, want none", k, got)
				}
			}
			if _, ok := r.header["Vary"]; ok {
				t.Errorf("Vary sent: %q", r.header["Vary"])
			}
		})
	}
}

// TestWatchAfterAcknowledgedWrite checks read-your-writes for watches: once a
// write's response has arrived, a watch opened without waitIndex is
// registered at that write's index or later (its X-Etcd-Index), and so
// waits for the next event, never returning the write already seen (§5.1,
// §5.2: "waits for the first matching event with index > the current store
// index"). The member must tell the watch hub about an applied event before
// it answers the write.
func TestWatchAfterAcknowledgedWrite(t *testing.T) {
	m := startMember(t)
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		r := m.do(t, put("/v2/keys/raw", "value", strconv.Itoa(i)))
		written, err := strconv.ParseUint(r.header.Get("X-Etcd-Index"), 10, 64)
		if r.status/100 != 2 || err != nil {
			t.Fatalf("write %d: %d %q", i, r.status, r.body)
		}
		w := m.startWatch(t, "raw", get("/v2/keys/raw?wait=true"))
		reg, _ := strconv.ParseUint(w.resp.Header.Get("X-Etcd-Index"), 10, 64)
		next := m.do(t, put("/v2/keys/raw", "value", "next"))
		line := w.next(t, 5*time.Second)
		w.stop()
		if reg < written {
			t.Errorf("iteration %d: watch registered at X-Etcd-Index %d, before the acknowledged write %d", i, reg, written)
		}
		var ev struct {
			Node struct{ ModifiedIndex uint64 }
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		if want := next.header.Get("X-Etcd-Index"); strconv.FormatUint(ev.Node.ModifiedIndex, 10) != want {
			t.Fatalf("iteration %d: the watch opened after write %d returned the event at %d, want the next write's %s: %s",
				i, written, ev.Node.ModifiedIndex, want, line)
		}
	}
}
