package main

// The machine's own floors, measured in the same run as the cluster so that
// a PUT's latency can be judged against them (issue #16: PUT c1 p50 <= 2 x
// (fsync p50 + one loopback round trip)):
//
//	benchtool fsync -dir DIR [-n 1000] [-bytes 4096]
//	    appends -bytes and fdatasyncs, -n times, in a file preallocated in
//	    DIR the way the WAL preallocates its segments; prints a FSYNC line.
//	benchtool rtt [-proto tcp|http] [-n 10000] [-bytes 64]
//	    ping-pongs -bytes over one 127.0.0.1 connection (TCP, or an HTTP/1.1
//	    keep-alive GET through net/http), -n times; prints a RTT line.
//
// Each prints one line of name=value pairs that bench/run.sh keeps in
// probes.txt and benchtool report reads (parseProbe).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// probeWarmup samples are taken first and not counted: the first write to
// a fresh file and the first request on a connection pay one-off costs.
const probeWarmup = 10

// percentile is the nearest-rank percentile (q in 0..1) of samples sorted
// in increasing order: the smallest sample with at least q of the samples
// at or below it. 0 when there are none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// probeLine formats the samples (sorted here) as "KIND attrs n=N p50_us=..
// p99_us=.. max_us=..", microseconds with two decimals: a fast disk's
// fdatasync and a loopback round trip are tens of microseconds.
func probeLine(kind, attrs string, samples []time.Duration) string {
	slices.Sort(samples)
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 2, 64) }
	var b strings.Builder
	b.WriteString(kind)
	if attrs != "" {
		b.WriteString(" " + attrs)
	}
	fmt.Fprintf(&b, " n=%d p50_us=%s p99_us=%s max_us=%s", len(samples),
		us(percentile(samples, 0.5)), us(percentile(samples, 0.99)), us(percentile(samples, 1)))
	return b.String()
}

// parseProbe reads a line written by probeLine back: its kind and fields.
func parseProbe(line string) (kind string, fields map[string]string, err error) {
	words := strings.Fields(line)
	if len(words) < 2 {
		return "", nil, fmt.Errorf("probe line %q: too short", line)
	}
	fields = map[string]string{}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return "", nil, fmt.Errorf("probe line %q: %q is not name=value", line, w)
		}
		fields[k] = v
	}
	return words[0], fields, nil
}

func fsyncCmd(args []string) error {
	fs := flag.NewFlagSet("fsync", flag.ExitOnError)
	dir := fs.String("dir", "", "directory on the disk to measure (the members' data directory)")
	n := fs.Int("n", 1000, "writes to time")
	size := fs.Int("bytes", 4096, "bytes per write")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("fsync: -dir is required")
	}
	if *n < 1 || *size < 1 || *size > 1<<20 {
		return errors.New("fsync: -n must be at least 1 and -bytes in 1..1048576")
	}
	samples, err := fsyncSamples(*dir, *n, *size)
	if err != nil {
		return err
	}
	fmt.Println(probeLine("FSYNC", fmt.Sprintf("bytes=%d", *size), samples))
	return nil
}

// fsyncSamples times n appends of size bytes, each followed by fdatasync,
// in a file preallocated (fallocate, as the WAL's segments are) to hold
// them all, so that no write grows the file: the WAL's steady state.
func fsyncSamples(dir string, n, size int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	total := int64(n+probeWarmup) * int64(size)
	if err := fileutil.Preallocate(f, total, true); err != nil {
		return nil, fmt.Errorf("fsync: preallocating %s: %v", filepath.Base(f.Name()), err)
	}
	if err := fileutil.Fsync(f); err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n+probeWarmup; i++ {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*int64(size)); err != nil {
			return nil, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		if i >= probeWarmup {
			samples = append(samples, time.Since(start))
		}
	}
	return samples, nil
}

func rttCmd(args []string) error {
	fs := flag.NewFlagSet("rtt", flag.ExitOnError)
	proto := fs.String("proto", "tcp", "tcp (a raw ping-pong) or http (HTTP/1.1 keep-alive GET through net/http)")
	n := fs.Int("n", 10000, "round trips to time")
	size := fs.Int("bytes", 64, "bytes each way")
	fs.Parse(args)
	if *n < 1 || *size < 1 || *size > 1<<20 {
		return errors.New("rtt: -n must be at least 1 and -bytes in 1..1048576")
	}
	var samples []time.Duration
	var err error
	switch *proto {
	case "tcp":
		samples, err = tcpRTT(*n, *size)
	case "http":
		samples, err = httpRTT(*n, *size)
	default:
		return fmt.Errorf("rtt: -proto %q: want tcp or http", *proto)
	}
	if err != nil {
		return err
	}
	fmt.Println(probeLine("RTT", fmt.Sprintf("proto=%s bytes=%d", *proto, *size), samples))
	return nil
}

// tcpRTT: an echo server and its client in this process, one connection,
// the client writing size bytes and reading them back before the next.
func tcpRTT(n, size int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	out, in := make([]byte, size), make([]byte, size)
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n+probeWarmup; i++ {
		start := time.Now()
		if _, err := c.Write(out); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return nil, err
		}
		if i >= probeWarmup {
			samples = append(samples, time.Since(start))
		}
	}
	return samples, nil
}

// httpRTT: the same over net/http, server and client, one keep-alive
// connection: what the HTTP layer adds to a round trip.
func httpRTT(n, size int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	body := make([]byte, size)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	defer srv.Close()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	u := "http://" + ln.Addr().String() + "/"
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n+probeWarmup; i++ {
		start := time.Now()
		resp, err := c.Get(u)
		if err != nil {
			return nil, err
		}
		got, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK || got != int64(size) {
			return nil, fmt.Errorf("rtt: %s, %d bytes, want 200 and %d", resp.Status, got, size)
		}
		if i >= probeWarmup {
			samples = append(samples, time.Since(start))
		}
	}
	return samples, nil
}
