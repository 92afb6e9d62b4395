package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
)

// A data directory written before clusters had their own ids holds only the
// member id in its WAL's metadata; it starts with the id all clusters shared
// then, so that its cluster keeps talking to itself. A new one stores the id
// it was given, and restarts with it.
func TestClusterIDIsStoredInTheWALAndOldWALsKeepTheLegacyID(t *testing.T) {
	lg := zap.NewNop()
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	w, err := wal.Create(lg, old, binary.AppendUvarint(nil, 1))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	d, st, err := openDiskStorage(lg, 1, old, old+"-snap", func() (uint64, error) { t.Fatal("asked for a new id"); return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if st.clusterID != legacyClusterID {
		t.Errorf("old WAL: cluster id %x, want %x", st.clusterID, legacyClusterID)
	}

	fresh := filepath.Join(dir, "new")
	for run := 0; run < 2; run++ {
		d, st, err := openDiskStorage(lg, 2, fresh, fresh+"-snap", func() (uint64, error) { return 0xabc, nil })
		if err != nil {
			t.Fatal(err)
		}
		d.close()
		if st.clusterID != 0xabc {
			t.Errorf("run %d: cluster id %x, want abc", run, st.clusterID)
		}
	}
}

// Snapshot data files that no .snap file refers to are deleted (they are
// left by a crash, or were sent by a peer and never taken), as are
// rafthttp's temporary files; a data file in flight stays.
func TestRetentionDeletesUnreferencedSnapshotDataFiles(t *testing.T) {
	dir := t.TempDir()
	d := &diskStorage{lg: zap.NewNop(), snapdir: dir}
	for _, name := range []string{
		"0000000000000002-0000000000000010.snap", "0000000000000010.snap.db", // a snapshot and its data
		"0000000000000020.snap.db", // orphaned
		"0000000000000030.snap.db", // in flight
		"tmp123456",                // an interrupted receive
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.inFlight.add(0x30)
	d.removeUnreferencedDataFiles()
	want := []string{"0000000000000002-0000000000000010.snap", "0000000000000010.snap.db", "0000000000000030.snap.db", "tmp123456"}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("with 0x30 in flight: %v, want %v", got, want)
	}
	d.inFlight.done(0x30)
	d.removeUnreferencedDataFiles()
	want = []string{"0000000000000002-0000000000000010.snap", "0000000000000010.snap.db"}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("with nothing in flight: %v, want %v", got, want)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
