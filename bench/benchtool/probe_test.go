package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Nearest rank: p50 of 1..100 is 50, p99 is 99, p100 the largest; one
// sample is every percentile.
func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}, {0.001, 1}} {
		if got := percentile(s, c.q); got != c.want {
			t.Errorf("percentile(1..100, %v) = %d, want %d", c.q, got, c.want)
		}
	}
	// Where q x n is not a whole number the rank rounds up: p99 of ten
	// samples is the largest, p50 of five the third.
	if got := percentile(s[:10], 0.99); got != 10 {
		t.Errorf("p99 of 1..10 = %d, want 10", got)
	}
	if got := percentile(s[:5], 0.5); got != 3 {
		t.Errorf("p50 of 1..5 = %d, want 3", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("one sample: %d", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("no samples: %d", got)
	}
}

// probeLine sorts its samples itself, writes microseconds with two
// decimals, and parseProbe (what report reads) gets the same fields back.
func TestProbeLine(t *testing.T) {
	samples := []time.Duration{3 * time.Millisecond, 250 * time.Microsecond, 1500, 260 * time.Microsecond}
	line := probeLine("FSYNC", "bytes=4096", samples)
	// p50 of 4 sorted samples is the 2nd: 250 us.
	want := "FSYNC bytes=4096 n=4 p50_us=250.00 p99_us=3000.00 max_us=3000.00"
	if line != want {
		t.Fatalf("probeLine = %q, want %q", line, want)
	}
	kind, f, err := parseProbe(line)
	if err != nil || kind != "FSYNC" || f["bytes"] != "4096" || f["p50_us"] != "250.00" || f["n"] != "4" {
		t.Fatalf("parseProbe(%q) = %q %v %v", line, kind, f, err)
	}
	for _, bad := range []string{"", "FSYNC", "FSYNC p50_us", "RTT =3"} {
		if _, _, err := parseProbe(bad); err == nil {
			t.Errorf("parseProbe(%q): no error", bad)
		}
	}
}

// The fsync probe takes n samples, each at least as long as a write, and
// leaves nothing behind in the directory.
func TestFsyncSamples(t *testing.T) {
	dir := t.TempDir()
	s, err := fsyncSamples(dir, 20, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 20 {
		t.Fatalf("%d samples, want 20", len(s))
	}
	for _, d := range s {
		if d <= 0 {
			t.Fatalf("sample %v", d)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestRTT(t *testing.T) {
	for name, f := range map[string]func(int, int) ([]time.Duration, error){"tcp": tcpRTT, "http": httpRTT} {
		s, err := f(50, 64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(s) != 50 {
			t.Errorf("%s: %d samples, want 50", name, len(s))
		}
	}
}

// The null server answers any path and method 200 with the whole body.
func TestNullHandler(t *testing.T) {
	srv := httptest.NewServer(nullHandler([]byte(strings.Repeat("x", 256))))
	defer srv.Close()
	for _, path := range []string{"/", "/bench-17?consistency=serializable"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) != 256 || resp.ContentLength != 256 {
			t.Errorf("GET %s: %s, %d bytes (Content-Length %d), want 200 and 256", path, resp.Status, len(body), resp.ContentLength)
		}
	}
}
