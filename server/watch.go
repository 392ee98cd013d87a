package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cairn/api"
	"cairn/httpapi"
	"cairn/storage"
	"cairn/watchers"
)

// Watch wiring: the hub reads the tree's durable event log (storage's
// EventLog satisfies watchers.History), the apply path feeds the hub, a
// background loop applies the history's retention, and the hub's counters
// are exported on the member's registry.

// historyTrimInterval is how often the history's retention limits are
// applied (node-local, off the apply path).
const historyTrimInterval = time.Second

// newHub builds the watch hub over the tree's event log and registers its
// metrics.
func (s *Server) newHub() *watchers.Hub {
	events := s.tree.Events()
	events.SetRetention(uint64(s.cfg.WatchHistoryEvents), s.cfg.WatchHistoryAge)
	h := watchers.New(watchers.Config{
		HistoryEvents: 1000, // the newest events, in memory
		MaxWatchers:   s.cfg.MaxWatchers,
		History:       events,
	}, s.tree.StoreIndex())
	s.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "watchers", Name: "open",
			Help: "Watchers open on this member (long poll, stream and Server-Sent Events).",
		}, func() float64 { return float64(h.Count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "watchers", Name: "evicted_total",
			Help: "Watchers dropped for falling further behind than the watch history reaches.",
		}, func() float64 { return float64(h.Evictions()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "watchers", Name: "caught_up_total",
			Help: "Times a slow stream watcher overflowed its buffer and caught up from the durable history instead of being dropped.",
		}, func() float64 { return float64(h.CatchUps()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "watch_history", Name: "oldest_index",
			Help: "Oldest store index a watch can start from (waitIndex / Last-Event-ID).",
		}, func() float64 { return float64(h.OldestIndex()) }),
	)
	return h
}

// trimHistory applies the watch history's retention once a second until
// ctx ends.
func (s *Server) trimHistory(ctx context.Context) {
	t := time.NewTicker(historyTrimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.tree.Events().Trim(now); err != nil {
				if errors.Is(err, storage.ErrClosed) || ctx.Err() != nil {
					return
				}
				s.logger.Warn("trim watch history", "err", err)
			}
		}
	}
}

// hubObserver feeds the hub from the apply path; after a snapshot install
// it tells the hub the store index the snapshot left.
type hubObserver struct {
	h    *watchers.Hub
	tree *storage.Tree
}

func (o hubObserver) Applied(index uint64, events []*api.Event) { o.h.Applied(index, events) }
func (o hubObserver) Restored(uint64)                           { o.h.ResetAt(o.tree.StoreIndex()) }

// watchAdapter gives the HTTP layer its view of the watch hub.
type watchAdapter struct {
	h   *watchers.Hub
	max int
}

func (a watchAdapter) Watch(key string, recursive, stream bool, sinceIndex uint64) (httpapi.Watcher, *api.Error) {
	w, err := a.h.Watch(key, recursive, stream, sinceIndex)
	if err != nil {
		var apiErr *api.Error
		switch {
		case errors.As(err, &apiErr):
			return nil, apiErr
		case errors.Is(err, watchers.ErrClosed):
			return nil, api.NewError(api.EcodeRaftInternal, "etcdserver: server stopped", 0)
		case errors.Is(err, watchers.ErrTooManyWatchers):
			return nil, api.NewError(api.EcodeRaftInternal, fmt.Sprintf("etcdserver: too many watchers (--max-watchers %d)", a.max), 0)
		}
		return nil, api.NewError(api.EcodeRaftInternal, err.Error(), 0)
	}
	return watcherAdapter{w}, nil
}

func (a watchAdapter) Count() int { return a.h.Count() }

type watcherAdapter struct{ w *watchers.Watcher }

func (a watcherAdapter) Next() (*api.Event, error) { return a.w.Next() }
func (a watcherAdapter) Ready() <-chan struct{}    { return a.w.Ready() }
func (a watcherAdapter) StartIndex() uint64        { return a.w.StartIndex }
func (a watcherAdapter) Remove()                   { a.w.Remove() }
