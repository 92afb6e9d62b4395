package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// How a member's storage is found, checked and, on its very first start,
// created.
//
// A member must never forget that it was a member: one that bootstraps again
// from --cluster (or --join) with an empty log may vote twice in a term or
// acknowledge again what it lost, and so elect two leaders or lose committed
// writes. So only a member with neither its WAL directory nor its snapshot
// directory starts afresh, and the first start creates them in an order that
// makes an existing snapshot directory prove that a durable WAL existed:
//
//  1. --data-dir, if it is new, and the fsync of its parent (lockMember,
//     which holds the member's lock file there from then on);
//  2. the WAL (wal.Create: its first segment in a temporary directory,
//     fsynced, renamed into place, the parent fsynced), then the fsync of
//     the WAL directory, which wal.Create leaves out: until then a power cut
//     can leave the directory without its segment;
//  3. the snapshot directory, and the fsync of its parent.
//
// Raft runs, and so can promise anything, only after step 3. A start that
// finds the WAL directory but no snapshot directory is one that stopped
// between 2 and 3: if its WAL holds nothing (no segment, or no hard state and
// no entry), it starts afresh; otherwise it refuses.

// The WAL's metadata names the member and its cluster:
//
//	member id (uvarint) | cluster id (uvarint)
//
// WALs written before clusters had their own ids hold only the member id;
// their cluster keeps the id every cluster shared then.
const legacyClusterID = 0x1000

// storageOptions are how a member's storage behaves.
type storageOptions struct {
	noFsync   bool             // --unsafe-no-fsync
	dirSynced func(dir string) // called after each directory fsync (for tests)
}

// errRefused marks the reasons a member refuses to start because its data
// shows it lost what it had promised.
var errRefused = errors.New("refusing to start")

// refusal is the one-line reason a member with damaged or missing data
// refuses to start, and what to do about it.
func refusal(id uint64, format string, args ...any) error {
	return fmt.Errorf("%w: %s: remove this member (DELETE /%d), delete its data directories, and add it again under a new id",
		errRefused, fmt.Sprintf(format, args...), id)
}

// openDiskStorage opens the WAL and snapshot directories of member id,
// creating them for a new member (which belongs to the cluster newClusterID
// names), checks that they are whole, and reads back everything a restart
// needs.
func openDiskStorage(lg *zap.Logger, id uint64, waldir, snapdir string, opts storageOptions, newClusterID func() (uint64, error)) (*diskStorage, *diskState, error) {
	d := &diskStorage{lg: lg, waldir: waldir, snapdir: snapdir, snapshotter: snap.New(lg, snapdir), noFsync: opts.noFsync, dirSynced: opts.dirSynced}
	if err := d.lockMember(); err != nil {
		return nil, nil, err
	}
	opened, state, err := d.open(id, newClusterID)
	if err != nil {
		d.dirLock.Close()
		return nil, nil, err
	}
	return opened, state, nil
}

// open is openDiskStorage once this process holds the member's lock.
func (d *diskStorage) open(id uint64, newClusterID func() (uint64, error)) (*diskStorage, *diskState, error) {
	lg, waldir, snapdir, noFsync := d.lg, d.waldir, d.snapdir, d.noFsync
	walDir, err := isDir(waldir)
	if err != nil {
		return nil, nil, err
	}
	snapDir, err := isDir(snapdir)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case snapDir && !walDir:
		return nil, nil, refusal(id, "its snapshot directory %s exists but its WAL directory %s does not", snapdir, waldir)
	case !snapDir:
		if walDir {
			if err := d.checkInterruptedFirstStart(id); err != nil {
				return nil, nil, err
			}
		}
		return d.create(id, newClusterID)
	case !wal.Exist(waldir):
		return nil, nil, refusal(id, "its WAL directory %s holds no WAL segment", waldir)
	}
	// Nothing is in flight before the node runs: an unreferenced data file is
	// left over from a crash, or was sent by someone raft never accepted.
	d.removeUnreferencedDataFiles()

	// The newest snapshot file that the WAL has a record for is where replay
	// starts; a newer file without a record was orphaned by a crash between
	// its writing and its WAL record, and is not used.
	walSnaps, err := wal.ValidSnapshotEntries(lg, waldir)
	if err != nil {
		return nil, nil, unreadable(id, waldir, fmt.Errorf("listing its snapshot records: %w", err))
	}
	snapshot, err := d.snapshotter.LoadNewestAvailable(walSnaps)
	if err != nil && !errors.Is(err, snap.ErrNoSnapshot) {
		return nil, nil, fmt.Errorf("loading snapshot: %w", err)
	}
	walSnap := &walpb.Snapshot{}
	if snapshot != nil {
		md := snapshot.GetMetadata()
		walSnap = &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	}
	w, meta, st, ents, err := readWAL(lg, waldir, walSnap)
	if err != nil {
		return nil, nil, unreadable(id, waldir, err)
	}
	cid, err := walClusterID(meta, id, waldir)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	if noFsync {
		w.SetUnsafeNoFsync()
	}
	d.wal = w
	if snapshot == nil && raft.IsEmptyHardState(st) && len(ents) == 0 {
		// The WAL holds no hard state: this member never voted nor stored an
		// entry (raft writes its first hard state with its first entry).
		// Snapshot files beside it mean the WAL that went with them is gone.
		if snaps, _ := listFiles(snapdir, ".snap"); len(snaps) > 0 {
			w.Close()
			return nil, nil, refusal(id, "its WAL in %s holds no hard state but its snapshot directory %s holds %d snapshot files", waldir, snapdir, len(snaps))
		}
		// A crash between the snapshot directory's creation and raft's first
		// write: nothing was promised, so it bootstraps as it would have.
		lg.Warn("the WAL holds no hard state yet: an earlier first start stopped early; starting afresh", zap.String("dir", waldir))
		return d, &diskState{clusterID: cid}, nil
	}
	return d, &diskState{existed: true, clusterID: cid, snapshot: snapshot, hardState: st, entries: ents}, nil
}

// lockMember makes sure that no other process uses this member's storage:
// two would write one WAL, and a second process finding a first start under
// way would take it for one that stopped early and delete its WAL. It takes
// a lock on raftexample-<id>.lock beside the WAL directory, created with
// --data-dir if need be, held until the storage is closed (or the process
// exits). The WAL's own lock is not enough: it exists only once the WAL
// does, and checks made before opening it would already be wrong.
func (d *diskStorage) lockMember() error {
	dataDir := filepath.Dir(d.waldir)
	if err := d.mkdirAll(dataDir, true); err != nil {
		return faultf(err, "creating the data directory %s", dataDir)
	}
	path := d.waldir + ".lock"
	l, err := fileutil.TryLockFile(path, os.O_RDWR|os.O_CREATE, fileutil.PrivateFileMode)
	switch {
	case errors.Is(err, fileutil.ErrLocked):
		if abs, err := filepath.Abs(dataDir); err == nil {
			dataDir = abs // "." says little in a log
		}
		return fmt.Errorf("another member is using this directory: %s (%s is locked by another process; stop it, or give this one another --data-dir)", dataDir, path)
	case err != nil:
		return faultf(err, "locking %s", path)
	}
	d.dirLock = l
	return nil
}

// checkInterruptedFirstStart is for a WAL directory without a snapshot
// directory beside it, which only a first start that stopped before step 3
// leaves (see the top of this file): it deletes the WAL if it holds nothing
// raft wrote, and refuses otherwise.
func (d *diskStorage) checkInterruptedFirstStart(id uint64) error {
	if wal.Exist(d.waldir) {
		w, err := wal.OpenForRead(d.lg, d.waldir, &walpb.Snapshot{})
		if err != nil {
			return unreadable(id, d.waldir, err)
		}
		_, st, ents, err := w.ReadAll()
		w.Close()
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return unreadable(id, d.waldir, err)
		}
		if !raft.IsEmptyHardState(st) || len(ents) > 0 {
			return refusal(id, "its WAL in %s holds its state but its snapshot directory %s is missing", d.waldir, d.snapdir)
		}
	}
	d.lg.Warn("found the WAL directory of a first start that stopped early; starting afresh", zap.String("dir", d.waldir))
	if err := os.RemoveAll(d.waldir); err != nil {
		return fmt.Errorf("removing the unfinished WAL directory: %w", err)
	}
	return nil
}

// unreadable is the reason for a WAL that cannot be read. A failure of the
// system (no space to repair a torn tail, an I/O error, a permission) is
// reported as it is: the data may be fine once the disk is. Anything else
// means the WAL is damaged or incomplete, and the member refuses to start.
func unreadable(id uint64, waldir string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fileutil.ErrLocked):
		return fmt.Errorf("the WAL in %s is in use by another process", waldir)
	case errors.As(err, &errno) || errors.Is(err, errRepairFailed):
		return faultf(err, "reading the WAL in %s", waldir)
	}
	return refusal(id, "its WAL in %s cannot be read (%v)", waldir, err)
}

// create makes the storage of a brand-new member (steps 1 to 3 at the top of
// this file).
func (d *diskStorage) create(id uint64, newClusterID func() (uint64, error)) (*diskStorage, *diskState, error) {
	// Step 1 is lockMember's: the lock file lives in --data-dir.
	cid, err := newClusterID()
	if err != nil {
		return nil, nil, err
	}
	w, err := createWAL(d.lg, d.waldir, binary.AppendUvarint(binary.AppendUvarint(nil, id), cid))
	if err != nil {
		return nil, nil, faultf(err, "creating the WAL in %s", d.waldir)
	}
	if err := d.syncDir(d.waldir); err != nil {
		w.Close()
		return nil, nil, faultf(err, "syncing the WAL directory %s", d.waldir)
	}
	if d.noFsync {
		w.SetUnsafeNoFsync()
	}
	if err := d.mkdirAll(d.snapdir, false); err != nil {
		w.Close()
		return nil, nil, faultf(err, "creating the snapshot directory %s", d.snapdir)
	}
	d.wal = w
	return d, &diskState{clusterID: cid}, nil
}

// createWAL is wal.Create, which panics (through its logger) when cleaning up
// after a failed fsync fails too: that becomes an error like any other.
func createWAL(lg *zap.Logger, dir string, meta []byte) (w *wal.WAL, err error) {
	defer func() {
		if p := recover(); p != nil {
			w, err = nil, fmt.Errorf("%v", p)
		}
	}()
	return wal.Create(lg, dir, meta)
}

// mkdirAll creates dir and its missing parents. Each new directory's name is
// durable only once its parent is fsynced. So may be that of a directory made
// just before we started (mkdir data && raftexample --data-dir data): with
// syncExisting, the parent of the first existing directory is fsynced too.
// A member whose data directory vanished at a power cut would start afresh
// and forget it was a member.
func (d *diskStorage) mkdirAll(dir string, syncExisting bool) error {
	var missing []string
	top := filepath.Clean(dir)
	for ; ; top = filepath.Dir(top) {
		ok, err := isDir(top)
		if err != nil {
			return err
		}
		if ok || filepath.Dir(top) == top {
			break
		}
		missing = append(missing, top)
	}
	if syncExisting {
		if err := d.syncDir(filepath.Dir(top)); err != nil {
			return err
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := d.syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// isDir reports whether path is a directory; it is an error for it to be
// anything else.
func isDir(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", path)
	}
	return true, nil
}

// walClusterID checks that the WAL's metadata names member id, and returns
// the cluster id it holds.
func walClusterID(meta []byte, id uint64, waldir string) (uint64, error) {
	owner, n := binary.Uvarint(meta)
	if n <= 0 || owner != id {
		return 0, fmt.Errorf("WAL in %s belongs to member %d, not %d", waldir, owner, id)
	}
	cid := uint64(legacyClusterID)
	if len(meta) > n {
		if cid, n = binary.Uvarint(meta[n:]); n <= 0 || cid == 0 {
			return 0, fmt.Errorf("WAL in %s has a damaged cluster id", waldir)
		}
	}
	return cid, nil
}

var errRepairFailed = errors.New("repairing its torn last record failed (see the warning above; is the disk full?)")

// readWAL opens the WAL at walSnap and reads it to the end. A crash in the
// middle of a write leaves a torn last record; it is cut off once (it was never
// acknowledged, since acknowledging waits for the fsync) and reading retried.
func readWAL(lg *zap.Logger, waldir string, walSnap *walpb.Snapshot) (*wal.WAL, []byte, *raftpb.HardState, []*raftpb.Entry, error) {
	for repaired := false; ; repaired = true {
		w, err := wal.Open(lg, waldir, walSnap)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("opening WAL: %w", err)
		}
		meta, st, ents, err := w.ReadAll()
		if err == nil {
			return w, meta, st, ents, nil
		}
		w.Close()
		if repaired || !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, nil, nil, fmt.Errorf("reading WAL: %w", err)
		}
		lg.Warn("WAL ends in a torn record; repairing", zap.String("dir", waldir))
		if !wal.Repair(lg, waldir) {
			return nil, nil, nil, nil, fmt.Errorf("reading WAL: %w: %w", err, errRepairFailed)
		}
	}
}
