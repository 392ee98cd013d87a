package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cairn/api"
	"cairn/storage"
)

// discardWriter is a minimal ResponseWriter so the benchmarks measure the
// router, not the recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchRouter(b *testing.B) http.Handler {
	ev := &api.Event{Action: "get", Node: &api.Node{Key: "/message", Value: "Hello world", ModifiedIndex: 5, CreatedIndex: 5}}
	e := newEnv(b, func(e *env) {
		e.store.GetFn = func(string, bool, bool) (*api.Event, *api.Error) { return ev, nil }
		e.raft.ProposeFn = func(_ context.Context, c storage.Cmd) (*api.Event, error) {
			return &api.Event{Action: "set", Index: 9, Node: &api.Node{Key: c.Path, Value: c.Value, ModifiedIndex: 9, CreatedIndex: 9},
				PrevNode: ev.Node}, nil
		}
	})
	return e.h
}

func BenchmarkGet(b *testing.B) {
	h := benchRouter(b)
	r := httptest.NewRequest("GET", "/v2/keys/message", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		r.Form, r.PostForm = nil, nil
		h.ServeHTTP(w, r)
	}
}

func BenchmarkPut(b *testing.B) {
	h := benchRouter(b)
	w := &discardWriter{h: http.Header{}}
	body := strings.NewReader("value=Hello+world")
	r := httptest.NewRequest("PUT", "/v2/keys/message", body)
	r.Header.Set("Content-Type", formType)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		body.Seek(0, 0)
		r.Form, r.PostForm = nil, nil
		h.ServeHTTP(w, r)
	}
}
