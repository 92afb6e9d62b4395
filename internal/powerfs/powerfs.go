//go:build linux

package powerfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted power-loss filesystem.
type FS struct {
	backing, mountpoint, attic string

	mu     sync.Mutex // serializes Crash and Unmount
	server *fuse.Server
	last   CrashReport

	// Replaced by Crash while unmounted; the server's shutdown orders
	// that against the calls of the mounts before and after.
	data  *dataJournal
	names *nameJournal

	failWrites, failSyncs atomic.Uint64 // syscall.Errno
	stall                 atomic.Int64  // time.Duration
	fileSyncs, dirSyncs   atomic.Int64
	crashes               atomic.Int64
}

// Stats are running counts since Mount.
type Stats struct {
	FileSyncs, DirSyncs int64 // fsync/fdatasync calls that made something durable
	Crashes             int64
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available reports why FUSE mounts cannot be made here, or nil if they can.
// It tries one real mount (once per process), because root and /dev/fuse are
// not enough inside some containers.
func Available() error {
	availableOnce.Do(func() { availableErr = probe() })
	return availableErr
}

func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("powerfs: mounting without fusermount needs root (euid %d)", os.Geteuid())
	}
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	dev.Close()
	dir, err := os.MkdirTemp("", "powerfs-probe-")
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	defer os.RemoveAll(dir)
	backing, mnt := filepath.Join(dir, "b"), filepath.Join(dir, "m")
	if err := errors.Join(os.Mkdir(backing, 0o700), os.Mkdir(mnt, 0o700)); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	f, err := Mount(backing, mnt)
	if err != nil {
		return err
	}
	return f.Unmount()
}

// Mount mounts a passthrough of backing at mountpoint. Whatever backing
// holds now counts as durable. backing must be one filesystem (objects are
// kept by hard links) and must not be changed except through the mount; its
// top-level ".powerfs-attic" is the package's own and is removed.
func Mount(backing, mountpoint string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	f := &FS{backing: backing, mountpoint: mountpoint, attic: filepath.Join(backing, atticName)}
	// An attic left by a process that died mounted is stale: what the
	// backing store holds now is what counts.
	if err := os.RemoveAll(f.attic); err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	if err := os.Mkdir(f.attic, 0o700); err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	f.data = newDataJournal()
	f.names = newNameJournal(f.attic)
	if err := f.mount(); err != nil {
		os.RemoveAll(f.attic)
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	lb, err := fs.NewLoopbackRoot(f.backing)
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	root := &node{LoopbackNode: lb.(*fs.LoopbackNode), fs: f}
	root.RootData.RootNode = root
	// No kernel caching of names or attributes: nothing but the mount
	// changes the backing store between crashes, but the attic links change
	// link counts, and a zero timeout costs only lookups.
	var zero time.Duration
	opts := &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:            f.backing,
			Name:              "powerfs",
			DirectMountStrict: true, // as root: no fusermount3 needed
			// Passthrough would let the kernel write the backing
			// files itself, past the journal.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			Logger:               quietLogger,
		},
	}
	server, err := fs.Mount(f.mountpoint, root, opts)
	if err != nil {
		return fmt.Errorf("powerfs: mount %s: %w", f.mountpoint, err)
	}
	f.server = server
	return nil
}

// Crash discards everything not made durable, as a power cut would, then
// mounts again on what survived. The caller must first have killed, and
// waited for, every process using the mount: the unmount fails while files
// are open, and the crash is only exact with nothing in flight. Crash first
// unmounts, so that the kernel drops every cached page, name and attribute
// of the old state, and the flock locks with it, as a reboot would.
func (f *FS) Crash() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.server == nil {
		return errors.New("powerfs: crash: not mounted")
	}
	if err := f.server.Unmount(); err != nil {
		return fmt.Errorf("powerfs: crash: unmount %s (is a process still using it?): %w", f.mountpoint, err)
	}
	f.server = nil
	rep, err := f.revert()
	f.last = rep
	f.crashes.Add(1)
	if err != nil {
		return fmt.Errorf("powerfs: crash: %w", err)
	}
	return f.mount()
}

// LastCrash reports what the last Crash discarded.
func (f *FS) LastCrash() CrashReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Stats returns running counts.
func (f *FS) Stats() Stats {
	return Stats{FileSyncs: f.fileSyncs.Load(), DirSyncs: f.dirSyncs.Load(), Crashes: f.crashes.Load()}
}

// FailWrites makes write, fallocate, truncation and every call that adds a
// name (create, mkdir, link, symlink, rename) fail with errno, until called
// with 0. Removals still work, as they do on a full disk.
func (f *FS) FailWrites(errno syscall.Errno) { f.failWrites.Store(uint64(errno)) }

// FailSyncs makes fsync and fdatasync, of files and directories, fail with
// errno without making anything durable, until called with 0.
func (f *FS) FailSyncs(errno syscall.Errno) { f.failSyncs.Store(uint64(errno)) }

// StallSyncs makes every fsync and fdatasync wait d first, until called
// with 0. Only the syncing call waits: other calls are served meanwhile.
func (f *FS) StallSyncs(d time.Duration) { f.stall.Store(int64(d)) }

func (f *FS) writeFault() syscall.Errno { return syscall.Errno(f.failWrites.Load()) }

func (f *FS) syncFault(ctx context.Context) syscall.Errno {
	if d := time.Duration(f.stall.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	return syscall.Errno(f.failSyncs.Load())
}

// Unmount unmounts and drops the attic; the backing store keeps the
// current state, durable or not. If files are still open it detaches the
// mount lazily, so that a failed test leaves nothing mounted, and reports
// the error.
func (f *FS) Unmount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.server != nil {
		if err = f.server.Unmount(); err != nil {
			if derr := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); derr != nil {
				err = errors.Join(err, derr)
			}
			err = fmt.Errorf("powerfs: unmount %s: %w", f.mountpoint, err)
		}
		f.server = nil
	}
	return errors.Join(err, os.RemoveAll(f.attic))
}

func (f *FS) logf(format string, args ...any) { log.Printf(format, args...) }

// quietLogger drops the message go-fuse logs at every unmount: the kernel
// ends the connection with ECONNABORTED rather than ENODEV.
var quietLogger = log.New(dropWriter{}, "", log.LstdFlags)

type dropWriter struct{}

func (dropWriter) Write(p []byte) (int, error) {
	if !bytes.Contains(p, []byte("software caused connection abort")) {
		return log.Writer().Write(p)
	}
	return len(p), nil
}
