package server_test

import (
	"fmt"
	"strings"
	"testing"

	"cairn/server"
)

// TestStorageMetrics: the database's size and write volumes are on
// /metrics, and writes make the write-ahead log volume grow by at least
// what was written.
func TestStorageMetrics(t *testing.T) {
	m := startMember(t)
	before := m.do(t, rawReq{method: "GET", target: "/metrics"})
	wal0 := server.MetricSample(t, before.body, "cairn_storage_wal_bytes_total")
	value := strings.Repeat("v", 1000)
	for i := range 50 {
		if r := m.do(t, rawReq{method: "PUT", target: fmt.Sprintf("/v2/keys/k%d", i), body: "value=" + value, ctype: "form"}); r.status != 201 {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
	}
	after := m.do(t, rawReq{method: "GET", target: "/metrics"})
	if grew := server.MetricSample(t, after.body, "cairn_storage_wal_bytes_total") - wal0; grew < 50*1000 {
		t.Errorf("WAL bytes grew by %.0f after 50 writes of 1000 B", grew)
	}
	if size := server.MetricSample(t, after.body, "cairn_storage_db_size_bytes"); size <= 0 {
		t.Errorf("db size %.0f", size)
	}
	for _, name := range []string{"cairn_storage_flushed_bytes_total", "cairn_storage_compacted_bytes_total", "cairn_storage_compaction_read_bytes_total"} {
		server.MetricSample(t, after.body, name)
	}
}

// TestPprof: the profiler is off unless --enable-pprof, as in etcd.
func TestPprof(t *testing.T) {
	off := startMember(t)
	if r := off.do(t, rawReq{method: "GET", target: "/debug/pprof/"}); r.status != 404 {
		t.Errorf("pprof without --enable-pprof: %d", r.status)
	}
	on := startMember(t, func(c *server.Config) { c.EnablePprof = true })
	if r := on.do(t, rawReq{method: "GET", target: "/debug/pprof/"}); r.status != 200 || !strings.Contains(r.body, "goroutine") {
		t.Errorf("pprof index: %d %.100q", r.status, r.body)
	}
	if r := on.do(t, rawReq{method: "GET", target: "/debug/pprof/goroutine?debug=1"}); r.status != 200 || !strings.Contains(r.body, "goroutine profile:") {
		t.Errorf("goroutine profile: %d %.100q", r.status, r.body)
	}
}
