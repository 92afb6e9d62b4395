package main

import (
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

// How many old files survive a purge: a few snapshots to fall back on if the
// newest is damaged, and the WAL segments a restart from them would need.
const (
	keepSnapshotFiles = 5
	keepWALFiles      = 5
)

// purge deletes snapshot files and WAL segments beyond the retention. A WAL
// segment is deleted only once the WAL released its lock on it, i.e. once a
// durable snapshot covers all of its entries. A snapshot's data file goes
// with its .snap file, and so does one that no .snap file refers to, unless
// it is in flight.
func (d *diskStorage) purge() {
	snaps, err := listFiles(d.snapdir, ".snap")
	if err != nil {
		d.lg.Warn("listing snapshot files", zap.Error(err))
	}
	for len(snaps) > keepSnapshotFiles {
		d.remove(snaps[0])
		snaps = snaps[1:]
	}
	d.removeUnreferencedDataFiles()
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
