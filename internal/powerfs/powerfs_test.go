//go:build linux

package powerfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// durableFile makes mnt/name hold content, data and name durable.
func durableFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	write(t, p, 0, content, true)
	syncFile(t, dir)
	return p
}

func TestUnsyncedWriteIsLost(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "")
	write(t, p, 0, "hello", false)
	crash(t, f)
	wantContent(t, p, "")
}

func TestSyncedWriteIsKept(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "")
	write(t, p, 0, "hello", true)
	crash(t, f)
	wantContent(t, p, "hello")
}

func TestOverwriteAfterSyncIsRevertedToSyncedContent(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "abcdef")
	write(t, p, 1, "XY", false)
	write(t, p, 2, "ZZZ", false) // overlaps the first: the synced bytes are saved once
	crash(t, f)
	wantContent(t, p, "abcdef")
}

func TestExtendAfterSyncIsCutBackToSyncedSize(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "abc")
	write(t, p, 3, "def", false)
	write(t, p, 1<<20, "far", false)
	crash(t, f)
	wantContent(t, p, "abc")
}

func TestTruncateAfterSyncIsUndone(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "abcdef")
	if err := os.Truncate(p, 2); err != nil {
		t.Fatal(err)
	}
	write(t, p, 4, "??", false) // the tail read back as zeros, now overwritten
	crash(t, f)
	wantContent(t, p, "abcdef")
}

// O_TRUNC reaches the filesystem as a truncation, which is undone too.
func TestRewriteWithOTruncIsUndone(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "synced")
	if err := os.WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	crash(t, f)
	wantContent(t, p, "synced")
}

func TestSyncedDataSurvivesLaterUnsyncedWrites(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "one")
	write(t, p, 0, "two", true)
	write(t, p, 0, "six", false)
	crash(t, f)
	wantContent(t, p, "two")
}

func TestFileSyncDoesNotMakeItsNameDurable(t *testing.T) {
	f, mnt := mount(t)
	p := filepath.Join(mnt, "f")
	write(t, p, 0, "data", true)
	crash(t, f)
	wantGone(t, p)
}

func TestFileAndDirectorySyncKeepANewFile(t *testing.T) {
	f, mnt := mount(t)
	p := filepath.Join(mnt, "f")
	write(t, p, 0, "data", true)
	syncFile(t, mnt)
	crash(t, f)
	wantContent(t, p, "data")
}

func TestDirectorySyncDoesNotMakeFileDataDurable(t *testing.T) {
	f, mnt := mount(t)
	p := filepath.Join(mnt, "f")
	write(t, p, 0, "data", false)
	syncFile(t, mnt)
	crash(t, f)
	wantContent(t, p, "")
}

func TestRenameWithoutDirectorySyncKeepsOldName(t *testing.T) {
	f, mnt := mount(t)
	old := durableFile(t, mnt, "old", "data")
	rename(t, old, filepath.Join(mnt, "new"))
	crash(t, f)
	wantContent(t, old, "data")
	wantGone(t, filepath.Join(mnt, "new"))
}

// Strict POSIX: the removal of the old name is durable only with its own
// directory, so both names may survive.
func TestRenameWithTargetDirectorySyncKeepsBothNames(t *testing.T) {
	f, mnt := mount(t)
	src, dst := filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")
	mkdir(t, src)
	mkdir(t, dst)
	syncFile(t, mnt)
	old := durableFile(t, src, "a", "data")
	rename(t, old, filepath.Join(dst, "b"))
	syncFile(t, dst)
	crash(t, f)
	wantContent(t, filepath.Join(dst, "b"), "data")
	wantContent(t, old, "data")
}

func TestRenameWithBothDirectoriesSyncedKeepsOnlyNewName(t *testing.T) {
	f, mnt := mount(t)
	src, dst := filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")
	mkdir(t, src)
	mkdir(t, dst)
	syncFile(t, mnt)
	old := durableFile(t, src, "a", "data")
	rename(t, old, filepath.Join(dst, "b"))
	syncFile(t, dst)
	syncFile(t, src)
	crash(t, f)
	wantContent(t, filepath.Join(dst, "b"), "data")
	wantGone(t, old)
}

func TestRenameOverDurableFileWithoutSyncBringsTargetBack(t *testing.T) {
	f, mnt := mount(t)
	target := durableFile(t, mnt, "target", "old")
	tmp := filepath.Join(mnt, "tmp")
	write(t, tmp, 0, "new", true)
	rename(t, tmp, target)
	crash(t, f)
	wantContent(t, target, "old")
	wantGone(t, tmp)
}

// A directory has one name: once its new one is durable the old one is not,
// even though the old parent was not synced.
func TestRenamedDirectoryLosesItsOldNameOnceTheNewOneIsDurable(t *testing.T) {
	f, mnt := mount(t)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	mkdir(t, a)
	mkdir(t, b)
	mkdir(t, filepath.Join(a, "d"))
	syncFile(t, a)
	syncFile(t, mnt)
	rename(t, filepath.Join(a, "d"), filepath.Join(b, "d"))
	syncFile(t, b)
	crash(t, f)
	if _, err := os.Stat(filepath.Join(b, "d")); err != nil {
		t.Fatalf("new name: %v", err)
	}
	wantGone(t, filepath.Join(a, "d"))
}

func TestRenameOverEmptyDirectoryWithoutSyncBringsBothBack(t *testing.T) {
	f, mnt := mount(t)
	x, y := filepath.Join(mnt, "x"), filepath.Join(mnt, "y")
	mkdir(t, x)
	mkdir(t, y)
	syncFile(t, mnt)
	p := durableFile(t, x, "f", "data")
	if err := os.Rename(y, filepath.Join(x, "f")); err == nil {
		t.Fatal("renamed a directory over a file")
	}
	if err := syscall.Rename(x, y); err != nil { // os.Rename refuses existing directories
		t.Fatal(err)
	}
	wantContent(t, filepath.Join(y, "f"), "data")
	crash(t, f)
	wantContent(t, p, "data")
	if des, err := os.ReadDir(y); err != nil || len(des) != 0 {
		t.Fatalf("replaced directory after crash: %v, %v; want it back, empty", des, err)
	}
}

func TestHardLinkWithoutDirectorySyncIsLost(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "data")
	if err := os.Link(p, filepath.Join(mnt, "g")); err != nil {
		t.Fatal(err)
	}
	crash(t, f)
	wantContent(t, p, "data")
	wantGone(t, filepath.Join(mnt, "g"))
}

func TestUnlinkWithoutDirectorySyncBringsFileBackWithSyncedContent(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "synced")
	write(t, p, 0, "unsync", false)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	crash(t, f)
	wantContent(t, p, "synced")
}

func TestUnlinkWithDirectorySyncIsDurable(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "synced")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	syncFile(t, mnt)
	crash(t, f)
	wantGone(t, p)
}

func TestRmdirWithoutParentSyncBringsDirectoryAndFilesBack(t *testing.T) {
	f, mnt := mount(t)
	d := filepath.Join(mnt, "d")
	mkdir(t, d)
	syncFile(t, mnt)
	p := durableFile(t, d, "f", "data")
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	crash(t, f)
	wantContent(t, p, "data")
}

func TestMkdirWithoutParentSyncLosesWholeSubtree(t *testing.T) {
	f, mnt := mount(t)
	d := filepath.Join(mnt, "d")
	mkdir(t, d)
	mkdir(t, filepath.Join(d, "sub"))
	syncFile(t, d)
	durableFile(t, filepath.Join(d, "sub"), "f", "data")
	crash(t, f)
	wantGone(t, d)
}

// wal.Create's pattern: fill dir.tmp, rename it to dir, fsync the parent.
// The parent then durably names the directory, but the directory's own
// listing was never synced, so the file in it is lost.
func TestRenamedDirectoryWithoutItsOwnSyncLosesItsFiles(t *testing.T) {
	f, mnt := mount(t)
	tmp, dir := filepath.Join(mnt, "wal.tmp"), filepath.Join(mnt, "wal")
	mkdir(t, tmp)
	write(t, filepath.Join(tmp, "0.wal"), 0, "records", true)
	rename(t, tmp, dir)
	syncFile(t, mnt)
	crash(t, f)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the parent was synced, so %s must survive: %v", dir, err)
	}
	wantGone(t, filepath.Join(dir, "0.wal"))
	wantGone(t, tmp)
}

func TestRenamedDirectoryWithItsOwnSyncKeepsItsFiles(t *testing.T) {
	f, mnt := mount(t)
	tmp, dir := filepath.Join(mnt, "wal.tmp"), filepath.Join(mnt, "wal")
	mkdir(t, tmp)
	write(t, filepath.Join(tmp, "0.wal"), 0, "records", true)
	rename(t, tmp, dir)
	syncFile(t, mnt)
	syncFile(t, dir)
	crash(t, f)
	wantContent(t, filepath.Join(dir, "0.wal"), "records")
	wantGone(t, tmp)
}

func TestCrashReportCountsWhatWasDiscarded(t *testing.T) {
	f, mnt := mount(t)
	durableFile(t, mnt, "kept", "kept")
	write(t, filepath.Join(mnt, "kept"), 4, string(make([]byte, 4096)), false)
	write(t, filepath.Join(mnt, "new1"), 0, "x", true)
	write(t, filepath.Join(mnt, "new2"), 0, "y", true)
	crash(t, f)
	got := f.LastCrash()
	if got.NamesDropped != 2 || got.NamesRestored != 0 || got.FilesReverted < 1 || got.BytesDiscarded < 4096 {
		t.Fatalf("got %+v, want 2 names dropped and at least 4096 bytes of 1 file reverted", got)
	}
	if s := f.Stats(); s.Crashes != 1 || s.FileSyncs < 3 || s.DirSyncs != 1 {
		t.Fatalf("stats %+v: want 1 crash, 3 file syncs, 1 directory sync", s)
	}
}

func TestMountIsUsableAfterRepeatedCrashes(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "0")
	for i := range 3 {
		write(t, p, 0, "unsynced", false)
		crash(t, f)
		wantContent(t, p, "0")
		if i == 1 {
			write(t, p, 0, "1", true)
			crash(t, f)
			wantContent(t, p, "1")
			write(t, p, 0, "0", true)
		}
	}
}

func TestAtticIsHiddenFromTheMount(t *testing.T) {
	_, mnt := mount(t)
	p := durableFile(t, mnt, "f", "x")
	if err := os.Remove(p); err != nil { // puts f into the attic
		t.Fatal(err)
	}
	des, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 0 {
		t.Fatalf("root lists %v, want nothing", des)
	}
	if _, err := os.Stat(filepath.Join(mnt, atticName)); !os.IsNotExist(err) {
		t.Fatalf("stat of the attic: %v, want not found", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, atticName), 0o755); err == nil {
		t.Fatal("could create the attic's name through the mount")
	}
}
