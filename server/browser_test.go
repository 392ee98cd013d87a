package server

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser test: headless Chromium opens /ui/watch.html served by the
// member itself; the page's EventSource sees events written afterwards,
// and after the member drops the connection (a restart) it reconnects with
// Last-Event-ID and receives the events written while it was away, once
// each. A second run puts the page on another origin (--cors).

func chromiumPath() string {
	if p := os.Getenv("CAIRN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pageEvent is what the page records for each event.
type pageEvent struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Key    string `json:"key"`
	Value  string `json:"value"`
}

type pageState struct {
	Opens  int         `json:"opens"`
	Events []pageEvent `json:"events"`
	Errors []any       `json:"errors"`
	Text   string      `json:"text"`
}

func TestBrowserEventSource(t *testing.T) {
	path := chromiumPath()
	if path == "" {
		msg := "SKIPPING TestBrowserEventSource: no chromium binary found (apt-get install -y chromium, or set CAIRN_CHROMIUM); the EventSource browser test did NOT run"
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		t.Skip(msg)
	}
	for _, crossOrigin := range []bool{false, true} {
		name := "same origin"
		if crossOrigin {
			name = "cross origin with --cors"
		}
		t.Run(name, func(t *testing.T) { browserResume(t, path, crossOrigin) })
	}
}

func browserResume(t *testing.T, chromium string, crossOrigin bool) {
	dir := t.TempDir()
	// A first start finds a free port; the member is then restarted on it,
	// so the page's EventSource reconnects to the same URL.
	probe := wtMember(t, dir, nil)
	u, _ := url.Parse(probe.ClientURLs()[0])
	wtStop(t, probe)
	fixed := "http://" + u.Host
	pageOrigin, watchBase := fixed, ""
	var cors []string
	if crossOrigin {
		// The page comes from 127.0.0.1, the watch goes to localhost: two
		// origins, the same member.
		watchBase = "http://localhost:" + u.Port()
		cors = []string{pageOrigin}
	}
	start := func() *Server {
		return wtMember(t, dir, func(c *Config) {
			c.ListenClientURLs, c.AdvertiseClientURLs = []string{fixed}, []string{fixed}
			c.CORSOrigins = cors
		})
	}
	s := start()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	q := url.Values{"key": {"/browser"}, "recursive": {"true"}}
	if watchBase != "" {
		q.Set("server", watchBase)
	}
	if _, err := chromedp.Run(bctx, chromedp.Navigate(pageOrigin+"/ui/watch.html?"+q.Encode())); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	state := func() pageState {
		st, err := chromedp.Run(bctx, chromedp.Evaluate[pageState](`({opens: window.cairn.opens, events: window.cairn.events, errors: window.cairn.errors, text: document.body.innerText})`))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return st
	}
	waitFor := func(what string, d time.Duration, ok func(pageState) bool) pageState {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			st := state()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("page: %s not within %v; page shows:\n%s", what, d, st.Text)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("EventSource open", 15*time.Second, func(st pageState) bool { return st.Opens >= 1 })

	a := wtPut(t, s, "/browser/a", "1")
	wtPut(t, s, "/browser/b", "2")
	waitFor("the first two events", 10*time.Second, func(st pageState) bool { return len(st.Events) >= 2 })

	// Drop the connection: restart the member. Write while the browser is
	// away (EventSource waits about 3 s before it reconnects).
	wtStop(t, s)
	s = start()
	c := wtPut(t, s, "/browser/c", "3")
	wtPut(t, s, "/browser/d", "4")
	if n := s.hub.Count(); n != 0 {
		t.Logf("the browser reconnected before the writes (%d watchers): they may arrive live rather than resumed", n)
	}
	st := waitFor("the events written while away", 20*time.Second, func(st pageState) bool { return len(st.Events) >= 4 })
	if st.Opens < 2 {
		t.Errorf("EventSource opened %d times, want a reconnect", st.Opens)
	}
	e := wtPut(t, s, "/browser/e", "5")
	st = waitFor("a live event after the resume", 10*time.Second, func(st pageState) bool { return len(st.Events) >= 5 })

	var got []string
	for _, ev := range st.Events {
		got = append(got, fmt.Sprintf("%s %s %s=%s", ev.ID, ev.Action, ev.Key, ev.Value))
	}
	var want []string
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		want = append(want, fmt.Sprintf("%d set /browser/%s=%d", a.Index+uint64(i), k, i+1))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("page events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(st.Errors) != 0 {
		t.Errorf("error events: %v", st.Errors)
	}
	if c.Index != a.Index+2 || e.Index != a.Index+4 {
		t.Errorf("indexes a=%d c=%d e=%d not consecutive", a.Index, c.Index, e.Index)
	}
}
