//go:build linux

package powerfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Each file operation etcd's wal and snap packages make works through the
// mount and is kept once synced.
func TestEtcdFileOperationsWorkThroughTheMount(t *testing.T) {
	f, mnt := mount(t)
	p := filepath.Join(mnt, "seg")
	fl, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	step("preallocate, keeping the size", fileutil.Preallocate(fl, 1<<20, false))
	step("preallocate, extending", fileutil.Preallocate(fl, 1<<20, true))
	_, err = fl.WriteAt([]byte("record"), 0)
	step("write", err)
	step("fdatasync", fileutil.Fdatasync(fl))
	if st, err := fl.Stat(); err != nil || st.Size() != 1<<20 {
		t.Fatalf("preallocated size: %v, %v", st.Size(), err)
	}

	step("flock", syscall.Flock(int(fl.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	other, err := os.Open(p)
	step("open", err)
	wantErrno(t, "second flock", syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), syscall.EWOULDBLOCK)
	other.Close()
	locked, err := fileutil.TryLockFile(filepath.Join(mnt, "lock"), os.O_WRONLY|os.O_CREATE, 0o600)
	step("fileutil.TryLockFile", err)
	if _, err := fileutil.TryLockFile(locked.Name(), os.O_WRONLY, 0o600); !errors.Is(err, fileutil.ErrLocked) {
		t.Fatalf("second TryLockFile: %v, want ErrLocked", err)
	}
	locked.Close()

	step("truncate", fl.Truncate(6))
	step("fsync", fl.Sync())
	step("zero to end", fileutil.ZeroToEnd(fl))

	dir := filepath.Join(mnt, "snap")
	step("mkdir", os.Mkdir(dir+".tmp", 0o700))
	step("rename a directory", os.Rename(dir+".tmp", dir))
	step("WriteFile", os.WriteFile(filepath.Join(dir, "1.snap.broken"), []byte("snapshot"), 0o600))
	step("rename a file", os.Rename(filepath.Join(dir, "1.snap.broken"), filepath.Join(dir, "1.snap")))
	syncFile(t, filepath.Join(dir, "1.snap"))
	step("remove", os.Remove(filepath.Join(mnt, "lock")))
	d, err := fileutil.OpenDir(dir)
	step("open a directory", err)
	step("fsync a directory", fileutil.Fsync(d))
	d.Close()
	syncFile(t, mnt)
	names, err := fileutil.ReadDir(mnt)
	step("ReadDir", err)
	if len(names) != 2 || names[0] != "seg" || names[1] != "snap" {
		t.Fatalf("ReadDir: %q", names)
	}
	fl.Close()

	crash(t, f)
	wantContent(t, p, "record")
	wantContent(t, filepath.Join(dir, "1.snap"), "snapshot")
	wantGone(t, filepath.Join(mnt, "lock"))
}

// etcd's own wal.Create renames "dir.tmp" to "dir" and fsyncs the parent,
// never dir: after a power cut the WAL directory is there and empty.
func TestEtcdWALIsLostWithoutSyncOfItsDirectory(t *testing.T) {
	f, mnt := mount(t)
	dir := filepath.Join(mnt, "wal")
	createWAL(t, dir, false)
	crash(t, f)
	if wal.Exist(dir) {
		t.Fatal("the WAL survived a crash without a sync of its directory")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the WAL directory's own name was synced: %v", err)
	}
}

func TestEtcdWALSurvivesWithSyncOfItsDirectory(t *testing.T) {
	f, mnt := mount(t)
	dir := filepath.Join(mnt, "wal")
	createWAL(t, dir, true)
	crash(t, f)
	w, err := wal.Open(zap.NewNop(), dir, &walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, st, ents, err := w.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 3 || st.GetCommit() != 3 {
		t.Fatalf("after crash: %d entries, commit %d; want 3, 3", len(ents), st.GetCommit())
	}
}

// createWAL creates a WAL at dir holding three entries, then closes it.
func createWAL(t *testing.T, dir string, syncDir bool) {
	t.Helper()
	w, err := wal.Create(zap.NewNop(), dir, []byte("meta"))
	if err != nil {
		t.Fatal(err)
	}
	if syncDir {
		d, err := fileutil.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(fileutil.Fsync(d), d.Close()); err != nil {
			t.Fatal(err)
		}
	}
	var ents []*raftpb.Entry
	for i := range uint64(3) {
		ents = append(ents, &raftpb.Entry{Index: new(i + 1), Term: new(uint64(1)), Data: []byte("entry")})
	}
	st := &raftpb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(uint64(3))}
	if err := w.Save(st, ents); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
