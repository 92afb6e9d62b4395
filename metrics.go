package main

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// This server's own Prometheus metrics, all named raftexample_*. They sit in
// the default registry beside what the etcd packages register there
// (etcd_disk_wal_*, etcd_network_peer_*, ...) and Go's runtime collectors, so
// GET /metrics shows all of them.
var (
	metricHasLeader = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_has_leader", Help: "1 if this member knows a leader, else 0.",
	})
	metricLeaderChanges = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_leader_changes_total", Help: "Times this member saw the leader change.",
	})
	metricTerm = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_term", Help: "Current raft term.",
	})
	metricCommitIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_commit_index", Help: "Highest log index known to be committed.",
	})
	metricAppliedIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_applied_index", Help: "Highest log index applied to the key-value map.",
	})
	metricSnapshotIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_snapshot_index", Help: "Log index of the newest snapshot.",
	})
	metricProposalsCommitted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_proposals_committed_total", Help: "Log entries this member saw committed.",
	})
	metricProposalsApplied = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_proposals_applied_total", Help: "Key-value commands applied to the map.",
	})
	metricProposalsDeduplicated = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "raftexample_proposals_refused_copies_total", Help: "Committed copies of commands not applied: a copy of one applied already (duplicate) or too old to tell (expired).",
	}, []string{"reason"})
	metricProposalsReproposed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_proposals_reproposed_total", Help: "Commands this member proposed again, after a leader change or a long wait.",
	})
	metricWatchers = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_watchers", Help: "Watch streams open on this member.",
	})
	metricWatchClosed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "raftexample_watch_streams_closed_total", Help: "Watch streams this member ended itself: too far behind (behind), past the history (compacted), or a client that took nothing for 10 s (stalled).",
	}, []string{"reason"})
	metricWatchEventsSent = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_watch_events_sent_total", Help: "Events written to watch streams.",
	})
	metricWatchHistoryEvents = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_watch_history_events", Help: "Changes kept for watches.",
	})
	metricProposalsFailed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_proposals_failed_total", Help: "Proposals made here that were not acknowledged (dropped, timed out, leader lost, refused).",
	})
	metricProposalsPending = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_proposals_pending", Help: "Proposals made here and waiting to be applied.",
	})
	metricBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "raftexample_proposal_batch_commands", Help: "Commands carried by each entry proposed here (requests waiting together share one entry).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	})
	metricApplyDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "raftexample_apply_duration_seconds", Help: "Time to apply one batch of committed entries to the map.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
	})
	metricReadIndexDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "raftexample_read_index_duration_seconds", Help: "Time of one ReadIndex round (shared by concurrent linearizable reads).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	metricSnapshotDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "raftexample_snapshot_save_duration_seconds", Help: "Time to take and save a snapshot; its count is the number of snapshots taken.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	metricDiskFree = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_disk_free_bytes", Help: "Free space for this member on the file system of --data-dir (statfs, every few seconds).",
	})
	metricKeys = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_keys", Help: "Keys in the map.",
	})
	metricKeysExpired = promauto.NewCounter(prometheus.CounterOpts{
		Name: "raftexample_keys_expired_total", Help: "Keys deleted because their time to live ran out, as applied here.",
	})
	metricTTLKeys = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "raftexample_ttl_keys", Help: "Keys with a time to live.",
	})
	metricPeerMessagesRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "raftexample_peer_messages_refused_total", Help: "Peer messages and requests refused before raft saw them, by reason (term, sender, type, log, entries, snapshot, body).",
	}, []string{"reason"})
	metricConnsShed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "raftexample_connections_shed_total", Help: "Connections closed at the connection cap, by port (client, peer) and how (idle-closed: the longest-idle one made room; refused: the new one, when none was idle).",
	}, []string{"port", "how"})
	metricHTTPRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "raftexample_http_requests_total", Help: "HTTP requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	metricHTTPDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "raftexample_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"route", "method"})
)

// observeHTTP counts a finished request.
func observeHTTP(route, method string, code int, start time.Time) {
	metricHTTPRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	metricHTTPDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
}
