package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cairn/bench"
	"cairn/server"
)

func TestRunEveryWorkload(t *testing.T) {
	loop := []string{"http://127.0.0.1:0"}
	s, err := server.Start(server.Config{
		Name: "bench-test", InMemory: true,
		ListenClientURLs: loop, AdvertiseClientURLs: loop, ListenPeerURLs: loop, InitialAdvertisePeerURLs: loop,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	for _, hc := range []string{bench.ClientWire, bench.ClientStd} {
		for _, wl := range []string{bench.WorkloadPut, bench.WorkloadGet, bench.WorkloadQGet, bench.WorkloadMixed} {
			res, err := bench.Run(context.Background(), bench.Config{Endpoints: s.ClientURLs(), Workload: wl, Clients: 4, Requests: 200, KeySpace: 50, Client: hc})
			if err != nil {
				t.Fatalf("%s %s: %v", hc, wl, err)
			}
			if res.Ops != 200 || res.Errors != 0 || res.P50 <= 0 || res.P99 < res.P50 || res.OpsPerSec() <= 0 {
				t.Fatalf("%s %s: %+v", hc, wl, res)
			}
			// The member serves process_cpu_seconds_total (here the whole
			// test process's, load included).
			if !res.ServerCPUKnown || !strings.Contains(res.String(), "server-cpu/op=") {
				t.Fatalf("%s %s: no server CPU: %s", hc, wl, res)
			}
		}
	}
	// The endpoint's path is kept: under /nowhere every request is a 404,
	// so the preload fails.
	for _, hc := range []string{bench.ClientWire, bench.ClientStd} {
		res, err := bench.Run(context.Background(), bench.Config{Endpoints: []string{s.ClientURLs()[0] + "/nowhere"}, Workload: bench.WorkloadGet, Clients: 1, Requests: 1, KeySpace: 1, Client: hc})
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("%s: a run under a wrong path: %v %+v", hc, err, res)
		}
	}
	if _, err := bench.Run(context.Background(), bench.Config{Endpoints: s.ClientURLs(), Workload: "nope"}); err == nil {
		t.Fatal("unknown workload accepted")
	}
}

// TestLongPollDeliversEveryEvent runs the long-poll workload small: every
// watcher's waitIndex loop must see every write.
func TestLongPollDeliversEveryEvent(t *testing.T) {
	loop := []string{"http://127.0.0.1:0"}
	s, err := server.Start(server.Config{
		Name: "bench-longpoll", InMemory: true,
		ListenClientURLs: loop, AdvertiseClientURLs: loop, ListenPeerURLs: loop, InitialAdvertisePeerURLs: loop,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := bench.RunLongPoll(ctx, bench.WatchConfig{
		Endpoint: s.ClientURLs()[0], Watchers: 20, Rate: 50, Writes: 5, Settle: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Workload != bench.WorkloadLongPoll || res.Watchers != 20 || res.Writes != 5 {
		t.Fatalf("ran %+v", res)
	}
	if res.Missing != 0 || res.Errors != 0 || res.Deliveries != 20*5 {
		t.Fatalf("%d deliveries, %d missing, %d errors (first: %v)", res.Deliveries, res.Missing, res.Errors, res.FirstError)
	}
	if res.ToAllP99 < res.ToAllP50 || res.ToAllMax < res.ToAllP99 || res.DeliveriesPerSec <= 0 {
		t.Fatalf("latencies %+v", res)
	}
}

// TestServerCPU: the servers' CPU per operation comes from their
// process_cpu_seconds_total around the run, read from /metrics at the
// endpoint's root whatever its path, and is reported unknown, not zero,
// when a server does not serve it.
func TestServerCPU(t *testing.T) {
	var cpu atomic.Int64 // centiseconds; each PUT costs the fake server 10 ms
	var withMetrics atomic.Bool
	withMetrics.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/metrics" && withMetrics.Load():
			fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n", float64(cpu.Load())/100)
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/ignored/path/v2/keys/"):
			cpu.Add(1)
			w.WriteHeader(http.StatusCreated)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	res, err := bench.Run(context.Background(), bench.Config{Endpoints: []string{srv.URL + "/ignored/path"}, Workload: bench.WorkloadPut, Requests: 50})
	if err != nil || res.Ops != 50 {
		t.Fatalf("%v %+v", err, res)
	}
	if !res.ServerCPUKnown || res.ServerCPU != 500*time.Millisecond || res.ServerCPUPerOp() != 10*time.Millisecond ||
		!strings.Contains(res.String(), "server-cpu/op=10000.0µs") {
		t.Fatalf("server CPU %v (known %v), per op %v: %s", res.ServerCPU, res.ServerCPUKnown, res.ServerCPUPerOp(), res)
	}
	withMetrics.Store(false)
	res, err = bench.Run(context.Background(), bench.Config{Endpoints: []string{srv.URL + "/ignored/path"}, Workload: bench.WorkloadPut, Requests: 5})
	if err != nil || res.ServerCPUKnown || res.ServerCPUPerOp() != 0 || strings.Contains(res.String(), "server-cpu") {
		t.Fatalf("without /metrics: %v %+v", err, res)
	}
}
