//go:build linux

package powerfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// file is the loopback file handle with the data journal in front of every
// call that changes content or size.
type file struct {
	*fs.LoopbackFile
	fs  *FS
	ino uint64 // of the backing inode: the journal's key, stable across renames
}

func (f *FS) wrap(fh fs.FileHandle) fs.FileHandle {
	lf := fh.(*fs.LoopbackFile)
	w := &file{LoopbackFile: lf, fs: f}
	var st unix.Stat_t
	if err := unix.Fstat(w.fd(), &st); err == nil {
		w.ino = st.Ino
	}
	return w
}

// fd is the backing descriptor, open until Release, which the kernel sends
// only after every other call on the handle has returned.
func (f *file) fd() int {
	fd, _ := f.LoopbackFile.PassthroughFd()
	return fd
}

// PassthroughFd refuses FUSE passthrough: with it the kernel would write
// to the backing file directly, past the journal.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.fs.writeFault(); errno != 0 {
		return 0, errno
	}
	var n uint32
	errno := f.fs.data.change(f.ino, f.fd(), off, int64(len(data)), func() (errno syscall.Errno) {
		n, errno = f.LoopbackFile.Write(ctx, data, off)
		return errno
	})
	return n, errno
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if errno := f.fs.writeFault(); errno != 0 {
		return 0, errno
	}
	var size int64
	for _, d := range data {
		size += int64(len(d))
	}
	var n uint32
	errno := f.fs.data.change(f.ino, f.fd(), off, size, func() (errno syscall.Errno) {
		n, errno = f.LoopbackFile.Writev(ctx, data, off)
		return errno
	})
	return n, errno
}

// Allocate passes the modes that leave content alone (plain and
// KEEP_SIZE, which only reserve space or grow the file with zeros) and
// the ones that zero a range, which is saved first. Modes that shift
// content are refused: etcd does not use them.
func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if errno := f.fs.writeFault(); errno != 0 {
		return errno
	}
	allocate := func() syscall.Errno { return f.LoopbackFile.Allocate(ctx, off, size, mode) }
	switch mode &^ unix.FALLOC_FL_KEEP_SIZE {
	case 0:
		return f.fs.data.change(f.ino, f.fd(), 0, -1, allocate)
	case unix.FALLOC_FL_PUNCH_HOLE, unix.FALLOC_FL_ZERO_RANGE:
		return f.fs.data.change(f.ino, f.fd(), int64(off), int64(size), allocate)
	}
	return syscall.EOPNOTSUPP
}

// Ioctl is refused: some (FICLONE, ...) change content behind the journal.
func (f *file) Ioctl(ctx context.Context, cmd uint32, arg uint64, input, output []byte) (int32, syscall.Errno) {
	return 0, syscall.ENOTTY
}

// truncatePath runs fn, which sets the size of the file at path, with the
// tail it cuts off saved.
func (f *FS) truncatePath(path string, size uint64, fn func() syscall.Errno) syscall.Errno {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return toErrno(err)
	}
	return f.data.truncate(st.Ino, fd, int64(size), fn)
}
