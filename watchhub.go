package main

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The least time between two wake-ups of the streams. Each wake-up costs
// every stream a write to its client (tens of microseconds of CPU each, most
// of it the write system call); under a stream of commits, waking less
// often lets one write carry several commits, for a delay of at most the
// interval. The interval grows with the streams open, so that what waking
// them costs stays a bounded share of a core however many there are (1,000
// streams on one member: 50 ms apart; up to 100: 10 ms apart), and the delay
// stays within the longest one.
const (
	watchWakeInterval          = 10 * time.Millisecond
	watchWakeIntervalPerStream = 100 * time.Microsecond
	watchWakeIntervalMax       = 50 * time.Millisecond
)

// wakeInterval is the least time between two wake-ups of streams streams.
func wakeInterval(streams int64) time.Duration {
	return min(max(watchWakeInterval, time.Duration(streams)*watchWakeIntervalPerStream), watchWakeIntervalMax)
}

// watchHub keeps the latest changes to the map, in revision order, for the
// watch streams (httpapi_watch.go). The apply loop publishes what each
// commit changed; streams read from it at their own pace. Nothing is pushed
// to a stream, so however slow a watcher is, the apply loop never waits for
// it: a stream that falls out of the history is closed, and its client may
// resume from the last revision it got while that is still kept.
//
// Written by the apply loop only (publish, reset); read by any goroutine.
type watchHub struct {
	maxEvents int
	maxBytes  int64

	mu     sync.RWMutex
	events []*watchEvent // oldest first, from head on
	head   int
	bytes  int64 // about what events holds (keys, values, overhead)
	// compacted is the newest revision no longer kept: a watch may start at
	// compacted+1 at the earliest.
	compacted uint64
	// revision is the revision the history is complete through.
	revision uint64
	// changed is closed, and replaced, when the history has changed: at
	// once, or at most watchWakeInterval after the last time (wakePending).
	changed     chan struct{}
	lastWake    time.Time
	wakePending bool
	// streams is how many watch streams are open (streamOpened).
	streams atomic.Int64
}

// watchEvent is one change, and its encoding as an event of a stream,
// made by the first stream that sends it and shared by all.
type watchEvent struct {
	change
	once  sync.Once
	frame []byte
}

// eventOverhead is about what an event costs beyond its key and value.
const eventOverhead = 128

func newWatchHub(maxEvents int, maxBytes int64) *watchHub {
	return &watchHub{maxEvents: max(maxEvents, 1), maxBytes: maxBytes, changed: make(chan struct{})}
}

// publish adds the changes of one commit, which brought the store to
// revision. Called by the apply loop, before it answers the commit's
// writers, so that a watch opened after a write's answer starts after it.
func (h *watchHub) publish(changes []change, revision uint64) {
	if len(changes) == 0 && revision == h.revision {
		return // nothing to wake the streams for (read without the lock: only we write it)
	}
	evs := make([]watchEvent, len(changes)) // one allocation per commit, not per change
	h.mu.Lock()
	for i, c := range changes {
		evs[i].change = c
		h.events = append(h.events, &evs[i])
		h.bytes += eventBytes(c)
	}
	for n := len(h.events) - h.head; n > 0 && (n > h.maxEvents || h.bytes > h.maxBytes); n-- {
		old := h.events[h.head]
		h.events[h.head] = nil
		h.head++
		h.bytes -= eventBytes(old.change)
		h.compacted = old.revision
	}
	if h.head > len(h.events)/2 && h.head > 1024 {
		h.events = slices.Delete(h.events, 0, h.head) // keeps the slice within twice what it holds
		h.head = 0
	}
	h.revision = revision
	interval := wakeInterval(h.streams.Load())
	if now := time.Now(); now.Sub(h.lastWake) >= interval {
		h.wakeLocked(now)
	} else if !h.wakePending {
		h.wakePending = true
		time.AfterFunc(h.lastWake.Add(interval).Sub(now), h.wakeLater)
	}
	h.mu.Unlock()
	metricWatchHistoryEvents.Set(float64(len(h.events) - h.head))
}

// wakeLocked wakes every stream waiting for a change. The caller holds
// h.mu for writing.
func (h *watchHub) wakeLocked(now time.Time) {
	close(h.changed)
	h.changed = make(chan struct{})
	h.lastWake, h.wakePending = now, false
}

// wakeLater makes a pending wake-up.
func (h *watchHub) wakeLater() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wakePending {
		h.wakeLocked(time.Now())
	}
}

// reset empties the history: the store was replaced by a snapshot at
// revision, and the changes that led there are not known here.
func (h *watchHub) reset(revision uint64) {
	h.mu.Lock()
	clear(h.events)
	h.events, h.head, h.bytes = h.events[:0], 0, 0
	h.compacted, h.revision = revision, revision
	h.wakeLocked(time.Now())
	h.mu.Unlock()
	metricWatchHistoryEvents.Set(0)
}

// streamOpened counts a watch stream open until the returned function is
// called: the more there are, the rarer the wake-ups (wakeInterval).
func (h *watchHub) streamOpened() (closed func()) {
	h.streams.Add(1)
	return func() { h.streams.Add(-1) }
}

func eventBytes(c change) int64 { return int64(len(c.key) + len(c.value) + eventOverhead) }

// historyView is what a stream learns from one read of the history.
type historyView struct {
	events    []*watchEvent // the kept events of revision ≥ from, at most limit
	more      bool          // events beyond limit follow
	compacted uint64
	revision  uint64
	newest    uint64        // the newest kept event's revision (0: none kept)
	changed   chan struct{} // closed at the next change
}

// read returns, appended to buf, up to limit kept events of revision from
// or later, and the state of the history.
func (h *watchHub) read(from uint64, limit int, buf []*watchEvent) historyView {
	h.mu.RLock()
	defer h.mu.RUnlock()
	v := historyView{compacted: h.compacted, revision: h.revision, changed: h.changed}
	kept := h.events[h.head:]
	if len(kept) > 0 {
		v.newest = kept[len(kept)-1].revision
	}
	i, _ := slices.BinarySearchFunc(kept, from, func(e *watchEvent, rev uint64) int { return cmp.Compare(e.revision, rev) })
	kept = kept[i:]
	if len(kept) > limit {
		kept, v.more = kept[:limit], true
		// Whole revisions only: a stream resumes after the last one it got.
		for len(kept) > 1 && kept[len(kept)-1].revision == h.events[h.head+i+len(kept)].revision {
			kept = kept[:len(kept)-1]
		}
	}
	v.events = append(buf, kept...)
	return v
}

// state is the oldest revision a watch may start at, and the revision the
// history is complete through.
func (h *watchHub) state() (oldest, revision uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.compacted + 1, h.revision
}
