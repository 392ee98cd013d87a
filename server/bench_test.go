package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"cairn/bench"
)

// startBenchMember runs an on-disk member for benchmarks. Set
// CAIRN_BENCH_DIR to a directory on the disk to measure (fsync on tmpfs
// means nothing).
func startBenchMember(b *testing.B) *Server {
	b.Helper()
	parent := os.Getenv("CAIRN_BENCH_DIR")
	dir, err := os.MkdirTemp(parent, "cairn-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	loop := []string{"http://127.0.0.1:0"}
	s, err := Start(Config{
		Name: "bench", DataDir: dir,
		ListenClientURLs: loop, AdvertiseClientURLs: loop, ListenPeerURLs: loop, InitialAdvertisePeerURLs: loop,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func benchHTTP(b *testing.B, workload string, clients int) {
	s := startBenchMember(b)
	runBench(b, bench.Config{Endpoints: s.ClientURLs(), Workload: workload, Clients: clients, KeySpace: 1000})
}

// runBench warms up with 2000 requests, then times b.N requests and
// reports ops/s and latency percentiles.
func runBench(b *testing.B, cfg bench.Config) {
	b.Helper()
	ctx := context.Background()
	warm := cfg
	warm.Requests, warm.Duration = 2000, 0
	if _, err := bench.Run(ctx, warm); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cfg.Requests = b.N
	start := time.Now()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if res.Errors > 0 {
		b.Fatalf("%d requests failed: %v", res.Errors, res.FirstError)
	}
	b.ReportMetric(float64(res.Ops)/time.Since(start).Seconds(), "ops/s")
	b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
}

// BenchmarkPut1 is durable PUTs from one client over HTTP (one fsync each).
func BenchmarkPut1(b *testing.B) { benchHTTP(b, bench.WorkloadPut, 1) }

// BenchmarkPut64 is durable PUTs from 64 clients (group commit).
func BenchmarkPut64(b *testing.B) { benchHTTP(b, bench.WorkloadPut, 64) }

// BenchmarkGet64 is local GETs from 64 clients.
func BenchmarkGet64(b *testing.B) { benchHTTP(b, bench.WorkloadGet, 64) }

// BenchmarkQuorumGet64 is linearizable GETs (ReadIndex) from 64 clients.
func BenchmarkQuorumGet64(b *testing.B) { benchHTTP(b, bench.WorkloadQGet, 64) }
