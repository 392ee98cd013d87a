package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv2 "go.etcd.io/etcd/client/v2"
)

// ackedWrite is a write the member acknowledged.
type ackedWrite struct {
	key, value string
	index      uint64
}

// writeLoad runs writers that set unique keys back to back and records
// every acknowledged write: the load the durability tests kill members in.
type writeLoad struct {
	mu    sync.Mutex
	acked []ackedWrite
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startWriteLoad starts one writer per entry of kapis; writer w writes
// prefix/w<w>/k<i>. After a failed write (outcome unknown, not recorded)
// the writer asks retry(w): false ends it, true tries the next key after a
// short pause.
func startWriteLoad(kapis []clientv2.KeysAPI, prefix string, retry func(w int) bool) *writeLoad {
	l := &writeLoad{stop: make(chan struct{})}
	ctx := context.Background()
	for w, kapi := range kapis {
		l.wg.Go(func() {
			for i := range 100000 {
				select {
				case <-l.stop:
					return
				default:
				}
				key, val := fmt.Sprintf("%s/w%d/k%d", prefix, w, i), fmt.Sprintf("v%d-%d", w, i)
				resp, err := kapi.Set(ctx, key, val, nil)
				if err != nil {
					if !retry(w) {
						return
					}
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.acked = append(l.acked, ackedWrite{key, val, resp.Index})
				l.mu.Unlock()
			}
		})
	}
	return l
}

// count is the number of writes acknowledged so far.
func (l *writeLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitFor waits until n writes were acknowledged or within has passed.
func (l *writeLoad) waitFor(n int, within time.Duration) {
	for deadline := time.Now().Add(within); l.count() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the writers and returns every acknowledged write.
func (l *writeLoad) finish() []ackedWrite {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// never is a retry policy for a single member: a failed write means it is gone.
func never(int) bool { return false }
