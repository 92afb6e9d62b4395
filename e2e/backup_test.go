package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// Backup and restore across processes: GET /v1/snapshot under write load,
// and raftexample --restore into a new cluster.

// revisionedPair is one pair of a listing, with its revisions.
type revisionedPair struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"createRevision"`
	ModRevision    uint64 `json:"modRevision"`
	Version        uint64 `json:"version"`
}

// listAll is every pair, linearizably, through n.
func listAll(t *testing.T, n *tc.Node) []revisionedPair {
	t.Helper()
	var all []revisionedPair
	for start := ""; ; {
		resp, err := n.DoRequest(http.MethodGet, "/v1/kv/?limit=10000&start="+url.QueryEscape(start), "", nil)
		if err != nil || resp.Code != http.StatusOK {
			t.Fatalf("listing through %v: %d %v %s", n, resp.Code, err, resp.Body)
		}
		var page []revisionedPair
		if err := json.Unmarshal([]byte(resp.Body), &page); err != nil {
			t.Fatalf("listing through %v: %v", n, err)
		}
		all = append(all, page...)
		next := resp.Header.Get("X-Next-Start")
		if next == "" {
			return all
		}
		if start, err = url.QueryUnescape(next); err != nil {
			t.Fatal(err)
		}
	}
}

// storeStatus is what /v1/status says of the state machine.
type storeStatus struct {
	ClusterID string `json:"clusterID"`
	Keys      int    `json:"keys"`
	Digest    string `json:"digest"`
	Revision  uint64 `json:"revision"`
}

// createOnlyWriter writes new keys (load-00000, load-00001, ...) through n
// until stopped, never writing a key twice, not even after a failed PUT:
// every key then keeps the revisions of its creation, so the state at any
// revision R is exactly the pairs of a later listing created at R or before.
type createOnlyWriter struct {
	n     *tc.Node
	acked atomic.Int64 // keys load-00000 to load-<acked-1> are all acknowledged
	stop  chan struct{}
	done  sync.WaitGroup
}

func startCreateOnlyWriter(n *tc.Node) *createOnlyWriter {
	w := &createOnlyWriter{n: n, stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		allAcked := true
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			code, _, err := n.Put(fmt.Sprintf("load-%05d", i), strconv.Itoa(i))
			if allAcked = allAcked && err == nil && code == http.StatusNoContent; allAcked {
				w.acked.Store(int64(i + 1))
			}
		}
	}()
	return w
}

func (w *createOnlyWriter) waitAcked(t *testing.T, atLeast int64) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		if got := w.acked.Load(); got < atLeast {
			return fmt.Errorf("%d writes acknowledged in a row, want %d", got, atLeast)
		}
		return nil
	})
}

func (w *createOnlyWriter) finish() {
	close(w.stop)
	w.done.Wait()
}

func TestBackupUnderWriteLoadRestoresIntoANewClusterWithTheSameDigest(t *testing.T) {
	start := time.Now()
	src := tc.StartCluster(t, 3)
	t.Logf("%v: source cluster up", time.Since(start))
	n1, n2 := src.Node(1), src.Node(2)
	// Overwrites and a delete before the load: the backup's keys have
	// versions above 1 and revisions that are not their creation's.
	for i := range 30 {
		n1.MustPut(fmt.Sprintf("base-%02d", i%10), fmt.Sprintf("value-%d", i))
	}
	code, body, err := n1.Delete("base-05")
	expectStatus(t, "DELETE base-05", code, body, err, http.StatusNoContent)

	w := startCreateOnlyWriter(n1)
	w.waitAcked(t, 30)
	ackedBefore := w.acked.Load()
	resp, err := n2.DoRequest(http.MethodGet, "/v1/snapshot", "", nil)
	if err != nil || resp.Code != http.StatusOK {
		t.Fatalf("GET /v1/snapshot on %v: %d %v %s", n2, resp.Code, err, tc.Shorten(resp.Body, 200))
	}
	w.waitAcked(t, w.acked.Load()+30) // the load goes on after the backup
	w.finish()
	t.Logf("%v: load done", time.Since(start))

	backup := []byte(resp.Body)
	sum := sha256.Sum256(backup)
	if got := resp.Header.Get("X-Checksum-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("X-Checksum-Sha256 %q, the body's is %x", got, sum)
	}
	revision, err := strconv.ParseUint(resp.Header.Get("X-Revision"), 10, 64)
	if err != nil {
		t.Fatalf("X-Revision %q: %v", resp.Header.Get("X-Revision"), err)
	}
	t.Logf("backup of %d bytes at revision %d, raft index %s, taken after %d acknowledged writes of the load",
		len(backup), revision, resp.Header.Get("X-Raft-Index"), ackedBefore)

	// The source's state at the backup's revision: with create-only load,
	// every pair listed now that was created at the revision or before.
	var wantDigest uint64
	wantKeys, later := 0, 0
	created := map[string]uint64{}
	for _, p := range listAll(t, n1) {
		created[p.Key] = p.CreateRevision
		if p.CreateRevision > revision {
			later++
			continue
		}
		wantKeys++
		wantDigest += pairDigest(p.Key, p.Value, p.CreateRevision, p.ModRevision, p.Version)
	}
	if later == 0 {
		t.Fatal("no write came after the backup's revision: the test proves nothing")
	}
	for i := range ackedBefore { // the read barrier
		if k := fmt.Sprintf("load-%05d", i); created[k] == 0 || created[k] > revision {
			t.Fatalf("%s, acknowledged before the backup was asked for, was created at revision %d, after the backup's %d", k, created[k], revision)
		}
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "backup")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := tc.Build(t)

	t.Run("a damaged backup is refused with a one-line reason", func(t *testing.T) {
		flipped := bytes.Clone(backup)
		flipped[len(flipped)/2] ^= 0x10
		for name, data := range map[string][]byte{"is damaged": flipped, "is truncated": backup[:len(backup)-3]} {
			bad := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(bad, data, 0o600); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(dir, "refused")
			cmd := exec.Command(bin, "--restore", bad, "--id", "1", "--cluster", "http://127.0.0.1:1", "--data-dir", dataDir)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if err == nil || len(lines) != 1 || !strings.Contains(lines[0], name) {
				t.Errorf("--restore of a backup that %s: %v, stderr %q; want a non-zero exit and one line saying it %s", name, err, stderr.String(), name)
			}
			t.Logf("%v: %s", err, lines[0])
			if _, err := os.Stat(dataDir); err == nil {
				t.Errorf("the refused restore created %s", dataDir)
			}
		}
	})

	// A new cluster: new data directories, new ports, each member restored
	// from the same file, then started as usual.
	dst := tc.New(t, 3)
	for _, n := range dst.Nodes {
		cmd := exec.Command(bin, append(append([]string{}, n.Args...), "--restore", file)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("--restore for %v: %v\n%s", n, err, out)
		}
		if want := fmt.Sprintf("restored %d keys at revision %d (digest %016x", wantKeys, revision, wantDigest); !strings.Contains(string(out), want) {
			t.Fatalf("--restore for %v says %q, want %q", n, out, want)
		}
	}
	t.Logf("%v: restored", time.Since(start))
	dst.Start()
	tc.WaitLeader(t, tc.Timeout, dst.Nodes...)
	t.Logf("%v: new cluster up", time.Since(start))
	var srcStatus storeStatus
	if _, err := n1.GetJSON("/v1/status", &srcStatus); err != nil {
		t.Fatal(err)
	}
	for _, n := range dst.Nodes {
		tc.Eventually(t, tc.Timeout, func() error {
			var st storeStatus
			if _, err := n.GetJSON("/v1/status", &st); err != nil {
				return err
			}
			if st.Digest != fmt.Sprintf("%016x", wantDigest) || st.Revision != revision || st.Keys != wantKeys {
				return fmt.Errorf("%v: digest %s, revision %d, %d keys; the source at revision %d: %016x, %d keys",
					n, st.Digest, st.Revision, st.Keys, revision, wantDigest, wantKeys)
			}
			if st.ClusterID == srcStatus.ClusterID {
				return tc.GiveUp(fmt.Errorf("%v has the source cluster's id %s", n, st.ClusterID))
			}
			return nil
		})
	}

	// The new cluster takes writes, from the backup's revision on.
	dst.Node(1).MustPut("after-restore", "yes")
	tc.ExpectValue(t, "after-restore", "yes", dst.Nodes...)
	for _, p := range listAll(t, dst.Node(3)) {
		if p.Key == "after-restore" && p.CreateRevision != revision+1 {
			t.Errorf("the first write after the restore is at revision %d, want %d", p.CreateRevision, revision+1)
		}
	}
}
