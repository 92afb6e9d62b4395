package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.uber.org/zap"
)

// Retention: which old snapshot and WAL files go, and which stay.

// keepSnapshots is how many snapshots a purge leaves: the one just made
// durable, which a restart loads, and the newest one before it. Each holds a
// full copy of the data (its .snap.db file), so every snapshot kept costs the
// data's size on disk again. The older one is there for the one fallback a
// restart has: snap.Snapshotter.LoadNewestAvailable skips a .snap file it
// cannot read (and renames it .broken) and loads the next newer one the WAL
// has a record of. An older copy still would only be the fallback's
// fallback, at the price of the data's size again.
const keepSnapshots = 2

// purge deletes the snapshots and WAL segments that no restart needs any
// more, once the snapshot at index is durable and recorded in the WAL. It
// keeps that snapshot, the newest older one (see keepSnapshots), and any
// newer .snap file (one a crash left without a WAL record, or whose record
// a restart cannot use yet: they go once a newer snapshot passes them). A
// snapshot's data file goes with its .snap file, and so does one that no
// .snap file refers to, unless it is in flight. The WAL keeps every segment
// a restart from the oldest snapshot kept reads (purgeWAL).
func (d *diskStorage) purge(index uint64) {
	d.purgeMu.Lock()
	defer d.purgeMu.Unlock()
	if d.purging != nil {
		d.purging()
	}
	snaps, err := listFiles(d.snapdir, ".snap")
	if err != nil {
		d.lg.Warn("listing snapshot files", zap.Error(err))
		return
	}
	// Every .snap file is below, at or above index; of those below, the
	// newest keepSnapshots-1 stay.
	var older []snapFile
	oldest := index
	for _, path := range snaps {
		i, ok := snapFileIndex(path)
		if !ok {
			d.lg.Warn("snapshot file with an unexpected name; keeping the WAL whole", zap.String("path", path))
			return
		}
		if i < index {
			older = append(older, snapFile{path, i})
		}
	}
	slices.SortFunc(older, func(a, b snapFile) int { return cmp.Compare(b.index, a.index) })
	for n, f := range older {
		if n < keepSnapshots-1 {
			oldest = f.index
		} else {
			d.remove(f.path)
		}
	}
	d.removeUnreferencedDataFiles()
	d.purgeWAL(oldest)
}

type snapFile struct {
	path  string
	index uint64
}

// snapFileIndex is the index in a .snap file's name, which the snapshotter
// writes as <16 hex digits of the term>-<16 of the index>.snap.
func snapFileIndex(path string) (uint64, bool) {
	var term, index uint64
	_, err := fmt.Sscanf(filepath.Base(path), "%016x-%016x.snap", &term, &index)
	return index, err == nil
}

// purgeWAL deletes the WAL segments that a restart from the snapshot at
// index, or from any later one, never reads. wal.Open reads from the last
// segment whose name's index (that of the first entry it was cut for) is at
// most the snapshot's index, to the end (wal's searchIndex, which this
// follows): that segment holds the snapshot's index or a later segment
// does, with the snapshot's record after it, and every segment starts with
// the hard state. Only the segments before that one go, oldest first, and
// only those the WAL no longer holds a lock on (it releases them up to the
// newest snapshot: saveSnapshot); a name that does not parse keeps all.
func (d *diskStorage) purgeWAL(index uint64) {
	wals, err := listFiles(d.waldir, ".wal")
	if err != nil {
		d.lg.Warn("listing WAL files", zap.Error(err))
		return
	}
	for _, path := range wals[:firstWALSegmentFor(wals, index)] {
		l, err := fileutil.TryLockFile(path, os.O_WRONLY, fileutil.PrivateFileMode)
		if err != nil {
			return // still in use by the WAL
		}
		err = os.Remove(path)
		l.Close()
		if err != nil {
			// A gap in the sequence would make the WAL unreadable from
			// before it: stop at the first failure.
			d.lg.Warn("removing old WAL segment", zap.String("path", path), zap.Error(err))
			return
		}
	}
}

// firstWALSegmentFor is the position in segments (sorted by name, which is
// by sequence number) of the first one a restart from the snapshot at index
// reads, as wal's searchIndex finds it; 0 (keep all) if none qualifies or a
// name does not parse.
func firstWALSegmentFor(segments []string, index uint64) int {
	for i := len(segments) - 1; i >= 0; i-- {
		var seq, first uint64
		if _, err := fmt.Sscanf(filepath.Base(segments[i]), "%016x-%016x.wal", &seq, &first); err != nil {
			return 0
		}
		if first <= index {
			return i
		}
	}
	return 0
}

// removeUnreferencedDataFiles deletes the snapshot data files that no .snap
// file refers to and that are not in flight, and what rafthttp left of
// snapshots it was receiving when the process stopped.
func (d *diskStorage) removeUnreferencedDataFiles() {
	names, err := fileutil.ReadDir(d.snapdir)
	if err != nil {
		d.lg.Warn("listing snapshot files", zap.Error(err))
		return
	}
	// Names are <16 hex digits of the term>-<16 of the index>.snap and
	// <16 of the index>.snap.db.
	referenced := map[string]bool{}
	for _, n := range names {
		if _, index, ok := strings.Cut(strings.TrimSuffix(n, ".snap"), "-"); ok && strings.HasSuffix(n, ".snap") {
			referenced[index] = true
		}
	}
	for _, n := range names {
		index, isData := strings.CutSuffix(n, ".snap.db")
		switch {
		case isData && !referenced[index] && !d.inFlight.has(index):
			d.remove(filepath.Join(d.snapdir, n))
		case strings.HasPrefix(n, "tmp") && d.inFlight.none():
			d.remove(filepath.Join(d.snapdir, n)) // snap.SaveDBFrom's temporary file
		}
	}
}

// refersTo reports whether a .snap file refers to the data file at index.
func (d *diskStorage) refersTo(index uint64) bool {
	matches, _ := filepath.Glob(filepath.Join(d.snapdir, fmt.Sprintf("*-%016x.snap", index)))
	return len(matches) > 0
}

// inFlightFiles is a set of snapshot data file indexes, safe for concurrent
// use (the snapshot writer, the peer port and the Ready loop all use it).
type inFlightFiles struct {
	mu      sync.Mutex
	indexes map[string]int // index as in the file name -> holders
}

func dataFileIndex(index uint64) string { return fmt.Sprintf("%016x", index) }

func (f *inFlightFiles) add(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.indexes == nil {
		f.indexes = map[string]int{}
	}
	f.indexes[dataFileIndex(index)]++
}

func (f *inFlightFiles) done(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := dataFileIndex(index); f.indexes[k] > 1 {
		f.indexes[k]--
	} else {
		delete(f.indexes, k)
	}
}

func (f *inFlightFiles) has(index string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.indexes[index] > 0
}

func (f *inFlightFiles) none() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.indexes) == 0
}

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
	slices.Sort(out)
	return out, nil
}
