//go:build linux

package powerfs

import (
	"bytes"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// dataJournal keeps, per backing inode, what a crash must put back: the size
// at the file's last sync and the synced bytes that writes have overwritten
// since. The backing file always holds the current content, so reads and
// syncs cost nothing and only overwritten ranges are copied, once each.
type dataJournal struct {
	mu    sync.Mutex
	files map[uint64]*fileUndo
}

// fileUndo is the undo log of one file. A clean entry (not dirty) means the
// backing file is exactly what was last synced.
type fileUndo struct {
	mu    sync.Mutex
	dirty bool
	size  int64  // size at the last sync; valid while dirty
	saved []span // synced bytes overwritten since, sorted, disjoint
}

// span is a saved range of synced content; nil data stands for zeros, which
// is what the WAL's preallocated tail holds, so overwriting it costs no
// memory.
type span struct {
	off, n int64
	data   []byte
}

func newDataJournal() *dataJournal {
	return &dataJournal{files: map[uint64]*fileUndo{}}
}

// get returns ino's undo log, locked. Entries are never removed while the
// mount is up, so a writer and a sync can not end up holding different ones.
func (d *dataJournal) get(ino uint64) *fileUndo {
	d.mu.Lock()
	u := d.files[ino]
	if u == nil {
		u = &fileUndo{}
		d.files[ino] = u
	}
	d.mu.Unlock()
	u.mu.Lock()
	return u
}

// change runs fn, which modifies the file behind fd, after saving the
// synced bytes in [off, off+n) that fn may overwrite. n < 0 saves nothing
// but still records the synced size, for changes that only grow the file.
func (d *dataJournal) change(ino uint64, fd int, off, n int64, fn func() syscall.Errno) syscall.Errno {
	u := d.get(ino)
	defer u.mu.Unlock()
	if err := u.save(fd, off, n); err != nil {
		return toErrno(err)
	}
	return fn()
}

// truncate runs fn, which sets the size of the file behind fd to size.
func (d *dataJournal) truncate(ino uint64, fd int, size int64, fn func() syscall.Errno) syscall.Errno {
	u := d.get(ino)
	defer u.mu.Unlock()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return toErrno(err)
	}
	// Shrinking loses the tail; a later extension reads zeros there.
	if err := u.save(fd, size, st.Size-size); err != nil {
		return toErrno(err)
	}
	return fn()
}

// sync makes ino's current content the one a crash keeps.
func (d *dataJournal) sync(ino uint64) {
	u := d.get(ino)
	u.dirty, u.saved = false, nil
	u.mu.Unlock()
}

// fresh forgets ino's log: the inode number now names a new file (numbers
// of deleted files are reused), whose synced state is empty.
func (d *dataJournal) fresh(ino uint64) {
	u := d.get(ino)
	u.dirty, u.size, u.saved = true, 0, nil
	u.mu.Unlock()
}

// save copies the synced bytes of [off, off+n) that are not saved yet.
// Bytes not saved since the last sync are still the synced ones in the
// backing file, and bytes past the current size were saved by the
// truncation that cut them off, so reading the backing file is enough.
func (u *fileUndo) save(fd int, off, n int64) error {
	if !u.dirty {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		u.dirty, u.size, u.saved = true, st.Size, nil
	}
	end := min(off+n, u.size)
	i, _ := slices.BinarySearchFunc(u.saved, off, func(s span, off int64) int {
		return cmpInt(s.off+s.n, off+1)
	})
	var add []span
	for cur := off; cur < end; {
		next := end
		if i < len(u.saved) {
			s := u.saved[i]
			if s.off <= cur {
				cur = s.off + s.n
				i++
				continue
			}
			next = min(end, s.off)
		}
		got, err := readSpans(fd, cur, next-cur)
		if err != nil {
			return err
		}
		add = append(add, got...)
		cur = next
	}
	if len(add) > 0 {
		u.saved = append(u.saved, add...)
		slices.SortFunc(u.saved, func(a, b span) int { return cmpInt(a.off, b.off) })
	}
	return nil
}

const chunk = 1 << 20

var zeroChunk = make([]byte, chunk)

// readSpans reads [off, off+n) in chunks, keeping all-zero chunks as nil:
// a truncated or overwritten WAL tail is preallocated zeros.
func readSpans(fd int, off, n int64) ([]span, error) {
	var out []span
	buf := make([]byte, chunk)
	for n > 0 {
		b := buf[:min(n, chunk)]
		got, err := unix.Pread(fd, b, off)
		if err != nil {
			return nil, err
		}
		clear(b[got:]) // past EOF of a sparse tail: zeros
		s := span{off: off, n: int64(len(b))}
		if !bytes.Equal(b, zeroChunk[:len(b)]) {
			s.data = bytes.Clone(b)
		}
		out = append(out, s)
		off, n = off+s.n, n-s.n
	}
	return out, nil
}

// revert puts the synced content back into the file at path, returning how
// many bytes of unsynced data that discarded.
func (u *fileUndo) revert(path string) (int64, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, nil // the inode number was reused by something without data
	}
	lost := max(st.Size-u.size, 0)
	if err := unix.Ftruncate(fd, u.size); err != nil {
		return 0, err
	}
	for _, s := range u.saved {
		lost += s.n
		data := s.data
		if data == nil {
			data = zeroChunk[:s.n] // readSpans makes no span longer than a chunk
		}
		if _, err := unix.Pwrite(fd, data, s.off); err != nil {
			return 0, err
		}
	}
	return lost, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return syscall.EIO
}
