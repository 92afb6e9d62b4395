package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
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
	// inFlight are the indexes of snapshot data files that no .snap file
	// refers to yet but will: one being written by the snapshot writer, or
	// received from the leader and on its way through raft. Retention
	// deletes every other unreferenced data file.
	inFlight inFlightFiles
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

// The WAL's metadata names the member and its cluster:
//
//	member id (uvarint) | cluster id (uvarint)
//
// WALs written before clusters had their own ids hold only the member id;
// their cluster keeps the id every cluster shared then.
const legacyClusterID = 0x1000

// openDiskStorage opens the WAL and snapshot directories of node id, creating
// them for a new node (which belongs to the cluster newClusterID names), and
// reads back everything a restart needs.
func openDiskStorage(lg *zap.Logger, id uint64, waldir, snapdir string, newClusterID func() (uint64, error)) (*diskStorage, *diskState, error) {
	if err := os.MkdirAll(snapdir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("creating snapshot dir: %w", err)
	}
	d := &diskStorage{lg: lg, waldir: waldir, snapdir: snapdir, snapshotter: snap.New(lg, snapdir)}
	if !wal.Exist(waldir) {
		cid, err := newClusterID()
		if err != nil {
			return nil, nil, err
		}
		w, err := wal.Create(lg, waldir, binary.AppendUvarint(binary.AppendUvarint(nil, id), cid))
		if err != nil {
			return nil, nil, fmt.Errorf("creating WAL: %w", err)
		}
		d.wal = w
		return d, &diskState{clusterID: cid}, nil
	}
	// Nothing is in flight before the node runs: an unreferenced data file is
	// left over from a crash, or was sent by someone raft never accepted.
	d.removeUnreferencedDataFiles()

	// The newest snapshot file that the WAL has a record for is where replay
	// starts; a newer file without a record was orphaned by a crash.
	walSnaps, err := wal.ValidSnapshotEntries(lg, waldir)
	if err != nil {
		return nil, nil, fmt.Errorf("listing WAL snapshot records: %w", err)
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
		return nil, nil, err
	}
	owner, n := binary.Uvarint(meta)
	if n <= 0 || owner != id {
		w.Close()
		return nil, nil, fmt.Errorf("WAL in %s belongs to member %d, not %d", waldir, owner, id)
	}
	cid := uint64(legacyClusterID)
	if len(meta) > n {
		if cid, n = binary.Uvarint(meta[n:]); n <= 0 || cid == 0 {
			w.Close()
			return nil, nil, fmt.Errorf("WAL in %s has a damaged cluster id", waldir)
		}
	}
	d.wal = w
	return d, &diskState{existed: true, clusterID: cid, snapshot: snapshot, hardState: st, entries: ents}, nil
}

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
			return nil, nil, nil, nil, fmt.Errorf("reading WAL: %w (repair failed)", err)
		}
	}
}

// save appends entries and the hard state to the WAL and fsyncs when raft
// says it must.
func (d *diskStorage) save(st *raftpb.HardState, ents []*raftpb.Entry) error {
	return d.wal.Save(st, ents)
}

// saveSnapshot makes s durable. The snapshot file is written before the WAL
// records it: a crash between the two leaves an unused file, whereas the
// other order could leave a WAL record pointing at a file that does not exist.
// Only then may WAL segments older than the snapshot be released.
func (d *diskStorage) saveSnapshot(s *raftpb.Snapshot) error {
	md := s.GetMetadata()
	if err := d.snapshotter.SaveSnap(s); err != nil {
		return fmt.Errorf("writing snapshot file: %w", err)
	}
	rec := &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	if err := d.wal.SaveSnapshot(rec); err != nil {
		return fmt.Errorf("recording snapshot in WAL: %w", err)
	}
	return d.wal.ReleaseLockTo(md.GetIndex())
}

// saveKV writes the kvstore's part of the snapshot at index to its own file,
// named as rafthttp names the ones it receives (<index>.snap.db), and makes
// it durable. The file appears under that name only once complete; a crash
// leaves a db.tmp file, which the snapshotter deletes at the next start.
func (d *diskStorage) saveKV(index uint64, image io.WriterTo) (int64, error) {
	f, err := os.CreateTemp(d.snapdir, "db.tmp")
	if err != nil {
		return 0, fmt.Errorf("writing snapshot data file: %w", err)
	}
	n, err := image.WriteTo(&chunkSyncer{f: f})
	if err == nil {
		err = fileutil.Fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(d.snapdir, fmt.Sprintf("%016x.snap.db", index)))
	}
	if err == nil {
		err = fsyncDir(d.snapdir)
	}
	if err != nil {
		os.Remove(f.Name())
		return n, fmt.Errorf("writing snapshot data file: %w", err)
	}
	return n, nil
}

// chunkSyncer writes to f and fsyncs every few MiB. A snapshot file is large,
// and with ext4's ordered journaling an fsync of the WAL can wait until other
// files' dirty data is on disk; syncing as it goes keeps that backlog, and so
// the stall it puts on writes, small.
type chunkSyncer struct {
	f        *os.File
	unsynced int
}

const snapshotSyncBytes = 4 << 20

func (c *chunkSyncer) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	if c.unsynced += n; err == nil && c.unsynced >= snapshotSyncBytes {
		c.unsynced = 0
		err = fileutil.Fdatasync(c.f)
	}
	return n, err
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
	return f, st.Size(), nil
}

func (d *diskStorage) remove(path string) {
	if err := os.Remove(path); err != nil {
		d.lg.Warn("removing old file", zap.String("path", path), zap.Error(err))
		return
	}
	d.lg.Debug("removed old file", zap.String("path", path))
}

func (d *diskStorage) close() error { return d.wal.Close() }
