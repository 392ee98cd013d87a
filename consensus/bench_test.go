package consensus

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

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
