package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/server"
)

// member is one in-process Cairn member (in memory) with an HTTP client that
// never follows redirects and never cleans paths.
type member struct {
	srv       *server.Server
	clientURL string
	peerURL   string
	name      string
	hc        *http.Client
}

// startMember starts a one-member cluster (in memory, ports chosen by the
// kernel) and waits until it has a leader. Each option edits the Config.
func startMember(t *testing.T, options ...func(*server.Config)) *member {
	t.Helper()
	const local = "http://127.0.0.1:0"
	name := "m1"
	cfg := server.Config{
		Name:                     name,
		DataDir:                  t.TempDir(),
		InMemory:                 true,
		ListenClientURLs:         []string{local},
		AdvertiseClientURLs:      []string{local},
		ListenPeerURLs:           []string{local},
		InitialAdvertisePeerURLs: []string{local},
		Logger:                   slog.New(slog.DiscardHandler),
	}
	for _, o := range options {
		o(&cfg)
	}
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatalf("start member: %v", err)
	}
	m := &member{
		srv:       srv,
		clientURL: srv.ClientURLs()[0],
		peerURL:   srv.PeerURLs()[0],
		name:      name,
		hc: &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		},
	}
	t.Cleanup(func() {
		m.hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop member: %v", err)
		}
	})
	m.waitLeader(t)
	return m
}

// waitLeader polls GET /v2/members/leader until it answers 200 (bounded).
func (m *member) waitLeader(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		resp, err := m.hc.Get(m.clientURL + "/v2/members/leader")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after %d polls: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// rawReq is one HTTP request sent exactly as written: the path and query are
// put on the request line as is (no cleaning, no re-encoding).
type rawReq struct {
	method string
	base   string // scheme://host; the client URL when empty
	target string // raw path[?query]
	body   string
	ctype  string // Content-Type; "form" means application/x-www-form-urlencoded
	header map[string]string
	// chunked sends the body without a Content-Length.
	chunked bool
}

// response is a fully read response.
type response struct {
	status int
	header http.Header
	body   string
	// contentLength is resp.ContentLength (-1 when chunked or unknown).
	contentLength    int64
	transferEncoding []string
}

func (m *member) newRequest(ctx context.Context, r rawReq) (*http.Request, error) {
	base := r.base
	if base == "" {
		base = m.clientURL
	}
	bu, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	path, query, _ := strings.Cut(r.target, "?")
	u := &url.URL{Scheme: bu.Scheme, Host: bu.Host, Opaque: path, RawQuery: query}
	var body io.Reader
	if r.body != "" {
		if r.chunked {
			body = io.MultiReader(strings.NewReader(r.body)) // hides the length
		} else {
			body = strings.NewReader(r.body)
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base, body)
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.Host = bu.Host
	if r.chunked {
		req.ContentLength = -1
	}
	switch r.ctype {
	case "":
	case "form":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	default:
		req.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	return req, nil
}

// do sends r and reads the whole response (bounded by 30 s).
func (m *member) do(t *testing.T, r rawReq) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := m.newRequest(ctx, r)
	if err != nil {
		t.Fatalf("build %s %s: %v", r.method, r.target, err)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.method, r.target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b),
		contentLength: resp.ContentLength, transferEncoding: resp.TransferEncoding}
}

// watch is a background watch request: started with its own HTTP request;
// its headers are available once started returns, its body lines arrive on
// lines.
type watch struct {
	name   string
	cancel context.CancelFunc
	resp   *http.Response
	lines  chan string   // each body line, "\n" included
	done   chan struct{} // closed when the body ended (EOF or error)
	mu     sync.Mutex
	endErr error
	rest   string // an unterminated tail, if any
}

// startWatch sends r and returns once the response headers arrived (the
// server flushes them at once), bounded by 10 s.
func (m *member) startWatch(t *testing.T, name string, r rawReq) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := m.newRequest(ctx, r)
	if err != nil {
		cancel()
		t.Fatalf("build watch %s: %v", name, err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := m.hc.Do(req)
		got <- result{resp, err}
	}()
	var res result
	select {
	case res = <-got:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("watch %s: no headers after 10 s", name)
	}
	if res.err != nil {
		cancel()
		t.Fatalf("watch %s: %v", name, res.err)
	}
	w := &watch{name: name, cancel: cancel, resp: res.resp, lines: make(chan string, 2048), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer res.resp.Body.Close()
		br := bufio.NewReader(res.resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				w.mu.Lock()
				w.rest = line
				if !errors.Is(err, io.EOF) {
					w.endErr = err
				}
				w.mu.Unlock()
				return
			}
			w.lines <- line
		}
	}()
	return w
}

// next returns the next body line, or fails after d.
func (w *watch) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(d):
		w.cancel()
		t.Fatalf("watch %s: no event after %v", w.name, d)
	}
	return ""
}

// waitEnd waits until the body ended and returns the tail after the last
// line (must be "" for a proper end).
func (w *watch) waitEnd(t *testing.T, d time.Duration) (rest string, err error) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(d):
		w.cancel()
		t.Fatalf("watch %s: response did not end after %v", w.name, d)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rest, w.endErr
}

// stop cancels the watch and waits for its reader to finish.
func (w *watch) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
	}
}

// ---------------------------------------------------------------------
// Golden templates.
//
// A golden string may contain these placeholders:
//
//	{{i N}}          etcd's index N shifted to Cairn's numbering (N + delta)
//	{{k N}}          {{i N}} as a 20-digit zero-padded in-order key name
//	{{m K}}          the mark index + K (see tmpl.mark)
//	{{mk K}}         {{m K}} as a 20-digit zero-padded key name
//	{{exp NAME}}     an RFC 3339 expiration; the first occurrence of NAME
//	                 records it, later ones must be equal
//	{{exp NAME +S}}  as above, and on first sight it must lie within
//	                 [sent+S-1s, received+S+1s] of the request
//	{{ttl LO HI}}    an integer in [LO, HI]
//	{{n NAME}}       a decimal number; recorded on first sight, later equal
//	{{id}} {{did}}   the member's hex / decimal ID
//	{{cid}}          the cluster ID (hex)
//	{{client}} {{peer}} {{name}} {{ver}}   the member's URLs, name, version
//	{{any}}          any text without a quote or newline
//	{{all}}          any text at all
// ---------------------------------------------------------------------

type tmpl struct {
	delta   int64 // Cairn index − etcd index
	mark    uint64
	exps    map[string]string
	nums    map[string]uint64
	vars    map[string]string
	sent    time.Time // when the current request was sent
	receivd time.Time // when its response was read
}

var placeholder = regexp.MustCompile(`\{\{([a-z]+)((?: [^ }]+)*)\}\}`)

func (tp *tmpl) shift(n int64) uint64 { return uint64(n + tp.delta) }

// render substitutes every placeholder that has a fixed value (or a recorded
// one); any other placeholder is kept as written and makes render fail.
func (tp *tmpl) render(s string) (string, error) {
	var ferr error
	out := placeholder.ReplaceAllStringFunc(s, func(ph string) string {
		v, ok, err := tp.fixed(ph)
		switch {
		case err != nil:
			ferr = err
			return ph
		case ok:
			return v
		}
		if v, known := tp.knownCapture(ph); known {
			return v
		}
		ferr = fmt.Errorf("placeholder %s has no fixed value", ph)
		return ph
	})
	return out, ferr
}

// knownCapture renders {{exp NAME}} / {{n NAME}} once NAME was recorded.
func (tp *tmpl) knownCapture(ph string) (string, bool) {
	sm := placeholder.FindStringSubmatch(ph)
	args := strings.Fields(sm[2])
	if len(args) == 0 {
		return "", false
	}
	switch sm[1] {
	case "exp":
		v, ok := tp.exps[args[0]]
		return v, ok
	case "n":
		v, ok := tp.nums[args[0]]
		return strconv.FormatUint(v, 10), ok
	}
	return "", false
}

// fixed returns the value of a placeholder that needs no capture.
func (tp *tmpl) fixed(ph string) (string, bool, error) {
	sm := placeholder.FindStringSubmatch(ph)
	kind, args := sm[1], strings.Fields(sm[2])
	num := func() (int64, error) {
		if len(args) != 1 {
			return 0, fmt.Errorf("%s: want one argument", ph)
		}
		return strconv.ParseInt(args[0], 10, 64)
	}
	switch kind {
	case "i", "k":
		n, err := num()
		if err != nil {
			return "", false, err
		}
		if kind == "k" {
			return fmt.Sprintf("%020d", tp.shift(n)), true, nil
		}
		return strconv.FormatUint(tp.shift(n), 10), true, nil
	case "m", "mk":
		n, err := num()
		if err != nil {
			return "", false, err
		}
		v := uint64(int64(tp.mark) + n)
		if kind == "mk" {
			return fmt.Sprintf("%020d", v), true, nil
		}
		return strconv.FormatUint(v, 10), true, nil
	case "exp", "ttl", "n", "any", "all":
		return "", false, nil
	default:
		v, ok := tp.vars[kind]
		if !ok {
			return "", false, fmt.Errorf("unknown placeholder %s", ph)
		}
		return v, true, nil
	}
}

type capture struct {
	kind string
	args []string
}

// match checks got against the golden template want, recording captures.
func (tp *tmpl) match(want, got string) error {
	var re strings.Builder
	re.WriteString(`\A`)
	var caps []capture
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(want, -1) {
		re.WriteString(regexp.QuoteMeta(want[last:loc[0]]))
		last = loc[1]
		ph := want[loc[0]:loc[1]]
		v, ok, err := tp.fixed(ph)
		if err != nil {
			return err
		}
		if ok {
			re.WriteString(regexp.QuoteMeta(v))
			continue
		}
		sm := placeholder.FindStringSubmatch(ph)
		c := capture{kind: sm[1], args: strings.Fields(sm[2])}
		switch c.kind {
		case "exp":
			re.WriteString(`([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z)`)
		case "ttl":
			re.WriteString(`(-?[0-9]+)`)
		case "n":
			re.WriteString(`([0-9]+)`)
		case "any":
			re.WriteString(`([^"\n]*)`)
		case "all":
			re.WriteString(`((?s:.*))`)
		}
		caps = append(caps, c)
	}
	re.WriteString(regexp.QuoteMeta(want[last:]))
	re.WriteString(`\z`)
	rx, err := regexp.Compile(re.String())
	if err != nil {
		return fmt.Errorf("golden %q: %v", want, err)
	}
	sm := rx.FindStringSubmatch(got)
	if sm == nil {
		rendered, _ := tp.render(want)
		return fmt.Errorf("mismatch\n got: %q\nwant: %q", got, rendered)
	}
	for i, c := range caps {
		v := sm[i+1]
		switch c.kind {
		case "exp":
			if err := tp.checkExp(c.args, v); err != nil {
				return fmt.Errorf("%v (in %q)", err, got)
			}
		case "ttl":
			n, _ := strconv.ParseInt(v, 10, 64)
			lo, _ := strconv.ParseInt(c.args[0], 10, 64)
			hi, _ := strconv.ParseInt(c.args[1], 10, 64)
			if n < lo || n > hi {
				return fmt.Errorf("ttl %d not in [%d, %d] (in %q)", n, lo, hi, got)
			}
		case "n":
			n, _ := strconv.ParseUint(v, 10, 64)
			if old, ok := tp.nums[c.args[0]]; ok && old != n {
				return fmt.Errorf("number %s = %d, earlier %d (in %q)", c.args[0], n, old, got)
			}
			tp.nums[c.args[0]] = n
		}
	}
	return nil
}

func (tp *tmpl) checkExp(args []string, v string) error {
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return fmt.Errorf("expiration %q: %v", v, err)
	}
	if ts.Format(time.RFC3339Nano) != v {
		return fmt.Errorf("expiration %q is not canonical RFC3339Nano UTC (want %q)", v, ts.Format(time.RFC3339Nano))
	}
	name := args[0]
	if old, ok := tp.exps[name]; ok {
		if old != v {
			return fmt.Errorf("expiration %s = %q, earlier %q", name, v, old)
		}
		return nil
	}
	tp.exps[name] = v
	if len(args) > 1 {
		secs, err := strconv.ParseInt(strings.TrimPrefix(args[1], "+"), 10, 64)
		if err != nil {
			return err
		}
		lo := tp.sent.Add(time.Duration(secs)*time.Second - time.Second)
		hi := tp.receivd.Add(time.Duration(secs)*time.Second + time.Second)
		if ts.Before(lo) || ts.After(hi) {
			return fmt.Errorf("expiration %s = %v, want within [%v, %v]", name, ts, lo, hi)
		}
	}
	return nil
}
