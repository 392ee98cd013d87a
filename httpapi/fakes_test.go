package httpapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/api"
	"cairn/storage"
)

// Function-field fakes: a nil field means a sensible default.

type fakeRaft struct {
	ProposeFn func(ctx context.Context, c storage.Cmd) (*api.Event, error)
	BarrierFn func(ctx context.Context) error
	StatusFn  func() RaftStatus

	mu       sync.Mutex
	cmds     []storage.Cmd
	barriers int
}

func (f *fakeRaft) Propose(ctx context.Context, c storage.Cmd) (*api.Event, error) {
	f.mu.Lock()
	f.cmds = append(f.cmds, c)
	f.mu.Unlock()
	if f.ProposeFn != nil {
		return f.ProposeFn(ctx, c)
	}
	return &api.Event{Action: api.ActionSet, Index: 4,
		Node: &api.Node{Key: c.Path, Value: c.Value, ModifiedIndex: 4, CreatedIndex: 4}}, nil
}

func (f *fakeRaft) ReadBarrier(ctx context.Context) error {
	f.mu.Lock()
	f.barriers++
	f.mu.Unlock()
	if f.BarrierFn != nil {
		return f.BarrierFn(ctx)
	}
	return nil
}

func (f *fakeRaft) Status() RaftStatus {
	if f.StatusFn != nil {
		return f.StatusFn()
	}
	return RaftStatus{ID: 0x933a6163ed79adfc, Leader: 0x933a6163ed79adfc, Term: 2, Commit: 7, Applied: 7, Role: "StateLeader"}
}

func (f *fakeRaft) proposed() []storage.Cmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]storage.Cmd(nil), f.cmds...)
}

type getCall struct {
	path              string
	recursive, sorted bool
}

type fakeStore struct {
	GetFn   func(path string, recursive, sorted bool) (*api.Event, *api.Error)
	Index   uint64
	StatsV  StoreStats
	mu      sync.Mutex
	gets    []getCall
	counted []bool
}

func (s *fakeStore) Get(path string, recursive, sorted bool) (*api.Event, *api.Error) {
	s.mu.Lock()
	s.gets = append(s.gets, getCall{path, recursive, sorted})
	s.mu.Unlock()
	if s.GetFn != nil {
		return s.GetFn(path, recursive, sorted)
	}
	return &api.Event{Action: api.ActionGet, Node: &api.Node{Key: path, Value: "v", ModifiedIndex: 3, CreatedIndex: 3}}, nil
}

func (s *fakeStore) StoreIndex() uint64 { return s.Index }

func (s *fakeStore) CountGet(ok bool) {
	s.mu.Lock()
	s.counted = append(s.counted, ok)
	s.mu.Unlock()
}

func (s *fakeStore) Stats() StoreStats { return s.StatsV }

type fakeCluster struct {
	ID    uint64
	List  []api.Member
	SelfV api.Member
}

func (c *fakeCluster) ClusterID() uint64     { return c.ID }
func (c *fakeCluster) Members() []api.Member { return c.List }
func (c *fakeCluster) Self() api.Member      { return c.SelfV }

var member1 = api.Member{ID: "933a6163ed79adfc", Name: "r1",
	PeerURLs: []string{"http://127.0.0.1:25800"}, ClientURLs: []string{"http://127.0.0.1:25790"}}

// fixedNow is the fake clock of every test router.
var fixedNow = time.Date(2026, 11, 25, 7, 32, 22, 954115175, time.UTC)

type env struct {
	raft    *fakeRaft
	store   *fakeStore
	cluster *fakeCluster
	opt     Options
	h       http.Handler
	logs    *syncWriter
}

// logText returns what the router logged so far.
func (e *env) logText() string {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	return e.logs.w.String()
}

// newEnv builds the real router over fresh fakes; mod may adjust the
// fakes and options before the router is built.
func newEnv(t testing.TB, mod func(*env)) *env {
	t.Helper()
	e := &env{
		raft:    &fakeRaft{},
		store:   &fakeStore{Index: 3},
		cluster: &fakeCluster{ID: 0x156c5310fedaaf52, List: []api.Member{member1}, SelfV: member1},
		logs:    &syncWriter{w: &bytes.Buffer{}},
	}
	e.opt = Options{
		Clock:   func() time.Time { return fixedNow },
		Version: "9.9.9",
		Logger:  slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if mod != nil {
		mod(e)
	}
	e.h = NewRouter(e.raft, e.store, e.cluster, e.opt)
	return e
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// req describes one request of a table case.
type req struct {
	method, target string
	body           string
	ctype          string // Content-Type; "form" is the form media type
	header         map[string]string
}

const formType = "application/x-www-form-urlencoded"

func (e *env) do(t testing.TB, q req) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r := httptest.NewRequest(q.method, q.target, body)
	switch q.ctype {
	case "":
	case "form":
		r.Header.Set("Content-Type", formType)
	default:
		r.Header.Set("Content-Type", q.ctype)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// errBody is the JSON of a v2 error with its newline.
func errBody(code int, cause string, index uint64) string {
	var b bytes.Buffer
	api.NewError(code, cause, index).AppendJSON(&b)
	return b.String()
}

// wantHeader checks header k; "" means absent.
// wantLength checks the framing of an n-byte answer: our Content-Length, or
// none when the body is small enough for net/http to add its own on the
// wire (the server package's tests read it there).
func wantLength(t *testing.T, h http.Header, n int) {
	t.Helper()
	if got := h.Get("Content-Length"); got != strconv.Itoa(n) && (got != "" || n > autoLengthMax) {
		t.Errorf("Content-Length %q for a %d-byte body", got, n)
	}
}

func wantHeader(t *testing.T, h http.Header, k, want string) {
	t.Helper()
	if got := h.Get(k); got != want {
		t.Errorf("header %s = %q, want %q", k, got, want)
	}
	if want == "" {
		if _, ok := h[http.CanonicalHeaderKey(k)]; ok {
			t.Errorf("header %s present (%q), want absent", k, h.Values(k))
		}
	}
}
