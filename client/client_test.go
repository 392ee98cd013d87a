package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"cairn/api"
	"cairn/client"
	"cairn/server"
)

func startMember(t *testing.T) *server.Server {
	t.Helper()
	loop := []string{"http://127.0.0.1:0"}
	s, err := server.Start(server.Config{
		Name: "client-test", InMemory: true,
		ListenClientURLs: loop, AdvertiseClientURLs: loop, ListenPeerURLs: loop, InitialAdvertisePeerURLs: loop,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func TestClientAgainstMember(t *testing.T) {
	s := startMember(t)
	// A dead endpoint first: the client moves on to the next one.
	c := client.New(append([]string{"http://127.0.0.1:1"}, s.ClientURLs()...), 4)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	set, err := c.Set(ctx, "/a b/c", "v1", client.SetOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if set.Status != 201 || set.Event.Action != "set" || set.Event.Node.Key != "/a b/c" || set.EtcdIndex == 0 || set.RaftTerm == 0 {
		t.Fatalf("set: %+v %+v", set, set.Event.Node)
	}
	got, err := c.Get(ctx, "/a b", client.GetOptions{Recursive: true, Quorum: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Event.Node.Nodes) != 1 || got.Event.Node.Nodes[0].Value != "v1" || got.Event.Node.Nodes[0].Expiration == 0 {
		t.Fatalf("get: %+v", got.Event.Node)
	}
	_, err = c.Set(ctx, "/a b/c", "v2", client.SetOptions{PrevValue: "nope"})
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != api.EcodeTestFailed || apiErr.Status != 412 {
		t.Fatalf("CAS mismatch: %v", err)
	}
	q, err := c.CreateInOrder(ctx, "/queue", "job", 0)
	if err != nil || q.Event.Action != "create" {
		t.Fatalf("POST: %v", err)
	}

	// Watch from the index of the set: replays it, then sees a live write.
	seen := make(chan string, 4)
	wctx, wcancel := context.WithCancel(ctx)
	go func() {
		_ = c.Watch(wctx, "/a b", true, set.EtcdIndex, func(ev *api.Event) bool {
			seen <- ev.Action + " " + ev.Node.Key
			return true
		})
	}()
	if _, err := c.Delete(ctx, "/a b", client.DeleteOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"set /a b/c", "delete /a b"} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("watch got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("watch did not see %q", want)
		}
	}
	wcancel()

	members, err := c.Members(ctx)
	if err != nil || len(members) != 1 || members[0].Name != "client-test" {
		t.Fatalf("members: %v %v", members, err)
	}
	peer := client.New(s.PeerURLs(), 1)
	pm, err := peer.PeerMembers(ctx)
	if err != nil || len(pm) != 1 || pm[0].ID != members[0].ID {
		t.Fatalf("peer members: %v %v (client port says %v)", pm, err, members)
	}
	leader, err := c.Leader(ctx)
	if err != nil || leader.ID != members[0].ID {
		t.Fatalf("leader: %v %v", leader, err)
	}
}

// TestClientMemberChanges adds a learner, sees it flagged through both
// ports, is refused its promotion (it never started, so it lags), updates
// and removes it, and gets the errors as HTTPError.
func TestClientMemberChanges(t *testing.T) {
	s := startMember(t)
	c := client.New(append([]string{"http://127.0.0.1:1"}, s.ClientURLs()...), 4)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	self := members[0].ID

	added, err := c.AddMember(ctx, []string{"http://127.0.0.1:2"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if added.Member == nil || !added.Member.IsLearner || added.ClusterID == "" || len(added.Member.PeerURLs) != 1 {
		t.Fatalf("added: %+v %+v", added, added.Member)
	}
	id := added.Member.ID
	for name, list := range map[string]func(context.Context) ([]api.Member, error){
		"client port": c.Members, "peer port": client.New(s.PeerURLs(), 1).PeerMembers,
	} {
		ms, err := list(ctx)
		if err != nil || len(ms) != 2 {
			t.Fatalf("%s: %v %v", name, ms, err)
		}
		for _, m := range ms {
			if m.IsLearner != (m.ID == id) {
				t.Fatalf("%s: %+v", name, ms)
			}
		}
	}

	var herr *client.HTTPError
	_, err = c.PromoteMember(ctx, id)
	if !errors.As(err, &herr) || herr.Status != 412 || herr.Message != "etcdserver: can only promote a learner member which is in sync with leader" {
		t.Fatalf("promoting a learner that never started: %v", err)
	}
	_, err = c.PromoteMember(ctx, self)
	if !errors.As(err, &herr) || herr.Status != 412 || herr.Message != "etcdserver: can only promote a learner member" {
		t.Fatalf("promoting the voter: %v", err)
	}
	if _, err := c.UpdateMember(ctx, id, []string{"http://127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	rm, err := c.RemoveMember(ctx, id)
	if err != nil || rm.ClusterID != added.ClusterID || rm.Member != nil {
		t.Fatalf("remove: %+v %v", rm, err)
	}
	_, err = c.RemoveMember(ctx, id)
	if !errors.As(err, &herr) || herr.Status != 410 || herr.Message != "Member permanently removed: "+id {
		t.Fatalf("second removal: %v", err)
	}
	_, err = c.AddMember(ctx, []string{"no-scheme"}, false)
	if !errors.As(err, &herr) || herr.Status != 400 || herr.Error() != "400 Bad Request: URL scheme must be http, https, unix, or unixs: no-scheme" {
		t.Fatalf("bad URL: %v", err)
	}
}
