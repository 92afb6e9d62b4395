package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/raft/v3/raftpb"
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
	if err := os.Mkdir(old+"-snap", 0o750); err != nil { // old versions made it first
		t.Fatal(err)
	}
	d, st, err := openDiskStorage(lg, 1, old, old+"-snap", storageOptions{}, func() (uint64, error) { t.Fatal("asked for a new id"); return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if st.clusterID != legacyClusterID {
		t.Errorf("old WAL: cluster id %x, want %x", st.clusterID, legacyClusterID)
	}

	fresh := filepath.Join(dir, "new")
	for run := 0; run < 2; run++ {
		d, st, err := openDiskStorage(lg, 2, fresh, fresh+"-snap", storageOptions{}, func() (uint64, error) { return 0xabc, nil })
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

// member1 is where the storage tests keep member 1's data: dirs under root.
func member1(root string) (waldir, snapdir string) {
	return filepath.Join(root, "raftexample-1"), filepath.Join(root, "raftexample-1-snap")
}

func newID() (uint64, error) { return 0xabc, nil }

// openMember1 opens member 1's storage under root.
func openMember1(t *testing.T, root string) (*diskStorage, *diskState, error) {
	t.Helper()
	waldir, snapdir := member1(root)
	d, st, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{}, newID)
	if err == nil {
		t.Cleanup(func() { d.close() })
	}
	return d, st, err
}

// writeWAL makes member 1's storage under root hold a WAL with entries 1 to
// n (hard state committing them all), written in two saves, and returns the
// segment's path.
func writeWAL(t *testing.T, root string, n uint64) string {
	t.Helper()
	waldir, snapdir := member1(root)
	d, _, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{}, newID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	var ents []*raftpb.Entry
	for i := uint64(1); i <= n; i++ {
		ents = append(ents, &raftpb.Entry{Index: new(i), Term: new(uint64(1)), Data: fmt.Appendf(nil, "payload-%d", i)})
	}
	for _, part := range [][]*raftpb.Entry{ents[:n-1], ents[n-1:]} {
		last := part[len(part)-1].GetIndex()
		if err := d.wal.Save(&raftpb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(last)}, part); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := listFiles(waldir, ".wal")
	return segs[len(segs)-1]
}

// saveSnapFile writes a .snap file at index into member 1's snapshot
// directory under root, without a WAL record.
func saveSnapFile(t *testing.T, root string, index uint64) {
	t.Helper()
	_, snapdir := member1(root)
	s := &raftpb.Snapshot{Data: []byte{snapshotFormat}, Metadata: &raftpb.SnapshotMetadata{
		Index: new(index), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	if err := snap.New(zap.NewNop(), snapdir).SaveSnap(s); err != nil {
		t.Fatal(err)
	}
}

// expectRefusal checks that opening member 1's storage under root is refused
// with a reason saying what is wrong (want) and what to do.
func expectRefusal(t *testing.T, root, want string) {
	t.Helper()
	_, _, err := openMember1(t, root)
	if !errors.Is(err, errRefused) {
		t.Fatalf("opened (error %v), want a refusal", err)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, want) || !strings.HasSuffix(msg, "remove this member (DELETE /1), delete its data directories, and add it again under a new id") || strings.Contains(msg, "\n") {
		t.Fatalf("refusal %q: want one line naming %q and what to do", msg, want)
	}
}

// A member never forgets silently that it was one: if its data shows that
// what it had written is gone, it refuses to start instead of starting
// afresh (and voting or acknowledging again what it lost).
func TestAMemberThatLostItsDataRefusesToStart(t *testing.T) {
	t.Run("snapshot directory without WAL directory", func(t *testing.T) {
		root := t.TempDir()
		writeWAL(t, root, 5)
		waldir, _ := member1(root)
		if err := os.RemoveAll(waldir); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, root, "its WAL directory "+waldir+" does not")
	})
	t.Run("WAL directory without a segment", func(t *testing.T) {
		root := t.TempDir()
		seg := writeWAL(t, root, 5)
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, root, "holds no WAL segment")
	})
	t.Run("damaged WAL", func(t *testing.T) {
		root := t.TempDir()
		seg := writeWAL(t, root, 5)
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte("payload-2"))
		if i < 0 {
			t.Fatal("no payload-2 in the segment")
		}
		b[i] = 'P' // the record's CRC no longer matches
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, root, "cannot be read")
	})
	t.Run("WAL without hard state beside snapshot files", func(t *testing.T) {
		root := t.TempDir()
		writeWAL(t, root, 5)
		saveSnapFile(t, root, 5)
		waldir, _ := member1(root)
		if err := os.RemoveAll(waldir); err != nil {
			t.Fatal(err)
		}
		w, err := wal.Create(zap.NewNop(), waldir, binary.AppendUvarint(binary.AppendUvarint(nil, 1), 0xabc))
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		expectRefusal(t, root, "holds no hard state but its snapshot directory")
	})
	t.Run("WAL with state but no snapshot directory", func(t *testing.T) {
		root := t.TempDir()
		writeWAL(t, root, 5)
		_, snapdir := member1(root)
		if err := os.RemoveAll(snapdir); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, root, "holds its state but its snapshot directory")
	})
}

// The crash windows a correct member can leave behind are not refused.
func TestCrashWindowsAreNotRefused(t *testing.T) {
	t.Run("a .snap file newer than the WAL's newest snapshot record", func(t *testing.T) {
		// A crash between SaveSnap and the WAL record: the file is unused.
		root := t.TempDir()
		writeWAL(t, root, 5)
		saveSnapFile(t, root, 4)
		_, st, err := openMember1(t, root)
		if err != nil {
			t.Fatal(err)
		}
		if !st.existed || st.snapshot != nil || len(st.entries) != 5 {
			t.Fatalf("existed %v, snapshot %v, %d entries; want the WAL's 5 entries and no snapshot", st.existed, st.snapshot, len(st.entries))
		}
	})
	t.Run("a torn last record", func(t *testing.T) {
		root := t.TempDir()
		seg := writeWAL(t, root, 5)
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		end := len(bytes.TrimRight(b, "\x00"))
		if err := os.Truncate(seg, int64(end-3)); err != nil { // into the last record, the second hard state
			t.Fatal(err)
		}
		_, st, err := openMember1(t, root)
		if err != nil {
			t.Fatal(err)
		}
		if !st.existed || len(st.entries) != 5 || st.hardState.GetCommit() != 4 {
			t.Fatalf("existed %v, %d entries, commit %d; want 5 entries and the first hard state (commit 4)", st.existed, len(st.entries), st.hardState.GetCommit())
		}
	})
	// A first start that stopped before its snapshot directory existed
	// never ran raft: it starts afresh.
	for _, c := range []struct {
		name  string
		state func(waldir string)
	}{
		{"an empty WAL directory and no snapshot directory", func(waldir string) {
			if err := os.Mkdir(waldir, 0o750); err != nil {
				t.Fatal(err)
			}
		}},
		{"a new WAL and no snapshot directory", func(waldir string) {
			w, err := wal.Create(zap.NewNop(), waldir, binary.AppendUvarint(binary.AppendUvarint(nil, 1), 0xdef))
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			waldir, snapdir := member1(root)
			c.state(waldir)
			_, st, err := openMember1(t, root)
			if err != nil {
				t.Fatal(err)
			}
			if st.existed || st.clusterID != 0xabc {
				t.Fatalf("existed %v, cluster id %x; want a new member of cluster abc", st.existed, st.clusterID)
			}
			if ok, _ := isDir(snapdir); !ok || !wal.Exist(waldir) {
				t.Fatal("the WAL or the snapshot directory was not created")
			}
		})
	}
	t.Run("a WAL without hard state and no snapshot files", func(t *testing.T) {
		// A crash between the snapshot directory's creation and raft's first
		// write: it bootstraps, in the cluster its WAL names.
		root := t.TempDir()
		d, _, err := openDiskStorage(zap.NewNop(), 1, filepath.Join(root, "raftexample-1"), filepath.Join(root, "raftexample-1-snap"), storageOptions{},
			func() (uint64, error) { return 0x123, nil })
		if err != nil {
			t.Fatal(err)
		}
		d.close()
		_, st, err := openMember1(t, root)
		if err != nil {
			t.Fatal(err)
		}
		if st.existed || st.clusterID != 0x123 {
			t.Fatalf("existed %v, cluster id %x; want a new member of cluster 123", st.existed, st.clusterID)
		}
	})
}
