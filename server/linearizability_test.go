package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cairn/client"
	"cairn/internal/lincheck"
)

// TestLinearizability's budget: `make test` runs one short round, `make
// soak` many long ones (go test ./server -run TestLinearizability
// -lin.rounds=N -lin.duration=D).
var (
	linRounds   = flag.Int("lin.rounds", 1, "TestLinearizability: rounds, each on a fresh cluster (seeds seed, seed+1, …)")
	linDuration = flag.Duration("lin.duration", 4*time.Second, "TestLinearizability: load per round")
	linOps      = flag.Int("lin.ops", 6000, "TestLinearizability: at most this many operations per round")
	linSeed     = flag.Uint64("lin.seed", 0, "TestLinearizability: seed of the first round (0: from the clock)")
	linClients  = flag.Int("lin.clients", 6, "TestLinearizability: concurrent clients")
	linCheck    = flag.Duration("lin.check", 2*time.Minute, "TestLinearizability: porcupine's time limit per round")
)

// linMember is one member of a linCluster. Its URLs and data directory
// stay the same across restarts.
type linMember struct {
	name string
	id   uint64
	cfg  Config
	url  string         // client URL
	kv   *client.Client // talks to url only

	mu  sync.Mutex
	srv *Server // nil while stopped
}

func (m *linMember) server() *Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.srv
}

// linCluster is three members on disk over loopback HTTP, whose links
// the test can cut (Config.PeerFilter) and whose members it can stop and
// start again on the same data directory.
type linCluster struct {
	t       testing.TB
	members []*linMember

	mu  sync.Mutex
	cut map[[2]uint64]bool // directed links that drop traffic
}

func newLinCluster(t testing.TB, n int, requestTimeout time.Duration, inMemory bool) *linCluster {
	t.Helper()
	c := &linCluster{t: t, cut: map[[2]uint64]bool{}}
	peers := make([]string, n)
	var parts []string
	for i := range peers {
		peers[i] = freeLoopbackURL(t)
		parts = append(parts, fmt.Sprintf("l%d=%s", i+1, peers[i]))
	}
	const token = "lincheck"
	for i := range n {
		url := freeLoopbackURL(t)
		m := &linMember{
			name: fmt.Sprintf("l%d", i+1),
			id:   MemberID([]string{peers[i]}, token),
			url:  url,
			kv:   client.New([]string{url}, 8),
		}
		m.cfg = Config{
			Name: m.name, DataDir: t.TempDir(), InMemory: inMemory,
			ListenClientURLs: []string{url}, AdvertiseClientURLs: []string{url},
			ListenPeerURLs: []string{peers[i]}, InitialAdvertisePeerURLs: []string{peers[i]},
			InitialCluster: strings.Join(parts, ","), InitialClusterToken: token,
			HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			// Small, so that a member that was down often catches up by
			// snapshot, and the leader compacts eagerly in between.
			SnapshotCount:      100,
			LeaderCompactEvery: 15,
			RequestTimeout:     requestTimeout,
			PeerFilter:         c.allow,
			Logger:             slog.New(slog.DiscardHandler),
		}
		c.members = append(c.members, m)
	}
	errs := make(chan error, n)
	for i := range c.members {
		go func() { errs <- c.start(i) }()
	}
	var failed error
	for range c.members {
		if err := <-errs; err != nil {
			failed = err
		}
	}
	t.Cleanup(func() {
		for i, m := range c.members {
			c.stop(i)
			m.kv.Close()
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	return c
}

func (c *linCluster) allow(from, to uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.cut[[2]uint64{from, to}]
}

// isolate cuts member i off from every other member; oneWay cuts only
// what i sends (it still hears the others).
func (c *linCluster) isolate(i int, oneWay bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for j, o := range c.members {
		if j == i {
			continue
		}
		c.cut[[2]uint64{c.members[i].id, o.id}] = true
		if !oneWay {
			c.cut[[2]uint64{o.id, c.members[i].id}] = true
		}
	}
}

// scatter cuts every link: no side has a quorum.
func (c *linCluster) scatter() {
	for i := range c.members {
		c.isolate(i, false)
	}
}

func (c *linCluster) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cut)
}

func (c *linCluster) start(i int) error {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		return nil
	}
	// The member's ports were free while it was down: a short-lived
	// outgoing connection may hold one for a moment.
	var err error
	for try := 0; try < 20; try++ {
		var s *Server
		if s, err = Start(m.cfg); err == nil {
			m.srv = s
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("start %s: %w", m.name, err)
}

func (c *linCluster) stop(i int) {
	m := c.members[i]
	m.mu.Lock()
	s := m.srv
	m.srv = nil
	m.mu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		c.t.Logf("stop %s: %v", m.name, err)
	}
}

// leader is the index of a running member that believes it leads, or -1.
func (c *linCluster) leader() int {
	for i, m := range c.members {
		if s := m.server(); s != nil {
			if st := s.node.Status(); st.Leader == st.ID && st.ID != 0 {
				return i
			}
		}
	}
	return -1
}

func (c *linCluster) waitLeader(d time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := c.leader(); l >= 0 {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %v", d)
	return -1
}

// converge waits until every member runs with the same store index and
// the same exported key space, and fails the test with the figures if
// that does not happen within d.
func (c *linCluster) converge(d time.Duration) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		idx, digests, ok := c.digests()
		if ok {
			same := true
			for _, dg := range digests[1:] {
				same = same && dg == digests[0]
			}
			if same {
				return idx[0]
			}
		}
		last = fmt.Sprintf("store indexes %v, export digests %x", idx, digests)
		if time.Now().After(deadline) {
			c.t.Fatalf("members did not converge within %v: %s", d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// digests returns every member's store index and, when those are all
// equal, a digest of each member's exported key space.
func (c *linCluster) digests() ([]uint64, [][32]byte, bool) {
	var idx []uint64
	var trees []*Server
	for _, m := range c.members {
		s := m.server()
		if s == nil {
			return idx, nil, false
		}
		idx = append(idx, s.tree.StoreIndex())
		trees = append(trees, s)
	}
	for _, i := range idx[1:] {
		if i != idx[0] {
			return idx, nil, false
		}
	}
	var out [][32]byte
	for _, s := range trees {
		var b bytes.Buffer
		if err := s.tree.Export(&b); err != nil {
			c.t.Fatal(err)
		}
		out = append(out, sha256.Sum256(b.Bytes()))
	}
	return idx, out, true
}

// TestLinearizability runs concurrent clients over HTTP against three
// members on disk, each operation on a random member (writes on followers
// are forwarded; reads use quorum=true), while a nemesis cuts members off
// (both ways or one way), splits the cluster completely, and stops and
// restarts members. The history of single-key get/set/CAS/create/delete
// is checked with porcupine (internal/lincheck). After healing, every
// member must hold every acknowledged write of the write-once ledger keys
// and all members the same key space at the same store index.
//
// The nemesis and the workload draw from one seed, printed at the start;
// the interleaving itself is real concurrency, so a seed replays the
// schedule, not the history. A violation writes porcupine's visualisation
// (see CAIRN_ARTIFACTS in internal/lincheck).
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster under load for seconds")
	}
	seed := *linSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for r := range max(*linRounds, 1) {
		s := seed + uint64(r)
		t.Run(fmt.Sprint("seed=", s), func(t *testing.T) {
			t.Logf("seed %d (replay the schedule with -lin.seed=%d)", s, s)
			runLinearizability(t, s)
		})
		if t.Failed() {
			return
		}
	}
}

// linKeys are few, so that clients contend on them.
var linKeys = []string{"/lin/a", "/lin/b", "/lin/c"}

func runLinearizability(t *testing.T, seed uint64) {
	c := newLinCluster(t, 3, time.Second, false)
	c.waitLeader(10 * time.Second)
	h := lincheck.NewHistory()
	checked := false
	defer func() {
		// A run that failed before its check still leaves its history
		// and verdict behind.
		if !checked && t.Failed() {
			lincheck.Check(t, h.Operations(), *linCheck)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), *linDuration)
	defer cancel()
	var budget atomic.Int64
	budget.Store(int64(*linOps))

	var (
		ackMu  sync.Mutex
		acked  = map[string]lincheck.Output{} // ledger key → its acknowledged write
		ledger = map[string]string{}          // ledger key → value
	)
	var wg sync.WaitGroup
	for w := range max(*linClients, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
			lc := h.NewClient()
			seen := map[string]string{} // the last value this client saw per key
			for seq := 0; ctx.Err() == nil && budget.Add(-1) >= 0; seq++ {
				m := c.members[rng.IntN(len(c.members))]
				in := linOperation(rng, w, seq, seen)
				octx, ocancel := context.WithTimeout(context.Background(), 3*time.Second)
				out, outcome := lc.Do(octx, m.kv, in, m.name)
				ocancel()
				switch {
				case outcome == lincheck.Dropped:
					time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
				case outcome == lincheck.Recorded && out.Err == 0:
					if in.Kind == lincheck.Get {
						seen[in.Key] = out.Value
					} else if in.Kind != lincheck.Delete {
						seen[in.Key] = in.Value
					}
					if strings.HasPrefix(in.Key, "/ledger/") {
						ackMu.Lock()
						acked[in.Key], ledger[in.Key] = out, in.Value
						ackMu.Unlock()
					}
				}
			}
		}()
	}

	nemesis := runNemesis(ctx, t, c, rand.New(rand.NewPCG(seed, 0)))
	wg.Wait()
	cancel()
	events := <-nemesis
	c.heal()
	for i := range c.members {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	st := h.Stats()
	t.Logf("load: %s; nemesis: %s", st, strings.Join(events, ", "))
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}

	// Healed: every member ends with the same key space at the same store
	// index, and holds every acknowledged ledger write.
	c.waitLeader(10 * time.Second)
	idx := c.converge(30 * time.Second)
	for _, m := range c.members {
		s := m.server()
		for key, out := range acked {
			ev, aerr := s.tree.Get(key, false, false)
			if aerr != nil || ev.Node.Value != ledger[key] || ev.Node.ModifiedIndex != out.Index {
				t.Errorf("%s lacks acknowledged write %s=%q @%d: %v %v", m.name, key, ledger[key], out.Index, ev, aerr)
			}
		}
	}
	// A final quorum read of every key on every member, recorded: the
	// converged state must fit the history too.
	final := h.NewClient()
	for _, m := range c.members {
		for _, key := range linKeys {
			in := lincheck.Input{Kind: lincheck.Get, Key: key}
			octx, ocancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, o := final.Do(octx, m.kv, in, m.name+" (after healing)"); o != lincheck.Recorded {
				t.Errorf("final read of %s on %s failed", key, m.name)
			}
			ocancel()
		}
	}
	t.Logf("converged at store index %d; %d ledger writes acknowledged, on every member", idx, len(acked))
	checked = true
	lincheck.Check(t, h.Operations(), *linCheck)
}

// linOperation picks the next operation of client w: mostly the shared
// keys, now and then a write-once ledger key.
func linOperation(rng *rand.Rand, w, seq int, seen map[string]string) lincheck.Input {
	value := fmt.Sprintf("w%d-%d", w, seq)
	if rng.IntN(10) == 0 {
		return lincheck.Input{Kind: lincheck.Create, Key: fmt.Sprintf("/ledger/w%d-%d", w, seq), Value: value}
	}
	key := linKeys[rng.IntN(len(linKeys))]
	switch p := rng.IntN(100); {
	case p < 40:
		return lincheck.Input{Kind: lincheck.Get, Key: key}
	case p < 55:
		return lincheck.Input{Kind: lincheck.Set, Key: key, Value: value}
	case p < 75:
		prev, ok := seen[key]
		if !ok || rng.IntN(5) == 0 {
			prev = fmt.Sprintf("w%d-%d", rng.IntN(6), rng.IntN(seq+1))
		}
		return lincheck.Input{Kind: lincheck.CAS, Key: key, PrevValue: prev, Value: value}
	case p < 87:
		return lincheck.Input{Kind: lincheck.Create, Key: key, Value: value}
	default:
		return lincheck.Input{Kind: lincheck.Delete, Key: key}
	}
}

// runNemesis injects one fault at a time until ctx is done, and sends the
// list of what it did when it stops (after undoing the last fault).
func runNemesis(ctx context.Context, t *testing.T, c *linCluster, rng *rand.Rand) <-chan []string {
	done := make(chan []string, 1)
	go func() {
		var events []string
		sleep := func(d time.Duration) {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		pick := func() int {
			if rng.IntN(2) == 0 {
				if l := c.leader(); l >= 0 {
					return l
				}
			}
			return rng.IntN(len(c.members))
		}
		sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		for n := 0; ctx.Err() == nil && n < 1000; n++ {
			hold := time.Duration(200+rng.IntN(1000)) * time.Millisecond
			switch a := rng.IntN(10); {
			case a < 4:
				i := pick()
				c.isolate(i, false)
				events = append(events, "isolate "+c.members[i].name)
				sleep(hold)
				c.heal()
			case a < 5:
				i := pick()
				c.isolate(i, true)
				events = append(events, "mute "+c.members[i].name)
				sleep(hold)
				c.heal()
			case a < 6:
				c.scatter()
				events = append(events, "scatter")
				sleep(hold / 2)
				c.heal()
			default:
				i := pick()
				c.stop(i)
				events = append(events, "restart "+c.members[i].name)
				sleep(hold)
				if err := c.start(i); err != nil {
					t.Errorf("nemesis: %v", err)
				}
			}
			sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
		done <- events
	}()
	return done
}
