//go:build linux

package powerfs

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is the loopback node with the journals in front of every call that
// changes data or names. Operations it does not override are the loopback's.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeWrapChilder     = (*node)(nil)
	_ fs.NodeFsyncer         = (*node)(nil)
	_ fs.NodeOpendirHandler  = (*node)(nil)
	_ fs.NodeCopyFileRanger  = (*node)(nil)
	_ fs.FileFsyncdirer      = (*dirHandle)(nil)
	_ fs.FilePassthroughFder = (*file)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func (n *node) child(name string) string { return filepath.Join(n.backingPath(), name) }

// reserved hides the attic: it lives in the backing root, out of sight.
func (n *node) reserved(name string) bool {
	return name == atticName && n.EmbeddedInode() == n.Root()
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.ENOENT
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// addName runs fn, which adds name to this directory, after recording the
// directory's durable listing. Unless fn links an existing object, what it
// creates under a name that did not exist is new.
func (n *node) addName(name string, link bool, fn func(existed bool) syscall.Errno) syscall.Errno {
	if n.reserved(name) {
		return syscall.EPERM
	}
	if errno := n.fs.writeFault(); errno != 0 {
		return errno
	}
	j := n.fs.names
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.touch(n.backingPath()); err != nil {
		return toErrno(err)
	}
	_, _, err := inoOf(n.child(name))
	existed := err == nil
	errno := fn(existed)
	if errno == 0 && !existed && !link {
		j.created(n.child(name), n.fs.data)
	}
	return errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (ch *fs.Inode, fh fs.FileHandle, fuseFlags uint32, errno syscall.Errno) {
	errno = n.addName(name, false, func(existed bool) syscall.Errno {
		if existed && flags&syscall.O_TRUNC != 0 {
			// The kernel sends O_TRUNC only to CREATE of a name it believed
			// absent; the truncation must still be undoable.
			if errno := n.fs.truncatePath(n.child(name), 0, func() syscall.Errno { return 0 }); errno != 0 {
				return errno
			}
		}
		ch, fh, fuseFlags, errno = n.LoopbackNode.Create(ctx, name, readable(flags), mode, out)
		return errno
	})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.fs.wrap(fh), fuseFlags, 0
}

// Open needs no O_TRUNC handling: without FUSE_ATOMIC_O_TRUNC the kernel
// truncates through Setattr.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, readable(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	return n.fs.wrap(fh), fuseFlags, 0
}

// readable opens write-only files read-write in the backing store, for the
// journal to read what a write overwrites. The kernel has checked access.
func readable(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		return flags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return flags
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.addName(name, false, func(bool) syscall.Errno {
		ch, errno = n.LoopbackNode.Mkdir(ctx, name, mode, out)
		return errno
	})
	return ch, errno
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.addName(name, false, func(bool) syscall.Errno {
		ch, errno = n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
		return errno
	})
	return ch, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.addName(name, false, func(bool) syscall.Errno {
		ch, errno = n.LoopbackNode.Symlink(ctx, target, name, out)
		return errno
	})
	return ch, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.addName(name, true, func(bool) syscall.Errno {
		ch, errno = n.LoopbackNode.Link(ctx, target, name, out)
		return errno
	})
	return ch, errno
}

// removeName records this directory's listing and keeps the object that
// name leaves, then runs fn.
func (n *node) removeName(name string, fn func() syscall.Errno) syscall.Errno {
	j := n.fs.names
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.touch(n.backingPath()); err != nil {
		return toErrno(err)
	}
	if _, err := j.keep(n.child(name)); err != nil {
		return toErrno(err)
	}
	return fn()
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if _, dir, err := inoOf(n.child(name)); err == nil && dir {
		return syscall.EISDIR
	}
	return n.removeName(name, func() syscall.Errno { return n.LoopbackNode.Unlink(ctx, name) })
}

// Rmdir moves the directory into the attic instead: keep did the removal.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if _, dir, err := inoOf(n.child(name)); err == nil && !dir {
		return syscall.ENOTDIR
	}
	return n.removeName(name, func() syscall.Errno { return 0 })
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if to.reserved(newName) {
		return syscall.EPERM
	}
	if errno := n.fs.writeFault(); errno != 0 {
		return errno
	}
	j := n.fs.names
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, dir := range []*node{n, to} {
		if err := j.touch(dir.backingPath()); err != nil {
			return toErrno(err)
		}
	}
	// A replaced target loses its name: keep it, after the checks rename
	// would make, since keeping a directory moves it out of the way.
	undo := func() error { return nil }
	_, srcDir, err := inoOf(n.child(name))
	if err != nil {
		return toErrno(err)
	}
	if _, dstDir, err := inoOf(to.child(newName)); err == nil && flags&(unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE) == 0 {
		switch {
		case dstDir && !srcDir:
			return syscall.EISDIR
		case !dstDir && srcDir:
			return syscall.ENOTDIR
		}
		if undo, err = j.keep(to.child(newName)); err != nil {
			return toErrno(err)
		}
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno != 0 {
		if err := undo(); err != nil {
			n.fs.logf("powerfs: rename failed (%v) and its target could not be put back: %v", errno, err)
		}
	}
	return errno
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok {
		return n.LoopbackNode.Setattr(ctx, fh, in, out)
	}
	if errno := n.fs.writeFault(); errno != 0 {
		return errno
	}
	set := func() syscall.Errno { return n.LoopbackNode.Setattr(ctx, fh, in, out) }
	if f, ok := fh.(*file); ok {
		return n.fs.data.truncate(f.ino, f.fd(), int64(size), set)
	}
	return n.fs.truncatePath(n.backingPath(), size, set)
}

// Fsync serves files and, through dirHandle, directories: the two rules
// are separate, and neither makes the other durable.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if errno := n.fs.syncFault(ctx); errno != 0 {
		return errno
	}
	if n.IsDir() {
		n.fs.dirSyncs.Add(1)
		return toErrno(n.fs.names.sync(n.backingPath()))
	}
	n.fs.fileSyncs.Add(1)
	if f, ok := fh.(*file); ok {
		n.fs.data.sync(f.ino)
		return 0
	}
	ino, _, err := inoOf(n.backingPath())
	if err != nil {
		return toErrno(err)
	}
	n.fs.data.sync(ino)
	return 0
}

// CopyFileRange is refused so that the kernel falls back to writes, which
// the journal sees.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// OpendirHandle wraps the loopback's directory stream, whose own Fsyncdir
// would bypass the name journal, and which would list the attic.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{stream: fh.(dirStream), n: n}, fuseFlags, 0
}

type dirStream interface {
	fs.FileReaddirenter
	fs.FileSeekdirer
	fs.FileReleasedirer
}

type dirHandle struct {
	stream dirStream
	n      *node
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	for {
		de, errno := d.stream.Readdirent(ctx)
		if de == nil || errno != 0 || !d.n.reserved(de.Name) {
			return de, errno
		}
	}
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.stream.Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) { d.stream.Releasedir(ctx, flags) }

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, nil, flags)
}
