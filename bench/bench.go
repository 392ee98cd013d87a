// Package bench is Cairn's closed-loop load generator: N clients, each on
// its own keep-alive HTTP/1.1 connection, issue requests back to back for a
// fixed time and the latencies are summarised. `cairn bench` and the Go
// benchmarks use it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Workload names.
const (
	WorkloadPut     = "put"
	WorkloadGet     = "get"
	WorkloadQGet    = "qget" // GET quorum=true
	WorkloadMixed   = "mixed"
	defaultKeySpace = 10000
)

// Config describes one run.
type Config struct {
	Endpoints []string // client URLs; clients are spread over them
	Workload  string
	Clients   int
	Duration  time.Duration
	// Requests stops the run after this many requests in total (0: run for Duration).
	Requests  int
	ValueSize int // bytes, default 256
	KeySpace  int // distinct keys, default 10000
	Prefix    string
	// Client is ClientWire (default) or ClientStd (net/http's client).
	Client string
}

// Result summarises a run.
type Result struct {
	Workload string
	Clients  int
	Ops      int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
	Max      time.Duration
	// FirstError is the first failure seen, if any.
	FirstError error
	// ServerCPU is the CPU time the servers behind the endpoints used
	// during the run, from their process_cpu_seconds_total (10 ms steps);
	// ServerCPUKnown is false when an endpoint does not serve /metrics.
	ServerCPU      time.Duration
	ServerCPUKnown bool
}

// ServerCPUPerOp is the servers' CPU time per completed operation (0 when
// unknown).
func (r Result) ServerCPUPerOp() time.Duration {
	if !r.ServerCPUKnown || r.Ops == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Ops)
}

// OpsPerSec is the throughput of the run.
func (r Result) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

func (r Result) String() string {
	if r.FirstError != nil {
		return r.summary() + "  first error: " + r.FirstError.Error()
	}
	return r.summary()
}

func (r Result) summary() string {
	s := fmt.Sprintf("%-6s clients=%-4d ops=%-8d errors=%-4d %9.0f ops/s  p50=%-9s p99=%-9s max=%s",
		r.Workload, r.Clients, r.Ops, r.Errors, r.OpsPerSec(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if per := r.ServerCPUPerOp(); per > 0 {
		s += fmt.Sprintf("  server-cpu/op=%.1fµs", float64(per)/1e3)
	}
	return s
}

// Run drives the workload and returns its summary.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 1
	}
	if cfg.ValueSize <= 0 {
		cfg.ValueSize = 256
	}
	if cfg.KeySpace <= 0 {
		cfg.KeySpace = defaultKeySpace
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/bench"
	}
	if cfg.Duration <= 0 && cfg.Requests <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Client == "" {
		cfg.Client = ClientWire
	}
	if len(cfg.Endpoints) == 0 {
		return Result{}, errors.New("bench: no endpoints")
	}
	eps := make([]endpoint, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		var err error
		if eps[i], err = parseEndpoint(cfg.Client, ep); err != nil {
			return Result{}, err
		}
	}
	switch cfg.Workload {
	case WorkloadPut, WorkloadGet, WorkloadQGet, WorkloadMixed:
	default:
		return Result{}, fmt.Errorf("bench: unknown workload %q (put, get, qget, mixed)", cfg.Workload)
	}
	value := strings.Repeat("v", cfg.ValueSize)
	if cfg.Workload != WorkloadPut {
		if err := preload(ctx, cfg, eps[0], value); err != nil {
			return Result{}, err
		}
	}
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		lat       []time.Duration
		errs      int
		firstErr  error
		remaining = int64(cfg.Requests)
	)
	take := func() bool {
		if cfg.Requests <= 0 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if remaining <= 0 {
			return false
		}
		remaining--
		return true
	}
	// The servers' CPU counters around the run (not the preload); the
	// scrapes themselves cost them well under a millisecond.
	metricsClient := &http.Client{Transport: &http.Transport{}}
	defer metricsClient.CloseIdleConnections()
	cpu0, cpuKnown := serverCPU(ctx, metricsClient, cfg.Endpoints)
	start := time.Now()
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			rq := eps[id%len(eps)].open(runCtx)
			defer rq.close()
			rng := rand.New(rand.NewPCG(uint64(id), 42))
			local := make([]time.Duration, 0, 4096)
			localErrs := 0
			for runCtx.Err() == nil && take() {
				t0 := time.Now()
				err := doOne(rq, cfg, rng, value)
				if err != nil {
					if runCtx.Err() != nil {
						break
					}
					localErrs++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, cpuKnown1 := serverCPU(ctx, metricsClient, cfg.Endpoints)
	slices.Sort(lat)
	res := Result{Workload: cfg.Workload, Clients: cfg.Clients, Ops: len(lat), Errors: errs, Elapsed: elapsed, FirstError: firstErr}
	if cpuKnown && cpuKnown1 && cpu1 >= cpu0 {
		res.ServerCPU, res.ServerCPUKnown = time.Duration((cpu1-cpu0)*float64(time.Second)), true
	}
	if len(lat) > 0 {
		res.P50 = lat[len(lat)*50/100]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		res.Max = lat[len(lat)-1]
	}
	return res, nil
}

func doOne(rq requester, cfg Config, rng *rand.Rand, value string) error {
	key := cfg.Prefix + "/k" + strconv.Itoa(rng.IntN(cfg.KeySpace))
	switch cfg.Workload {
	case WorkloadPut:
		return put(rq, key, randomValue(rng, len(value)))
	case WorkloadGet:
		return rq.do(http.MethodGet, "/v2/keys"+key, "", "")
	case WorkloadQGet:
		return rq.do(http.MethodGet, "/v2/keys"+key+"?quorum=true", "", "")
	default: // mixed: 90 % GET, 10 % PUT
		if rng.IntN(10) == 0 {
			return put(rq, key, randomValue(rng, len(value)))
		}
		return rq.do(http.MethodGet, "/v2/keys"+key, "", "")
	}
}

// randomValue returns n random letters: values that compress like real
// data rather than like a run of one byte.
func randomValue(rng *rand.Rand, n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return string(b)
}

func put(rq requester, key, value string) error {
	return rq.do(http.MethodPut, "/v2/keys"+key, "application/x-www-form-urlencoded", "value="+url.QueryEscape(value))
}

// preload writes every key of the key space once so reads find values.
func preload(ctx context.Context, cfg Config, ep endpoint, value string) error {
	const workers = 32
	keys := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq := ep.open(ctx)
			defer rq.close()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for k := range keys {
				if err := put(rq, cfg.Prefix+"/k"+strconv.Itoa(k), randomValue(rng, len(value))); err != nil {
					select {
					case errc <- fmt.Errorf("preload: %w", err):
					default:
					}
					return
				}
			}
		}()
	}
	for k := 0; k < cfg.KeySpace; k++ {
		select {
		case keys <- k:
		case err := <-errc:
			close(keys)
			wg.Wait()
			return err
		}
	}
	close(keys)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
