package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkLoopbackFanout measures this machine's floor for a watch
// fan-out, with no server at all: n loopback TCP connections, one write of
// an SSE-event-sized payload to each (from GOMAXPROCS writer goroutines, as
// a member's stream goroutines run), read by one goroutine per connection,
// both ends in this process as the load generator and the member share the
// cores in the real benchmarks. It reports the time from the first write
// to the last read (p50 and p99 over the rounds): no member can deliver an
// event to n watchers on their own connections faster than that here.
//
//	go test ./bench -run '^$' -bench LoopbackFanout -benchtime 1x
func BenchmarkLoopbackFanout(b *testing.B) {
	// 9,000, not 10,000: both ends in one process need two descriptors a
	// connection, and the usual hard limit is 20,000. The time scales
	// linearly with n (see ns/delivery).
	for _, n := range []int{1000, 9000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { loopbackFanout(b, n) })
	}
}

func loopbackFanout(b *testing.B, n int) {
	need := uint64(2*n + 256)
	if lim, err := RaiseOpenFiles(need); lim < need {
		msg := fmt.Sprintf("SKIPPING %s: %d connections need %d open files, the limit is %d (%v)", b.Name(), n, need, lim, err)
		fmt.Fprintln(os.Stderr, "!!! "+msg)
		b.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	clients := make([]net.Conn, n)
	servers := make([]net.Conn, n)
	for i := range n {
		if clients[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		c, ok := <-accepted
		if !ok {
			b.Fatal("accept failed")
		}
		servers[i] = c
	}
	defer func() {
		for i := range n {
			clients[i].Close()
			servers[i].Close()
		}
	}()

	// About what one event costs on an SSE watcher's connection.
	payload := make([]byte, 330)
	for i := range payload {
		payload[i] = 'x'
	}
	const rounds = 20
	var fanout []time.Duration
	arrived := make([]time.Time, n)
	b.ResetTimer()
	for range rounds {
		var readers sync.WaitGroup
		for i := range n {
			readers.Go(func() {
				buf := make([]byte, len(payload))
				if _, err := io.ReadFull(clients[i], buf); err != nil {
					b.Error(err)
					return
				}
				arrived[i] = time.Now()
			})
		}
		time.Sleep(50 * time.Millisecond) // every reader parked
		start := time.Now()
		var writers sync.WaitGroup
		procs := runtime.GOMAXPROCS(0)
		for w := range procs {
			writers.Go(func() {
				for i := w; i < n; i += procs {
					if _, err := servers[i].Write(payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		writers.Wait()
		readers.Wait()
		fanout = append(fanout, slices.MaxFunc(arrived, time.Time.Compare).Sub(start))
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	slices.Sort(fanout)
	b.ReportMetric(float64(fanout[len(fanout)/2].Microseconds()), "first-write→last-read-p50-µs")
	b.ReportMetric(float64(fanout[len(fanout)-1].Microseconds()), "first-write→last-read-max-µs")
	b.ReportMetric(float64(fanout[len(fanout)/2].Nanoseconds())/float64(n), "ns/delivery")
}
