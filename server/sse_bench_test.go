package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"cairn/bench"

	"cairn/internal/testbin"
)

// SSE fan-out benchmarks: 10,000 Server-Sent Events watchers (override with
// CAIRN_SSE_WATCHERS) on one member, a writer at 10 writes/s, 100 writes
// (whatever b.N is: run with -benchtime 1x). The member runs as its own process (the
// real binary, on disk in CAIRN_BENCH_DIR), so that the memory per watcher
// read from its /metrics is the member's alone, and so that the two ends of
// 10,000 connections do not share one open-file limit. The load generator
// shares the machine's cores with it.

func cairnBinary(b *testing.B) string {
	bin, err := testbin.Cairn("..")
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

func benchFreePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// startMemberProcess runs `cairn serve` on loopback and returns its client URL.
func startMemberProcess(b *testing.B, extra ...string) string {
	dir, err := os.MkdirTemp(os.Getenv("CAIRN_BENCH_DIR"), "cairn-sse")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	client := "http://127.0.0.1:" + benchFreePort(b)
	peer := "http://127.0.0.1:" + benchFreePort(b)
	args := append([]string{"serve", "--name", "bench", "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--log-level", "warn"}, extra...)
	cmd := exec.Command(cairnBinary(b), args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(client + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), `"health":"true"`) {
				return client
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("member not healthy within 20 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func benchSSE(b *testing.B, workload string) {
	watchers := 10000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_SSE_WATCHERS")); err == nil && v > 0 {
		watchers = v
	}
	need := uint64(watchers + 1024)
	if lim, err := bench.RaiseOpenFiles(need); lim < need {
		msg := fmt.Sprintf("SKIPPING %s: %d watchers need %d open files, the limit is %d (%v)", b.Name(), watchers, need, lim, err)
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		b.Skip(msg)
	}
	ep := startMemberProcess(b)
	b.ResetTimer()
	res, err := bench.RunSSE(context.Background(), bench.SSEConfig{
		Endpoint: ep, Workload: workload, Watchers: watchers, Rate: 10, Writes: 100,
		Log: func(f string, a ...any) { b.Logf(f, a...) },
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.Log(res)
	if res.Missing != 0 || res.Errors != 0 {
		b.Fatalf("%d deliveries missing, %d errors", res.Missing, res.Errors)
	}
	reportWatchMetrics(b, res)
}

// reportWatchMetrics reports a watch run's latencies, rate and memory.
func reportWatchMetrics(b *testing.B, res bench.WatchResult) {
	b.ReportMetric(float64(res.ToAllP50.Microseconds()), "ack→all-p50-µs")
	b.ReportMetric(float64(res.ToAllP99.Microseconds()), "ack→all-p99-µs")
	b.ReportMetric(res.DeliveriesPerSec, "events/s")
	b.ReportMetric(res.RSSPerWatcher/1024, "KiB-rss/watcher")
	b.ReportMetric(res.HeapStackPerWatcher/1024, "KiB-heap+stack/watcher")
}

// BenchmarkSSE10kShared: every watcher on one prefix; each write reaches all.
func BenchmarkSSE10kShared(b *testing.B) { benchSSE(b, bench.WorkloadSSEShared) }

// BenchmarkSSE10kDistinct: each watcher on its own key; each write reaches one.
func BenchmarkSSE10kDistinct(b *testing.B) { benchSSE(b, bench.WorkloadSSEDistinct) }

// BenchmarkLongPoll1k: 1,000 v2 long-poll watchers (override with
// CAIRN_LONGPOLL_WATCHERS) on one prefix, each on its own keep-alive
// connection re-watching from modifiedIndex+1 after every event, a writer at
// 10 writes/s, 100 writes (run with -benchtime 1x); the member is its own
// process, as above.
func BenchmarkLongPoll1k(b *testing.B) {
	watchers := 1000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_LONGPOLL_WATCHERS")); err == nil && v > 0 {
		watchers = v
	}
	need := uint64(watchers + 1024)
	if lim, err := bench.RaiseOpenFiles(need); lim < need {
		msg := fmt.Sprintf("SKIPPING %s: %d watchers need %d open files, the limit is %d (%v)", b.Name(), watchers, need, lim, err)
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		b.Skip(msg)
	}
	ep := startMemberProcess(b)
	b.ResetTimer()
	res, err := bench.RunLongPoll(context.Background(), bench.WatchConfig{
		Endpoint: ep, Watchers: watchers, Rate: 10, Writes: 100,
		Log: func(f string, a ...any) { b.Logf(f, a...) },
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.Log(res)
	if res.Missing != 0 || res.Errors != 0 {
		b.Fatalf("%d deliveries missing, %d errors (first: %v)", res.Missing, res.Errors, res.FirstError)
	}
	reportWatchMetrics(b, res)
	b.ReportMetric(float64(res.ToAllMax.Microseconds()), "ack→all-max-µs")
	b.ReportMetric(float64(res.ServerCPUPerDelivery.Nanoseconds())/1e3, "server-cpu-µs/delivery")
}
