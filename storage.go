package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// How many old files survive a purge: a few snapshots to fall back on if the
// newest is damaged, and the WAL segments a restart from them would need.
const (
	keepSnapshotFiles = 5
	keepWALFiles      = 5
)

// diskStorage is the node's durable state: the write-ahead log of entries and
// hard state, and the snapshot files the WAL's snapshot records point at.
type diskStorage struct {
	lg          *zap.Logger
	waldir      string
	snapdir     string
	wal         *wal.WAL
	snapshotter *snap.Snapshotter
}

// diskState is what a node finds on disk when it starts.
type diskState struct {
	existed   bool             // false for a brand-new node
	snapshot  *raftpb.Snapshot // newest usable snapshot, or nil
	hardState *raftpb.HardState
	entries   []*raftpb.Entry // entries after the snapshot
}

// openDiskStorage opens the WAL and snapshot directories of node id, creating
// them for a new node, and reads back everything a restart needs.
func openDiskStorage(lg *zap.Logger, id uint64, waldir, snapdir string) (*diskStorage, *diskState, error) {
	if err := os.MkdirAll(snapdir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("creating snapshot dir: %w", err)
	}
	d := &diskStorage{lg: lg, waldir: waldir, snapdir: snapdir, snapshotter: snap.New(lg, snapdir)}
	if !wal.Exist(waldir) {
		w, err := wal.Create(lg, waldir, binary.AppendUvarint(nil, id))
		if err != nil {
			return nil, nil, fmt.Errorf("creating WAL: %w", err)
		}
		d.wal = w
		return d, &diskState{}, nil
	}

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
	if owner, n := binary.Uvarint(meta); n <= 0 || owner != id {
		w.Close()
		return nil, nil, fmt.Errorf("WAL in %s belongs to member %d, not %d", waldir, owner, id)
	}
	d.wal = w
	return d, &diskState{existed: true, snapshot: snapshot, hardState: st, entries: ents}, nil
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

// purge deletes snapshot files and WAL segments beyond the retention. A WAL
// segment is deleted only once the WAL released its lock on it, i.e. once a
// durable snapshot covers all of its entries. A snapshot's data file goes
// with its .snap file; one newer than every .snap file may be a snapshot
// from the leader still on its way to raft, and stays.
func (d *diskStorage) purge() {
	snaps, err := listFiles(d.snapdir, ".snap")
	if err != nil {
		d.lg.Warn("listing snapshot files", zap.Error(err))
	}
	for len(snaps) > keepSnapshotFiles {
		d.remove(snaps[0])
		snaps = snaps[1:]
	}
	if len(snaps) > 0 {
		oldest := strings.TrimSuffix(filepath.Base(snaps[0]), ".snap")
		dataFiles, err := listFiles(d.snapdir, ".snap.db")
		if err != nil {
			d.lg.Warn("listing snapshot data files", zap.Error(err))
		}
		// Names are <16 hex digits of the term>-<16 of the index>.snap and
		// <16 of the index>.snap.db, so the index parts compare as strings.
		_, oldestIndex, _ := strings.Cut(oldest, "-")
		for _, f := range dataFiles {
			if strings.TrimSuffix(filepath.Base(f), ".snap.db") < oldestIndex {
				d.remove(f)
			}
		}
	}
	wals, err := listFiles(d.waldir, ".wal")
	if err != nil {
		d.lg.Warn("listing WAL files", zap.Error(err))
	}
	for len(wals) > keepWALFiles {
		l, err := fileutil.TryLockFile(wals[0], os.O_WRONLY, fileutil.PrivateFileMode)
		if err != nil {
			break // still in use by the WAL
		}
		d.remove(wals[0])
		l.Close()
		wals = wals[1:]
	}
}

func (d *diskStorage) remove(path string) {
	if err := os.Remove(path); err != nil {
		d.lg.Warn("removing old file", zap.String("path", path), zap.Error(err))
		return
	}
	d.lg.Debug("removed old file", zap.String("path", path))
}

func (d *diskStorage) close() error { return d.wal.Close() }

// listFiles returns the paths of dir's files ending in suffix, oldest first
// (both the WAL and the snapshotter name files so that name order is age order).
func listFiles(dir, suffix string) ([]string, error) {
	names, err := fileutil.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	return out, nil
}
