//go:build linux

package powerfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// atticName is the hidden directory, at the top of the backing store, that
// keeps the objects a crash may have to bring back: files unlinked or
// replaced, and directories removed, while their old name may still be
// durable. Objects are hard-linked or moved there under their inode number.
// The mount does not show it.
const atticName = ".powerfs-attic"

// entry is what a directory entry names: an inode, and whether it is a
// directory (the one kind that can not be hard-linked back).
type entry struct {
	ino uint64
	dir bool
}

type listing map[string]entry

// nameJournal remembers, for each directory changed since its last fsync,
// the listing it had then. A directory without one is unchanged, so its
// backing listing is the durable one. Namespace operations run one at a
// time under mu, so a listing is copied before the change that follows it.
type nameJournal struct {
	mu    sync.Mutex
	attic string
	snap  map[uint64]listing
}

func newNameJournal(attic string) *nameJournal {
	return &nameJournal{attic: attic, snap: map[uint64]listing{}}
}

// touch records dir's listing before its first change since its last sync.
// Callers hold mu.
func (j *nameJournal) touch(dir string) error {
	ino, _, err := inoOf(dir)
	if err != nil {
		return err
	}
	if _, ok := j.snap[ino]; ok {
		return nil
	}
	l, err := j.list(dir)
	if err != nil {
		return err
	}
	j.snap[ino] = l
	return nil
}

// created records that the object at path is new: a new directory has no
// durable entries, however its name turns out. Callers hold mu.
func (j *nameJournal) created(path string, data *dataJournal) {
	ino, dir, err := inoOf(path)
	if err != nil {
		return
	}
	if dir {
		j.snap[ino] = listing{}
	} else {
		data.fresh(ino)
	}
}

// keep hard-links (a file) or moves (a directory) the object at path into
// the attic before its name goes away, so that a crash can bring the name
// back with the object it named. Callers hold mu.
func (j *nameJournal) keep(path string) (undo func() error, err error) {
	ino, dir, err := inoOf(path)
	if err != nil {
		return nil, err
	}
	kept := filepath.Join(j.attic, strconv.FormatUint(ino, 10))
	if !dir {
		if err := os.Link(path, kept); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		return func() error { return nil }, nil
	}
	if err := emptyDir(path); err != nil {
		return nil, err
	}
	if err := os.Rename(path, kept); err != nil {
		return nil, err
	}
	return func() error { return os.Rename(kept, path) }, nil
}

// sync makes dir's current listing durable. A directory has only one name,
// so a directory entry made durable here also ends any durable old name
// left in a directory not synced since the rename. Objects in the attic that
// no durable listing names any more are dropped.
func (j *nameJournal) sync(dir string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	ino, _, err := inoOf(dir)
	if err != nil {
		return err
	}
	delete(j.snap, ino)
	now, err := j.list(dir)
	if err != nil {
		return err
	}
	moved := map[uint64]bool{}
	for _, e := range now {
		if e.dir {
			moved[e.ino] = true
		}
	}
	live := map[uint64]bool{}
	for _, l := range j.snap {
		for name, e := range l {
			if moved[e.ino] {
				delete(l, name)
				continue
			}
			live[e.ino] = true
		}
	}
	kept, err := os.ReadDir(j.attic)
	if err != nil {
		return err
	}
	for _, k := range kept {
		n, err := strconv.ParseUint(k.Name(), 10, 64)
		if err == nil && !live[n] {
			if err := os.RemoveAll(filepath.Join(j.attic, k.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// durable returns the listing dir ino would have after a crash, given its
// current one.
func (j *nameJournal) durable(ino uint64, current listing) listing {
	if l, ok := j.snap[ino]; ok {
		return l
	}
	return current
}

// list reads dir's backing listing, without the attic.
func (j *nameJournal) list(dir string) (listing, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := listing{}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if p == j.attic {
			continue
		}
		ino, isDir, err := inoOf(p)
		if err != nil {
			return nil, err
		}
		l[de.Name()] = entry{ino: ino, dir: isDir}
	}
	return l, nil
}

func inoOf(path string) (ino uint64, dir bool, err error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0, false, err
	}
	return st.Ino, st.Mode&syscall.S_IFMT == syscall.S_IFDIR, nil
}

// emptyDir reports rmdir's errors for path before it is moved instead.
func emptyDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err != io.EOF {
		if err == nil {
			return syscall.ENOTEMPTY
		}
		return err
	}
	return nil
}
