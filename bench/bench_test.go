package bench_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

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
	for _, wl := range []string{bench.WorkloadPut, bench.WorkloadGet, bench.WorkloadQGet, bench.WorkloadMixed} {
		res, err := bench.Run(context.Background(), bench.Config{Endpoints: s.ClientURLs(), Workload: wl, Clients: 4, Requests: 200, KeySpace: 50})
		if err != nil {
			t.Fatalf("%s: %v", wl, err)
		}
		if res.Ops != 200 || res.Errors != 0 || res.P50 <= 0 || res.P99 < res.P50 || res.OpsPerSec() <= 0 {
			t.Fatalf("%s: %+v", wl, res)
		}
	}
	if _, err := bench.Run(context.Background(), bench.Config{Endpoints: s.ClientURLs(), Workload: "nope"}); err == nil {
		t.Fatal("unknown workload accepted")
	}
}
