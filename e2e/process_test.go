package e2e

// Cross-process tests of the basics: each test builds nothing itself but
// runs the real binary (built once per `go test` run by testcluster.Build)
// as separate processes with real data directories and real HTTP: writes
// and reads through any node, restarts, snapshots, membership changes,
// signals and the Procfile.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// expectRemovedExit waits for a removed node to exit by itself with code
// 0 after logging that it was removed.
func expectRemovedExit(t *testing.T, n *tc.Node) {
	t.Helper()
	code, ok := n.Wait(20 * time.Second)
	if !ok {
		t.Fatalf("%v still running 20s after its removal", n)
	}
	if code != 0 {
		t.Fatalf("removed %v exited with code %d, want 0", n, code)
	}
	if !strings.Contains(n.RunLog(), "this member was removed from the cluster") {
		t.Fatalf("removed %v did not log %q", n, "this member was removed from the cluster")
	}
}

// ---------------------------------------------------------------------------

func TestPutOnAnyNodeIsReadableOnAll(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for _, n := range c.Nodes {
		key, val := fmt.Sprintf("via-%d", n.ID), fmt.Sprintf("written through node %d", n.ID)
		n.MustPut(key, val)
		tc.ExpectValue(t, key, val, c.Nodes...)
		// The same key overwritten through every node in turn: the last write wins everywhere.
		n.MustPut("shared", val)
		tc.ExpectValue(t, "shared", val, c.Nodes...)
	}
	code, _, err := c.Node(2).Get("never-written")
	expectStatus(t, "GET of a missing key", code, "", err, http.StatusNotFound)
}

func TestNodeRestartedAfterSIGTERMKeepsDataAndCatchesUp(t *testing.T) {
	restartCatchesUp(t, false)
}

func TestNodeRestartedAfterSIGKILLKeepsDataAndCatchesUp(t *testing.T) {
	restartCatchesUp(t, true)
}

func restartCatchesUp(t *testing.T, kill bool) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	before := tc.KVs("before", 20, 30)
	tc.PutMany(t, before, c.Nodes...)
	tc.ExpectValues(t, before, n3)

	if kill {
		n3.Kill()
	} else if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}

	missed := tc.KVs("missed", 20, 30)
	tc.PutMany(t, missed, n1, n2)
	before[0].Val = "overwritten while node 3 was down"
	n1.MustPut(before[0].Key, before[0].Val)

	n3.Restart()
	tc.ExpectValues(t, append(before, missed...), n3)

	// Node 3 is a full member again: its writes reach the others.
	n3.MustPut("after-restart", "hello from node 3")
	tc.ExpectValue(t, "after-restart", "hello from node 3", n1, n2)
}

// filesIn lists the names in dir matching the glob pattern.
func filesIn(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func TestSnapshotsAreTakenRetainedAndSentToLaggingFollower(t *testing.T) {
	c := tc.StartCluster(t, 3, "--snap-count", "50", "--wal-segment-bytes", "65536")
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	early := tc.KVs("early", 10, 100)
	tc.PutMany(t, early, c.Nodes...)
	tc.ExpectValues(t, early, n3)
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}

	// About 700 KB of values: a dozen 64 KiB WAL segments, a snapshot every
	// 50 entries, and the leader's log compacted far past node 3's.
	bulk := tc.KVs("bulk", 700, 1000)
	tc.PutMany(t, bulk, n1, n2)
	all := append(early, bulk...)
	tc.ExpectValues(t, all, n1, n2)

	const firstSegment = "0000000000000000-0000000000000000.wal"
	for _, n := range []*tc.Node{n1, n2} {
		// Purging may run in the background: poll for it.
		tc.Eventually(t, 45*time.Second, func() error {
			snaps := filesIn(t, n.SnapDir(), "*.snap")
			dataFiles := filesIn(t, n.SnapDir(), "*.snap.db")
			wals := filesIn(t, n.WALDir(), "*.wal")
			switch {
			case len(snaps) == 0:
				return fmt.Errorf("%v: no .snap files in %s", n, n.SnapDir())
			case len(snaps) > 2:
				return fmt.Errorf("%v: %d .snap files, want <= 2 (the newest and the one to fall back to): %v", n, len(snaps), snaps)
			case len(dataFiles) == 0 || len(dataFiles) > 3:
				// One per kept snapshot, and one being written or received.
				return fmt.Errorf("%v: %d snapshot data files, want 1-3: %v", n, len(dataFiles), dataFiles)
			case len(wals) == 0:
				return fmt.Errorf("%v: no .wal files in %s", n, n.WALDir())
			case wals[0] == firstSegment:
				return fmt.Errorf("%v: first WAL segment %s still there (%d segments: %v)", n, firstSegment, len(wals), wals)
			case len(wals) > 8:
				return fmt.Errorf("%v: %d WAL segments, want <= 8 (5 kept + the ones still needed): %v", n, len(wals), wals)
			}
			t.Logf("%v: snapshots %v, data files %v, WAL segments %v", n, snaps, dataFiles, wals)
			return nil
		})
		if !strings.Contains(n.RunLog(), "snapshot saved") {
			t.Errorf("%v has .snap files but never logged %q", n, "snapshot saved")
		}
	}

	// Node 3 slept through the compaction: it must get a snapshot.
	n3.Restart()
	tc.ExpectValues(t, all, n3)
	expectLogged(t, n3, "installed snapshot from leader")

	// Whole-cluster restart: every node rebuilds its state from its own
	// snapshot + WAL (no node is left that could send it anything else).
	tc.RestartAll(t, c.Nodes...)
	tc.ExpectValues(t, all, c.Nodes...)
	n2.MustPut("after-full-restart", "ok")
	tc.ExpectValue(t, "after-full-restart", "ok", c.Nodes...)
}

// addFourRemoveThree runs the membership scenario on a fresh three-node
// cluster: node 4 is added and catches up by snapshot, then node 3 is
// removed and exits. It returns the cluster and the values written so far.
func addFourRemoveThree(t *testing.T) (*tc.Cluster, []tc.KV) {
	t.Helper()
	c := tc.StartCluster(t, 3, "--snap-count", "50")
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	pre := tc.KVs("pre", 200, 50)
	tc.PutMany(t, pre, n1, n2, n3)

	n4 := c.NewJoiner()
	code, body, err := n1.AddMember("4", n4.PeerURL)
	expectStatus(t, "POST /4 "+n4.PeerURL, code, body, err, http.StatusNoContent)
	n4.Start() // --join, --cluster with all four URLs
	if err := n4.WaitServing(tc.Timeout); err != nil {
		t.Fatal(err)
	}
	tc.ExpectValues(t, pre, n4)
	expectLogged(t, n4, "installed snapshot from leader")

	code, body, err = n2.RemoveMember("3")
	expectStatus(t, "DELETE /3", code, body, err, http.StatusNoContent)
	expectRemovedExit(t, n3)

	post := tc.KVs("post", 3, 20)
	for i, n := range []*tc.Node{n1, n2, n4} {
		n.MustPut(post[i].Key, post[i].Val)
	}
	tc.ExpectValues(t, post, n1, n2, n4)
	return c, append(pre, post...)
}

func TestAddedMemberCatchesUpAndRemovedMemberExits(t *testing.T) {
	c, _ := addFourRemoveThree(t)
	// Ids are never reused: neither a removed id nor a current one can be added.
	code, body, err := c.Node(1).AddMember("3", c.Node(3).PeerURL)
	expectStatus(t, "POST /3 after removing 3", code, body, err, http.StatusConflict)
	code, body, err = c.Node(4).AddMember("4", c.Node(4).PeerURL)
	expectStatus(t, "POST /4 when 4 is a member", code, body, err, http.StatusConflict)
}

func TestMembershipChangesSurviveRestarts(t *testing.T) {
	c, kvs := addFourRemoveThree(t)
	n1, n2, n4 := c.Node(1), c.Node(2), c.Node(4)
	survivors := []*tc.Node{n1, n2, n4}

	// All three down at once, then up again: nodes 1 and 2 still have their
	// original three-URL --cluster, so node 4 can only be known from what
	// they persisted.
	tc.RestartAll(t, survivors...)
	tc.ExpectValues(t, kvs, survivors...)
	for _, n := range survivors {
		key := fmt.Sprintf("after-restart-via-%d", n.ID)
		n.MustPut(key, "new")
		tc.ExpectValue(t, key, "new", survivors...)
	}
	if c.Node(3).Running() {
		t.Fatal("removed node 3 is running")
	}
}

// backgroundWriter PUTs distinct keys through the given nodes in turn, one after
// another, until stopped, and records every PUT that did not get 204.
type backgroundWriter struct {
	ok      atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	failed  []string
	written []tc.KV
}

func startBackgroundWriter(prefix string, nodes ...*tc.Node) *backgroundWriter {
	w := &backgroundWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			n := nodes[i%len(nodes)]
			kv := tc.KV{Key: fmt.Sprintf("%s-%d", prefix, i), Val: fmt.Sprintf("v%d", i)}
			start := time.Now()
			code, body, err := n.Put(kv.Key, kv.Val)
			w.mu.Lock()
			if err != nil || code != http.StatusNoContent {
				w.failed = append(w.failed, fmt.Sprintf("%s PUT %s on %v after %v: status %d %q err %v",
					start.Format("15:04:05.000"), kv.Key, n, time.Since(start).Round(time.Millisecond), code, strings.TrimSpace(body), err))
			} else {
				w.written = append(w.written, kv)
				w.ok.Add(1)
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// waitMore waits until k more PUTs succeeded.
func (w *backgroundWriter) waitMore(t *testing.T, k int64) {
	t.Helper()
	target := w.ok.Load() + k
	tc.Eventually(t, tc.Timeout, func() error {
		if got := w.ok.Load(); got < target {
			return fmt.Errorf("writer: %d successful PUTs, waiting for %d", got, target)
		}
		return nil
	})
}

func (w *backgroundWriter) finish(t *testing.T) []tc.KV {
	t.Helper()
	close(w.stop)
	<-w.done
	if len(w.failed) > 0 {
		t.Errorf("%d PUTs failed while the removed node was running (%d succeeded):\n%s",
			len(w.failed), w.ok.Load(), strings.Join(w.failed, "\n"))
	}
	return w.written
}

// copyDir copies the regular files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRemovedNodeRestartedFromOldDataExitsWithoutDisturbingCluster(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	kvs := tc.KVs("k", 20, 30)
	tc.PutMany(t, kvs, c.Nodes...)
	tc.ExpectValues(t, kvs, n3)

	// Keep a copy of node 3's data from while it was a member.
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}
	memberCopy := filepath.Join(t.TempDir(), "node3-member")
	copyDir(t, n3.DataDir, memberCopy)
	n3.Restart()
	n3.MustPut("node3-back", "yes")
	tc.ExpectValue(t, "node3-back", "yes", n1, n2)

	code, body, err := n1.RemoveMember("3")
	expectStatus(t, "DELETE /3", code, body, err, http.StatusNoContent)
	expectRemovedExit(t, n3)

	for vi, variant := range []struct {
		name    string
		prepare func()
	}{
		{"its own data dir after the removal", func() {}},
		{"a copy of its data dir from before the removal", func() {
			if err := os.RemoveAll(n3.DataDir); err != nil {
				t.Fatal(err)
			}
			copyDir(t, memberCopy, n3.DataDir)
		}},
	} {
		t.Logf("restarting removed node 3 from %s", variant.name)
		variant.prepare()
		w := startBackgroundWriter(fmt.Sprintf("during-%d", vi), n1, n2)
		w.waitMore(t, 5)
		n3.Start()
		expectRemovedExit(t, n3)
		w.waitMore(t, 10)
		written := w.finish(t)
		tc.ExpectValues(t, written, n1, n2)
	}
}

func TestBadMembershipRequestsAreRejectedAndHarmless(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n := func(i int) *tc.Node { return c.Nodes[i%len(c.Nodes)] } // spread requests over all nodes
	// A well-formed URL that is never contacted: every request below is refused.
	goodURL := "http://127.0.0.1:1"
	req := 0
	check := func(method, path, body string, want int) {
		t.Helper()
		node := n(req)
		req++
		code, respBody, err := node.Do(method, path, body)
		expectStatus(t, fmt.Sprintf("%s %s %q on %v", method, path, body, node), code, respBody, err, want)
	}

	for _, bad := range []string{"not a url", "ftp://x:1", "http://nohostport", "", "127.0.0.1:2380"} {
		check(http.MethodPost, "/4", bad, http.StatusBadRequest)
	}
	for _, badID := range []string{"0", "-1", "abc", "1.5"} {
		check(http.MethodPost, "/"+badID, goodURL, http.StatusBadRequest)
	}
	for id := 1; id <= 3; id++ {
		check(http.MethodPost, "/"+strconv.Itoa(id), goodURL, http.StatusConflict)
	}
	check(http.MethodDelete, "/9", "", http.StatusNotFound)
	check(http.MethodDelete, "/abc", "", http.StatusBadRequest)
	check(http.MethodDelete, "/0", "", http.StatusBadRequest)

	for _, path := range []string{"/somekey", "/1"} {
		resp, err := n(req).DoRequest("PATCH", path, "x", nil)
		req++
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
			t.Fatalf("PATCH %s: status %d, Allow %q; want 405 with an Allow header", path, resp.Code, resp.Header.Get("Allow"))
		}
	}

	single := tc.StartCluster(t, 1)
	code, body, err := single.Node(1).RemoveMember("1")
	expectStatus(t, "DELETE /1 on a one-node cluster", code, body, err, http.StatusConflict)

	// Nothing of the above may have reached the raft log in a harmful way:
	// every node restarts fine and both clusters still work.
	for _, cl := range []*tc.Cluster{c, single} {
		tc.RestartAll(t, cl.Nodes...)
		for _, node := range cl.Nodes {
			key := fmt.Sprintf("after-restart-%d", node.ID)
			node.MustPut(key, "fine")
			tc.ExpectValue(t, key, "fine", cl.Nodes...)
		}
		for _, node := range cl.Nodes {
			if !node.Running() {
				t.Fatalf("%v exited after the restart", node)
			}
		}
	}
	// The membership is still exactly what it was: 3 is a member, 4 is not.
	code, body, err = c.Node(1).RemoveMember("4")
	expectStatus(t, "DELETE /4 after the restart", code, body, err, http.StatusNotFound)
	code, body, err = c.Node(2).AddMember("3", goodURL)
	expectStatus(t, "POST /3 after the restart", code, body, err, http.StatusConflict)
}

func TestSIGTERMAndSIGINTExitCleanlyAndKeepData(t *testing.T) {
	c := tc.StartCluster(t, 3)
	kvs := tc.KVs("k", 30, 100)
	tc.PutMany(t, kvs, c.Nodes...)
	tc.ExpectValues(t, kvs, c.Nodes...)

	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		n := c.Nodes[i]
		if code := n.StopWith(sig); code != 0 {
			t.Fatalf("%v exited with code %d after %v, want 0", n, code, sig)
		}
		if bad := tc.ErrorLines(n.RunLog()); len(bad) > 0 {
			t.Errorf("%v logged at error level in a run ended by %v:\n%s", n, sig, strings.Join(bad, "\n"))
		}
		n.Restart()
		tc.ExpectValues(t, kvs, n)
		key := "after-" + sig.String()
		n.MustPut(key, "ok")
		tc.ExpectValue(t, key, "ok", c.Nodes...)
	}
}

// ---------------------------------------------------------------------------
// Procfile

var urlPort = regexp.MustCompile(`(://[^/,:]+:)(\d+)`)

// parseProcfile reads "name: command args..." lines.
func parseProcfile(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the Procfile: %v", err)
	}
	procs := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		if !ok || len(strings.Fields(cmd)) == 0 {
			t.Fatalf("Procfile line %q is not \"name: command\"", line)
		}
		procs[strings.TrimSpace(name)] = strings.Fields(cmd)
	}
	return procs
}

func TestProcfileStartsAWorkingCluster(t *testing.T) {
	procs := parseProcfile(t, "../Procfile") // the tests run in e2e/; the Procfile is at the module's root
	if len(procs) < 2 {
		t.Fatalf("Procfile has %d processes, want a cluster of at least 2", len(procs))
	}
	bin := tc.Build(t)

	// Map every port the Procfile mentions (in URLs and --port) to a free one.
	ports := map[string]string{}
	mapPort := func(p string) string {
		if _, ok := ports[p]; !ok {
			ports[p] = strconv.Itoa(tc.FreePorts(t, 1)[0])
		}
		return ports[p]
	}
	isPortFlag := func(s string) bool { return s == "--port" || s == "-port" }

	dir := t.TempDir() // one working directory for all, as goreman would do
	logs := t.TempDir()
	var nodes []*tc.Node
	for name, fields := range procs {
		if filepath.Base(fields[0]) != "raftexample" {
			t.Fatalf("Procfile process %s runs %q, want ./raftexample", name, fields[0])
		}
		args := append([]string(nil), fields[1:]...)
		httpPort, id := 0, 0
		for i, a := range args {
			flag, val, hasEq := strings.Cut(a, "=")
			switch {
			case i > 0 && isPortFlag(args[i-1]):
				args[i] = mapPort(a)
				httpPort, _ = strconv.Atoi(args[i])
			case hasEq && isPortFlag(flag):
				args[i] = flag + "=" + mapPort(val)
				httpPort, _ = strconv.Atoi(mapPort(val))
			case i > 0 && (args[i-1] == "--id" || args[i-1] == "-id"):
				id, _ = strconv.Atoi(a)
			default:
				args[i] = urlPort.ReplaceAllStringFunc(a, func(m string) string {
					sub := urlPort.FindStringSubmatch(m)
					return sub[1] + mapPort(sub[2])
				})
			}
		}
		if httpPort == 0 {
			t.Fatalf("Procfile process %s has no --port", name)
		}
		n := tc.NewNode(t, bin, dir, filepath.Join(logs, name+".log"), httpPort, args)
		n.ID = id
		nodes = append(nodes, n)
		t.Logf("%s: raftexample %s", name, strings.Join(args, " "))
	}

	tc.StartAll(t, nodes...)
	for _, n := range nodes {
		key := fmt.Sprintf("procfile-%d", n.HTTPPort)
		val := fmt.Sprintf("written through %v", n)
		n.MustPut(key, val)
		tc.ExpectValue(t, key, val, nodes...)
	}
}
