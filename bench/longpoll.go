package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// WorkloadLongPoll: watchers on one shared prefix, each on its own
// keep-alive HTTP/1.1 connection doing the etcd v2 client's loop of
// one-shot long polls, GET ?wait=true&recursive=true&waitIndex=<last+1>:
// after each event it watches again from the event's modifiedIndex + 1,
// so no event is ever missed (what the member cannot answer from memory it
// reads from its history). A writer at a fixed rate; per write, the time
// from its acknowledgement to its delivery to every watcher.
const WorkloadLongPoll = "longpoll"

// lpRedials bounds how often one watcher reconnects after its connection
// broke (the v2 client retries too); each reconnect counts as an error.
const lpRedials = 3

// lpWatcher is one long-polling client; its goroutine records what arrives.
type lpWatcher struct {
	mu      sync.Mutex
	conn    net.Conn // the current connection (replaced on a redial)
	stopped bool     // the run is over: close, do not redial
	got     []delivery
}

// RunLongPoll opens the long-polling watchers, writes at the given rate
// and measures (cfg.Workload is ignored; cfg.Watchers defaults to 1000).
func RunLongPoll(ctx context.Context, cfg WatchConfig) (WatchResult, error) {
	cfg.Workload = WorkloadLongPoll
	r, err := newWatchRun(ctx, cfg, 1000)
	if err != nil {
		return WatchResult{}, err
	}
	defer r.close()
	cfg = r.cfg
	res := r.res

	// Every watcher starts after the index of a first write to the prefix:
	// the events from there on are exactly the measured writes.
	prefix := "/lpbench/" + runID()
	startIdx, err := putIndex(ctx, r.hc, r.ep, prefix+"/start", "0")
	if err != nil {
		return *res, fmt.Errorf("bench: create the watched prefix: %w", err)
	}
	watchPath := "/v2/keys" + prefix + "?wait=true&recursive=true&waitIndex="
	// Bounds: every watcher makes at most twice as many polls as there are
	// writes (plus slack) and gives up on its connection at the deadline.
	maxPolls := 2*cfg.Writes + 16
	deadline := time.Now().Add(2*time.Minute + cfg.Settle + time.Duration(cfg.Writes)*time.Second/time.Duration(cfg.Rate))

	start := time.Now()
	ws := make([]*lpWatcher, cfg.Watchers)
	var (
		dialWG   sync.WaitGroup
		pollWG   sync.WaitGroup
		dialErr  atomic.Pointer[error]
		pollErrs atomic.Int64
		firstErr atomic.Pointer[error]
		sem      = make(chan struct{}, 64)
	)
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.stop()
			}
		}
		pollWG.Wait()
	}()
	for i := range ws {
		dialWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer dialWG.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", r.host, 10*time.Second)
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			_ = c.SetDeadline(deadline)
			w := &lpWatcher{conn: c, got: make([]delivery, 0, cfg.Writes)} // no growth (and GC) while measuring
			ws[i] = w
			pollWG.Add(1)
			go func() {
				defer pollWG.Done()
				errs, err := w.poll(r.host, watchPath, startIdx+1, maxPolls, deadline)
				if errs > 0 {
					pollErrs.Add(int64(errs))
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}()
		}()
		if dialErr.Load() != nil {
			break
		}
	}
	dialWG.Wait()
	if p := dialErr.Load(); p != nil {
		return *res, fmt.Errorf("bench: open long-poll watcher: %w", *p)
	}
	if err := r.awaitRegistered(ctx, start, "long-poll"); err != nil {
		return *res, err
	}

	acks, _, err := r.write(ctx, func(int) string { return prefix + "/k" })
	if err != nil {
		return *res, err
	}
	expected := int64(len(acks)) * int64(cfg.Watchers)
	r.settle(ctx, expected, func() int64 {
		var n int64
		for _, w := range ws {
			n += int64(len(w.deliveries()))
		}
		return n
	})
	// Stop the watchers before reading their errors: the ones still
	// waiting for an event that will not come end cleanly.
	for _, w := range ws {
		w.stop()
	}
	pollWG.Wait()
	res.Errors += pollErrs.Load()
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	r.summarise(acks, expected, len(ws), func(i int) []delivery { return ws[i].deliveries() }, func(int, uint64) bool { return true })
	return *res, nil
}

// lpEvent is the part of a long-poll answer the loop needs.
type lpEvent struct {
	Action string `json:"action"`
	Node   *struct {
		ModifiedIndex uint64 `json:"modifiedIndex"`
	} `json:"node"`
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
	Cause     string `json:"cause"`
}

// poll runs the v2 client's watch loop from waitIndex next until the run
// stops it, at most maxPolls requests. It returns how many errors it met
// (each broken connection it redialled, and a final failure) and the first.
func (w *lpWatcher) poll(host, target string, next uint64, maxPolls int, deadline time.Time) (int, error) {
	var (
		errs     int
		firstErr error
		redials  int
	)
	fail := func(err error) {
		errs++
		if firstErr == nil {
			firstErr = err
		}
	}
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	br := bufio.NewReaderSize(c, 4096)
	req := make([]byte, 0, 256)
	redial := func() bool {
		_ = c.Close()
		nc, err := net.DialTimeout("tcp", host, 10*time.Second)
		if err != nil {
			fail(err)
			return false
		}
		_ = nc.SetDeadline(deadline)
		if !w.swap(nc) {
			return false
		}
		c = nc
		br.Reset(c)
		return true
	}
	for range maxPolls {
		req = append(req[:0], "GET "...)
		req = append(req, target...)
		req = strconv.AppendUint(req, next, 10)
		req = append(req, " HTTP/1.1\r\nHost: "...)
		req = append(req, host...)
		req = append(req, "\r\n\r\n"...)
		idx, closed, err := pollOnce(c, br, req)
		if err != nil {
			if w.isStopped() {
				return errs, firstErr
			}
			fail(err)
			var pe *pollError
			if errors.As(err, &pe) || redials >= lpRedials || time.Now().After(deadline) {
				return errs, firstErr
			}
			// The connection broke: reconnect and poll again from the
			// same index, as the v2 client retries.
			redials++
			if !redial() {
				return errs, firstErr
			}
			continue
		}
		if idx < next {
			fail(fmt.Errorf("waitIndex %d answered with index %d", next, idx))
			return errs, firstErr
		}
		now := time.Now()
		w.mu.Lock()
		w.got = append(w.got, delivery{idx, now})
		w.mu.Unlock()
		next = idx + 1
		if closed && !redial() { // the member ended the connection: not an error
			return errs, firstErr
		}
	}
	return errs, firstErr
}

// pollError is an answer that is not an event: the loop cannot go on.
type pollError struct{ msg string }

func (e *pollError) Error() string { return e.msg }

// pollOnce sends one long-poll request on c and returns the modifiedIndex
// of the event it answers with, and whether the member closes the
// connection after the answer.
func pollOnce(c net.Conn, br *bufio.Reader, req []byte) (uint64, bool, error) {
	if _, err := c.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	var ev lpEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return 0, false, &pollError{fmt.Sprintf("watch answer %s: %v: %.200q", resp.Status, err, body)}
	}
	if resp.StatusCode != http.StatusOK || ev.ErrorCode != 0 || ev.Node == nil {
		return 0, false, &pollError{fmt.Sprintf("watch answer %s: %.200q", resp.Status, body)}
	}
	return ev.Node.ModifiedIndex, resp.Close, nil
}

// swap installs a redialled connection; false (and c closed) when the run
// stopped meanwhile.
func (w *lpWatcher) swap(c net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		_ = c.Close()
		return false
	}
	w.conn = c
	return true
}

// stop ends the watcher: its connection closes and it does not redial.
func (w *lpWatcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		_ = w.conn.Close()
	}
}

func (w *lpWatcher) isStopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped
}

func (w *lpWatcher) deliveries() []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}
