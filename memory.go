package main

import (
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Most of this server's heap is the map, which lives as long as the process.
// The Go runtime collects garbage once the heap has grown by GOGC percent
// (100 by default) of what was live after the last collection, so a large
// map would have resident memory reach about twice its live heap, which is
// itself about 1.5 times the keys and values. A soft memory limit (see
// runtime/debug.SetMemoryLimit) keeps the default pacing while the store is
// small and makes the collector run more often as the heap nears a bound
// proportional to the data, so resident memory stays under twice the data.
// An operator's GOMEMLIMIT takes precedence.

const (
	memoryLimitFactor    = 1.75      // the limit, as a multiple of the keys and values
	memoryLimitAllowance = 256 << 20 // the least headroom over the data, for small stores
	memoryLimitInterval  = 5 * time.Second
)

// memoryLimit is the soft limit for a map holding dataBytes of keys and values.
func memoryLimit(dataBytes int64) int64 {
	return max(int64(float64(dataBytes)*memoryLimitFactor), dataBytes+memoryLimitAllowance)
}

// limitMemory keeps the runtime's soft memory limit in line with the size of
// the data until stop is closed. It does nothing if GOMEMLIMIT is set.
func limitMemory(lg *zap.Logger, dataBytes func() int64, stop <-chan struct{}) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	memGovernor.start(lg, dataBytes)
	t := time.NewTicker(memoryLimitInterval)
	defer t.Stop()
	for {
		memGovernor.update()
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// memGovernor is the process's memoryGovernor.
var memGovernor = &memoryGovernor{setLimit: debug.SetMemoryLimit, setGCPercent: debug.SetGCPercent}

// memoryGovernor sets the soft memory limit from the data the store holds
// and the snapshots being decoded into a new map, which will hold as much.
// A decode must not run under the limit of the data before it: at a
// restart that is the limit of an empty store, far below the map being
// built, and the collector would run back to back until the map is handed
// over (it did: 337 collections in the 11 s of a restart at a million
// keys).
type memoryGovernor struct {
	setLimit     func(int64) int64 // runtime/debug's, or a fake in tests
	setGCPercent func(int) int

	mu        sync.Mutex
	lg        *zap.Logger
	dataBytes func() int64 // nil until start: no limit is set before
	incoming  int64        // bytes of the snapshots being decoded
	limit     int64        // last set
	lower     int64        // a lower limit wanted at the last update, not yet set
	decodes   int          // under way
	gcPercent int          // what the collector ran at before they started
}

func (g *memoryGovernor) start(lg *zap.Logger, dataBytes func() int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lg, g.dataBytes = lg, dataBytes
}

// update sets the limit for the data held and being decoded. It raises the
// limit at once, and lowers it only when two updates in a row want it
// lower: between the end of a decode and the store taking the new map, the
// data held still reads as the old map's, and one reading of it must not
// make the collector run against a limit below the heap.
func (g *memoryGovernor) update() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.updateLocked()
}

func (g *memoryGovernor) updateLocked() {
	if g.dataBytes == nil {
		return
	}
	want := memoryLimit(g.dataBytes() + g.incoming)
	switch {
	case want >= g.limit:
		g.lower = 0
	case g.lower == 0:
		g.lower = want
		return
	default:
		want, g.lower = max(want, g.lower), 0
	}
	if want != g.limit {
		g.setLimit(want)
		g.lg.Debug("soft memory limit", zap.Int64("bytes", want))
		g.limit = want
	}
}

// decoding announces a decode of a snapshot of size bytes into a new map
// and returns the function that ends it. Meanwhile the limit counts the
// new map, and the collector runs only when the heap reaches that limit:
// a decode allocates nothing but what the new map keeps, so collecting as
// the heap grows (every time it doubles, by default) would mark the map
// again and again and free nothing.
func (g *memoryGovernor) decoding(size int64) (done func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.incoming += size
	if g.decodes++; g.decodes == 1 {
		g.gcPercent = g.setGCPercent(-1)
	}
	g.updateLocked()
	return sync.OnceFunc(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.incoming -= size
		if g.decodes--; g.decodes == 0 {
			g.setGCPercent(g.gcPercent)
		}
	})
}

// physicalMemory is this machine's memory in bytes (or 1 TiB if it cannot be
// read): no state larger than that can be held, so no snapshot is either.
func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return 1 << 40
	}
	return int64(si.Totalram) * int64(si.Unit)
}
