package consensus

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one member, registered on the injected Registerer. The names
// follow etcd's so dashboards read the same.
type metrics struct {
	proposalsCommitted prometheus.Counter
	proposalsFailed    prometheus.Counter
	proposalsPending   prometheus.Gauge
	applyDuration      prometheus.Histogram
	fsyncDuration      prometheus.Histogram
	readyBatch         prometheus.Histogram
	leaderChanges      prometheus.Counter
	hasLeader          prometheus.Gauge
	isLeader           prometheus.Gauge
	snapshots          prometheus.Counter
	snapshotsSent      prometheus.Counter
	snapshotsRestored  prometheus.Counter
	readIndexes        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		proposalsCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "proposals_committed_total",
			Help: "Proposals (commands) applied by this member.",
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "proposals_failed_total",
			Help: "Proposals of this member that ended in an infrastructure error (timeout, cancelled, dropped, stopped).",
		}),
		proposalsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "server", Name: "proposals_pending",
			Help: "Proposals of this member waiting for their result.",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "server", Name: "apply_duration_seconds",
			Help:    "Time to apply one Ready's committed entries and commit the apply batch.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18),
		}),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
			Help:    "Time of the synced raft log commit of one Ready (the only fsync per Ready).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		readyBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "server", Name: "ready_entries",
			Help:    "New log entries persisted per synced Ready (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "leader_changes_seen_total",
			Help: "Leader changes seen by this member.",
		}),
		hasLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "server", Name: "has_leader",
			Help: "1 if this member knows a leader, 0 otherwise.",
		}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "server", Name: "is_leader",
			Help: "1 if this member is the leader, 0 otherwise.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "log_compactions_total",
			Help: "Raft log compactions (snapshot points) taken by this member: every --snapshot-count applied entries, and on the leader every 1,000 when every member holds the entries.",
		}),
		snapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "snapshots_sent_total",
			Help: "Snapshots of the key space sent to followers whose log was compacted away (handed to the transport).",
		}),
		snapshotsRestored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "snapshots_restored_total",
			Help: "Snapshots received from the leader and restored in place of the key space.",
		}),
		readIndexes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "server", Name: "read_indexes_total",
			Help: "ReadIndex requests issued (each serves every ReadBarrier batched into it).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.proposalsCommitted, m.proposalsFailed, m.proposalsPending, m.applyDuration,
		m.fsyncDuration, m.readyBatch, m.leaderChanges, m.hasLeader, m.isLeader, m.snapshots,
		m.snapshotsSent, m.snapshotsRestored, m.readIndexes,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
