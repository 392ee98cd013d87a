package server_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	client "go.etcd.io/etcd/client/v2"
)

// TestV2Client drives a real member with etcd's official v2 Go client
// exactly as a user's program would: KeysAPI and MembersAPI.
func TestV2Client(t *testing.T) {
	m := startMember(t, etcdHistory)
	c, err := client.New(client.Config{
		Endpoints:               []string{m.clientURL},
		Transport:               client.DefaultTransport,
		HeaderTimeoutPerRequest: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	kapi := client.NewKeysAPI(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// wantErr checks that err is a client.Error with the given code.
	wantErr := func(t *testing.T, err error, code int, cause string) client.Error {
		t.Helper()
		var ce client.Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T), want client.Error %d", err, err, code)
		}
		if ce.Code != code {
			t.Errorf("error code %d (%v), want %d", ce.Code, ce, code)
		}
		if cause != "" && ce.Cause != cause {
			t.Errorf("cause %q, want %q", ce.Cause, cause)
		}
		return ce
	}
	must := func(t *testing.T) func(*client.Response, error) *client.Response {
		return func(r *client.Response, err error) *client.Response {
			t.Helper()
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if r == nil || r.Node == nil {
				t.Fatalf("response without a node: %+v", r)
			}
			return r
		}
	}

	t.Run("Set, Get, Update, Create and CAS", func(t *testing.T) {
		r := must(t)(kapi.Set(ctx, "/foo", "bar", nil))
		if r.Action != "set" || r.Node.Key != "/foo" || r.Node.Value != "bar" || r.PrevNode != nil {
			t.Errorf("set: %+v %+v", r, r.Node)
		}
		if r.Index != r.Node.ModifiedIndex || r.Node.CreatedIndex != r.Node.ModifiedIndex {
			t.Errorf("set: X-Etcd-Index %d, node %d/%d", r.Index, r.Node.ModifiedIndex, r.Node.CreatedIndex)
		}
		if r.ClusterID == "" {
			t.Errorf("no cluster ID")
		}
		first := r.Node.ModifiedIndex

		g := must(t)(kapi.Get(ctx, "/foo", nil))
		if g.Action != "get" || g.Node.Value != "bar" || g.Index != first {
			t.Errorf("get: %+v %+v", g, g.Node)
		}
		g = must(t)(kapi.Get(ctx, "/foo", &client.GetOptions{Quorum: true}))
		if g.Node.Value != "bar" || g.Index != first {
			t.Errorf("quorum get: %+v %+v", g, g.Node)
		}

		u := must(t)(kapi.Update(ctx, "/foo", "baz"))
		if u.Action != "update" || u.Node.Value != "baz" || u.Node.CreatedIndex != first || u.PrevNode == nil || u.PrevNode.Value != "bar" {
			t.Errorf("update: %+v %+v %+v", u, u.Node, u.PrevNode)
		}
		_, err := kapi.Update(ctx, "/nope", "x")
		wantErr(t, err, client.ErrorCodeKeyNotFound, "/nope")

		_, err = kapi.Create(ctx, "/foo", "again")
		ce := wantErr(t, err, client.ErrorCodeNodeExist, "/foo")
		if ce.Index != u.Node.ModifiedIndex {
			t.Errorf("105 index %d, want the current index %d", ce.Index, u.Node.ModifiedIndex)
		}
		cr := must(t)(kapi.Create(ctx, "/fresh", "new"))
		if cr.Action != "create" {
			t.Errorf("create: action %q", cr.Action)
		}

		cas := must(t)(kapi.Set(ctx, "/foo", "qux", &client.SetOptions{PrevValue: "baz", PrevIndex: u.Node.ModifiedIndex}))
		if cas.Action != "compareAndSwap" || cas.Node.Value != "qux" || cas.PrevNode.Value != "baz" {
			t.Errorf("cas: %+v", cas)
		}
		_, err = kapi.Set(ctx, "/foo", "z", &client.SetOptions{PrevValue: "baz"})
		wantErr(t, err, client.ErrorCodeTestFailed, "[baz != qux]")
		_, err = kapi.Set(ctx, "/foo", "z", &client.SetOptions{PrevIndex: 1})
		wantErr(t, err, client.ErrorCodeTestFailed, fmt.Sprintf("[1 != %d]", cas.Node.ModifiedIndex))
		_, err = kapi.Set(ctx, "/foo", "z", &client.SetOptions{PrevExist: client.PrevExist, PrevValue: "nope"})
		wantErr(t, err, client.ErrorCodeTestFailed, "[nope != qux]")
		_, err = kapi.Set(ctx, "/foo/child", "z", nil)
		wantErr(t, err, client.ErrorCodeNotDir, "/foo")

		q, err := kapi.Set(ctx, "/foo", "quiet", &client.SetOptions{NoValueOnSuccess: true})
		if err != nil || q.Action != "set" || q.Node != nil || q.PrevNode != nil || q.Index == 0 {
			t.Errorf("noValueOnSuccess: %+v, %v", q, err)
		}
	})

	t.Run("TTL, refresh and directory TTL", func(t *testing.T) {
		r := must(t)(kapi.Set(ctx, "/ttl", "v", &client.SetOptions{TTL: 30 * time.Second}))
		if r.Node.Expiration == nil || r.Node.TTL < 29 || r.Node.TTL > 30 {
			t.Errorf("ttl set: expiration %v ttl %d", r.Node.Expiration, r.Node.TTL)
		}
		if d := time.Until(*r.Node.Expiration); d < 28*time.Second || d > 31*time.Second {
			t.Errorf("expiration %v is %v away", r.Node.Expiration, d)
		}
		ref := must(t)(kapi.Set(ctx, "/ttl", "", &client.SetOptions{TTL: 60 * time.Second, Refresh: true, PrevExist: client.PrevExist}))
		if ref.Action != "update" || ref.Node.Value != "v" || ref.Node.TTL < 59 || ref.Node.CreatedIndex != r.Node.CreatedIndex {
			t.Errorf("refresh: %+v %+v", ref, ref.Node)
		}
		_, err := kapi.Set(ctx, "/ttl", "new", &client.SetOptions{TTL: time.Minute, Refresh: true})
		wantErr(t, err, 211, "A value was provided on a refresh")
		_, err = kapi.Set(ctx, "/ttl", "", &client.SetOptions{Refresh: true})
		wantErr(t, err, 212, "No TTL value set")
		perm := must(t)(kapi.Set(ctx, "/ttl", "p", nil))
		if perm.Node.Expiration != nil || perm.Node.TTL != 0 || perm.PrevNode.Expiration == nil {
			t.Errorf("a write without TTL must make the key permanent: %+v, prev %+v", perm.Node, perm.PrevNode)
		}

		d := must(t)(kapi.Set(ctx, "/tdir", "", &client.SetOptions{Dir: true, TTL: 30 * time.Second}))
		if !d.Node.Dir || d.Node.TTL < 29 {
			t.Errorf("dir with ttl: %+v", d.Node)
		}
		// [D-1]: a directory's TTL can be changed.
		d2 := must(t)(kapi.Set(ctx, "/tdir", "", &client.SetOptions{Dir: true, TTL: 60 * time.Second, PrevExist: client.PrevExist}))
		if d2.Action != "update" || !d2.Node.Dir || d2.Node.TTL < 59 || d2.Node.CreatedIndex != d.Node.CreatedIndex {
			t.Errorf("dir ttl update: %+v %+v", d2, d2.Node)
		}
		// The largest time.Duration is 9223372036 s, the largest TTL accepted [D-6].
		big := must(t)(kapi.Set(ctx, "/bigttl", "b", &client.SetOptions{TTL: 1<<63 - 1}))
		if big.Node.Expiration == nil || big.Node.TTL < 1e9 {
			t.Errorf("largest TTL: %+v", big.Node)
		}
	})

	t.Run("directories: Get recursive sorted, Delete dir and recursive", func(t *testing.T) {
		for _, kv := range [][2]string{{"/d/b", "2"}, {"/d/a", "1"}, {"/d/sub/c", "3"}, {"/d/_hidden", "h"}} {
			must(t)(kapi.Set(ctx, kv[0], kv[1], nil))
		}
		g := must(t)(kapi.Get(ctx, "/d", &client.GetOptions{Recursive: true, Sort: true}))
		if !g.Node.Dir || len(g.Node.Nodes) != 3 {
			t.Fatalf("listing: %v", g.Node)
		}
		want := []string{"/d/a", "/d/b", "/d/sub"}
		for i, n := range g.Node.Nodes {
			if n.Key != want[i] {
				t.Errorf("child %d: %s, want %s", i, n.Key, want[i])
			}
		}
		if sub := g.Node.Nodes[2]; !sub.Dir || len(sub.Nodes) != 1 || sub.Nodes[0].Value != "3" {
			t.Errorf("/d/sub: %v", sub)
		}
		h := must(t)(kapi.Get(ctx, "/d/_hidden", nil))
		if h.Node.Value != "h" {
			t.Errorf("hidden: %v", h.Node)
		}

		_, err := kapi.Delete(ctx, "/d", nil)
		wantErr(t, err, client.ErrorCodeNotFile, "/d")
		_, err = kapi.Delete(ctx, "/d", &client.DeleteOptions{Dir: true})
		wantErr(t, err, client.ErrorCodeDirNotEmpty, "/d")
		must(t)(kapi.Set(ctx, "/empty", "", &client.SetOptions{Dir: true}))
		e := must(t)(kapi.Delete(ctx, "/empty", &client.DeleteOptions{Dir: true}))
		if e.Action != "delete" || !e.Node.Dir {
			t.Errorf("delete empty dir: %+v", e.Node)
		}
		rd := must(t)(kapi.Delete(ctx, "/d", &client.DeleteOptions{Recursive: true}))
		if rd.Action != "delete" || !rd.Node.Dir || rd.PrevNode == nil || len(rd.PrevNode.Nodes) != 0 {
			t.Errorf("recursive delete: %+v prev %+v", rd.Node, rd.PrevNode)
		}
		_, err = kapi.Get(ctx, "/d/a", nil)
		wantErr(t, err, client.ErrorCodeKeyNotFound, "/d")
		_, err = kapi.Delete(ctx, "/", &client.DeleteOptions{Recursive: true})
		wantErr(t, err, client.ErrorCodeRootROnly, "/")
	})

	t.Run("compare-and-delete", func(t *testing.T) {
		l := must(t)(kapi.Set(ctx, "/lock", "owner1", nil))
		_, err := kapi.Delete(ctx, "/lock", &client.DeleteOptions{PrevValue: "owner2"})
		wantErr(t, err, client.ErrorCodeTestFailed, "[owner2 != owner1]")
		_, err = kapi.Delete(ctx, "/lock", &client.DeleteOptions{PrevIndex: l.Node.ModifiedIndex + 100})
		wantErr(t, err, client.ErrorCodeTestFailed, fmt.Sprintf("[%d != %d]", l.Node.ModifiedIndex+100, l.Node.ModifiedIndex))
		d := must(t)(kapi.Delete(ctx, "/lock", &client.DeleteOptions{PrevValue: "owner1", PrevIndex: l.Node.ModifiedIndex}))
		if d.Action != "compareAndDelete" || d.PrevNode.Value != "owner1" || d.Node.Value != "" {
			t.Errorf("cad: %+v %+v", d, d.Node)
		}
	})

	t.Run("CreateInOrder", func(t *testing.T) {
		var keys []string
		for i := 0; i < 3; i++ {
			r := must(t)(kapi.CreateInOrder(ctx, "/queue", "job"+strconv.Itoa(i), nil))
			if r.Action != "create" || r.Node.Key != fmt.Sprintf("/queue/%020d", r.Node.CreatedIndex) {
				t.Errorf("in-order key %s for index %d", r.Node.Key, r.Node.CreatedIndex)
			}
			keys = append(keys, r.Node.Key)
		}
		ttl := must(t)(kapi.CreateInOrder(ctx, "/queue", "tmp", &client.CreateInOrderOptions{TTL: 100 * time.Second}))
		if ttl.Node.TTL < 99 {
			t.Errorf("in-order TTL: %+v", ttl.Node)
		}
		g := must(t)(kapi.Get(ctx, "/queue", &client.GetOptions{Sort: true}))
		for i, k := range keys {
			if g.Node.Nodes[i].Key != k || g.Node.Nodes[i].Value != "job"+strconv.Itoa(i) {
				t.Errorf("queue[%d] = %s, want %s", i, g.Node.Nodes[i].Key, k)
			}
		}
		_, err := kapi.CreateInOrder(ctx, "/fresh", "x", nil)
		wantErr(t, err, client.ErrorCodeNotDir, "/fresh")
	})

	t.Run("Watcher: one event with AfterIndex", func(t *testing.T) {
		r := must(t)(kapi.Set(ctx, "/w/a", "1", nil))
		w := kapi.Watcher("/w/a", &client.WatcherOptions{AfterIndex: r.Node.ModifiedIndex - 1})
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		ev, err := w.Next(wctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.Action != "set" || ev.Node.ModifiedIndex != r.Node.ModifiedIndex {
			t.Errorf("replayed event %+v %+v", ev, ev.Node)
		}
	})

	t.Run("Watcher: the recommended loop misses nothing", func(t *testing.T) {
		base := must(t)(kapi.Set(ctx, "/loop/start", "0", nil)).Node.ModifiedIndex
		w := kapi.Watcher("/loop", &client.WatcherOptions{AfterIndex: base, Recursive: true})
		const n = 50
		got := make(chan *client.Response, n)
		errc := make(chan error, 1)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		go func() {
			for i := 0; i < n; i++ {
				ev, err := w.Next(wctx)
				if err != nil {
					errc <- err
					return
				}
				got <- ev
			}
			close(got)
		}()
		// Writes race with the loop: some events are caught live, some from
		// the history (waitIndex), none may be lost or repeated.
		want := make([]uint64, 0, n)
		for i := 0; i < n; i++ {
			var r *client.Response
			var err error
			switch i % 5 {
			case 0:
				r, err = kapi.Set(ctx, "/loop/k"+strconv.Itoa(i%7), strconv.Itoa(i), nil)
			case 1:
				r, err = kapi.CreateInOrder(ctx, "/loop/q", strconv.Itoa(i), nil)
			case 2:
				r, err = kapi.Set(ctx, "/loop/deep/x/y", strconv.Itoa(i), nil)
			case 3:
				r, err = kapi.Set(ctx, "/loop/_hidden", strconv.Itoa(i), nil) // not delivered
				if err == nil {
					continue
				}
			case 4:
				r, err = kapi.Set(ctx, "/elsewhere", strconv.Itoa(i), nil) // not below /loop
				if err == nil {
					r, err = kapi.Set(ctx, "/loop/k0", strconv.Itoa(i), nil)
				}
			}
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			want = append(want, r.Node.ModifiedIndex)
		}
		for i := len(want); i < n; i++ { // top up to n delivered events
			r := must(t)(kapi.Set(ctx, "/loop/tail", strconv.Itoa(i), nil))
			want = append(want, r.Node.ModifiedIndex)
		}
		for i := 0; i < n; i++ {
			select {
			case ev := <-got:
				if ev.Node.ModifiedIndex != want[i] {
					t.Fatalf("event %d: index %d (%s %s), want %d", i, ev.Node.ModifiedIndex, ev.Action, ev.Node.Key, want[i])
				}
			case err := <-errc:
				t.Fatalf("Next after %d events: %v", i, err)
			case <-wctx.Done():
				t.Fatalf("only %d of %d events", i, n)
			}
		}
	})

	t.Run("Watcher: history cleared is error 401", func(t *testing.T) {
		// 1000 events are kept; write past them and ask for the oldest.
		first := must(t)(kapi.Set(ctx, "/churn", "0", nil)).Node.ModifiedIndex
		var last uint64
		for i := 1; i <= 1001; i++ {
			last = must(t)(kapi.Set(ctx, "/churn", strconv.Itoa(i), nil)).Node.ModifiedIndex
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		_, err := kapi.Watcher("/churn", &client.WatcherOptions{AfterIndex: first - 1}).Next(wctx)
		ce := wantErr(t, err, client.ErrorCodeEventIndexCleared,
			fmt.Sprintf("the requested history has been cleared [%d/%d]", last-999, first))
		if ce.Index != last {
			t.Errorf("401 index %d, want %d", ce.Index, last)
		}
		// The documented recovery: GET, then watch from X-Etcd-Index+1.
		g := must(t)(kapi.Get(ctx, "/churn", nil))
		w := kapi.Watcher("/churn", &client.WatcherOptions{AfterIndex: g.Index})
		done := make(chan *client.Response, 1)
		go func() {
			ev, _ := w.Next(wctx)
			done <- ev
		}()
		s := must(t)(kapi.Set(ctx, "/churn", "after", nil))
		select {
		case ev := <-done:
			if ev == nil || ev.Node.ModifiedIndex != s.Node.ModifiedIndex {
				t.Errorf("recovered watch got %+v, want index %d", ev, s.Node.ModifiedIndex)
			}
		case <-wctx.Done():
			t.Fatalf("recovered watch got nothing")
		}
	})

	t.Run("validation errors are client.Errors", func(t *testing.T) {
		_, err := kapi.Set(ctx, "/", "x", nil)
		wantErr(t, err, client.ErrorCodeRootROnly, "/")
		_, err = kapi.Set(ctx, "/x", "v", &client.SetOptions{PrevExist: client.PrevExistType("maybe")})
		wantErr(t, err, client.ErrorCodeInvalidField, "invalid value for prevExist")
	})

	mapi := client.NewMembersAPI(c)
	t.Run("MembersAPI List and Leader", func(t *testing.T) {
		ms, err := mapi.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(ms) != 1 || ms[0].Name != m.name || len(ms[0].PeerURLs) != 1 || ms[0].PeerURLs[0] != m.peerURL ||
			len(ms[0].ClientURLs) != 1 || ms[0].ClientURLs[0] != m.clientURL {
			t.Errorf("members: %+v", ms)
		}
		l, err := mapi.Leader(ctx)
		if err != nil {
			t.Fatalf("Leader: %v", err)
		}
		if len(ms) == 1 && l.ID != ms[0].ID {
			t.Errorf("leader %+v, member %+v", l, ms[0])
		}
		if _, err := strconv.ParseUint(l.ID, 16, 64); err != nil {
			t.Errorf("leader ID %q is not hex: %v", l.ID, err)
		}
		// Updating a member with its own peer URLs is a no-op (204).
		if len(ms) == 1 {
			if err := mapi.Update(ctx, ms[0].ID, ms[0].PeerURLs); err != nil {
				t.Errorf("Update with the same peer URLs: %v", err)
			}
		}
		if _, err := mapi.Add(ctx, m.peerURL); err == nil {
			t.Errorf("Add with an existing peer URL succeeded")
		}
	})
}
