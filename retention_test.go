package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// smallWALSegments makes the WAL cut a segment every few KiB for the rest
// of the test, so that retention has segments to keep and delete.
func smallWALSegments(t *testing.T) {
	t.Helper()
	old := wal.SegmentSizeBytes
	wal.SegmentSizeBytes = 4096
	t.Cleanup(func() { wal.SegmentSizeBytes = old })
}

// snapIndexes are the indexes of the snapshots (.snap, or .snap.db with
// data) in snapdir, in ascending order.
func snapIndexes(t *testing.T, snapdir string, data bool) []uint64 {
	t.Helper()
	var out []uint64
	for _, n := range dirNames(t, snapdir) {
		var term, index uint64
		if data {
			if _, err := fmt.Sscanf(n, "%016x.snap.db", &index); err == nil && filepath.Ext(n) == ".db" {
				out = append(out, index)
			}
		} else if _, err := fmt.Sscanf(n, "%016x-%016x.snap", &term, &index); err == nil && filepath.Ext(n) == ".snap" {
			out = append(out, index)
		}
	}
	slices.Sort(out)
	return out
}

// walFirstIndexes are the first-entry indexes in the names of waldir's
// segments, in sequence order.
func walFirstIndexes(t *testing.T, waldir string) []uint64 {
	t.Helper()
	segs, err := listFiles(waldir, ".wal")
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, s := range segs {
		var seq, first uint64
		if _, err := fmt.Sscanf(filepath.Base(s), "%016x-%016x.wal", &seq, &first); err != nil {
			t.Fatal(err)
		}
		out = append(out, first)
	}
	return out
}

// takeSnapshot makes a snapshot at index durable as the snapshot writer
// does (data file, .snap file, WAL record) and purges as finish does.
func takeSnapshot(t *testing.T, d *diskStorage, index uint64) {
	t.Helper()
	if _, err := d.saveKV(index, bytesImage(fmt.Sprintf("state at %d", index))); err != nil {
		t.Fatal(err)
	}
	s := &raftpb.Snapshot{Data: encodeSnapshotData([]byte("{}")), Metadata: &raftpb.SnapshotMetadata{
		Index: new(index), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	if err := d.saveSnapshot(s); err != nil {
		t.Fatal(err)
	}
	d.purge(index)
}

// checkRestart opens member 1's storage under root and checks that it
// restarts from the snapshot at want with every entry after it, through
// last, and the last hard state.
func checkRestart(t *testing.T, root string, want, last uint64) {
	t.Helper()
	waldir, snapdir := member1(root)
	d, st, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{}, newID)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer d.close()
	if got := st.snapshot.GetMetadata().GetIndex(); got != want {
		t.Fatalf("restarted from the snapshot at %d, want %d", got, want)
	}
	if len(st.entries) != int(last-want) {
		t.Fatalf("restart from %d: %d entries, want %d (%d to %d)", want, len(st.entries), last-want, want+1, last)
	}
	for i, e := range st.entries {
		if e.GetIndex() != want+1+uint64(i) {
			t.Fatalf("restart from %d: entry %d has index %d", want, i, e.GetIndex())
		}
	}
	if st.hardState.GetCommit() != last {
		t.Fatalf("restart: commit %d, want %d", st.hardState.GetCommit(), last)
	}
	kv, _, err := d.openKV(want)
	if err != nil {
		t.Fatalf("restart from %d: its data file: %v", want, err)
	}
	kv.Close()
}

// Retention keeps two snapshots, the newest and one to fall back on, and of
// the WAL exactly the segments a restart from the older one reads: no more
// (each snapshot is a full copy of the data, and old segments only cost
// disk), and nothing less: a restart from either snapshot finds every entry
// after it.
func TestRetentionKeepsTwoSnapshotsAndTheWALTheOlderNeeds(t *testing.T) {
	smallWALSegments(t)
	root := t.TempDir()
	waldir, snapdir := member1(root)
	d, _, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{}, newID)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	var snaps []uint64
	for round := 1; round <= 6; round++ {
		// Enough entries for several segments between snapshots.
		for range 8 {
			var ents []*raftpb.Entry
			for range 5 {
				last++
				ents = append(ents, &raftpb.Entry{Index: new(last), Term: new(uint64(1)), Data: make([]byte, 300)})
			}
			if err := d.wal.Save(&raftpb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(last)}, ents); err != nil {
				t.Fatal(err)
			}
		}
		// A snapshot a little behind the log, as the writer's are.
		index := last - 3
		takeSnapshot(t, d, index)
		snaps = append(snaps, index)

		want := snaps[max(0, len(snaps)-2):] // the newest and one older
		if got := snapIndexes(t, snapdir, false); !slices.Equal(got, want) {
			t.Fatalf("round %d: .snap files at %v, want %v", round, got, want)
		}
		if got := snapIndexes(t, snapdir, true); !slices.Equal(got, want) {
			t.Fatalf("round %d: data files at %v, want %v", round, got, want)
		}
		firsts := walFirstIndexes(t, waldir)
		// The first segment left is the one wal.Open starts from for the
		// older snapshot: its first entry is at or before it, the next
		// segment's after it.
		oldest := want[0]
		if firsts[0] > oldest {
			t.Fatalf("round %d: the WAL starts at entry %d, after the oldest snapshot kept (%d): segments %v", round, firsts[0], oldest, firsts)
		}
		if len(firsts) > 1 && firsts[1] <= oldest {
			t.Fatalf("round %d: the WAL keeps segments %v, more than a restart from %d reads", round, firsts, oldest)
		}
	}
	if firsts := walFirstIndexes(t, waldir); firsts[0] == 0 {
		t.Fatalf("the first segment is still there after %d snapshots: the test proves nothing", len(snaps))
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}

	newest, older := snaps[len(snaps)-1], snaps[len(snaps)-2]
	checkRestart(t, root, newest, last)
	// The newest .snap file damaged: the snapshotter falls back to the
	// older one, and the WAL still holds every entry after it.
	newestFile := filepath.Join(snapdir, fmt.Sprintf("%016x-%016x.snap", 1, newest))
	b, err := os.ReadFile(newestFile)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(newestFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	checkRestart(t, root, older, last)
}

// A node that took many snapshots over many WAL segments keeps two of them,
// and restarts with every value it acknowledged: from the newest snapshot,
// and from the older one when the newest .snap file is damaged.
func TestNodeRestartsFromTheFilesRetentionKeeps(t *testing.T) {
	smallWALSegments(t)
	const keys = 150
	c := newIPCluster(t, 1, 1, 10)
	n := c.startKV(1, false)
	value := func(i int) string { return fmt.Sprintf("value-%d-%0200d", i, i) }
	for i := range keys {
		ipPut(t, n.svc, fmt.Sprintf("key-%03d", i), value(i))
	}
	n.stop(t)
	snaps := snapIndexes(t, n.cfg.snapdir, false)
	if len(snaps) != 2 {
		t.Fatalf(".snap files at %v after %d puts with snap-count 10, want the newest two", snaps, keys)
	}
	if firsts := walFirstIndexes(t, n.cfg.waldir); firsts[0] == 0 || firsts[0] > snaps[0] {
		t.Fatalf("WAL segments starting at %v with snapshots at %v: want the first gone and none after %d", firsts, snaps, snaps[0])
	}
	check := func(what string) {
		t.Helper()
		r := c.startKV(1, false)
		for i := range keys {
			ipExpectValue(t, 1, r.store, fmt.Sprintf("key-%03d", i), value(i))
		}
		ipPut(t, r.svc, "after-"+what, "ok")
		r.stop(t)
	}
	check("restart")
	// The restart may have taken a snapshot of its own: damage the newest.
	snaps = snapIndexes(t, n.cfg.snapdir, false)
	newest := filepath.Join(n.cfg.snapdir, fmt.Sprintf("*-%016x.snap", snaps[len(snaps)-1]))
	files, _ := filepath.Glob(newest)
	if len(files) != 1 {
		t.Fatalf("%s: %v", newest, files)
	}
	if err := os.WriteFile(files[0], []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("fallback")
	if broken, _ := filepath.Glob(files[0] + ".broken"); len(broken) != 1 {
		t.Fatalf("no %s.broken: the restart did not fall back from the damaged file", files[0])
	}
}

// The Ready loop hands a durable snapshot to raft without waiting for the
// old files to be deleted (unlinking a large one took 100 ms, and every
// write waited on the loop); the WAL is closed only after the purge.
func TestFinishingASnapshotDoesNotWaitForThePurge(t *testing.T) {
	root := t.TempDir()
	waldir, snapdir := member1(root)
	d, _, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{}, newID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	st := raft.NewMemoryStorage()
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 10; i++ {
		ents = append(ents, &raftpb.Entry{Index: new(i), Term: new(uint64(1))})
	}
	if err := st.Append(ents); err != nil {
		t.Fatal(err)
	}
	s := newSnapshots(zap.NewNop(), 10000, &durableLog{memory: st, disk: d})
	started, release := make(chan struct{}), make(chan struct{})
	d.purging = func() { close(started); <-release }
	snap := &raftpb.Snapshot{Data: encodeSnapshotData([]byte("{}")), Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(10)), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	finished := make(chan error, 1)
	go func() { finished <- s.finish(snapshotResult{snapshot: snap}) }()
	<-started
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("finish still waits for the purge after 10 s")
	}
	if s.index.Load() != 10 {
		t.Fatalf("snapshot index %d after finish, want 10", s.index.Load())
	}
	waited := make(chan struct{})
	go func() { s.writer.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("the writer group was done with the purge still running: the WAL could close under it")
	default:
	}
	close(release)
	<-waited
}
