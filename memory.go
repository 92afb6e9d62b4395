package main

import (
	"os"
	"runtime/debug"
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
	t := time.NewTicker(memoryLimitInterval)
	defer t.Stop()
	var last int64
	for {
		if limit := memoryLimit(dataBytes()); limit != last {
			debug.SetMemoryLimit(limit)
			lg.Debug("soft memory limit", zap.Int64("bytes", limit))
			last = limit
		}
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
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
