//go:build linux

package powerfs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

func TestFailWritesReturnsErrnoUntilCleared(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "")
	fl, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()

	f.FailWrites(syscall.ENOSPC)
	_, err = fl.Write([]byte("x"))
	wantErrno(t, "write", err, syscall.ENOSPC)
	wantErrno(t, "fallocate", fileutil.Preallocate(fl, 1<<20, true), syscall.ENOSPC)
	wantErrno(t, "truncate", fl.Truncate(10), syscall.ENOSPC)
	_, err = os.Create(filepath.Join(mnt, "g"))
	wantErrno(t, "create", err, syscall.ENOSPC)
	wantErrno(t, "mkdir", os.Mkdir(filepath.Join(mnt, "d"), 0o755), syscall.ENOSPC)
	wantErrno(t, "rename", os.Rename(p, filepath.Join(mnt, "h")), syscall.ENOSPC)
	if err := os.Remove(p); err != nil {
		t.Fatalf("remove on a full disk: %v", err)
	}

	f.FailWrites(0)
	if _, err := fl.Write([]byte("x")); err != nil {
		t.Fatalf("write after clearing: %v", err)
	}
}

func TestFailSyncsReturnsErrnoAndMakesNothingDurable(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "")
	q := filepath.Join(mnt, "g")

	f.FailSyncs(syscall.EIO)
	write(t, p, 0, "data", false)
	wantErrno(t, "fsync", fsync(p), syscall.EIO)
	fl, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "fdatasync", fileutil.Fdatasync(fl), syscall.EIO)
	fl.Close()
	write(t, q, 0, "", false)
	wantErrno(t, "directory fsync", fsync(mnt), syscall.EIO)
	f.FailSyncs(0)

	crash(t, f)
	wantContent(t, p, "")
	wantGone(t, q)
}

func TestStallSyncsDelaysSyncButNotConcurrentReads(t *testing.T) {
	f, mnt := mount(t)
	p := durableFile(t, mnt, "f", "data")
	const stall = 500 * time.Millisecond
	f.StallSyncs(stall)

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- fsync(p) }()
	// A read of the very file being synced, and a listing, while the
	// sync waits.
	wantContent(t, p, "data")
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("sync returned (%v) before the reads, after %v of a %v stall", err, time.Since(start), stall)
	default:
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < stall {
		t.Fatalf("stalled sync took %v, want at least %v", took, stall)
	}

	f.StallSyncs(0)
	start = time.Now()
	syncFile(t, p)
	if took := time.Since(start); took >= stall {
		t.Fatalf("sync after clearing took %v", took)
	}
}

// Writers and syncers run concurrently (go-fuse serves requests in
// parallel); each file keeps exactly what its last sync covered.
func TestConcurrentWritersKeepWhatEachSynced(t *testing.T) {
	f, mnt := mount(t)
	const files, rounds = 6, 40
	errs := make(chan error, files)
	for i := range files {
		p := filepath.Join(mnt, fmt.Sprint(i))
		write(t, p, 0, "", true)
		go func() {
			fl, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				errs <- err
				return
			}
			defer fl.Close()
			for r := range rounds {
				if _, err := fl.WriteAt([]byte{byte('a' + r%26)}, int64(r)); err != nil {
					errs <- err
					return
				}
				if r == rounds/2 {
					if err := fl.Sync(); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range files {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	syncFile(t, mnt)
	crash(t, f)
	var want []byte
	for r := range rounds/2 + 1 {
		want = append(want, byte('a'+r%26))
	}
	for i := range files {
		wantContent(t, filepath.Join(mnt, fmt.Sprint(i)), string(want))
	}
}
