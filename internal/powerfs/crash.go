//go:build linux

package powerfs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CrashReport says what a Crash threw away, for tests to log.
type CrashReport struct {
	FilesReverted  int   // files whose content or size went back to their last sync
	BytesDiscarded int64 // unsynced bytes: overwritten ranges put back plus growth cut off
	NamesDropped   int   // paths that were there before the crash and are not after
	NamesRestored  int   // paths that are back: unlinked or renamed away without a directory sync
}

func (r CrashReport) String() string {
	return fmt.Sprintf("crash dropped %d names, restored %d, reverted %d files (%d KiB)",
		r.NamesDropped, r.NamesRestored, r.FilesReverted, (r.BytesDiscarded+1023)/1024)
}

// tree is the backing store as the crash finds it.
type tree struct {
	path  map[uint64]string  // a backing path of every object, the attic's last
	list  map[uint64]listing // current listing of every directory
	names map[string]bool    // paths visible through the mount
}

func (t *tree) walk(j *nameJournal, dir, rel string, ino uint64, visible bool) error {
	l, err := j.list(dir)
	if err != nil {
		return err
	}
	t.list[ino] = l
	for name, e := range l {
		p := filepath.Join(dir, name)
		if _, ok := t.path[e.ino]; !ok {
			t.path[e.ino] = p
		}
		if visible {
			t.names[filepath.Join(rel, name)] = true
		}
		if e.dir {
			if err := t.walk(j, p, filepath.Join(rel, name), e.ino, visible); err != nil {
				return err
			}
		}
	}
	return nil
}

// revert turns the backing store into what a power cut would have left:
// file contents back to their last sync, then a new tree holding only the
// names durable from the root down. The new tree is built aside from hard
// links and fresh directories, because durable names may form any
// permutation of the current ones, and then swapped in. Nothing may be
// using the mount.
func (f *FS) revert() (CrashReport, error) {
	var rep CrashReport
	rootIno, _, err := inoOf(f.backing)
	if err != nil {
		return rep, err
	}
	t := &tree{path: map[uint64]string{}, list: map[uint64]listing{}, names: map[string]bool{}}
	if err := t.walk(f.names, f.backing, "", rootIno, true); err != nil {
		return rep, err
	}
	atticIno, _, err := inoOf(f.attic)
	if err != nil {
		return rep, err
	}
	if err := t.walk(f.names, f.attic, "", atticIno, false); err != nil {
		return rep, err
	}

	for ino, u := range f.data.files {
		p, ok := t.path[ino]
		if _, isDir := t.list[ino]; !u.dirty || !ok || isDir {
			continue
		}
		lost, err := u.revert(p)
		if err != nil {
			return rep, fmt.Errorf("revert %s: %w", p, err)
		}
		if lost > 0 {
			rep.FilesReverted++
			rep.BytesDiscarded += lost
		}
	}

	staging := filepath.Join(f.attic, "new")
	if err := os.Mkdir(staging, 0o700); err != nil {
		return rep, err
	}
	b := &builder{t: t, j: f.names, seen: map[uint64]bool{rootIno: true}, names: map[string]bool{}}
	if err := b.dir(rootIno, staging, ""); err != nil {
		return rep, err
	}
	for p := range t.names {
		if !b.names[p] {
			rep.NamesDropped++
		}
	}
	for p := range b.names {
		if !t.names[p] {
			rep.NamesRestored++
		}
	}

	if err := swapContents(f.backing, staging, filepath.Join(f.attic, "old"), f.attic); err != nil {
		return rep, err
	}
	if err := os.RemoveAll(f.attic); err != nil {
		return rep, err
	}
	if err := os.Mkdir(f.attic, 0o700); err != nil {
		return rep, err
	}
	f.data = newDataJournal()
	f.names = newNameJournal(f.attic)
	return rep, nil
}

type builder struct {
	t     *tree
	j     *nameJournal
	seen  map[uint64]bool // directories placed; a directory gets one name
	names map[string]bool
}

// dir fills dst with the durable entries of directory ino, recursively.
func (b *builder) dir(ino uint64, dst, rel string) error {
	for name, e := range b.j.durable(ino, b.t.list[ino]) {
		src, ok := b.t.path[e.ino]
		_, isDir := b.t.list[e.ino]
		if !ok || isDir != e.dir {
			continue // gone for good: nothing kept it, so its name can not come back
		}
		to := filepath.Join(dst, name)
		if !e.dir {
			if err := os.Link(src, to); err != nil {
				return err
			}
			b.names[filepath.Join(rel, name)] = true
			continue
		}
		if b.seen[e.ino] {
			continue
		}
		b.seen[e.ino] = true
		var st syscall.Stat_t
		if err := syscall.Lstat(src, &st); err != nil {
			return err
		}
		if err := os.Mkdir(to, 0o700); err != nil {
			return err
		}
		if err := syscall.Chmod(to, st.Mode&0o7777); err != nil {
			return err
		}
		if err := syscall.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		b.names[filepath.Join(rel, name)] = true
		if err := b.dir(e.ino, to, filepath.Join(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

// swapContents moves root's entries (but keep) into old, and new's into root.
func swapContents(root, new, old, keep string) error {
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	move := func(from, to string) error {
		des, err := os.ReadDir(from)
		if err != nil {
			return err
		}
		for _, de := range des {
			if p := filepath.Join(from, de.Name()); p != keep {
				if err := os.Rename(p, filepath.Join(to, de.Name())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := move(root, old); err != nil {
		return err
	}
	return move(new, root)
}
