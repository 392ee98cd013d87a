package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/api"
)

// TestWatchersAgreeAcrossMembers opens a stream watcher on every member of
// a three-member cluster, writes from several clients to all members
// (sets, compare-and-swaps, deletes, a TTL expiry) and checks that every
// member delivered the same events in the same order, with strictly
// increasing indexes: they all come from the one applied log.
func TestWatchersAgreeAcrossMembers(t *testing.T) {
	srvs := startTestCluster(t, 3, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type seen struct {
		index  uint64
		action string
		key    string
	}
	const writers, perWriter = 3, 20
	want := writers*perWriter*2 + 2 // a set and a delete per key, the TTL key's set and expire
	got := make([][]seen, len(srvs))
	var wg sync.WaitGroup
	ready := make(chan struct{}, len(srvs))
	for i, s := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ClientURLs()[0]+"/v2/keys/agree?wait=true&recursive=true&stream=true", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("member %d watch: %v", i, err)
				ready <- struct{}{}
				return
			}
			defer resp.Body.Close()
			ready <- struct{}{}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for len(got[i]) < want && sc.Scan() {
				var ev api.Event
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Errorf("member %d: bad event %q: %v", i, sc.Text(), err)
					return
				}
				got[i] = append(got[i], seen{ev.Node.ModifiedIndex, ev.Action, ev.Node.Key})
			}
		}()
	}
	for range srvs {
		<-ready
	}
	put := func(member int, method, key string, form url.Values) {
		req, _ := http.NewRequestWithContext(ctx, method, srvs[member].ClientURLs()[0]+"/v2/keys"+key, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s on member %d: %v", method, key, member, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Errorf("%s %s on member %d: %s", method, key, member, resp.Status)
		}
	}
	put(0, http.MethodPut, "/agree/ttl", url.Values{"value": {"x"}, "ttl": {"1"}})
	var wwg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := 0; i < perWriter; i++ {
				key := fmt.Sprintf("/agree/w%d/k%d", w, i)
				put((w+i)%3, http.MethodPut, key, url.Values{"value": {"a"}})
				put((w+i+1)%3, http.MethodDelete, key+"?prevValue=a", nil)
			}
		}()
	}
	wwg.Wait()
	wg.Wait()
	for i := range got {
		if len(got[i]) < want {
			t.Fatalf("member %d delivered %d events, want at least %d", i, len(got[i]), want)
		}
		for j := 1; j < len(got[i]); j++ {
			if got[i][j].index <= got[i][j-1].index {
				t.Fatalf("member %d: index %d after %d", i, got[i][j].index, got[i][j-1].index)
			}
		}
	}
	for i := 1; i < len(got); i++ {
		for j := range got[0] {
			if got[i][j] != got[0][j] {
				t.Fatalf("member %d event %d = %+v, member 0 saw %+v", i, j, got[i][j], got[0][j])
			}
		}
	}
	actions := map[string]int{}
	for _, e := range got[0] {
		actions[e.action]++
	}
	if actions["compareAndDelete"] != writers*perWriter || actions["expire"] != 1 {
		t.Fatalf("unexpected mix of actions: %v", actions)
	}
}
