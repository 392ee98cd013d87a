package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"cairn/api"
	"cairn/storage"
)

// TestOpenAPIConformance replays representative requests through the real
// router and validates every response (status, headers, body) against
// ../openapi.yaml, so the document and the code cannot drift apart (DESIGN
// §1.7).
func TestOpenAPIConformance(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Skipf("no openapi.yaml: %v", err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.yaml invalid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	changer := &fakeChanger{
		addFn:    func(urls []string) (api.Member, error) { return api.Member{ID: "abc", PeerURLs: urls}, nil },
		updateFn: func(uint64, []string) error { return nil },
		removeFn: func(uint64) error { return ErrMemberRemoved },
		promoteFn: func(id uint64) (api.Member, error) {
			switch id {
			case 0xbad:
				return api.Member{}, ErrLearnerNotReady
			case 0x404:
				return api.Member{}, ErrMemberNotFound
			}
			return api.Member{ID: "abc", PeerURLs: []string{"http://a:1"}}, nil
		},
	}
	e := newEnv(t, func(e *env) {
		e.opt.Members = changer
		e.store.GetFn = func(p string, _, _ bool) (*api.Event, *api.Error) {
			switch p {
			case "/missing":
				return nil, api.NewError(100, p, 3)
			case "/":
				return &api.Event{Action: "get", Node: &api.Node{Dir: true, Nodes: []*api.Node{node("/a", "1", 2, 2)}}}, nil
			}
			return &api.Event{Action: "get", Node: node(p, "v", 2, 2)}, nil
		}
		e.raft.ProposeFn = func(_ context.Context, c storage.Cmd) (*api.Event, error) {
			switch c.Path {
			case "/exists":
				return nil, api.NewError(105, c.Path, 5)
			case "/dir":
				return nil, api.NewError(102, c.Path, 5)
			case "/slow":
				return nil, context.DeadlineExceeded
			}
			return &api.Event{Action: "set", Index: 6, Node: node(c.Path, c.Value, 6, 6)}, nil
		}
	})
	cases := []req{
		{method: "GET", target: "/v2/keys/a/b?recursive=true"},
		{method: "GET", target: "/v2/keys"},
		{method: "GET", target: "/v2/keys/"},
		{method: "GET", target: "/v2/keys/missing"},
		{method: "GET", target: "/v2/keys/x?ttl=abc"},
		{method: "GET", target: "/v2/keys//x"},
		{method: "HEAD", target: "/v2/keys/a"},
		{method: "PUT", target: "/v2/keys/a", body: "value=1", ctype: "form"},
		{method: "PUT", target: "/v2/keys/a?value=1&noValueOnSuccess=true"},
		{method: "PUT", target: "/v2/keys/exists?prevExist=false"},
		{method: "PUT", target: "/v2/keys/slow?value=1"},
		{method: "PUT", target: "/v2/keys/x?refresh=true"},
		{method: "PUT", target: "/v2/keys/x", body: "value=" + strings.Repeat("x", 2<<20), ctype: "form"},
		{method: "POST", target: "/v2/keys/q?value=1"},
		{method: "DELETE", target: "/v2/keys/dir"},
		{method: "DELETE", target: "/v2/keys/a?prevIndex=2"},
		{method: "GET", target: "/v2/members"},
		{method: "GET", target: "/v2/members/leader"},
		{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"]}`, ctype: "application/json"},
		{method: "POST", target: "/v2/members", body: `{"peerURLs":[]}`, ctype: "application/json"},
		{method: "POST", target: "/v2/members", body: `x`, ctype: "text/plain"},
		{method: "POST", target: "/v2/members", body: `{"peerURLs":["http://a:1"],"isLearner":true}`, ctype: "application/json"},
		{method: "POST", target: "/v2/members/abc/promote"},
		{method: "POST", target: "/v2/members/bad/promote"},
		{method: "POST", target: "/v2/members/404/promote"},
		{method: "PUT", target: "/v2/members/933a6163ed79adfc", body: `{"peerURLs":["http://a:1"]}`, ctype: "application/json"},
		{method: "DELETE", target: "/v2/members/933a6163ed79adfc"},
		{method: "DELETE", target: "/v2/members/zz"},
		{method: "GET", target: "/v2/stats/self"},
		{method: "GET", target: "/v2/stats/leader"},
		{method: "GET", target: "/v2/stats/store"},
		{method: "GET", target: "/v2/machines"},
		{method: "GET", target: "/version"},
		{method: "GET", target: "/health"},
		{method: "GET", target: "/metrics"},
	}
	for _, q := range cases {
		t.Run(q.method+" "+q.target[:min(len(q.target), 60)], func(t *testing.T) {
			w := e.do(t, q)
			// The document names a key as one path parameter; find the route
			// with the key escaped into one segment.
			u, _ := url.Parse("http://localhost:2379" + q.target)
			u.RawPath = ""
			if rest, ok := strings.CutPrefix(u.Path, "/v2/keys/"); ok && rest != "" {
				u.Path = "/v2/keys/" + url.PathEscape(rest)
			}
			r, _ := http.NewRequest(q.method, u.String(), nil)
			route, params, err := router.FindRoute(r)
			if err != nil {
				t.Fatalf("no route in openapi.yaml: %v", err)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route},
				Status:                 w.Code,
				Header:                 w.Header(),
				Body:                   io.NopCloser(strings.NewReader(w.Body.String())),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true},
			}
			if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
				t.Errorf("status %d body %.200q: %v", w.Code, w.Body, err)
			}
		})
	}
}
