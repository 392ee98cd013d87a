package lincheck

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"cairn/api"
	"cairn/client"
)

// op builds an operation: client c, input in, [call, ret], output out.
func op(c int, in Input, call, ret int64, out Output) porcupine.Operation {
	if out.Unknown {
		ret = pendingReturn
	}
	return porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret}
}

func get(k string) Input                { return Input{Kind: Get, Key: k} }
func set(k, v string) Input             { return Input{Kind: Set, Key: k, Value: v} }
func cas(k, prev, v string) Input       { return Input{Kind: CAS, Key: k, PrevValue: prev, Value: v} }
func create(k, v string) Input          { return Input{Kind: Create, Key: k, Value: v} }
func del(k string) Input                { return Input{Kind: Delete, Key: k} }
func found(v string, idx uint64) Output { return Output{Found: true, Value: v, Index: idx} }
func written(idx uint64) Output         { return Output{Index: idx} }
func overwrote(v string, prev, idx uint64) Output {
	return Output{Found: true, Value: v, PrevIndex: prev, Index: idx}
}
func failed(code int) Output { return Output{Err: code} }

var unknown = Output{Unknown: true}

// fix gives unknown operations a Return after every other one, as
// History.Operations does.
func fix(ops ...porcupine.Operation) []porcupine.Operation {
	h := &History{ops: ops}
	return h.Operations()
}

func TestModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"sequential set get", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, get("/a"), 2, 3, found("1", 5)),
		}, true},
		{"read of a value never written", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, get("/a"), 2, 3, found("2", 5)),
		}, false},
		{"stale read after a completed write", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, overwrote("1", 5, 6)),
			op(1, get("/a"), 4, 5, found("1", 5)),
		}, false},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 6, overwrote("1", 5, 6)),
			op(1, get("/a"), 3, 4, found("1", 5)),
			op(2, get("/a"), 3, 5, found("2", 6)),
		}, true},
		{"a read cannot go back in time", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 10, overwrote("1", 5, 6)),
			op(1, get("/a"), 3, 4, found("2", 6)),
			op(2, get("/a"), 5, 6, found("1", 5)),
		}, false},
		{"wrong modifiedIndex on a read", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, get("/a"), 2, 3, found("1", 4)),
		}, false},
		{"write index must grow", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, overwrote("1", 5, 4)),
		}, false},
		{"prevNode must be the current value", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, overwrote("x", 5, 6)),
		}, false},
		{"set on an absent key has no prevNode", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, overwrote("0", 3, 5)),
		}, false},
		{"cas success and failures", []porcupine.Operation{
			op(0, cas("/a", "0", "1"), 0, 1, failed(api.EcodeKeyNotFound)),
			op(0, create("/a", "1"), 2, 3, written(5)),
			op(0, create("/a", "2"), 4, 5, failed(api.EcodeNodeExist)),
			op(0, cas("/a", "0", "2"), 6, 7, failed(api.EcodeTestFailed)),
			op(0, cas("/a", "1", "2"), 8, 9, overwrote("1", 5, 7)),
			op(0, get("/a"), 10, 11, found("2", 7)),
		}, true},
		{"cas succeeded on the wrong value", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, cas("/a", "0", "2"), 2, 3, overwrote("1", 5, 6)),
		}, false},
		{"compare failed although it matched", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, cas("/a", "1", "2"), 2, 3, failed(api.EcodeTestFailed)),
		}, false},
		{"create on an existing key", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, create("/a", "2"), 2, 3, written(6)),
		}, false},
		{"delete then not found", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, del("/a"), 2, 3, overwrote("1", 5, 6)),
			op(0, get("/a"), 4, 5, failed(api.EcodeKeyNotFound)),
			op(0, del("/a"), 6, 7, failed(api.EcodeKeyNotFound)),
			op(0, create("/a", "2"), 8, 9, written(9)),
			op(0, get("/a"), 10, 11, found("2", 9)),
		}, true},
		{"read after delete", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, del("/a"), 2, 3, overwrote("1", 5, 6)),
			op(1, get("/a"), 4, 5, found("1", 5)),
		}, false},
		{"unknown write seen later", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, unknown),
			op(1, get("/a"), 4, 5, found("1", 5)),
			op(1, get("/a"), 6, 7, found("2", 8)),
			op(1, cas("/a", "2", "3"), 8, 9, overwrote("2", 8, 9)),
		}, true},
		{"unknown write never applied", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, unknown),
			op(1, get("/a"), 4, 5, found("1", 5)),
			op(1, get("/a"), 100, 101, found("1", 5)),
		}, true},
		{"unknown write cannot apply before its call", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(1, get("/a"), 2, 3, found("2", 6)),
			op(2, set("/a", "2"), 4, 5, unknown),
		}, false},
		{"unknown write cannot apply twice", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(0, set("/a", "2"), 2, 3, unknown),
			op(1, get("/a"), 4, 5, found("2", 6)),
			op(1, set("/a", "3"), 6, 7, overwrote("2", 6, 7)),
			op(1, get("/a"), 8, 9, found("2", 6)),
		}, false},
		{"keys are independent", []porcupine.Operation{
			op(0, set("/a", "1"), 0, 1, written(5)),
			op(1, set("/b", "1"), 0, 1, written(6)),
			op(0, get("/b"), 2, 3, found("1", 6)),
			op(1, get("/a"), 2, 3, found("1", 5)),
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := porcupine.CheckOperations(Model, fix(c.ops...))
			if got != c.want {
				t.Fatalf("linearizable = %v, want %v", got, c.want)
			}
		})
	}
}

// TestCheckWritesArtifacts: a violation leaves an HTML visualisation and
// a JSON history that reads back into the same verdict.
func TestCheckWritesArtifacts(t *testing.T) {
	dir := t.TempDir()
	ops := fix(
		op(0, set("/a", "1"), 0, 1, written(5)),
		op(0, set("/a", "2"), 2, 3, overwrote("1", 5, 6)),
		op(1, get("/a"), 4, 5, found("1", 5)),
	)
	r := check(ops, time.Minute, func() string { return dir }, "x")
	if r.result != porcupine.Illegal || len(r.errs) != 0 {
		t.Fatalf("result %v, errors %v", r.result, r.errs)
	}
	if fi, err := os.Stat(filepath.Join(dir, "x.html")); err != nil || fi.Size() == 0 {
		t.Fatalf("visualisation: %v", err)
	}
	back, err := ReadHistory(r.json)
	if err != nil {
		t.Fatal(err)
	}
	if porcupine.CheckOperations(Model, back) {
		t.Fatal("the history read back is linearizable")
	}
	if r := check(ops[:2], time.Minute, func() string { t.Fatal("no files for a legal history"); return "" }, "y"); r.result != porcupine.Ok {
		t.Fatalf("legal prefix: %v", r.result)
	}
}

// TestHistoryUnknownOutcomes: an unknown write returns after everything
// else and moves its client to a new ClientId; a failed read and a write
// that never left the client are not recorded.
func TestHistoryUnknownOutcomes(t *testing.T) {
	var mode string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode {
		case "ok":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"action":"set","node":{"key":"/a","value":"1","modifiedIndex":5,"createdIndex":5}}`))
		case "timeout":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out","index":0}`))
		case "notfound":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errorCode":100,"message":"Key not found","cause":"/a","index":5}`))
		}
	}))
	defer srv.Close()
	kv := client.New([]string{srv.URL}, 1)
	defer kv.Close()
	h := NewHistory()
	c := h.NewClient()
	ctx := context.Background()

	mode = "ok"
	if out, o := c.Do(ctx, kv, set("/a", "1"), "m1"); o != Recorded || out.Index != 5 || out.Found {
		t.Fatalf("set: %+v %v", out, o)
	}
	mode = "timeout"
	if _, o := c.Do(ctx, kv, set("/a", "2"), "m1"); o != Unknown || c.ID() != 1 {
		t.Fatalf("timed-out set: %v, client %d", o, c.ID())
	}
	if _, o := c.Do(ctx, kv, get("/a"), "m1"); o != Dropped || c.ID() != 1 {
		t.Fatalf("timed-out get: %v, client %d", o, c.ID())
	}
	mode = "notfound"
	if out, o := c.Do(ctx, kv, get("/a"), "m1"); o != Recorded || out.Err != api.EcodeKeyNotFound {
		t.Fatalf("get of a missing key: %+v %v", out, o)
	}
	// A member that is down: the connection is refused, nothing was sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	down := client.New([]string{dead}, 1)
	defer down.Close()
	if _, o := c.Do(ctx, down, set("/a", "3"), "m2"); o != Dropped {
		t.Fatalf("write to a closed port: %v", o)
	}

	ops := h.Operations()
	if len(ops) != 3 {
		t.Fatalf("%d operations recorded, want 3", len(ops))
	}
	var last int64
	for _, o := range ops {
		if !o.Output.(Output).Unknown {
			last = max(last, o.Return)
		}
	}
	if u := ops[1]; !u.Output.(Output).Unknown || u.Return <= last || u.ClientId != 0 {
		t.Fatalf("unknown write: %+v (last return %d)", u, last)
	}
	if ops[2].ClientId != 1 {
		t.Fatalf("the read after an unknown write has ClientId %d, want 1", ops[2].ClientId)
	}
	if st := h.Stats(); st.Ops != 3 || st.Unknown != 1 || st.Dropped != 2 || st.Failures != 1 || st.Clients != 2 {
		t.Fatalf("stats: %+v", st)
	}
	// The get said "not found" after a set of /a: not linearizable.
	if porcupine.CheckOperations(Model, ops) {
		t.Fatal("history with a lost write checked as linearizable")
	}
}
