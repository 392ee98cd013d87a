package bench_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn/bench"
)

// BenchmarkPutFloor measures this machine's floor for durable writes over
// the v2 API's wire shape, with no store at all: the load generator's PUTs
// (wire client, 256-byte values) against a bare HTTP/1.1 server that
// appends each body to one preallocated file, makes every body that arrived
// meanwhile durable with one fdatasync (an overwrite of written blocks, the
// cheapest sync this disk offers), and answers with a fixed 201 and a
// set-event-sized body. No member, with a raft log, a key tree and its
// history to write, can acknowledge durable writes faster than that here;
// compare it with etcd and Cairn measured beside it (make compare). Both
// ends run in this process, as the load generator and a member share the
// cores in the real runs. The file goes to CAIRN_BENCH_DIR (fsync on tmpfs
// means nothing), else the test's temporary directory.
//
//	CAIRN_BENCH_DIR=$PWD/.bench go test ./bench -run '^$' -bench PutFloor -benchtime 1x
func BenchmarkPutFloor(b *testing.B) {
	dir := os.Getenv("CAIRN_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	fl, err := startPutFloor(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer fl.close()
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var ops float64
			for range b.N {
				res, err := bench.Run(context.Background(), bench.Config{
					Endpoints: []string{fl.url}, Workload: bench.WorkloadPut, Clients: clients, Duration: 5 * time.Second,
				})
				if err != nil || res.Errors > 0 {
					b.Fatalf("%v %v", err, res)
				}
				ops += res.OpsPerSec()
				b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
			}
			b.ReportMetric(ops/float64(b.N), "ops/s")
		})
	}
}

// putFloor is the bare durable-append server of BenchmarkPutFloor.
type putFloor struct {
	ln   net.Listener
	url  string
	file *os.File

	mu      sync.Mutex
	pending []byte      // bodies not yet written
	waiters []chan bool // their requests: true once durable
	kick    chan struct{}
	stop    chan struct{}
	off     int64
}

const putFloorFileBytes = 64 << 20

var putFloorAnswer = func() []byte {
	body := `{"action":"set","node":{"key":"/bench/00000001","value":"` + strings.Repeat("x", 256) + `","modifiedIndex":5,"createdIndex":5}}`
	return []byte("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Etcd-Index: 5\r\nX-Raft-Index: 5\r\nX-Raft-Term: 2\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

func startPutFloor(dir string) (*putFloor, error) {
	f, err := os.CreateTemp(dir, "putfloor-*.dat")
	if err != nil {
		return nil, err
	}
	// Written and synced once, so that the measured syncs overwrite blocks
	// and never change the file's size.
	zero := make([]byte, 1<<20)
	for range putFloorFileBytes / len(zero) {
		if _, err := f.Write(zero); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fl := &putFloor{ln: ln, url: "http://" + ln.Addr().String(), file: f, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	go fl.commit()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fl.serve(c)
		}
	}()
	return fl, nil
}

func (fl *putFloor) close() {
	_ = fl.ln.Close()
	close(fl.stop)
	_ = fl.file.Close()
	_ = os.Remove(fl.file.Name())
}

// commit writes what arrived since the last sync and syncs it: group
// commit, as a member does per raft Ready.
func (fl *putFloor) commit() {
	for {
		select {
		case <-fl.kick:
		case <-fl.stop:
			return
		}
		fl.mu.Lock()
		buf, ws := fl.pending, fl.waiters
		fl.pending, fl.waiters = nil, nil
		fl.mu.Unlock()
		if len(ws) == 0 {
			continue
		}
		if fl.off+int64(len(buf)) > putFloorFileBytes {
			fl.off = 0
		}
		_, err := fl.file.WriteAt(buf, fl.off)
		fl.off += int64(len(buf))
		if err == nil {
			err = syscall.Fdatasync(int(fl.file.Fd()))
		}
		for _, w := range ws {
			w <- err == nil // a failure closes the connections: the run counts errors
		}
	}
}

// serve answers one keep-alive connection's PUTs: the head up to its blank
// line, a Content-Length body, then the fixed answer once it is durable.
func (fl *putFloor) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	done := make(chan bool, 1)
	for {
		length := 0
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if name, value, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(name, "Content-Length") {
				if length, err = strconv.Atoi(strings.TrimSpace(value)); err != nil {
					return
				}
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		fl.mu.Lock()
		fl.pending = append(fl.pending, body...)
		fl.waiters = append(fl.waiters, done)
		fl.mu.Unlock()
		select {
		case fl.kick <- struct{}{}:
		default:
		}
		if !<-done {
			return
		}
		if _, err := c.Write(putFloorAnswer); err != nil {
			return
		}
	}
}
