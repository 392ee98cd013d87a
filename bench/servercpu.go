package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// cpuMetric is the Prometheus process collector's CPU counter, which etcd
// and Cairn both serve on /metrics.
const cpuMetric = "process_cpu_seconds_total"

// serverCPU sums the CPU seconds the servers behind endpoints have used,
// read from their /metrics; false when any of them does not serve it.
func serverCPU(ctx context.Context, hc *http.Client, endpoints []string) (float64, bool) {
	total := 0.0
	for _, ep := range endpoints {
		s, err := processCPU(ctx, hc, ep)
		if err != nil {
			return 0, false
		}
		total += s
	}
	return total, true
}

// processCPU reads cpuMetric from the /metrics of the server at endpoint.
func processCPU(ctx context.Context, hc *http.Client, endpoint string) (float64, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return 0, err
	}
	metrics := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/metrics"}).String()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metrics, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", metrics, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), cpuMetric+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", metrics, cpuMetric)
}
