package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// ipBackup takes a backup of node n as GET /v1/snapshot does (a snapshot at
// least as new as what n applied) and writes it to a file.
func ipBackup(t *testing.T, n *ipNode) (path string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, size, _, err := n.rn.snapshotFile(ctx, n.store.State().index)
	if err != nil {
		t.Fatalf("snapshot for a backup: %v", err)
	}
	defer f.Close()
	data, err = io.ReadAll(f)
	if err != nil || int64(len(data)) != size {
		t.Fatalf("reading the snapshot file: %d of %d bytes, %v", len(data), size, err)
	}
	path = filepath.Join(t.TempDir(), "backup")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// ipSourceForBackup is a member with keys overwritten, deleted and one with a
// TTL, so that revisions and versions are not all 1.
func ipSourceForBackup(t *testing.T) *ipNode {
	t.Helper()
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	for i := range 20 {
		ipPut(t, n.svc, fmt.Sprintf("key-%02d", i%12), fmt.Sprintf("value-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.svc.Delete(ctx, "key-03", condition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.svc.Put(ctx, "with-ttl", "v", time.Hour, condition{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// A member restored from a backup starts with the backup's keys, values,
// revisions, TTLs and store revision, as a member of a new cluster, and
// takes writes from that revision on.
func TestRestoredMemberStartsWithTheBackupsState(t *testing.T) {
	src := ipSourceForBackup(t)
	want := src.store.State()
	wantTTL, _, _ := src.store.Lookup("with-ttl")
	file, _ := ipBackup(t, src)

	c := newIPCluster(t, 1, 1, 10000)
	o := options{id: 1, cluster: c.urls[0], dataDir: c.dir, restore: file}
	done, err := restoreBackup(c.lg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(done)
	if !strings.Contains(done, fmt.Sprintf("at revision %d (digest %016x", want.revision, want.digest)) {
		t.Errorf("restore reports %q, want revision %d and digest %016x", done, want.revision, want.digest)
	}
	n := c.startKV(1, false)
	ipEventually(t, 10*time.Second, "the restored snapshot applied", func() error {
		if st := n.store.State(); st.index < restoredIndex {
			return fmt.Errorf("applied through %d", st.index)
		}
		return nil
	})
	got := n.store.State()
	if got.digest != want.digest || got.revision != want.revision || got.keys != want.keys {
		t.Fatalf("restored: digest %016x, revision %d, %d keys; the backup's: %016x, %d, %d keys",
			got.digest, got.revision, got.keys, want.digest, want.revision, want.keys)
	}
	if v, _, _ := n.store.Lookup("with-ttl"); v.meta != wantTTL.meta {
		t.Errorf("with-ttl restored with %+v, want %+v", v.meta, wantTTL.meta)
	}
	if n.rn.peers.clusterID == deriveClusterID(c.urls[:1], "") {
		t.Error("the restored cluster has the id of a cluster founded empty with the same --cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.waitLeader(n)
	res, err := n.svc.Put(ctx, "after-restore", "yes", 0, condition{})
	if err != nil {
		t.Fatal(err)
	}
	if res.revision != want.revision+1 {
		t.Errorf("the first write after the restore is at revision %d, want %d", res.revision, want.revision+1)
	}
}

// restoreFails restores data as a backup into a fresh directory and returns
// the error, checking that nothing was written.
func restoreFails(t *testing.T, data []byte) error {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "backup")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	_, err := restoreBackup(zap.NewNop(), options{id: 1, cluster: "http://127.0.0.1:1", dataDir: dataDir, restore: file})
	if err == nil {
		return nil
	}
	if _, serr := os.Stat(dataDir); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("a refused restore left %s (%v)", dataDir, serr)
	}
	return err
}

// A damaged backup is refused with a one-line reason, whatever byte is
// changed or however much of its end is missing, before anything is written.
func TestRestoreRefusesADamagedBackup(t *testing.T) {
	_, data := ipBackup(t, ipSourceForBackup(t))
	if err := restoreFails(t, data); err != nil {
		t.Fatalf("the intact backup is refused: %v", err)
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x5a
		err := restoreFails(t, bad)
		if err == nil || !errors.Is(err, errRestoreRefused) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("byte %d of %d changed: %v, want a one-line refusal", i, len(data), err)
		}
	}
	for cut := 1; cut <= len(data); cut++ {
		err := restoreFails(t, data[:len(data)-cut])
		if err == nil || !errors.Is(err, errRestoreRefused) {
			t.Fatalf("the last %d of %d bytes cut: %v, want a refusal", cut, len(data), err)
		}
	}
	// The reason names what is wrong.
	if err := restoreFails(t, data[:len(data)-2]); !strings.Contains(err.Error(), "is truncated") {
		t.Errorf("the checksum cut short: %v, want \"is truncated\"", err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	if err := restoreFails(t, bad); !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a flipped checksum bit: %v, want \"is damaged\" and the checksum", err)
	}
	if err := restoreFails(t, []byte("<html>not a backup</html>\n")); !strings.Contains(err.Error(), "is damaged") {
		t.Errorf("a file that is no backup: %v, want \"is damaged\"", err)
	}
}

// A data directory that holds this member's WAL or snapshots is never
// overwritten; another member's data beside it is no obstacle.
func TestRestoreRefusesADataDirThatHoldsThisMembersData(t *testing.T) {
	file, _ := ipBackup(t, ipSourceForBackup(t))
	for _, sub := range []string{"raftexample-1", "raftexample-1-snap"} {
		dataDir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dataDir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		marker := filepath.Join(dataDir, sub, "kept")
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := restoreBackup(zap.NewNop(), options{id: 1, cluster: "http://127.0.0.1:1", dataDir: dataDir, restore: file})
		if !errors.Is(err, errRestoreRefused) || !strings.Contains(err.Error(), "already holds member 1's data") {
			t.Errorf("%s exists: %v, want a refusal", sub, err)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("the refused restore touched %s: %v", sub, err)
		}
	}
	dataDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dataDir, "raftexample-2"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := restoreBackup(zap.NewNop(), options{id: 1, cluster: "http://127.0.0.1:1", dataDir: dataDir, restore: file}); err != nil {
		t.Errorf("member 2's data beside: %v", err)
	}
}

func TestRestoreDoesNotGoWithJoin(t *testing.T) {
	_, err := parseFlags([]string{"--restore", "backup", "--join"})
	if err == nil || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("--restore with --join: %v, want an error", err)
	}
}
