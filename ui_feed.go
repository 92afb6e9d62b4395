package main

// GET /v1/cluster/feed: the cluster page's feed, a stream of Server-Sent
// Events with one snapshot of this member's view a second (and one at once
// when the leader changes), built from what GET /v1/status answers.

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// feedInterval is how often the feed sends a snapshot.
const feedInterval = time.Second

// feedFrame is one snapshot: GET /v1/status, and the counters the page
// turns into rates.
type feedFrame struct {
	Status statusResponse `json:"status"`
	// Writes is the key-value commands this member has applied since it
	// started: the cluster's writes, as every member applies every one.
	Writes uint64 `json:"writes"`
	// Reads is the key reads and listings this member has answered since
	// it started (its own, not the cluster's).
	Reads uint64 `json:"reads"`
}

// readRoutes are the route labels (see routes) of the requests counted as
// reads.
var readRoutes = map[string]bool{"/{key...}": true, "/v1/kv/{key...}": true}

func (h *httpAPI) feedFrame() feedFrame {
	reads := counterTotal(metricHTTPRequests, func(labels map[string]string) bool {
		return (labels["method"] == http.MethodGet || labels["method"] == http.MethodHead) && readRoutes[labels["route"]]
	})
	writes := counterTotal(metricProposalsApplied, nil)
	return feedFrame{Status: h.statusNow(), Writes: uint64(writes), Reads: uint64(reads)}
}

// counterTotal sums the counters c holds whose labels keep accepts (nil:
// all of them).
func counterTotal(c prometheus.Collector, keep func(labels map[string]string) bool) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || d.Counter == nil {
			continue
		}
		if keep != nil {
			labels := make(map[string]string, len(d.Label))
			for _, l := range d.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if !keep(labels) {
				continue
			}
		}
		sum += d.Counter.GetValue()
	}
	return sum
}

// clusterFeed answers GET /v1/cluster/feed. Like a watch it lasts as long
// as its client wants, until the server shuts down, and a client that takes
// nothing for watchWriteTimeout is dropped.
func (h *httpAPI) clusterFeed(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the server reads only to notice the client leaving
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(feedInterval)
	defer tick.Stop()
	// An EventSource reconnects after retry ms: a member that restarts is
	// back on the page within a second or so of serving again.
	out := []byte("retry: 1000\n\n")
	for {
		moved := h.svc.node.leaderChanges() // before the snapshot: a change after it is not missed
		data, err := json.Marshal(h.feedFrame())
		if err != nil {
			return err
		}
		out = append(append(append(out, "data: "...), data...), "\n\n"...)
		rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if _, err := w.Write(out); err != nil {
			return nil // the client went away, or took nothing for watchWriteTimeout
		}
		if rc.Flush() != nil {
			return nil
		}
		out = out[:0]
		select {
		case <-tick.C:
		case <-moved:
		case <-r.Context().Done():
			return nil
		case <-h.stopping():
			return nil
		}
	}
}
