package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"cairn/api"
	"cairn/storage"
)

func TestSingleMemberIsLeaderAfterStart(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	st := m.node.Status()
	if st.Role != "StateLeader" || st.Leader != 1 || st.ID != 1 || st.Term == 0 {
		t.Fatalf("status right after Start: %+v", st)
	}
	if st.LeaderSince.IsZero() {
		t.Fatal("LeaderSince not set")
	}
	if st.Applied != st.Commit {
		t.Fatalf("applied %d != commit %d after Start", st.Applied, st.Commit)
	}
	if got := m.metric("cairn_server_has_leader"); got != 1 {
		t.Fatalf("has_leader = %v", got)
	}
}

func TestProposeReturnsEventAndAPIError(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	ctx := ctxTimeout(t, 5*time.Second)

	ev, err := m.node.Propose(ctx, storage.Cmd{Op: storage.OpCreate, Path: "/a", Value: "1"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if ev.Action != api.ActionCreate || ev.Node.Key != "/a" || ev.Node.Value != "1" {
		t.Fatalf("create event: %+v %+v", ev, ev.Node)
	}
	st := m.node.Status()
	if st.Applied < ev.Node.ModifiedIndex || st.Applied == 0 {
		t.Fatalf("status applied %d not published before the answer (event index %d)", st.Applied, ev.Node.ModifiedIndex)
	}

	_, err = m.node.Propose(ctx, storage.Cmd{Op: storage.OpCreate, Path: "/a", Value: "2"})
	var aerr *api.Error
	if !errors.As(err, &aerr) || aerr.Code != api.EcodeNodeExist {
		t.Fatalf("second create: got %v, want error 105", err)
	}
	m.mustGet("/a", "1")
	if m.metric("cairn_server_proposals_failed_total") != 0 {
		t.Fatal("an API error was counted as a failed proposal")
	}
	if got := m.metric("cairn_server_proposals_committed_total"); got != 2 {
		t.Fatalf("proposals committed = %v, want 2", got)
	}
}

func TestProposeExpire(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	ctx := ctxTimeout(t, 5*time.Second)
	exp := time.Now().Add(time.Second).UnixNano()
	if _, err := m.node.Propose(ctx, storage.Cmd{Op: storage.OpSet, Path: "/ttl", Value: "x", Expiration: exp}); err != nil {
		t.Fatal(err)
	}
	evs, err := m.node.ProposeExpire(ctx, exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != api.ActionExpire || evs[0].Node.Key != "/ttl" {
		t.Fatalf("expire events: %+v", evs)
	}
	if _, aerr := m.tree.Get("/ttl", false, false); aerr == nil || aerr.Code != api.EcodeKeyNotFound {
		t.Fatalf("expired key still there: %v", aerr)
	}
}

// TestConcurrentProposalsGroupCommit: 64 writers, every acknowledged write
// is applied, the applied index never goes backwards, and writers share
// fsyncs.
func TestConcurrentProposalsGroupCommit(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	const writers, perWriter = 64, 40
	syncsBefore := m.metric("cairn_disk_wal_fsync_duration_seconds")
	ctx := ctxTimeout(t, 30*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	indexes := make(chan uint64, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("/w%d/k%d", w, i)
				ev, err := m.node.Propose(ctx, set(key, key))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", key, err)
					return
				}
				if ev.Node.Key != key {
					errs <- fmt.Errorf("%s: event for %s", key, ev.Node.Key)
					return
				}
				// Acknowledged means applied: a local read sees it now.
				if got, aerr := m.tree.Get(key, false, false); aerr != nil || got.Node.Value != key {
					errs <- fmt.Errorf("%s acknowledged but not readable: %v", key, aerr)
					return
				}
				indexes <- ev.Node.ModifiedIndex
			}
		})
	}
	wg.Wait()
	close(errs)
	close(indexes)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool)
	for idx := range indexes {
		if seen[idx] {
			t.Fatalf("two writes got modifiedIndex %d", idx)
		}
		seen[idx] = true
	}
	m.obs.check(t)
	total := writers * perWriter
	syncs := m.metric("cairn_disk_wal_fsync_duration_seconds") - syncsBefore
	t.Logf("%d proposals, %v synced Readys", total, syncs)
	if syncs >= float64(total) {
		t.Fatalf("no group commit: %v syncs for %d proposals", syncs, total)
	}
	if got := m.metric("cairn_server_proposals_committed_total"); got != float64(total) {
		t.Fatalf("committed metric %v, want %d", got, total)
	}
	if st := m.node.Status(); st.Applied != st.Commit {
		t.Fatalf("status after the burst: %+v", st)
	}
}

func TestReadBarrier(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := m.node.Propose(ctx, set("/r", "1")); err != nil {
		t.Fatal(err)
	}
	if err := m.node.ReadBarrier(ctx); err != nil {
		t.Fatalf("read barrier: %v", err)
	}
	const readers, rounds = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Go(func() {
			for range rounds {
				if err := m.node.ReadBarrier(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	issued := m.metric("cairn_server_read_indexes_total")
	t.Logf("%d read barriers, %v ReadIndex requests", readers*rounds+1, issued)
	if issued > readers*rounds+1 {
		t.Fatalf("more ReadIndex requests (%v) than barriers", issued)
	}
}

// TestNoLeaderTimeoutCancelStop: a member of a three-member cluster with no
// network never gets a leader. Proposals and reads wait; a deadline gives
// ErrTimeout, a cancel ErrCanceled, Stop ErrStopped.
func TestNoLeaderTimeoutCancelStop(t *testing.T) {
	m := openMember(t, vfs.NewMem(), Config{ID: 1, Peers: []uint64{1, 2, 3}, TickInterval: time.Millisecond})
	stopped := false
	defer func() {
		if !stopped {
			m.close()
		}
	}()
	if st := m.node.Status(); st.Leader != 0 {
		t.Fatalf("leader without network: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := m.node.Propose(ctx, set("/x", "1")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("propose without leader: got %v, want ErrTimeout", err)
	}
	if err := m.node.ReadBarrier(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("read without leader: got %v, want ErrTimeout", err)
	}
	if ErrTimeout.Error() != "etcdserver: request timed out" {
		t.Fatalf("timeout text %q", ErrTimeout)
	}

	cctx, ccancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(5 * time.Millisecond)
		ccancel()
	}()
	if _, err := m.node.Propose(cctx, set("/x", "1")); !errors.Is(err, ErrCanceled) {
		t.Fatalf("cancelled propose: got %v, want ErrCanceled", err)
	}

	// Pending proposals and reads fail with ErrStopped on Stop.
	const pending = 16
	errs := make(chan error, 2*pending)
	for i := range pending {
		go func() {
			_, err := m.node.Propose(context.Background(), set(fmt.Sprintf("/p%d", i), "v"))
			errs <- err
		}()
		go func() { errs <- m.node.ReadBarrier(context.Background()) }()
	}
	waitFor(t, 5*time.Second, "pending proposals registered", func() bool { return m.node.waits.len() >= pending })
	m.close()
	stopped = true
	for range 2 * pending {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrStopped) {
				t.Fatalf("pending call after Stop: got %v, want ErrStopped", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("pending call did not return after Stop")
		}
	}
	if _, err := m.node.Propose(context.Background(), set("/late", "v")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose after Stop: %v", err)
	}
	if m.node.waits.len() != 0 {
		t.Fatalf("%d waiters leaked", m.node.waits.len())
	}
	m.node.Stop() // idempotent
}

// TestCrashRestart: writers run while the disk "crashes" (only synced data
// survives); every write acknowledged before the crash is present after a
// restart from the crashed disk.
func TestCrashRestart(t *testing.T) {
	fs := vfs.NewCrashableMem()
	m := startSingle(t, fs, Config{})
	ctx := ctxTimeout(t, 30*time.Second)

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("/c%d/%d", w, i)
				if _, err := m.node.Propose(ctx, set(key, key)); err != nil {
					if errors.Is(err, ErrStopped) {
						return
					}
					t.Errorf("%s: %v", key, err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	waitFor(t, 10*time.Second, "some acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 500
	})
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	close(stop)
	wg.Wait()
	m.close()

	r := openMember(t, crashed, Config{})
	defer r.close()
	if st := r.node.Status(); st.Role != "StateLeader" {
		t.Fatalf("restarted single member is not leader: %+v", st)
	}
	for _, key := range before {
		r.mustGet(key, key)
	}
	t.Logf("%d writes acknowledged before the crash survived; %d in total", len(before), len(acked))
	if _, err := r.node.Propose(ctx, set("/after", "1")); err != nil {
		t.Fatalf("propose after restart: %v", err)
	}
	r.mustGet("/after", "1")
}

// TestCompactionRestart: a small SnapshotCount compacts the log while
// writing; a clean restart and then a crash restart both come back with
// every write, from the compacted log.
func TestCompactionRestart(t *testing.T) {
	fs := vfs.NewCrashableMem()
	cfg := Config{SnapshotCount: 20, SnapshotCatchUpEntries: 5}
	m := startSingle(t, fs, cfg)
	ctx := ctxTimeout(t, 30*time.Second)
	const n = 150
	for i := range n {
		if _, err := m.node.Propose(ctx, set(fmt.Sprintf("/k%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.metric("cairn_server_log_compactions_total"); got < 5 {
		t.Fatalf("%v compactions for %d entries with SnapshotCount 20", got, n)
	}
	applied := m.node.Status().Applied
	m.close()

	eng, err := storage.Open("data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := eng.LoadRaftLog()
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	snap := rl.Snapshot.GetIndex()
	if snap == 0 || snap+5+20 < applied || len(rl.Entries) == 0 || rl.Entries[0].GetIndex() != snap+1 {
		t.Fatalf("compacted log: snapshot %d, %d entries from %d, applied %d",
			snap, len(rl.Entries), rl.Entries[0].GetIndex(), applied)
	}
	t.Logf("applied %d, log compacted to %d, %d entries kept", applied, snap, len(rl.Entries))

	cfg.Peers = nil
	r := openMember(t, fs, cfg)
	for i := range n {
		r.mustGet(fmt.Sprintf("/k%d", i), "v")
	}
	for i := range 50 {
		if _, err := r.node.Propose(ctx, set(fmt.Sprintf("/more%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	r.close()

	c := openMember(t, crashed, cfg)
	defer c.close()
	for i := range n {
		c.mustGet(fmt.Sprintf("/k%d", i), "v")
	}
	for i := range 50 {
		c.mustGet(fmt.Sprintf("/more%d", i), "v")
	}
}

// TestStorageFailureStopsMember: a storage error from apply stops the loop;
// Err reports it and calls fail with ErrStopped.
func TestStorageFailureStopsMember(t *testing.T) {
	fs := vfs.NewMem()
	eng, err := storage.Open("data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	tree, err := storage.OpenTree(eng)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{ID: 1, Peers: []uint64{1}, Engine: eng, SM: &failingSM{Tree: tree, failPath: "/boom"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := n.Propose(ctx, set("/ok", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Propose(ctx, set("/boom", "1")); !errors.Is(err, ErrStopped) {
		t.Fatalf("failing apply: got %v, want ErrStopped", err)
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not stop")
	}
	if !errors.Is(n.Err(), errInjected) {
		t.Fatalf("Err() = %v", n.Err())
	}
	n.Stop()
}

func TestLeaderChangedNotifier(t *testing.T) {
	net := newChanNet()
	ms := startCluster(t, net, 3)
	defer closeAll(ms)
	ch := ms[0].node.LeaderChanged()
	lead := waitLeader(t, ms)
	select {
	case <-ch:
	default:
		// The election may have happened before LeaderChanged was called;
		// a leader must be known then.
		if ms[0].node.Status().Leader == 0 {
			t.Fatal("no leader change signalled")
		}
	}
	ch = ms[0].node.LeaderChanged()
	net.isolate(lead.id, true)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("leader loss not signalled")
	}
	net.isolate(lead.id, false)
}
