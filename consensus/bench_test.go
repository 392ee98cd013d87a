package consensus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"cairn/storage"
)

// benchMember starts a single member on a real disk (b.TempDir) so that
// fsync costs what it costs on this machine.
func benchMember(b *testing.B) (*Node, func()) {
	b.Helper()
	eng, err := storage.Open(b.TempDir(), storage.Options{FS: vfs.Default})
	if err != nil {
		b.Fatal(err)
	}
	tree, err := storage.OpenTree(eng)
	if err != nil {
		b.Fatal(err)
	}
	n, err := Start(Config{ID: 1, Peers: []uint64{1}, Engine: eng, SM: tree})
	if err != nil {
		b.Fatal(err)
	}
	return n, func() {
		n.Stop()
		_ = eng.Close()
	}
}

var value256 = strings.Repeat("v", 256)

// BenchmarkProposeOneClient: durable writes from one client, back to back.
// ns/op is the consensus layer's latency per write (one fsync each).
func BenchmarkProposeOneClient(b *testing.B) {
	n, done := benchMember(b)
	defer done()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := n.Propose(ctx, set(fmt.Sprintf("/bench/%d", i%1000), value256)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPropose64Clients: 64 concurrent writers sharing fsyncs.
func BenchmarkPropose64Clients(b *testing.B) {
	n, done := benchMember(b)
	defer done()
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(64 / max(1, testingProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			if _, err := n.Propose(ctx, set(fmt.Sprintf("/bench/%d", i%1000), value256)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReadBarrier64Clients: 64 concurrent quorum reads.
func BenchmarkReadBarrier64Clients(b *testing.B) {
	n, done := benchMember(b)
	defer done()
	ctx := context.Background()
	b.SetParallelism(64 / max(1, testingProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := n.ReadBarrier(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkSteadyWrites64Clients: the disk work of a member under endless
// writes — 64 writers over 10,000 keys of 256 B, the raft log compacted
// every 10,000 entries, the watch history at the serve defaults (100,000
// events) trimmed every 5,000 writes as the server's once-a-second trim
// would at that rate. Reports the Pebble write amplification (WAL +
// flushes + compactions per WAL byte) and the process CPU per write.
// Run with -benchtime 300000x: the history only starts being trimmed
// after 100,000 writes.
func BenchmarkSteadyWrites64Clients(b *testing.B) {
	eng, err := storage.Open(b.TempDir(), storage.Options{FS: vfs.Default})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	tree, err := storage.OpenTree(eng)
	if err != nil {
		b.Fatal(err)
	}
	tree.Events().SetRetention(100_000, time.Hour)
	n, err := Start(Config{ID: 1, Peers: []uint64{1}, Engine: eng, SM: tree})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	// Random letters, as the load generator writes: they compress like real
	// data, not like a run of one byte.
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([]string, 1024)
	for i := range values {
		v := make([]byte, 256)
		for j := range v {
			v[j] = 'a' + byte(rng.IntN(26))
		}
		values[i] = string(v)
	}
	ctx := context.Background()
	var seq atomic.Int64
	cpu0 := processCPU()
	b.SetParallelism(64 / max(1, testingProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			if _, err := n.Propose(ctx, set(fmt.Sprintf("/bench/key-%05d", (i*7919)%10_000), values[i%1024])); err != nil {
				b.Error(err)
				return
			}
			if i%5_000 == 0 {
				if err := tree.Events().Trim(time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.StopTimer()
	st := eng.IOStats()
	b.ReportMetric(st.WriteAmplification(), "write-amp")
	b.ReportMetric(float64(st.WALBytes)/float64(b.N), "wal-B/op")
	b.ReportMetric(float64(st.FlushedBytes)/float64(b.N), "flush-B/op")
	b.ReportMetric(float64(st.CompactedBytes)/float64(b.N), "compact-B/op")
	b.ReportMetric(float64(st.CompactionRead)/float64(b.N), "compact-read-B/op")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time (user + system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
