package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"cairn/api"
)

var member2 = api.Member{ID: "323a1d048b88930f", Name: "r2",
	PeerURLs: []string{"http://127.0.0.1:25801"}, ClientURLs: []string{"http://127.0.0.1:25791"}}

// A short ID sorts before longer ones numerically.
var member3 = api.Member{ID: "fa", Name: "", PeerURLs: []string{"http://127.0.0.1:25802"}}

type fakeChanger struct {
	addFn      func(urls []string) (api.Member, error)
	updateFn   func(id uint64, urls []string) error
	removeFn   func(id uint64) error
	promoteFn  func(id uint64) (api.Member, error)
	gotURLs    []string
	gotID      uint64
	gotLearner bool
}

func (f *fakeChanger) AddMember(_ context.Context, urls []string, learner bool) (api.Member, error) {
	f.gotURLs, f.gotLearner = urls, learner
	m, err := f.addFn(urls)
	m.IsLearner = learner
	return m, err
}

func (f *fakeChanger) PromoteMember(_ context.Context, id uint64) (api.Member, error) {
	f.gotID = id
	if f.promoteFn == nil {
		return api.Member{}, errors.New("no promoteFn")
	}
	return f.promoteFn(id)
}

func (f *fakeChanger) UpdateMember(_ context.Context, id uint64, urls []string) error {
	f.gotID, f.gotURLs = id, urls
	return f.updateFn(id, urls)
}

func (f *fakeChanger) RemoveMember(_ context.Context, id uint64) error {
	f.gotID = id
	return f.removeFn(id)
}

// textErr has etcd's text without being one of httpapi's sentinels.
type textErr string

func (e textErr) Error() string { return string(e) }

func msg(s string) string { return `{"message":"` + s + `"}` }

func TestMembers(t *testing.T) {
	ok := &fakeChanger{
		addFn: func(urls []string) (api.Member, error) {
			return api.Member{ID: "323a1d048b88930f", PeerURLs: urls}, nil
		},
		updateFn: func(uint64, []string) error { return nil },
		removeFn: func(uint64) error { return nil },
		promoteFn: func(id uint64) (api.Member, error) {
			return api.Member{ID: fmt.Sprintf("%x", id), PeerURLs: []string{"http://127.0.0.1:25802"}}, nil
		},
	}
	failing := func(err error) *fakeChanger {
		return &fakeChanger{
			addFn:     func([]string) (api.Member, error) { return api.Member{}, err },
			updateFn:  func(uint64, []string) error { return err },
			removeFn:  func(uint64) error { return err },
			promoteFn: func(uint64) (api.Member, error) { return api.Member{}, err },
		}
	}
	jsonCT := "application/json"
	cases := []struct {
		name       string
		changer    MembershipChanger
		q          req
		wantStatus int
		wantBody   string
		wantCT     string // "" means application/json
	}{
		{"list", nil, req{method: "GET", target: "/v2/members"}, 200,
			`{"members":[{"id":"fa","name":"","peerURLs":["http://127.0.0.1:25802"],"clientURLs":[]},{"id":"323a1d048b88930f","name":"r2","peerURLs":["http://127.0.0.1:25801"],"clientURLs":["http://127.0.0.1:25791"]},{"id":"933a6163ed79adfc","name":"r1","peerURLs":["http://127.0.0.1:25800"],"clientURLs":["http://127.0.0.1:25790"]}]}` + "\n", ""},
		{"list with slash", nil, req{method: "GET", target: "/v2/members/"}, 200,
			`{"members":[{"id":"fa","name":"","peerURLs":["http://127.0.0.1:25802"],"clientURLs":[]},{"id":"323a1d048b88930f","name":"r2","peerURLs":["http://127.0.0.1:25801"],"clientURLs":["http://127.0.0.1:25791"]},{"id":"933a6163ed79adfc","name":"r1","peerURLs":["http://127.0.0.1:25800"],"clientURLs":["http://127.0.0.1:25790"]}]}` + "\n", ""},
		{"leader", nil, req{method: "GET", target: "/v2/members/leader"}, 200,
			`{"id":"933a6163ed79adfc","name":"r1","peerURLs":["http://127.0.0.1:25800"],"clientURLs":["http://127.0.0.1:25790"]}` + "\n", ""},
		{"other GET", nil, req{method: "GET", target: "/v2/members/933a6163ed79adfc"}, 404, msg("Not found"), ""},
		{"GET below leader", nil, req{method: "GET", target: "/v2/members/leader/x"}, 404, msg("Not found"), ""},
		// POST validation (§7.2).
		{"form content type", nil, req{method: "POST", target: "/v2/members", body: "peerURLs=x", ctype: "form"}, 415,
			msg("Bad Content-Type application/x-www-form-urlencoded, accept application/json"), ""},
		{"no content type", nil, req{method: "POST", target: "/v2/members", body: "{}"}, 415,
			msg("Bad Content-Type , accept application/json"), ""},
		{"upper-case type without parameters", nil, req{method: "POST", target: "/v2/members", body: "{}", ctype: "Application/JSON"}, 415,
			msg("Bad Content-Type Application/JSON, accept application/json"), ""},
		{"upper-case type with parameters", ok, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://10.0.0.2:2380"]}`, ctype: "Application/JSON; charset=utf-8"}, 201,
			`{"id":"323a1d048b88930f","name":"","peerURLs":["http://10.0.0.2:2380"],"clientURLs":[]}` + "\n", ""},
		{"empty body", nil, req{method: "POST", target: "/v2/members", ctype: jsonCT}, 400, msg("unexpected end of JSON input"), ""},
		{"bad JSON", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":`, ctype: jsonCT}, 400, msg("unexpected end of JSON input"), ""},
		{"wrong JSON type", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":"x"}`, ctype: jsonCT}, 400,
			msg("json: cannot unmarshal string into Go struct field .peerURLs of type []string"), ""},
		{"no URLs", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":[]}`, ctype: jsonCT}, 400, msg("no valid URLs given"), ""},
		{"null", nil, req{method: "POST", target: "/v2/members", body: `null`, ctype: jsonCT}, 400, msg("no valid URLs given"), ""},
		{"bad scheme", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["ftp://h:1"]}`, ctype: jsonCT}, 400,
			msg("URL scheme must be http, https, unix, or unixs: ftp://h:1"), ""},
		{"no port", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://h"]}`, ctype: jsonCT}, 400,
			msg(`URL address does not have the form \"host:port\": http://h`), ""},
		{"path", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://h:1/p"]}`, ctype: jsonCT}, 400,
			msg("URL must not contain a path: http://h:1/p"), ""},
		{"unparseable", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["127.0.0.1:25801"]}`, ctype: jsonCT}, 400,
			msg(`parse \"127.0.0.1:25801\": first path segment in URL cannot contain colon`), ""},
		{"peer URL exists (no changer)", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://127.0.0.1:25800"]}`, ctype: jsonCT}, 409,
			msg("membership: peerURL exists"), ""},
		{"no changer → 500", nil, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://127.0.0.1:25809"]}`, ctype: jsonCT}, 500,
			msg("Internal Server Error"), ""},
		{"add", ok, req{method: "POST", target: "/v2/members/ignored", body: `{"peerURLs":[" https://b:2 ","http://a:1"]}`, ctype: jsonCT}, 201,
			`{"id":"323a1d048b88930f","name":"","peerURLs":["http://a:1","https://b:2"],"clientURLs":[]}` + "\n", ""},
		{"add: peer URL exists", failing(ErrPeerURLExists), req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 409,
			msg("membership: peerURL exists"), ""},
		{"add: too many learners", failing(ErrTooManyLearners), req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"],"isLearner":true}`, ctype: jsonCT}, 412,
			msg("etcdserver: too many learner members in cluster"), ""},
		{"add: ID exists by text", failing(fmt.Errorf("propose: %w", textErr("membership: ID exists"))), req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 409,
			msg("membership: ID exists"), ""},
		{"add: rejected", failing(errors.New("etcdserver: unhealthy cluster")), req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 500,
			msg("Internal Server Error"), ""},
		// Learners (a Cairn extension): isLearner on POST, promotion.
		{"add learner", ok, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"],"isLearner":true}`, ctype: jsonCT}, 201,
			`{"id":"323a1d048b88930f","name":"","peerURLs":["http://a:1"],"clientURLs":[],"isLearner":true}` + "\n", ""},
		{"add with isLearner false", ok, req{method: "POST", target: "/v2/members", body: `{"isLearner":false,"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 201,
			`{"id":"323a1d048b88930f","name":"","peerURLs":["http://a:1"],"clientURLs":[]}` + "\n", ""},
		{"add with a bad isLearner", ok, req{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"],"isLearner":"yes"}`, ctype: jsonCT}, 400,
			msg("json: cannot unmarshal string into Go struct field .isLearner of type bool"), ""},
		{"add learner without URLs", ok, req{method: "POST", target: "/v2/members", body: `{"isLearner":true}`, ctype: jsonCT}, 400, msg("no valid URLs given"), ""},
		{"put ignores isLearner", ok, req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://127.0.0.1:25800"],"isLearner":"yes"}`, ctype: jsonCT}, 204, "", "-"},
		{"promote", ok, req{method: "POST", target: "/v2/members/fa/promote"}, 200,
			`{"id":"fa","name":"","peerURLs":["http://127.0.0.1:25802"],"clientURLs":[]}` + "\n", ""},
		{"promote ignores the body", ok, req{method: "POST", target: "/v2/members/fa/promote", body: "x", ctype: "text/plain"}, 200,
			`{"id":"fa","name":"","peerURLs":["http://127.0.0.1:25802"],"clientURLs":[]}` + "\n", ""},
		{"promote bad ID", ok, req{method: "POST", target: "/v2/members/zz/promote"}, 404, msg("No such member: zz"), ""},
		{"promote: not found", failing(ErrMemberNotFound), req{method: "POST", target: "/v2/members/077/promote"}, 404, msg("No such member: 77"), ""},
		{"promote: removed", failing(ErrMemberRemoved), req{method: "POST", target: "/v2/members/abc/promote"}, 410, msg("Member permanently removed: abc"), ""},
		{"promote: a voter", failing(fmt.Errorf("promote: %w", textErr("etcdserver: can only promote a learner member"))), req{method: "POST", target: "/v2/members/abc/promote"}, 412,
			msg("etcdserver: can only promote a learner member"), ""},
		{"promote: lagging", failing(ErrLearnerNotReady), req{method: "POST", target: "/v2/members/abc/promote"}, 412,
			msg("etcdserver: can only promote a learner member which is in sync with leader"), ""},
		{"promote: refused", failing(errors.New("etcdserver: re-configuration failed due to not enough started members")), req{method: "POST", target: "/v2/members/abc/promote"}, 500,
			msg("Internal Server Error"), ""},
		{"promote unknown (no changer)", nil, req{method: "POST", target: "/v2/members/1234/promote"}, 404, msg("No such member: 1234"), ""},
		{"promote known (no changer)", nil, req{method: "POST", target: "/v2/members/fa/promote"}, 500, msg("Internal Server Error"), ""},
		{"GET promote", ok, req{method: "GET", target: "/v2/members/fa/promote"}, 404, msg("Not found"), ""},
		{"POST promote without ID is an add", ok, req{method: "POST", target: "/v2/members/promote", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 201,
			`{"id":"323a1d048b88930f","name":"","peerURLs":["http://a:1"],"clientURLs":[]}` + "\n", ""},
		// DELETE.
		{"delete without ID", nil, req{method: "DELETE", target: "/v2/members"}, 405, "Method Not Allowed\n", "text/plain; charset=utf-8"},
		{"delete with slash, without ID", ok, req{method: "DELETE", target: "/v2/members/"}, 405, "Method Not Allowed\n", "text/plain; charset=utf-8"},
		{"delete bad ID", nil, req{method: "DELETE", target: "/v2/members/zz"}, 404, msg("No such member: zz"), ""},
		{"delete unknown (no changer)", nil, req{method: "DELETE", target: "/v2/members/1234"}, 404, msg("No such member: 1234"), ""},
		{"delete known (no changer)", nil, req{method: "DELETE", target: "/v2/members/933a6163ed79adfc"}, 500, msg("Internal Server Error"), ""},
		{"delete", ok, req{method: "DELETE", target: "/v2/members/933a6163ed79adfc"}, 204, "", "-"},
		{"delete: not found", failing(ErrMemberNotFound), req{method: "DELETE", target: "/v2/members/01234"}, 404, msg("No such member: 1234"), ""},
		{"delete: removed", failing(ErrMemberRemoved), req{method: "DELETE", target: "/v2/members/abc"}, 410, msg("Member permanently removed: abc"), ""},
		{"delete: refused", failing(errors.New("etcdserver: re-configuration failed due to not enough started members")), req{method: "DELETE", target: "/v2/members/abc"}, 500, msg("Internal Server Error"), ""},
		// PUT.
		{"put without ID", nil, req{method: "PUT", target: "/v2/members", body: "{}", ctype: jsonCT}, 405, "Method Not Allowed\n", "text/plain; charset=utf-8"},
		{"put bad ID before content type", nil, req{method: "PUT", target: "/v2/members/xyz", ctype: "text/plain"}, 404, msg("No such member: xyz"), ""},
		{"put form type", nil, req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: "x", ctype: "form"}, 415,
			msg("Bad Content-Type application/x-www-form-urlencoded, accept application/json"), ""},
		{"put unknown (no changer)", nil, req{method: "PUT", target: "/v2/members/1", body: `{"peerURLs":["http://127.0.0.1:25801"]}`, ctype: jsonCT}, 404, msg("No such member: 1"), ""},
		{"put URL of another member (no changer)", nil, req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://127.0.0.1:25801"]}`, ctype: jsonCT}, 409, msg("membership: peerURL exists"), ""},
		{"put own URL (no changer)", nil, req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://127.0.0.1:25800"]}`, ctype: jsonCT}, 500, msg("Internal Server Error"), ""},
		{"put", ok, req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://127.0.0.1:25800"]}`, ctype: jsonCT}, 204, "", "-"},
		{"put: URL exists", failing(ErrPeerURLExists), req{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 409, msg("membership: peerURL exists"), ""},
		{"put: not found", failing(ErrMemberNotFound), req{method: "PUT", target: "/v2/members/77", body: `{"peerURLs":["http://a:1"]}`, ctype: jsonCT}, 404, msg("No such member: 77"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) {
				e.cluster.List = []api.Member{member1, member3, member2}
				e.opt.Members = tc.changer
			})
			w := e.do(t, tc.q)
			if w.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tc.wantStatus)
			}
			if w.Body.String() != tc.wantBody {
				t.Errorf("body %s\nwant %s", w.Body, tc.wantBody)
			}
			switch tc.wantCT {
			case "":
				wantHeader(t, w.Header(), "Content-Type", "application/json")
			case "-":
			default:
				wantHeader(t, w.Header(), "Content-Type", tc.wantCT)
			}
			wantHeader(t, w.Header(), "X-Etcd-Cluster-Id", "156c5310fedaaf52")
			if tc.q.method == "DELETE" && strings.Contains(tc.q.target, "933a") && tc.changer == ok && ok.gotID != 0x933a6163ed79adfc {
				t.Errorf("changer got id %x", ok.gotID)
			}
			if tc.q.method == "POST" && tc.changer == ok && w.Code == 201 && ok.gotLearner != strings.Contains(tc.q.body, `"isLearner":true`) {
				t.Errorf("changer got isLearner %v", ok.gotLearner)
			}
		})
	}
}

func TestMembersLeaderDuringElection(t *testing.T) {
	for _, leader := range []uint64{0, 0x1234} { // none, or not a known member
		e := newEnv(t, func(e *env) {
			e.raft.StatusFn = func() RaftStatus { return RaftStatus{ID: 1, Leader: leader, Role: "StateFollower"} }
		})
		w := e.do(t, req{method: "GET", target: "/v2/members/leader"})
		if w.Code != 503 || w.Body.String() != msg("During election") {
			t.Errorf("leader %x: got %d %q", leader, w.Code, w.Body)
		}
	}
}

func TestMembersBodyLimit(t *testing.T) {
	e := newEnv(t, func(e *env) { e.opt.MaxRequestBytes = 64 })
	body := `{"peerURLs":["http://` + strings.Repeat("a", 100) + `:1"]}`
	w := e.do(t, req{method: "POST", target: "/v2/members", body: body, ctype: "application/json"})
	if w.Code != 413 || w.Body.String() != msg("request body exceeds 64 bytes") {
		t.Errorf("got %d %q", w.Code, w.Body)
	}
}

// TestMembersListLearner: a learner carries "isLearner":true in the list;
// voters' objects stay etcd's exactly.
func TestMembersListLearner(t *testing.T) {
	learner := member3
	learner.IsLearner = true
	e := newEnv(t, func(e *env) { e.cluster.List = []api.Member{member1, learner} })
	w := e.do(t, req{method: "GET", target: "/v2/members"})
	want := `{"members":[{"id":"fa","name":"","peerURLs":["http://127.0.0.1:25802"],"clientURLs":[],"isLearner":true},` +
		`{"id":"933a6163ed79adfc","name":"r1","peerURLs":["http://127.0.0.1:25800"],"clientURLs":["http://127.0.0.1:25790"]}]}` + "\n"
	if w.Code != 200 || w.Body.String() != want {
		t.Errorf("got %d %s\nwant %s", w.Code, w.Body, want)
	}
}
