package e2e

// Cross-process tests of the operations features: GET /v1/status, /health,
// /readyz, /metrics, POST /v1/leader and the leadership hand-off on SIGTERM.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

var hexDigest = regexp.MustCompile(`^[0-9a-f]{16}$`)

// checkStatuses checks the fields of the statuses of all nodes of c, which
// must agree on leader. It returns nil if they are sane.
func checkStatuses(c *tc.Cluster, sts []tc.Status) error {
	leader, err := tc.Agreement(sts)
	if err != nil {
		return err
	}
	for i, st := range sts {
		n := c.Nodes[i]
		switch {
		case st.ID != uint64(n.ID):
			return fmt.Errorf("%v reports id %d", n, st.ID)
		case st.Term == 0 || st.Commit == 0:
			return fmt.Errorf("%v reports term %d commit %d, want both > 0", n, st.Term, st.Commit)
		case st.Applied > st.Commit:
			return fmt.Errorf("%v reports applied %d > commit %d", n, st.Applied, st.Commit)
		case st.SnapshotIndex > st.Applied:
			return fmt.Errorf("%v reports snapshotIndex %d > applied %d", n, st.SnapshotIndex, st.Applied)
		case !hexDigest.MatchString(st.Digest):
			return fmt.Errorf("%v reports digest %q, want 16 hex digits", n, st.Digest)
		case st.Keys < 0:
			return fmt.Errorf("%v reports %d keys", n, st.Keys)
		}
		want := map[uint64]string{}
		for j, u := range c.URLs {
			want[uint64(j+1)] = u
		}
		got := map[uint64]string{}
		for _, m := range st.Members {
			got[m.ID] = m.PeerURL
		}
		if len(st.Members) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%v reports members %+v, want %v", n, st.Members, want)
		}
		if st.ID != leader {
			if st.State != "follower" {
				return fmt.Errorf("%v is in state %q, want follower of %d", n, st.State, leader)
			}
			if len(st.Followers) != 0 {
				return fmt.Errorf("follower %v reports followers %+v, want none", n, st.Followers)
			}
			continue
		}
		if len(st.Followers) != len(c.Nodes)-1 {
			return fmt.Errorf("leader %v reports followers %+v, want %d", n, st.Followers, len(c.Nodes)-1)
		}
		for _, f := range st.Followers {
			switch {
			case f.ID == st.ID || f.ID == 0 || f.ID > uint64(len(c.Nodes)):
				return fmt.Errorf("leader %v reports follower id %d", n, f.ID)
			case f.Match > st.Commit:
				return fmt.Errorf("leader %v reports follower %d with match %d > commit %d", n, f.ID, f.Match, st.Commit)
			case f.Next <= f.Match:
				return fmt.Errorf("leader %v reports follower %d with next %d <= match %d", n, f.ID, f.Next, f.Match)
			case f.State != "replicate" || !f.RecentActive:
				// All nodes are up and idle: every follower should be
				// replicating and recently active.
				return fmt.Errorf("leader %v reports follower %+v, want state replicate and recentActive", n, f)
			}
		}
	}
	return nil
}

// settledStatuses polls until all nodes of c report statuses that agree
// on a leader and pass checkStatuses.
func settledStatuses(t *testing.T, c *tc.Cluster) []tc.Status {
	t.Helper()
	var sts []tc.Status
	tc.Eventually(t, tc.Timeout, func() error {
		var err error
		if sts, err = tc.Statuses(c.Nodes...); err != nil {
			return err
		}
		return checkStatuses(c, sts)
	})
	return sts
}

// convergedStatuses polls until all nodes report the same applied index, then
// requires the same digest and key count, and returns the statuses.
func convergedStatuses(t *testing.T, nodes ...*tc.Node) []tc.Status {
	t.Helper()
	var sts []tc.Status
	tc.Eventually(t, tc.Timeout, func() error {
		var err error
		if sts, err = tc.Statuses(nodes...); err != nil {
			return err
		}
		for _, st := range sts {
			if st.Applied != sts[0].Applied {
				return fmt.Errorf("applied indexes differ: %s", tc.Summary(sts))
			}
		}
		return nil
	})
	for _, st := range sts {
		if st.Digest != sts[0].Digest || st.Keys != sts[0].Keys {
			t.Fatalf("replicas at the same applied index %d differ in digest or keys: %s", sts[0].Applied, tc.Summary(sts))
		}
	}
	return sts
}

// pairDigest is the server's digest of one pair (pairDigest in kvstore.go,
// the FNV-1a of len(k) as a uvarint, k, v, then its createRevision,
// modRevision and version as 8 bytes little-endian each unless all are 0,
// then its TTL in nanoseconds, 8 bytes, if it has one, given as a fourth
// number): the map's digest in /v1/status is the sum over its pairs. Written out
// again here, as this package sees the server only from outside.
func pairDigest(k, v string, revisions ...uint64) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, b := range binary.AppendUvarint(nil, uint64(len(k))) {
		h = (h ^ uint64(b)) * prime
	}
	for i := 0; i < len(k); i++ {
		h = (h ^ uint64(k[i])) * prime
	}
	for i := 0; i < len(v); i++ {
		h = (h ^ uint64(v[i])) * prime
	}
	if slices.ContainsFunc(revisions, func(n uint64) bool { return n != 0 }) {
		for _, b := range slices.Concat(binary.LittleEndian.AppendUint64(nil, revisions[0]),
			binary.LittleEndian.AppendUint64(nil, revisions[1]), binary.LittleEndian.AppendUint64(nil, revisions[2])) {
			h = (h ^ uint64(b)) * prime
		}
	}
	if len(revisions) > 3 && revisions[3] != 0 {
		for _, b := range binary.LittleEndian.AppendUint64(nil, revisions[3]) {
			h = (h ^ uint64(b)) * prime
		}
	}
	return h
}

// ---------------------------------------------------------------------------

func TestStatusReportsRaftStateAndConvergentDigest(t *testing.T) {
	c := tc.StartCluster(t, 3)

	// Every documented field is there, by its JSON name.
	for _, n := range c.Nodes {
		var raw map[string]json.RawMessage
		if _, err := n.GetJSON("/v1/status", &raw); err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"id", "state", "leader", "term", "commit", "snapshotIndex", "members", "applied", "keys", "digest"} {
			if _, ok := raw[field]; !ok {
				t.Errorf("%v: /v1/status has no %q: %v", n, field, raw)
			}
		}
	}
	resp, err := c.Node(1).DoRequest(http.MethodPost, "/v1/status", "", nil)
	if err != nil || resp.Code != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /v1/status: status %d Allow %q err %v (%s), want 405 with Allow: GET, HEAD", resp.Code, resp.Header.Get("Allow"), err, strings.TrimSpace(resp.Body))
	}

	sts := settledStatuses(t, c)
	before := convergedStatuses(t, c.Nodes...)
	t.Logf("settled: %s", tc.Summary(sts))

	// Writes through every node, overwrites and a delete: the replicas
	// converge to the same applied index, digest and key count, and the
	// digest is the one of the expected map.
	kvs := tc.KVs("status", 30, 40)
	tc.PutMany(t, kvs, c.Nodes...)
	want := map[string]string{tc.ReadyKey: tc.ReadyKey}
	for _, kv := range kvs {
		want[kv.Key] = kv.Val
	}
	c.Node(2).MustPut(kvs[0].Key, "overwritten")
	want[kvs[0].Key] = "overwritten"
	tc.Eventually(t, tc.Timeout, func() error {
		code, body, err := c.Node(3).Do(http.MethodDelete, "/v1/kv/"+kvs[1].Key, "")
		if err != nil || code != http.StatusNoContent {
			return fmt.Errorf("DELETE /v1/kv/%s: status %d %s err %v", kvs[1].Key, code, body, err)
		}
		return nil
	})
	delete(want, kvs[1].Key)

	after := convergedStatuses(t, c.Nodes...)
	// The digest covers each key's revisions too, which the listing gives.
	var listed []struct {
		Key, Value                           string
		CreateRevision, ModRevision, Version uint64
	}
	if code, err := c.Node(1).GetJSON("/v1/kv/?consistency=serializable", &listed); err != nil || code != http.StatusOK {
		t.Fatalf("listing: %d %v", code, err)
	}
	var wantDigest uint64
	for _, p := range listed {
		if v, ok := want[p.Key]; !ok || v != p.Value {
			t.Errorf("listing has %s=%q, want %q (present: %v)", p.Key, p.Value, v, ok)
		}
		wantDigest += pairDigest(p.Key, p.Value, p.CreateRevision, p.ModRevision, p.Version)
	}
	switch {
	case after[0].Applied <= before[0].Applied:
		t.Errorf("applied index %d after the writes, was %d before", after[0].Applied, before[0].Applied)
	case after[0].Keys != len(want):
		t.Errorf("nodes report %d keys, want %d", after[0].Keys, len(want))
	case after[0].Digest == before[0].Digest:
		t.Errorf("digest %s did not change with the writes", after[0].Digest)
	case after[0].Digest != fmt.Sprintf("%016x", wantDigest):
		t.Errorf("digest %s, want %016x (the digest of the %d pairs written)", after[0].Digest, wantDigest, len(want))
	}
	t.Logf("converged: %s", tc.Summary(after))

	// A leader change shows everywhere.
	old, oldSts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	survivors := c.Except(old)
	changesBefore, err := survivors[0].Metric("raftexample_leader_changes_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	old.Kill()
	// The survivors elect one of them, in a later term...
	newLeader, survSts := tc.WaitLeader(t, tc.Timeout, survivors...)
	if survSts[0].Term <= oldSts[0].Term {
		t.Errorf("survivors report %v leading in term %d, the old leader's term was %d", newLeader, survSts[0].Term, oldSts[0].Term)
	}
	// ...and the restarted node follows too: every status shows the change.
	old.Restart()
	sts = settledStatuses(t, c)
	id, _ := tc.Agreement(sts)
	if id != uint64(newLeader.ID) {
		// Possible on a very noisy machine, but not expected: with pre-vote
		// the restarted node does not disrupt the new leader.
		t.Logf("leadership moved on again: %d after %d: %s", id, newLeader.ID, tc.Summary(sts))
	} else if st := sts[old.ID-1]; st.State != "follower" || st.Leader != id {
		t.Errorf("restarted %v reports state %s leader %d, want follower of %d", old, st.State, st.Leader, id)
	}
	if sts[0].Term < survSts[0].Term {
		t.Errorf("term %d after the restart, the survivors had %d", sts[0].Term, survSts[0].Term)
	}
	changesAfter, err := survivors[0].Metric("raftexample_leader_changes_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	if changesAfter <= changesBefore {
		t.Errorf("%v: raftexample_leader_changes_total %v after the leader change, was %v", survivors[0], changesAfter, changesBefore)
	}
	convergedStatuses(t, c.Nodes...)
	t.Logf("after the leader change: %s; leader changes seen by %v: %v -> %v", tc.Summary(sts), survivors[0], changesBefore, changesAfter)
}

func TestLeadershipTransferMovesLeader(t *testing.T) {
	// A short request timeout, for the transfer that cannot succeed below.
	c := tc.StartCluster(t, 3, "--request-timeout", "2s")
	leader, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	followers := c.Except(leader)
	target, via := followers[0], followers[1]

	transfer := func(via, to *tc.Node, oldTerm uint64) uint64 {
		t.Helper()
		start := time.Now()
		code, body, err := via.Do(http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, to.ID))
		took := time.Since(start)
		expectStatus(t, fmt.Sprintf("POST /v1/leader {id %d} on %v", to.ID, via), code, body, err, http.StatusOK)
		var resp map[string]uint64
		if err := json.Unmarshal([]byte(body), &resp); err != nil || resp["leader"] != uint64(to.ID) {
			t.Fatalf("POST /v1/leader {id %d} answered %q, want {\"leader\": %d}", to.ID, body, to.ID)
		}
		var sts []tc.Status
		tc.Eventually(t, tc.Timeout, func() error {
			var err error
			if sts, err = tc.Statuses(c.Nodes...); err != nil {
				return err
			}
			id, err := tc.Agreement(sts)
			switch {
			case err != nil:
				return err
			case id != uint64(to.ID):
				return fmt.Errorf("leader is %d, want %d: %s", id, to.ID, tc.Summary(sts))
			case sts[0].Term <= oldTerm:
				return fmt.Errorf("term %d, want > %d: %s", sts[0].Term, oldTerm, tc.Summary(sts))
			}
			return nil
		})
		t.Logf("transfer to %v through %v answered in %v; now %s", to, via, took.Round(time.Millisecond), tc.Summary(sts))
		return sts[0].Term
	}

	// Through a follower that is not the target (forwarded to the leader),
	// then back through the leader itself.
	term := transfer(via, target, sts[0].Term)
	target.MustPut("after-transfer", "1")
	term = transfer(target, leader, term)
	leader.MustPut("after-transfer-back", "2")
	tc.ExpectValue(t, "after-transfer-back", "2", c.Nodes...)
	// Asking for the current leader is a no-op that succeeds.
	code, body, err := target.Do(http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, leader.ID))
	expectStatus(t, "POST /v1/leader to the current leader", code, body, err, http.StatusOK)

	for i, bad := range []struct {
		body string
		want int
	}{
		{`{"id": 0}`, http.StatusBadRequest},
		{`{"id": 99}`, http.StatusNotFound},
		{`not JSON`, http.StatusBadRequest},
		{``, http.StatusBadRequest},
		{`{"id": -1}`, http.StatusBadRequest},
		{`{"id": "2"}`, http.StatusBadRequest},
	} {
		n := c.Nodes[i%len(c.Nodes)]
		resp, err := n.DoRequest(http.MethodPost, "/v1/leader", bad.body, nil)
		expectStatus(t, fmt.Sprintf("POST /v1/leader %q on %v", bad.body, n), resp.Code, resp.Body, err, bad.want)
		var e map[string]string
		if json.Unmarshal([]byte(resp.Body), &e) != nil || e["error"] == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("POST /v1/leader %q: body %q (Content-Type %q), want a JSON error", bad.body, resp.Body, resp.Header.Get("Content-Type"))
		}
	}
	resp, err := c.Node(2).DoRequest(http.MethodGet, "/v1/leader", "", nil)
	if err != nil || resp.Code != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /v1/leader: status %d Allow %q err %v (%s), want 405 with Allow: POST", resp.Code, resp.Header.Get("Allow"), err, strings.TrimSpace(resp.Body))
	}

	// None of that moved leadership.
	_, sts = tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	if id, _ := tc.Agreement(sts); id != uint64(leader.ID) || sts[0].Term != term {
		t.Errorf("after the bad requests: %s; want leader %d in term %d", tc.Summary(sts), leader.ID, term)
	}

	// A member that is down cannot take over: 503 after the request timeout,
	// and the leader keeps leading.
	via.Kill()
	start := time.Now()
	resp, err = leader.DoRequest(http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, via.ID), nil)
	expectStatus(t, "POST /v1/leader to a member that is down", resp.Code, resp.Body, err, http.StatusServiceUnavailable)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(resp.Body, `"error"`) {
		t.Errorf("POST /v1/leader to a member that is down: body %q (Content-Type %q), want a JSON error", resp.Body, resp.Header.Get("Content-Type"))
	}
	t.Logf("transfer to %v (down) answered 503 after %v: %s", via, time.Since(start).Round(time.Millisecond), strings.TrimSpace(resp.Body))
	survivors := c.Except(via)
	_, sts = tc.WaitLeader(t, tc.Timeout, survivors...)
	if id, _ := tc.Agreement(sts); id != uint64(leader.ID) {
		t.Errorf("after the failed transfer: %s; want leader %d", tc.Summary(sts), leader.ID)
	}
	leader.MustPut("after-failed-transfer", "3")
	tc.ExpectValue(t, "after-failed-transfer", "3", survivors...)
}

// getHealth GETs path on n and decodes the JSON answer.
func getHealth(n *tc.Node, path string) (int, map[string]any, error) {
	code, body, err := n.Do(http.MethodGet, path, "")
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s on %v: %w", path, n, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return code, nil, fmt.Errorf("GET %s on %v: status %d, body %q is not JSON: %v", path, n, code, body, err)
	}
	return code, m, nil
}

// expectHealthAnswer polls until GET path on n answers want with field set to
// wantOK (and a non-empty reason when not OK).
func expectHealthAnswer(t *testing.T, n *tc.Node, path, field string, want int, wantOK bool) map[string]any {
	t.Helper()
	var got map[string]any
	tc.Eventually(t, tc.Timeout, func() error {
		code, m, err := getHealth(n, path)
		if err != nil {
			return err
		}
		got = m
		if code != want || m[field] != wantOK {
			return fmt.Errorf("GET %s on %v: status %d %v, want %d with %s %v", path, n, code, m, want, field, wantOK)
		}
		if reason, _ := m["reason"].(string); !wantOK && reason == "" {
			return fmt.Errorf("GET %s on %v: status %d %v has no reason", path, n, code, m)
		}
		return nil
	})
	return got
}

func TestHealthAndReadyz(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for _, n := range c.Nodes {
		expectHealthAnswer(t, n, "/health", "health", http.StatusOK, true)
		expectHealthAnswer(t, n, "/readyz", "ready", http.StatusOK, true)
	}
	resp, err := c.Node(1).DoRequest(http.MethodPost, "/health", "", nil)
	if err != nil || resp.Code != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /health: status %d Allow %q err %v (%s), want 405 with Allow: GET, HEAD", resp.Code, resp.Header.Get("Allow"), err, strings.TrimSpace(resp.Body))
	}

	// The leader survives alone: it must notice it lost the quorum (check
	// quorum) and stop claiming to be healthy or ready.
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	others := c.Except(leader)
	for _, n := range others {
		n.Kill()
	}
	start := time.Now()
	h := expectHealthAnswer(t, leader, "/health", "health", http.StatusServiceUnavailable, false)
	r := expectHealthAnswer(t, leader, "/readyz", "ready", http.StatusServiceUnavailable, false)
	t.Logf("lone %v after %v: /health %v, /readyz %v", leader, time.Since(start).Round(time.Millisecond), h, r)

	// One node back: a quorum again.
	others[0].Restart()
	for _, n := range []*tc.Node{leader, others[0]} {
		expectHealthAnswer(t, n, "/health", "health", http.StatusOK, true)
		expectHealthAnswer(t, n, "/readyz", "ready", http.StatusOK, true)
	}
}

func TestMetricsExposeServerAndEtcdMetrics(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n := c.Node(2)
	const rootPuts, v1Puts, gets = 6, 4, 5
	for i := 0; i < rootPuts; i++ {
		n.MustPut(fmt.Sprintf("metrics-%d", i), "v")
	}
	for i := 0; i < v1Puts; i++ {
		tc.Eventually(t, tc.Timeout, func() error {
			code, body, err := n.Do(http.MethodPut, fmt.Sprintf("/v1/kv/metrics-v1-%d", i), "v")
			if err != nil || code != http.StatusNoContent {
				return fmt.Errorf("PUT /v1/kv/metrics-v1-%d: status %d %s err %v", i, code, body, err)
			}
			return nil
		})
	}
	for i := 0; i < gets; i++ {
		code, body, err := n.Get(fmt.Sprintf("metrics-%d", i))
		expectStatus(t, "GET", code, body, err, http.StatusOK)
	}
	wantKeys := 1 + rootPuts + v1Puts // and tc.StartCluster's tc.ReadyKey

	names := []string{
		"raftexample_has_leader", "raftexample_leader_changes_total", "raftexample_term",
		"raftexample_commit_index", "raftexample_applied_index", "raftexample_snapshot_index",
		"raftexample_proposals_committed_total", "raftexample_proposals_applied_total",
		"raftexample_proposals_failed_total", "raftexample_proposals_pending",
		"raftexample_apply_duration_seconds", "raftexample_read_index_duration_seconds",
		"raftexample_snapshot_save_duration_seconds", "raftexample_keys",
		"raftexample_http_requests_total", "raftexample_http_request_duration_seconds",
		"etcd_disk_wal_fsync_duration_seconds",
	}
	var m tc.Metrics
	tc.Eventually(t, tc.Timeout, func() error {
		var err error
		if m, err = n.Metrics(); err != nil {
			return err
		}
		var missing []string
		for _, name := range names {
			if !m.Has(name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%v's /metrics lacks %v", n, missing)
		}
		if len(m.Names("etcd_network_")) == 0 {
			return fmt.Errorf("%v's /metrics has no etcd_network_* metric", n)
		}
		if v, _ := m.Value("raftexample_keys", nil); v != float64(wantKeys) {
			return fmt.Errorf("raftexample_keys is %v, want %d", v, wantKeys)
		}
		return nil
	})
	network := m.Names("etcd_network_")
	sort.Strings(network)
	t.Logf("etcd_network_* metrics: %v", network)

	// Sensible values.
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := m.Value(name, labels)
		if !ok {
			t.Fatalf("no sample %s%v", name, labels)
		}
		return v
	}
	expect := func(what string, ok bool, v float64) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %v", what, v)
		}
	}
	v := value("raftexample_has_leader", nil)
	expect("raftexample_has_leader == 1", v == 1, v)
	applied := value("raftexample_applied_index", nil)
	expect("raftexample_applied_index > 0", applied > 0, applied)
	v = value("raftexample_commit_index", nil)
	expect("raftexample_commit_index >= applied_index", v >= applied, v)
	v = value("raftexample_term", nil)
	expect("raftexample_term > 0", v > 0, v)
	v = value("raftexample_leader_changes_total", nil)
	expect("raftexample_leader_changes_total >= 1", v >= 1, v)
	v = value("raftexample_proposals_applied_total", nil)
	expect(fmt.Sprintf("raftexample_proposals_applied_total >= %d", wantKeys), v >= float64(wantKeys), v)
	v = value("raftexample_proposals_committed_total", nil)
	expect(fmt.Sprintf("raftexample_proposals_committed_total >= %d", wantKeys), v >= float64(wantKeys), v)
	v = value("raftexample_proposals_pending", nil)
	expect("raftexample_proposals_pending == 0", v == 0, v)
	v = value("raftexample_apply_duration_seconds_count", nil)
	expect("raftexample_apply_duration_seconds_count > 0", v > 0, v)
	v = value("raftexample_read_index_duration_seconds_count", nil)
	expect("raftexample_read_index_duration_seconds_count > 0", v > 0, v)
	v = value("etcd_disk_wal_fsync_duration_seconds_count", nil)
	expect("etcd_disk_wal_fsync_duration_seconds_count > 0", v > 0, v)
	for _, route := range []struct {
		route string
		n     int
	}{{"/{key...}", rootPuts}, {"/v1/kv/{key...}", v1Puts}} {
		labels := map[string]string{"route": route.route, "method": "PUT", "code": "204"}
		v = value("raftexample_http_requests_total", labels)
		expect(fmt.Sprintf("raftexample_http_requests_total%v >= %d", labels, route.n), v >= float64(route.n), v)
		labels = map[string]string{"route": route.route, "method": "PUT"}
		v = value("raftexample_http_request_duration_seconds_count", labels)
		expect(fmt.Sprintf("raftexample_http_request_duration_seconds_count%v >= %d", labels, route.n), v >= float64(route.n), v)
	}
	labels := map[string]string{"route": "/{key...}", "method": "GET", "code": "200"}
	v = value("raftexample_http_requests_total", labels)
	expect(fmt.Sprintf("raftexample_http_requests_total%v >= %d", labels, gets), v >= gets, v)

	// A request that fails is counted under its code.
	code, body, err := n.Get("metrics-never-written")
	expectStatus(t, "GET of a missing key", code, body, err, http.StatusNotFound)
	tc.Eventually(t, tc.Timeout, func() error {
		_, err := n.Metric("raftexample_http_requests_total", map[string]string{"route": "/{key...}", "method": "GET", "code": "404"})
		return err
	})
}

// ---------------------------------------------------------------------------
// SIGTERM hand-off and write unavailability

// gapWriter PUTs through one node, one request after another, and
// records the longest time between two consecutive 204s.
type gapWriter struct {
	n    *tc.Node
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	ok       int
	last     time.Time // when the latest 204 arrived
	maxGap   time.Duration
	gapEnd   time.Time // when the 204 ending the longest gap arrived
	failures map[string]int
}

// gapWriterTimeout is short, so that one PUT stuck on a dead leader does
// not dominate the measurement.
const gapWriterTimeout = 3 * time.Second

func startGapWriter(n *tc.Node, prefix string) *gapWriter {
	w := &gapWriter{
		n:        n,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		failures: map[string]int{},
	}
	go w.run(prefix)
	return w
}

func (w *gapWriter) run(prefix string) {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		code, body, err := doWithin(gapWriterTimeout, w.n, http.MethodPut, fmt.Sprintf("/%s-%d", prefix, i), strconv.Itoa(i))
		outcome := "" // empty for a 204, else what went wrong
		if err != nil {
			outcome = "error"
			if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
				outcome = "client timeout"
			}
		} else if code != http.StatusNoContent {
			outcome = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		}
		now := time.Now()
		w.mu.Lock()
		if outcome == "" {
			if !w.last.IsZero() && now.Sub(w.last) > w.maxGap {
				w.maxGap, w.gapEnd = now.Sub(w.last), now
			}
			w.last = now
			w.ok++
		} else {
			w.failures[outcome]++
		}
		w.mu.Unlock()
		if outcome != "" {
			time.Sleep(10 * time.Millisecond) // no tight loop on fast 503s
		}
	}
}

func (w *gapWriter) okCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok
}

// waitMore waits until k more PUTs succeeded.
func (w *gapWriter) waitMore(t *testing.T, k int) {
	t.Helper()
	target := w.okCount() + k
	tc.Eventually(t, tc.Timeout, func() error {
		if got := w.okCount(); got < target {
			return fmt.Errorf("writer through %v: %d successful PUTs, waiting for %d", w.n, got, target)
		}
		return nil
	})
}

// finish stops the writer and returns the longest gap between 204s, when it
// ended, and a summary of the failed PUTs.
func (w *gapWriter) finish() (time.Duration, time.Time, string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxGap, w.gapEnd, fmt.Sprintf("%d PUTs got 204, failures %v", w.ok, w.failures)
}

var handOffTo = regexp.MustCompile(`handed leadership over before stopping\s+\{[^}]*"to":\s*(\d+)`)

func TestSIGTERMOnLeaderHandsOffLeadership(t *testing.T) {
	c := tc.StartCluster(t, 3)
	leader, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	oldTerm := sts[0].Term
	writeTo := c.Except(leader)[0]

	// SIGTERM the leader while a client writes through a follower.
	w := startGapWriter(writeTo, "sigterm")
	w.waitMore(t, 20)
	signalled := time.Now()
	if code := leader.Stop(); code != 0 {
		t.Fatalf("leader %v exited with code %d after SIGTERM, want 0", leader, code)
	}
	exited := time.Now()
	log := leader.RunLog()
	match := handOffTo.FindStringSubmatch(log)
	if match == nil {
		t.Fatalf("leader %v did not log %q with a \"to\" field; its log:\n%s", leader, "handed leadership over before stopping", tc.Tail(log, 20))
	}
	to, _ := strconv.Atoi(match[1])
	target := c.Node(to)
	if target == nil {
		t.Fatalf("leader %v handed leadership over to %d, which is no node", leader, to)
	}
	if target == leader {
		t.Fatalf("leader %v handed leadership to itself", leader)
	}
	if bad := tc.ErrorLines(log); len(bad) > 0 {
		t.Errorf("%v logged at error level while stopping:\n%s", leader, strings.Join(bad, "\n"))
	}
	survivors := c.Except(leader)
	// The hand-off completes before the old leader exits, so the survivors
	// follow the target at once, without an election of their own.
	newLeader, sts := tc.WaitLeader(t, 5*time.Second, survivors...)
	settled := time.Since(exited)
	if newLeader != target {
		t.Fatalf("survivors elected %v, but the leader handed over to %v: %s", newLeader, target, tc.Summary(sts))
	}
	if sts[0].Term <= oldTerm {
		t.Errorf("term %d after the hand-off, was %d", sts[0].Term, oldTerm)
	}
	t.Logf("SIGTERM on %v: handed over to %v, exit after %v, survivors agreed %v later; term %d -> %d",
		leader, target, exited.Sub(signalled).Round(time.Millisecond), settled.Round(time.Millisecond), oldTerm, sts[0].Term)
	w.waitMore(t, 20)
	termGap, termGapEnd, termSummary := w.finish()
	termWriteTo := w.n

	// Now the same with SIGKILL on the current leader (the hand-off target),
	// with the stopped node back as a follower.
	leader.Restart()
	leader2, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	writeTo = c.Except(leader2)[0]
	w = startGapWriter(writeTo, "sigkill")
	w.waitMore(t, 20)
	killed := time.Now()
	leader2.Kill()
	leader3, sts3 := tc.WaitLeader(t, tc.Timeout, c.Except(leader2)...)
	t.Logf("SIGKILL on %v: survivors elected %v %v later; term %d -> %d",
		leader2, leader3, time.Since(killed).Round(time.Millisecond), sts[0].Term, sts3[0].Term)
	w.waitMore(t, 20)
	killGap, killGapEnd, killSummary := w.finish()

	t.Logf("SIGTERM run (writes through %v): %s; longest gap ended %v after the signal",
		termWriteTo, termSummary, termGapEnd.Sub(signalled).Round(time.Millisecond))
	t.Logf("SIGKILL run (writes through %v): %s; longest gap ended %v after the kill",
		writeTo, killSummary, killGapEnd.Sub(killed).Round(time.Millisecond))
	t.Logf("write gap: SIGTERM hand-off %v, SIGKILL %v", termGap.Round(time.Millisecond), killGap.Round(time.Millisecond))
}
