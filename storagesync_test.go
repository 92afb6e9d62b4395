package main

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// The fsyncs durability needs under the strict POSIX rule (a name is durable
// once its directory is fsynced), in the order that makes each crash window
// harmless.

// A first start makes every name durable, and the WAL's segment before the
// snapshot directory exists (whose existence then proves a durable WAL).
func TestFirstStartMakesEveryNameDurableInOrder(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "new", "data") // --data-dir, new too
	waldir, snapdir := member1(data)
	var got []string
	opts := storageOptions{dirSynced: func(dir string) {
		e := dir
		if dir == waldir {
			if !wal.Exist(waldir) {
				e += " (without its segment)"
			}
			if ok, _ := isDir(snapdir); ok {
				e += " (after the snapshot directory)"
			}
		}
		if dir == data {
			if ok, _ := isDir(snapdir); !ok {
				e += " (before the snapshot directory)"
			}
		}
		got = append(got, e)
	}}
	d, st, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, opts, newID)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if st.existed {
		t.Fatal("a new member's storage existed")
	}
	// wal.Create fsyncs data itself after renaming the WAL directory into it.
	want := []string{filepath.Dir(root), root, filepath.Join(root, "new"), waldir, data}
	if !slices.Equal(got, want) {
		t.Fatalf("directories fsynced:\n%v\nwant:\n%v", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// recordingWAL records the writes that reach it, and fails them with fail.
type recordingWAL struct {
	events *[]string
	fail   error
}

func (w *recordingWAL) Save(*raftpb.HardState, []*raftpb.Entry) error {
	*w.events = append(*w.events, "WAL save")
	return w.fail
}

func (w *recordingWAL) SaveSnapshot(*walpb.Snapshot) error {
	*w.events = append(*w.events, "WAL snapshot record")
	return w.fail
}

func (w *recordingWAL) ReleaseLockTo(uint64) error { return nil }
func (w *recordingWAL) Close() error               { return nil }

// The .snap file's name is durable before the WAL records the snapshot: the
// record lets older segments go, and must never point at a name a power cut
// can take away.
func TestSnapshotDirectoryIsSyncedBetweenTheSnapFileAndItsWALRecord(t *testing.T) {
	dir := t.TempDir()
	var events []string
	d := &diskStorage{lg: zap.NewNop(), snapdir: dir, snapshotter: snap.New(zap.NewNop(), dir), wal: &recordingWAL{events: &events}}
	d.dirSynced = func(string) {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.snap")); len(m) == 1 {
			events = append(events, "sync snapshot directory")
		} else {
			events = append(events, "sync snapshot directory without the .snap file")
		}
	}
	s := &raftpb.Snapshot{Data: []byte{snapshotFormat}, Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(10)), Term: new(uint64(2)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	if err := d.saveSnapshot(s); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync snapshot directory", "WAL snapshot record"}; !slices.Equal(events, want) {
		t.Fatalf("%v, want %v", events, want)
	}

	// With --unsafe-no-fsync there is none.
	events, d.noFsync = nil, true
	if err := d.saveSnapshot(s); err != nil {
		t.Fatal(err)
	}
	if want := []string{"WAL snapshot record"}; !slices.Equal(events, want) {
		t.Fatalf("with --unsafe-no-fsync: %v, want %v", events, want)
	}
}

// --unsafe-no-fsync leaves out every fsync of directories on a first start
// too.
func TestUnsafeNoFsyncSyncsNoDirectory(t *testing.T) {
	waldir, snapdir := member1(filepath.Join(t.TempDir(), "data"))
	synced := 0
	d, _, err := openDiskStorage(zap.NewNop(), 1, waldir, snapdir, storageOptions{noFsync: true, dirSynced: func(string) { synced++ }}, newID)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if synced != 0 {
		t.Fatalf("%d directories fsynced with --unsafe-no-fsync", synced)
	}
}

// failingLog is a durable log whose writes fail.
type failingLog struct{ ev *readyEvents }

func (l *failingLog) persist(raft.Ready) error {
	l.ev.add("persist")
	return faultf(syscall.ENOSPC, "writing the WAL")
}
func (l *failingLog) termAndVoteDurable(*raftpb.HardState) bool { return true }
func (l *failingLog) close() error                              { return nil }

// advanceRecorder is raft, recording Advance.
type advanceRecorder struct {
	raft.Node
	ev *readyEvents
}

func (a advanceRecorder) Advance() { a.ev.add("advance") }

// After a failed write the Ready loop stops: it applies nothing of the
// Ready, never tells raft it was persisted, and a follower sends nothing
// (its messages could promise what was not written).
func TestAFailedPersistStopsTheReadyLoopBeforeApplyAndAdvance(t *testing.T) {
	for _, leader := range []bool{false, true} {
		ev := &readyEvents{}
		rn, commits := readyTestNode(ev, leader, true)
		rn.log, rn.node = &failingLog{ev: ev}, advanceRecorder{ev: ev}
		err := rn.handleReady(readyWith(true, true))
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("leader %v: handleReady returned %v, want the disk's error", leader, err)
		}
		ev.drain(commits)
		want := []string{"persist"}
		if leader {
			want = []string{"send", "persist"} // a leader's messages promise nothing of its own log
		}
		if got := ev.list(); !slices.Equal(got, want) {
			t.Fatalf("leader %v: %v, want %v", leader, got, want)
		}
	}
}

// failingImage fails after writing some data, as a full disk does.
type failingImage struct{}

func (failingImage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(make([]byte, 1000))
	if err != nil {
		return int64(n), err
	}
	return int64(n), syscall.ENOSPC
}
func (failingImage) Release() {}

// A snapshot data file that could not be written is deleted, and the error
// is a disk fault.
func TestAFailedSnapshotDataFileIsCleanedUp(t *testing.T) {
	dir := t.TempDir()
	d := &diskStorage{lg: zap.NewNop(), snapdir: dir}
	_, err := d.saveKV(7, failingImage{})
	var df *diskFault
	if !errors.As(err, &df) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("saveKV: %v, want a disk fault with ENOSPC", err)
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("left %v behind", names)
	}
}

// The free-space threshold: two WAL segments, the last snapshot and a margin.
func TestDiskMonitorReportsLowSpaceAndTheGauge(t *testing.T) {
	dir := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free < 2*lowDiskMargin {
		t.Skipf("only %d bytes free in %s", free, dir)
	}
	m := newDiskMonitor(zap.NewNop(), dir, 0, func() int64 { return 0 })
	m.check()
	if r := m.lowReason(); r != "" {
		t.Fatalf("with %d bytes free and a threshold of %d: %q", free, lowDiskMargin, r)
	}
	// A snapshot as large as the free space does not fit.
	m.snapBytes = func() int64 { return free }
	m.check()
	if r := m.lowReason(); !strings.HasPrefix(r, "low disk space: ") {
		t.Fatalf("with a snapshot as large as the free space: reason %q", r)
	}
	var g dto.Metric
	if err := metricDiskFree.Write(&g); err != nil || g.GetGauge().GetValue() <= 0 {
		t.Fatalf("raftexample_disk_free_bytes = %v (%v)", g.GetGauge().GetValue(), err)
	}
	if (*diskMonitor)(nil).lowReason() != "" {
		t.Fatal("a nil monitor reports low space")
	}
}
