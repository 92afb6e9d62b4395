package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// What a member does when its disk loses its data or fills up.

// A member whose WAL was deleted must not start afresh from --cluster, as if
// it had never been a member (it could vote again in a term it voted in, or
// acknowledge again entries it lost): it exits with a one-line reason saying
// what to do, and the others carry on.
func TestAMemberWhoseWALWasDeletedRefusesToStart(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	kvs := tc.KVs("before", 20, 30)
	tc.PutMany(t, kvs, c.Nodes...)
	tc.ExpectValues(t, kvs, n3)
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}
	if err := os.RemoveAll(n3.WALDir()); err != nil {
		t.Fatal(err)
	}

	n3.Start()
	code, ok := n3.Wait(tc.Timeout)
	if !ok {
		t.Fatalf("node 3 still runs without its WAL; its log:\n%s", tc.Tail(n3.RunLog(), 20))
	}
	if code == 0 {
		t.Fatalf("node 3 exited 0 without its WAL, want non-zero")
	}
	want := fmt.Sprintf("refusing to start: its snapshot directory %s exists but its WAL directory %s does not: "+
		"remove this member (DELETE /3), delete its data directories, and add it again under a new id", n3.SnapDir(), n3.WALDir())
	line := logLine(n3.RunLog(), "refusing to start")
	if !strings.Contains(line, want) {
		t.Fatalf("node 3's reason:\n%s\nwant a line with:\n%s\nits log:\n%s", line, want, n3.RunLog())
	}
	t.Logf("node 3 exited with code %d: %s", code, line)
	if strings.Contains(n3.RunLog(), "serving HTTP") {
		t.Fatal("node 3 served HTTP without its WAL")
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n3.HTTPPort), time.Second); err == nil {
		conn.Close()
		t.Fatal("node 3's HTTP port accepts connections")
	}
	if ok, _ := exists(n3.WALDir()); ok {
		t.Fatal("node 3 made a new WAL")
	}
	expectHealthy(t, n1, n2)
	tc.ExpectValues(t, kvs, n1, n2)
}

// A member whose disk fills up warns on /health and in a gauge first; when a
// write fails it stops with a one-line reason, having acknowledged nothing
// it could not store, while the others go on; once there is room again it
// starts cleanly and catches up.
func TestAMemberWhoseDiskFillsUpStopsAndComesBackOnceThereIsRoom(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	// Small WAL segments: the threshold is then about 64 MiB (see
	// lowDiskThreshold) and the member cuts a segment every few dozen writes.
	c := tc.New(t, 3, "--wal-segment-bytes", "65536", "--snap-count", "200")
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	mountTmpfs(t, n3.DataDir, 96<<20)
	c.Start()
	n1.MustPut(tc.ReadyKey, tc.ReadyKey)
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	expectHealth(t, n3, "")

	// Below the threshold but with room to spare: a warning, and writes go on.
	leave := int64(32 << 20)
	filler := filepath.Join(n3.DataDir, "filler")
	fill(t, filler, freeBytes(t, n3.DataDir)-leave)
	expectHealth(t, n3, "low disk space: ")
	if free, err := n3.Metric("raftexample_disk_free_bytes", nil); err != nil || free > float64(leave) {
		t.Fatalf("raftexample_disk_free_bytes = %v (%v), want at most %d", free, err, leave)
	}
	n3.MustPut("written-on-a-low-disk", "yes")

	// Full: node 3 stops at its next failed write.
	w := startAckedWriter("while-full", n1, n2)
	w.waitMore(t, 20)
	fill(t, filepath.Join(n3.DataDir, "filler2"), -1)
	code, ok := n3.Wait(60 * time.Second)
	if !ok {
		t.Fatalf("node 3 still runs on a full disk; its log:\n%s", tc.Tail(n3.RunLog(), 20))
	}
	line := logLine(n3.RunLog(), "disk failure")
	t.Logf("node 3 exited with code %d: %s", code, line)
	if code == 0 || !strings.Contains(line, "no space left on device") {
		t.Fatalf("node 3 exited with code %d, reason %q; want non-zero and a line naming the full disk; its log:\n%s", code, line, tc.Tail(n3.RunLog(), 20))
	}
	w.waitMore(t, 50) // the others still take writes

	// Room again: node 3 starts cleanly and catches up.
	for _, f := range []string{filler, filepath.Join(n3.DataDir, "filler2")} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	n3.Restart()
	w.waitMore(t, 20)
	acked := w.finish()
	tc.ExpectValues(t, acked, n1, n2, n3)
	tc.ExpectValue(t, "written-on-a-low-disk", "yes", n1, n2, n3)
	expectHealthy(t, n1, n2, n3)
	expectHealth(t, n3, "")
	if strings.Contains(n3.RunLog(), "panic") {
		t.Fatalf("node 3 logged a panic after the restart:\n%s", tc.Tail(n3.RunLog(), 30))
	}
}

// expectHealth waits until n's /health is 200 (reason "") or 503 with a
// reason starting with reason.
func expectHealth(t *testing.T, n *tc.Node, reason string) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		var h struct {
			Health bool   `json:"health"`
			Reason string `json:"reason"`
		}
		code, body, err := n.Do(http.MethodGet, "/health", "")
		if err == nil {
			err = json.Unmarshal([]byte(body), &h)
		}
		switch {
		case err != nil:
			return fmt.Errorf("/health on %v: %v", n, err)
		case reason == "" && code != http.StatusOK:
			return fmt.Errorf("/health on %v: %d %q, want 200", n, code, h.Reason)
		case reason != "" && (code != http.StatusServiceUnavailable || !strings.HasPrefix(h.Reason, reason)):
			return fmt.Errorf("/health on %v: %d %q, want 503 with a reason starting %q", n, code, h.Reason, reason)
		}
		return nil
	})
}

// mountTmpfs mounts a tmpfs of size bytes on dir for the test, or skips it.
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Lazily: the cleanup that kills the processes running in dir comes later.
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a file of size bytes at path, or with size < 0 one that takes
// all the space left.
func fill(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if size >= 0 {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			t.Fatal(err)
		}
		return
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// ackedWriter PUTs distinct 1 KiB values through nodes in turn until
// finished, and keeps those that were acknowledged (204); others may fail
// while a member stops.
type ackedWriter struct {
	mu    sync.Mutex
	acked []tc.KV
	stop  chan struct{}
	done  chan struct{}
}

func startAckedWriter(prefix string, nodes ...*tc.Node) *ackedWriter {
	w := &ackedWriter{stop: make(chan struct{}), done: make(chan struct{})}
	val := strings.Repeat("v", 1024)
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			kv := tc.KV{Key: fmt.Sprintf("%s-%d", prefix, i), Val: fmt.Sprintf("%s-%d", val, i)}
			if code, _, err := nodes[i%len(nodes)].Put(kv.Key, kv.Val); err == nil && code == http.StatusNoContent {
				w.mu.Lock()
				w.acked = append(w.acked, kv)
				w.mu.Unlock()
			} else {
				time.Sleep(20 * time.Millisecond) // not a settling wait: no busy loop while there is no leader
			}
		}
	}()
	return w
}

func (w *ackedWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitMore waits until k more writes were acknowledged.
func (w *ackedWriter) waitMore(t *testing.T, k int) {
	t.Helper()
	target := w.count() + k
	tc.Eventually(t, tc.Timeout, func() error {
		if got := w.count(); got < target {
			return fmt.Errorf("writer: %d acknowledged writes, waiting for %d", got, target)
		}
		return nil
	})
}

func (w *ackedWriter) finish() []tc.KV {
	close(w.stop)
	<-w.done
	return w.acked
}

// logLine returns the first line of log containing text, or "".
func logLine(log, text string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, text) {
			return l
		}
	}
	return ""
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// A follower that cannot store the snapshot the leader sends it (rafthttp
// saves it) stops as on any failed write, and takes it once there is room.
func TestAMemberThatCannotStoreTheLeadersSnapshotStops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	c := tc.New(t, 3, "--wal-segment-bytes", "65536", "--snap-count", "20")
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	mountTmpfs(t, n3.DataDir, 96<<20)
	c.Start()
	n1.MustPut(tc.ReadyKey, tc.ReadyKey)
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}
	// The others compact their logs far past node 3's: it needs a snapshot.
	kvs := tc.KVs("missed", 200, 1024)
	tc.PutMany(t, kvs, n1, n2)
	filler := filepath.Join(n3.DataDir, "filler")
	fill(t, filler, -1)

	n3.Start()
	code, ok := n3.Wait(60 * time.Second)
	if !ok {
		t.Fatalf("node 3 still runs on a full disk; its log:\n%s", tc.Tail(n3.RunLog(), 20))
	}
	line := logLine(n3.RunLog(), "disk failure")
	t.Logf("node 3 exited with code %d: %s", code, line)
	if code == 0 || !strings.Contains(line, "storing the snapshot") || !strings.Contains(line, "no space left on device") {
		t.Fatalf("node 3 exited with code %d, reason %q; want non-zero and a line naming the snapshot and the full disk; its log:\n%s", code, line, tc.Tail(n3.RunLog(), 20))
	}
	expectHealthy(t, n1, n2)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n3.Restart()
	tc.ExpectValues(t, kvs, n3)
	expectHealthy(t, n1, n2, n3)
}
