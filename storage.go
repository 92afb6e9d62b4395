package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// diskStorage is the node's durable state: the write-ahead log of entries and
// hard state, and the snapshot files the WAL's snapshot records point at.
type diskStorage struct {
	lg          *zap.Logger
	waldir      string
	snapdir     string
	wal         walWriter
	snapshotter *snap.Snapshotter
	dirLock     *fileutil.LockedFile // held while open: one process per member (see lockMember)
	// noFsync (--unsafe-no-fsync) skips this file's fsyncs; see syncDir.
	noFsync bool
	// dirSynced, when set, is called after each directory fsync (tests
	// check the order of fsyncs with it).
	dirSynced func(dir string)
	// snapBytes is the size of the newest snapshot's data file, for the
	// free-space threshold (see diskMonitor).
	snapBytes atomic.Int64
	// inFlight are the indexes of snapshot data files that no .snap file
	// refers to yet but will: one being written by the snapshot writer, or
	// received from the leader and on its way through raft. Retention
	// deletes every other unreferenced data file.
	inFlight inFlightFiles
	// purgeMu makes purges (which run in the background) one at a time;
	// purging, when set, is called as one starts (tests hold it there).
	purgeMu sync.Mutex
	purging func()
}

// walWriter is what diskStorage writes to the WAL (*wal.WAL; a fake in
// tests of the order of writes).
type walWriter interface {
	Save(st *raftpb.HardState, ents []*raftpb.Entry) error
	SaveSnapshot(e *walpb.Snapshot) error
	ReleaseLockTo(index uint64) error
	Close() error
}

// diskState is what a node finds on disk when it starts.
type diskState struct {
	existed   bool             // false for a brand-new node
	clusterID uint64           // of the cluster this member belongs to
	snapshot  *raftpb.Snapshot // newest usable snapshot, or nil
	hardState *raftpb.HardState
	entries   []*raftpb.Entry // entries after the snapshot
}

// save appends entries and the hard state to the WAL and fsyncs when raft
// says it must. A failure leaves the WAL's tail in an unknown state (a torn
// record, a segment half cut), so the node must stop: the next start repairs
// the tail (readWAL).
func (d *diskStorage) save(st *raftpb.HardState, ents []*raftpb.Entry) error {
	if err := d.wal.Save(st, ents); err != nil {
		return faultf(err, "writing the WAL in %s", d.waldir)
	}
	return nil
}

// saveSnapshot makes s durable. The snapshot file is written before the WAL
// records it: a crash between the two leaves an unused file, whereas the
// other order could leave a WAL record pointing at a file that does not exist.
// Only then may WAL segments older than the snapshot be released.
func (d *diskStorage) saveSnapshot(s *raftpb.Snapshot) error {
	md := s.GetMetadata()
	// SaveSnap fsyncs the .snap file, and deletes it if that fails, but
	// never fsyncs the directory: until it is, a power cut can take the
	// file's name away. The WAL record below lets older WAL segments be
	// released and deleted, so it must not become durable before the name
	// it points at: a restart would then find neither the snapshot nor the
	// entries it replaced.
	if err := d.snapshotter.SaveSnap(s); err != nil {
		return faultf(err, "writing the snapshot file in %s", d.snapdir)
	}
	if err := d.syncDir(d.snapdir); err != nil {
		return faultf(err, "syncing the snapshot directory %s", d.snapdir)
	}
	rec := &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	if err := d.wal.SaveSnapshot(rec); err != nil {
		return faultf(err, "recording the snapshot in the WAL in %s", d.waldir)
	}
	if err := d.wal.ReleaseLockTo(md.GetIndex()); err != nil {
		return faultf(err, "releasing WAL segments in %s", d.waldir)
	}
	return nil
}

// saveKV writes the kvstore's part of the snapshot at index to its own file,
// named as rafthttp names the ones it receives (<index>.snap.db), and makes
// it durable. The file appears under that name only once complete; a crash
// leaves a db.tmp file, which the snapshotter deletes at the next start.
func (d *diskStorage) saveKV(index uint64, image io.WriterTo) (int64, error) {
	f, err := os.CreateTemp(d.snapdir, "db.tmp")
	if err != nil {
		return 0, faultf(err, "writing the snapshot data file in %s", d.snapdir)
	}
	// The data is durable before its name, and its name (the directory)
	// before the .snap file that refers to it is written (saveSnapshot): a
	// .snap file without its data would be a snapshot no restart can load.
	n, err := image.WriteTo(&chunkSyncer{f: f, noFsync: d.noFsync})
	if err == nil && !d.noFsync {
		err = fileutil.Fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(d.snapdir, fmt.Sprintf("%016x.snap.db", index)))
	}
	if err == nil {
		err = d.syncDir(d.snapdir)
	}
	if err != nil {
		os.Remove(f.Name())
		return n, faultf(err, "writing the snapshot data file in %s", d.snapdir)
	}
	d.snapBytes.Store(n)
	return n, nil
}

// chunkSyncer writes to f and fsyncs every few MiB. A snapshot file is large,
// and with ext4's ordered journaling an fsync of the WAL can wait until other
// files' dirty data is on disk; syncing as it goes keeps that backlog, and so
// the stall it puts on writes, small.
type chunkSyncer struct {
	f        *os.File
	unsynced int
	noFsync  bool
}

const snapshotSyncBytes = 4 << 20

func (c *chunkSyncer) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	if c.unsynced += n; err == nil && c.unsynced >= snapshotSyncBytes && !c.noFsync {
		c.unsynced = 0
		err = fileutil.Fdatasync(c.f)
	}
	return n, err
}

// syncDir fsyncs dir, unless --unsafe-no-fsync said not to.
func (d *diskStorage) syncDir(dir string) error {
	if d.noFsync {
		return nil
	}
	if err := fsyncDir(dir); err != nil {
		return err
	}
	if d.dirSynced != nil {
		d.dirSynced(dir)
	}
	return nil
}

func fsyncDir(dir string) error {
	f, err := fileutil.OpenDir(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return fileutil.Fsync(f)
}

// openKV opens the kvstore's part of the snapshot at index.
func (d *diskStorage) openKV(index uint64) (io.ReadCloser, int64, error) {
	path, err := d.snapshotter.DBFilePath(index)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot data file for index %d: %w", index, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	d.snapBytes.Store(st.Size())
	return f, st.Size(), nil
}

func (d *diskStorage) remove(path string) {
	if err := os.Remove(path); err != nil {
		d.lg.Warn("removing old file", zap.String("path", path), zap.Error(err))
		return
	}
	d.lg.Debug("removed old file", zap.String("path", path))
}

func (d *diskStorage) close() error {
	err := d.wal.Close()
	if d.dirLock != nil {
		d.dirLock.Close()
	}
	return err
}
