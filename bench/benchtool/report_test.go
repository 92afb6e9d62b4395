package main

import (
	"strings"
	"testing"
)

// A run as run.sh writes it: null first, then raftexample (put c1 against
// the leader and the follower), then etcd; one failed wrk run ("-").
const sampleResults = "null\tnull\t1\t20000\t0.05\t0.10\t1.0\t0\t0\n" +
	"null\tnull\t256\t100000\t2.50\t5.00\t9.0\t0\t0\n" +
	"raftexample\tput\t1\t1000\t0.90\t2.00\t5.0\t0\t0\n" +
	"raftexample\tput-follower\t1\t700\t1.40\t3.00\t6.0\t0\t0\n" +
	"raftexample\tget-serializable\t1\t15000\t0.06\t0.20\t1.0\t0\t0\n" +
	"raftexample\tput\t256\t40000\t6.00\t12.00\t30.0\t0\t0\n" +
	"raftexample\tput-if\t256\t35000\t7.00\t14.00\t30.0\t0\t0\n" +
	"raftexample\tget\t256\t50000\t5.00\t10.00\t20.0\t0\t0\n" +
	"raftexample\tget-serializable\t256\t95000\t2.60\t5.20\t9.0\t0\t0\n" +
	"raftexample\ttxn\t256\t9000\t8.00\t16.00\t30.0\t0\t0\n" +
	"etcd\tput\t1\t500\t1.80\t4.00\t9.0\t0\t0\n" +
	"etcd\tput\t256\t8000\t30.00\t60.00\t90.0\t0\t0\n" +
	"etcd\tget\t256\t-\t-\t-\t-\t-\t-\n"

const sampleProbes = "FSYNC bytes=4096 n=1000 p50_us=300.00 p99_us=900.00 max_us=2000.00\n" +
	"RTT proto=tcp bytes=64 n=10000 p50_us=50.00 p99_us=120.00 max_us=900.00\n" +
	"RTT proto=http bytes=64 n=10000 p50_us=80.00 p99_us=200.00 max_us=900.00\n"

func sample(t *testing.T) ([]result, map[string]map[string]string) {
	t.Helper()
	rows, err := readResults(strings.NewReader(sampleResults))
	if err != nil {
		t.Fatal(err)
	}
	probes, err := readProbes(strings.NewReader(sampleProbes))
	if err != nil {
		t.Fatal(err)
	}
	return rows, probes
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// The bound is 2 x (0.3 + 0.05) = 0.70 ms: a leader p50 of 0.90 ms misses
// it, the follower's is reported beside it; serializable GET / null is
// judged at 256 connections only.
func TestReportHeader(t *testing.T) {
	rows, probes := sample(t)
	var b strings.Builder
	writeHeader(&b, rows, probes, "leader")
	out := b.String()
	wantLines(t, out,
		"fsync probe: 4096 B write + fdatasync, 1000 times, in a preallocated file on the members' disk: p50 0.300 ms  p99 0.900 ms  max 2.000 ms\n",
		"loopback round trip: 64 B TCP ping-pong on 127.0.0.1, 10000 times: p50 0.050 ms  p99 0.120 ms\n",
		"PUT c1 p50 target <= 2 x (fsync p50 + RTT p50) = 2 x (0.300 + 0.050) = 0.70 ms: leader 0.90 ms, NOT met (1.29x the bound); follower 1.40 ms (2.00x; reported, not a target: one hop more)\n",
		"serializable GET c1 / null c1 = 0.75\n",
		"serializable GET c256 / null c256 = 0.95 (target >= 0.9): met\n",
	)

	// With --target follower the put rows went to a follower: the leader's
	// figure is put-leader's.
	rows = append(rows, result{system: "raftexample", workload: "put-leader", conns: 1, rps: 2000, p50: 0.5, p99: 1, ok: true})
	b.Reset()
	writeHeader(&b, rows, probes, "follower")
	wantLines(t, b.String(), "leader 0.50 ms, met (0.71x the bound); follower 0.90 ms")
}

func TestReportEtcd(t *testing.T) {
	rows, _ := sample(t)
	var b strings.Builder
	writeEtcd(&b, rows, "leader")
	out := b.String()
	wantLines(t, out,
		"| put              |     1 |    2.00x |    0.50x |    0.50x | >= 2.5x: NOT met |",
		"| put              |   256 |    5.00x |    0.20x |    0.20x | >= 4.0x: met     |",
		"| txn              |   256 |      n/a |      n/a |      n/a |                  |",
	)
	// etcd's get c256 failed: no ratio rather than a ratio to nothing; and
	// no etcd follower row, so no put-follower ratio.
	for _, bad := range []string{"| get ", "put-follower"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}

	// Sent to a follower, the rows are not judged.
	b.Reset()
	writeEtcd(&b, rows, "follower")
	if out := b.String(); strings.Contains(out, "met") || !strings.Contains(out, "targets: none judged") {
		t.Errorf("rows to a follower judged:\n%s", out)
	}
}

func TestReportPutIf(t *testing.T) {
	rows, _ := sample(t)
	var b strings.Builder
	writePutIf(&b, rows)
	if got, want := b.String(), "put-if c256 / put c256 req/s = 0.88 (target >= 0.90: within 10%): NOT met\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestReadResultsRejects(t *testing.T) {
	for _, bad := range []string{"raftexample\tput\n", "raftexample\tput\tx\t1\t1\t1\n"} {
		if _, err := readResults(strings.NewReader(bad)); err == nil {
			t.Errorf("readResults(%q): no error", bad)
		}
	}
}
