package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Disk faults and free space.

// diskFault is a failed write, fsync or read of the WAL or of a snapshot
// file. The member stops at once on one (see raftNode.run), having
// acknowledged nothing it could not persist, and exits non-zero; the next
// start repairs what the failure left (a torn WAL tail, a half-written
// snapshot file), once the disk has room again.
type diskFault struct {
	what string // what was being done, and where
	err  error
}

func (e *diskFault) Error() string {
	return fmt.Sprintf("disk failure: %s: %v; free space on the disk of --data-dir (or repair it) and start the member again", e.what, e.err)
}

func (e *diskFault) Unwrap() error { return e.err }

// faultf wraps err, which came from the disk, in a diskFault. An error that
// already is one is left alone.
func faultf(err error, format string, args ...any) error {
	var df *diskFault
	if errors.As(err, &df) {
		return err
	}
	return &diskFault{what: fmt.Sprintf(format, args...), err: err}
}

// lowDiskMargin is the free space, beyond what the next WAL segments and
// the next snapshot need, below which /health warns. See lowDiskThreshold.
const lowDiskMargin = 64 << 20

// diskCheckInterval is how often the free space is looked at: statfs is cheap,
// but not something to do per request.
const diskCheckInterval = 3 * time.Second

// lowDiskThreshold is the free space below which this member may soon fail
// a write, and stop: the WAL preallocates its segments (the current one, and
// the next one in the background), so two segments must fit; a new snapshot's
// data file is written beside the old ones, and is about as large as the
// last; the margin covers the rest (the .snap files, a snapshot from the
// leader arriving meanwhile, the data growing between snapshots). With the
// defaults and a small store that is about 190 MiB.
func lowDiskThreshold(segmentBytes, snapshotBytes int64) int64 {
	return 2*segmentBytes + snapshotBytes + lowDiskMargin
}

// diskMonitor looks at the free space of the data directory every few
// seconds, for the raftexample_disk_free_bytes gauge and for /health.
type diskMonitor struct {
	lg           *zap.Logger
	dir          string
	segmentBytes int64
	snapBytes    func() int64 // size of the newest snapshot's data file

	mu  sync.Mutex
	low string // why space is low, or ""
}

func newDiskMonitor(lg *zap.Logger, dir string, segmentBytes int64, snapBytes func() int64) *diskMonitor {
	return &diskMonitor{lg: lg, dir: dir, segmentBytes: segmentBytes, snapBytes: snapBytes}
}

// run checks at once and then every diskCheckInterval until stop is closed.
func (m *diskMonitor) run(stop <-chan struct{}) {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		m.check()
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

var statfsWarned atomic.Bool

func (m *diskMonitor) check() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err != nil {
		if !statfsWarned.Swap(true) {
			m.lg.Warn("cannot tell the free disk space", zap.String("dir", m.dir), zap.Error(err))
		}
		return
	}
	free := int64(st.Bavail) * st.Bsize
	metricDiskFree.Set(float64(free))
	threshold := lowDiskThreshold(m.segmentBytes, m.snapBytes())
	low := ""
	if free < threshold {
		low = fmt.Sprintf("low disk space: %d bytes free in %s, below %d (two WAL segments, a snapshot and %d MiB)", free, m.dir, threshold, lowDiskMargin>>20)
	}
	m.mu.Lock()
	was := m.low
	m.low = low
	m.mu.Unlock()
	switch {
	case low != "" && was == "":
		m.lg.Warn("disk space is low; the member stops if a write fails", zap.String("dir", m.dir), zap.Int64("free-bytes", free), zap.Int64("threshold-bytes", threshold))
	case low == "" && was != "":
		m.lg.Info("disk space is no longer low", zap.String("dir", m.dir), zap.Int64("free-bytes", free))
	}
}

// lowReason says why free space is low, or "" if it is not (or unknown). A
// nil monitor (in-process tests) never reports one.
func (m *diskMonitor) lowReason() string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.low
}
