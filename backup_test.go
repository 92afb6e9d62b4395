package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ipBackupServer serves n's HTTP API.
func ipBackupServer(t *testing.T, c *ipCluster, n *ipNode) *httptest.Server {
	srv := httptest.NewServer(&httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20})
	t.Cleanup(srv.Close)
	return srv
}

// checkBackup checks a backup's headers against its body and decodes it.
func checkBackup(t *testing.T, h http.Header, body []byte) *decodedKV {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q, body of %d bytes", cl, len(body))
	}
	sum := sha256.Sum256(body)
	if got := h.Get("X-Checksum-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("X-Checksum-Sha256 %q, the body's is %x", got, sum)
	}
	kv, err := decodeKVSnapshot(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("the backup does not decode: %v", err)
	}
	if rev := h.Get("X-Revision"); rev != strconv.FormatUint(kv.revision, 10) {
		t.Errorf("X-Revision %q, the backup holds revision %d", rev, kv.revision)
	}
	if idx, err := strconv.ParseUint(h.Get("X-Raft-Index"), 10, 64); err != nil || idx == 0 {
		t.Errorf("X-Raft-Index %q", h.Get("X-Raft-Index"))
	}
	return kv
}

// A backup taken from a follower right after a write was acknowledged by the
// leader holds it (the read barrier), and its headers describe its body.
func TestBackupFromAFollowerHoldsEveryAcknowledgedWrite(t *testing.T) {
	c := newIPCluster(t, 3, 3, 10000)
	nodes := []*ipNode{c.startKV(1, false), c.startKV(2, false), c.startKV(3, false)}
	lead := c.waitLeader(nodes...)
	leader, follower := nodes[lead-1], nodes[lead%3]
	srv := ipBackupServer(t, c, follower)
	for round := range 3 {
		key := fmt.Sprintf("acked-%d", round)
		ipPut(t, leader.svc, key, "yes")
		code, h, body := ipDo(t, http.MethodGet, srv.URL+"/v1/snapshot", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /v1/snapshot: %d %s", code, body)
		}
		kv := checkBackup(t, h, body)
		if v, ok := kv.kv[key]; !ok || v.value != "yes" {
			t.Fatalf("round %d: the backup lacks %s, acknowledged before it was asked for", round, key)
		}
		if st := leader.store.State(); kv.digest != st.digest || kv.revision != st.revision {
			t.Fatalf("round %d: backup at revision %d, digest %016x; the leader with no write since: %d, %016x",
				round, kv.revision, kv.digest, st.revision, st.digest)
		}
	}
	// Not a key: POST is not a backup.
	if code, _, _ := ipDo(t, http.MethodPost, srv.URL+"/v1/snapshot", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/snapshot: %d, want 405", code)
	}
}

// A client that does not read its backup holds neither the store's lock nor
// a frozen map: writes go on at full speed meanwhile, and the backup it
// finally reads is the state at its revision, without them.
func TestABackupsSlowClientDoesNotStallWrites(t *testing.T) {
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	srv := ipBackupServer(t, c, n)
	value := strings.Repeat("v", 256<<10)
	for i := range 64 { // 16 MiB: more than the socket buffers hold
		ipPut(t, n.svc, fmt.Sprintf("big-%02d", i), value)
	}
	resp, err := http.Get(srv.URL + "/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/snapshot: %s", resp.Status)
	}
	// The body is not read yet.
	start := time.Now()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := n.svc.put(ctx, fmt.Sprintf("during-%d", i), "x")
		cancel()
		if err != nil {
			t.Fatalf("write %d while the backup is unread: %v", i, err)
		}
	}
	n.store.mu.RLock()
	frozen := n.store.frozen != nil
	n.store.mu.RUnlock()
	if frozen {
		t.Fatal("the store is still frozen while the backup's client does not read")
	}
	t.Logf("20 writes in %v while the backup was unread", time.Since(start))
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	kv := checkBackup(t, resp.Header, body)
	if len(kv.kv) < 64 || kv.kv["big-63"].value != value {
		t.Fatalf("the backup holds %d keys, want the 64 written before it", len(kv.kv))
	}
	if _, ok := kv.kv["during-0"]; ok {
		t.Fatal("the backup holds a write made after it was taken")
	}
}

// A backup's client that stops reading is cut off after backupStallTimeout:
// it holds the snapshot file no longer.
func TestABackupsStalledClientIsCutOff(t *testing.T) {
	defer func(d time.Duration) { backupStallTimeout = d }(backupStallTimeout)
	backupStallTimeout = 300 * time.Millisecond
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	srv := httptest.NewUnstartedServer(&httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20})
	var closed atomic.Bool
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Store(true)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	value := strings.Repeat("v", 256<<10)
	for i := range 64 { // 16 MiB: more than the socket buffers hold
		ipPut(t, n.svc, fmt.Sprintf("big-%02d", i), value)
	}
	resp, err := http.Get(srv.URL + "/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ipEventually(t, 20*time.Second, "the server closes the stalled backup's connection", func() error {
		if !closed.Load() {
			return errors.New("still open")
		}
		return nil
	})
	got, err := io.Copy(io.Discard, resp.Body)
	if err == nil || got >= resp.ContentLength {
		t.Fatalf("the stalled client read %d of %d bytes, error %v; want it cut short", got, resp.ContentLength, err)
	}
	t.Logf("cut off after %d of %d bytes: %v", got, resp.ContentLength, err)
}
