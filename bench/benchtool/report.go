package main

// benchtool report -dir DIR -section header|etcd|put-if [-target leader|follower]
//
// The lines of bench/run.sh's table that judge a run against issue #16's
// targets, from DIR/results.tsv (one wrk run a line: system workload conns
// req/s p50-ms p99-ms max-ms non-2xx errors, "-" where wrk failed) and
// DIR/probes.txt (benchtool fsync and rtt lines):
//
//	header  the fsync probe, the loopback round trips, PUT c1's p50 against
//	        2 x (fsync p50 + TCP RTT p50) for the leader (the follower's
//	        beside it, reported only), and serializable GET / null server.
//	etcd    raftexample / etcd for each row both ran, with the targets.
//	put-if  conditional PUT / plain PUT at each connection count.
//
// -target says which member the "put" rows went to; the other member's PUT
// c1 is the row "put-follower" (or "put-leader").

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// result is one line of results.tsv; ok is false where wrk failed.
type result struct {
	system, workload string
	conns            int
	rps, p50, p99    float64
	ok               bool
}

func readResults(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 6 {
			return nil, fmt.Errorf("results line %d: %d fields, want at least 6", line, len(f))
		}
		c, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("results line %d: conns %q", line, f[2])
		}
		res := result{system: f[0], workload: f[1], conns: c, ok: true}
		for i, p := range []*float64{&res.rps, &res.p50, &res.p99} {
			v, err := strconv.ParseFloat(f[3+i], 64)
			if err != nil || v <= 0 {
				res.ok = false // "-": the run failed
			}
			*p = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// find returns the last row of system/workload at conns that has figures.
func find(rows []result, system, workload string, conns int) (result, bool) {
	for i := len(rows) - 1; i >= 0; i-- {
		r := rows[i]
		if r.system == system && r.workload == workload && r.conns == conns && r.ok {
			return r, true
		}
	}
	return result{}, false
}

// readProbes maps "FSYNC" and "RTT/tcp", "RTT/http" to their fields.
func readProbes(r io.Reader) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		kind, f, err := parseProbe(sc.Text())
		if err != nil {
			return nil, err
		}
		if kind == "RTT" {
			kind += "/" + f["proto"]
		}
		out[kind] = f
	}
	return out, sc.Err()
}

// probeMS is a probe's field in milliseconds; ok is false if missing.
func probeMS(p map[string]string, field string) (float64, bool) {
	v, err := strconv.ParseFloat(p[field], 64)
	return v / 1000, err == nil && v > 0
}

func metWord(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

func writeHeader(w io.Writer, rows []result, probes map[string]map[string]string, target string) {
	fsync, haveFsync := probes["FSYNC"]
	if haveFsync {
		p50, _ := probeMS(fsync, "p50_us")
		p99, _ := probeMS(fsync, "p99_us")
		max, _ := probeMS(fsync, "max_us")
		fmt.Fprintf(w, "fsync probe: %s B write + fdatasync, %s times, in a preallocated file on the members' disk: p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
			fsync["bytes"], fsync["n"], p50, p99, max)
	} else {
		fmt.Fprintln(w, "fsync probe: not measured")
	}
	for _, proto := range []string{"tcp", "http"} {
		p, ok := probes["RTT/"+proto]
		if !ok {
			continue
		}
		how := "TCP ping-pong"
		if proto == "http" {
			how = "HTTP/1.1 keep-alive GET (net/http both ends)"
		}
		p50, _ := probeMS(p, "p50_us")
		p99, _ := probeMS(p, "p99_us")
		fmt.Fprintf(w, "loopback round trip: %s B %s on 127.0.0.1, %s times: p50 %.3f ms  p99 %.3f ms\n", p["bytes"], how, p["n"], p50, p99)
	}
	fsyncP50, okF := probeMS(fsync, "p50_us")
	rttP50, okR := probeMS(probes["RTT/tcp"], "p50_us")
	leaderRow, followerRow := "put", "put-follower"
	if target == "follower" {
		leaderRow, followerRow = "put-leader", "put"
	}
	if okF && okR {
		bound := 2 * (fsyncP50 + rttP50)
		fmt.Fprintf(w, "PUT c1 p50 target <= 2 x (fsync p50 + RTT p50) = 2 x (%.3f + %.3f) = %.2f ms:", fsyncP50, rttP50, bound)
		if r, ok := find(rows, "raftexample", leaderRow, 1); ok {
			fmt.Fprintf(w, " leader %.2f ms, %s (%.2fx the bound)", r.p50, metWord(r.p50 <= bound), r.p50/bound)
		} else {
			fmt.Fprint(w, " leader not measured (no PUT c1 row)")
		}
		if r, ok := find(rows, "raftexample", followerRow, 1); ok {
			fmt.Fprintf(w, "; follower %.2f ms (%.2fx; reported, not a target: one hop more)", r.p50, r.p50/bound)
		}
		fmt.Fprintln(w)
	}
	for _, c := range connsOf(rows, "null", "null") {
		n, _ := find(rows, "null", "null", c)
		g, ok := find(rows, "raftexample", "get-serializable", c)
		if !ok {
			continue
		}
		r := g.rps / n.rps
		fmt.Fprintf(w, "serializable GET c%d / null c%d = %.2f", c, c, r)
		if c == 256 {
			fmt.Fprintf(w, " (target >= 0.9): %s", metWord(r >= 0.9))
		}
		fmt.Fprintln(w)
	}
}

// connsOf lists the connection counts system/workload has figures at, in
// the order they first ran.
func connsOf(rows []result, system, workload string) []int {
	var out []int
	seen := map[int]bool{}
	for _, r := range rows {
		if r.system == system && r.workload == workload && r.ok && !seen[r.conns] {
			seen[r.conns] = true
			out = append(out, r.conns)
		}
	}
	return out
}

// etcdTargets are issue #16's throughput ratios to etcd, by workload/conns.
var etcdTargets = map[string]float64{"put/1": 2.5, "put/256": 4, "get/256": 5}

// With the rows sent to a follower (-target follower) they are not what the
// targets were set for, so no verdict is given.
func writeEtcd(w io.Writer, rows []result, target string) {
	fmt.Fprintln(w, "raftexample / etcd (throughput: higher is better for raftexample; latency: lower is better)")
	fmt.Fprintf(w, "| %-16s | %5s | %8s | %8s | %8s | %-16s |\n", "workload", "conns", "req/s", "p50", "p99", "target (req/s)")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 18), "------:", "---------:", "---------:", "---------:", strings.Repeat("-", 18))
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2fx", a/b) }
	for _, r := range rows {
		if r.system != "raftexample" {
			continue
		}
		if r.workload == "txn" { // no etcd transaction workload in this harness: say so
			fmt.Fprintf(w, "| %-16s | %5d | %8s | %8s | %8s | %-16s |\n", r.workload, r.conns, "n/a", "n/a", "n/a", "")
			continue
		}
		e, ok := find(rows, "etcd", r.workload, r.conns)
		if !ok || !r.ok {
			continue
		}
		t := ""
		if want, ok := etcdTargets[fmt.Sprintf("%s/%d", r.workload, r.conns)]; ok && target == "leader" {
			t = fmt.Sprintf(">= %.1fx: %s", want, metWord(r.rps/e.rps >= want))
		}
		fmt.Fprintf(w, "| %-16s | %5d | %8s | %8s | %8s | %-16s |\n", r.workload, r.conns, ratio(r.rps, e.rps), ratio(r.p50, e.p50), ratio(r.p99, e.p99), t)
	}
	if target != "leader" {
		fmt.Fprintln(w, "targets: none judged, the rows went to a follower; the targets are for requests to the leader")
	}
}

// writePutIf pairs each put-if row with the put row at its connections
// that ran last before it, as run.sh's put-if table does.
func writePutIf(w io.Writer, rows []result) {
	last := map[int]result{}
	for _, r := range rows {
		if r.system != "raftexample" || !r.ok {
			continue
		}
		switch r.workload {
		case "put":
			last[r.conns] = r
		case "put-if":
			p, ok := last[r.conns]
			if !ok {
				continue
			}
			q := r.rps / p.rps
			fmt.Fprintf(w, "put-if c%d / put c%d req/s = %.2f", r.conns, r.conns, q)
			if r.conns == 16 || r.conns == 256 {
				fmt.Fprintf(w, " (target >= 0.90: within 10%%): %s", metWord(q >= 0.9))
			}
			fmt.Fprintln(w)
		}
	}
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	dir := fs.String("dir", "", "the run's results directory")
	section := fs.String("section", "header", "header, etcd or put-if")
	target := fs.String("target", "leader", "the member the put rows went to: leader or follower")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("report: -dir is required")
	}
	if *target != "leader" && *target != "follower" {
		return errors.New("report: -target must be leader or follower")
	}
	f, err := os.Open(filepath.Join(*dir, "results.tsv"))
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := readResults(f)
	if err != nil {
		return err
	}
	switch *section {
	case "header":
		probes := map[string]map[string]string{}
		if pf, err := os.Open(filepath.Join(*dir, "probes.txt")); err == nil {
			probes, err = readProbes(pf)
			pf.Close()
			if err != nil {
				return err
			}
		}
		writeHeader(os.Stdout, rows, probes, *target)
	case "etcd":
		writeEtcd(os.Stdout, rows, *target)
	case "put-if":
		writePutIf(os.Stdout, rows)
	default:
		return fmt.Errorf("report: -section %q: want header, etcd or put-if", *section)
	}
	return nil
}
