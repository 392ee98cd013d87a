package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"cairn/storage"
)

// storageCollector exports the database's size and write volumes, read
// from Pebble once per scrape.
type storageCollector struct {
	stats func() storage.IOStats

	size, wal, flushed, compacted, compactRead *prometheus.Desc
}

func newStorageCollector(stats func() storage.IOStats) *storageCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("cairn", "storage", name), help, nil, nil)
	}
	return &storageCollector{
		stats:       stats,
		size:        d("db_size_bytes", "Bytes the member's database occupies on disk (sstables and write-ahead log)."),
		wal:         d("wal_bytes_total", "Bytes written to the database's write-ahead log."),
		flushed:     d("flushed_bytes_total", "Sstable bytes written by memtable flushes."),
		compacted:   d("compacted_bytes_total", "Sstable bytes written by compactions."),
		compactRead: d("compaction_read_bytes_total", "Sstable bytes read by compactions."),
	}
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.wal
	ch <- c.flushed
	ch <- c.compacted
	ch <- c.compactRead
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.DiskBytes))
	ch <- prometheus.MustNewConstMetric(c.wal, prometheus.CounterValue, float64(s.WALBytes))
	ch <- prometheus.MustNewConstMetric(c.flushed, prometheus.CounterValue, float64(s.FlushedBytes))
	ch <- prometheus.MustNewConstMetric(c.compacted, prometheus.CounterValue, float64(s.CompactedBytes))
	ch <- prometheus.MustNewConstMetric(c.compactRead, prometheus.CounterValue, float64(s.CompactionRead))
}
