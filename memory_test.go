package main

import (
	"bytes"
	"testing"

	"go.uber.org/zap"
)

// fakeRuntime records what a memoryGovernor sets.
type fakeRuntime struct {
	limit     int64
	gcPercent int
}

func newTestGovernor(rt *fakeRuntime, data *int64) *memoryGovernor {
	g := &memoryGovernor{
		setLimit:     func(n int64) int64 { old := rt.limit; rt.limit = n; return old },
		setGCPercent: func(n int) int { old := rt.gcPercent; rt.gcPercent = n; return old },
	}
	g.start(zap.NewNop(), func() int64 { return *data })
	return g
}

// A snapshot being decoded counts towards the limit from the start of the
// decode: at a restart the store is empty, and a limit for no data made the
// collector run back to back while the map was built. Once the decode is
// over the limit does not drop on one reading of the data held (the store
// may not have taken the new map yet), only on two.
func TestMemoryLimitCountsTheSnapshotBeingDecoded(t *testing.T) {
	rt := &fakeRuntime{gcPercent: 100}
	var data int64
	g := newTestGovernor(rt, &data)
	g.update()
	if rt.limit != memoryLimit(0) {
		t.Fatalf("empty store: limit %d, want %d", rt.limit, memoryLimit(0))
	}
	const size = 1 << 30
	done := g.decoding(size)
	if rt.limit != memoryLimit(size) {
		t.Fatalf("decoding %d bytes: limit %d, want %d at once", size, rt.limit, memoryLimit(size))
	}
	done()
	g.update() // the decode is over, the store still reads empty
	if rt.limit != memoryLimit(size) {
		t.Fatalf("one update after the decode: limit lowered to %d", rt.limit)
	}
	data = size // the store took the map
	g.update()
	g.update()
	if rt.limit != memoryLimit(size) {
		t.Fatalf("with the map in the store: limit %d, want %d", rt.limit, memoryLimit(size))
	}
	data = size / 4 // keys deleted: two updates lower it
	g.update()
	if rt.limit != memoryLimit(size) {
		t.Fatalf("one update after a shrink: limit lowered to %d", rt.limit)
	}
	g.update()
	if rt.limit != memoryLimit(size/4) {
		t.Fatalf("two updates after a shrink: limit %d, want %d", rt.limit, memoryLimit(size/4))
	}
	// A snapshot from the leader is decoded while the old map is held.
	done = g.decoding(size)
	if want := memoryLimit(size/4 + size); rt.limit != want {
		t.Fatalf("decoding beside a held map: limit %d, want %d", rt.limit, want)
	}
	done()
}

// The collector is off while snapshots are decoded (the decode allocates
// only what the new map keeps; the limit still bounds the heap), and back at
// its setting once the last decode ends, however decodes overlap.
func TestCollectorPausesWhileDecoding(t *testing.T) {
	rt := &fakeRuntime{gcPercent: 100}
	var data int64
	g := newTestGovernor(rt, &data)
	a := g.decoding(10)
	b := g.decoding(20)
	if rt.gcPercent != -1 {
		t.Fatalf("during decodes: GC percent %d, want -1 (off)", rt.gcPercent)
	}
	a()
	a() // ending twice ends once
	if rt.gcPercent != -1 || g.incoming != 20 {
		t.Fatalf("one of two decodes over: GC percent %d, incoming %d; want -1, 20", rt.gcPercent, g.incoming)
	}
	b()
	if rt.gcPercent != 100 || g.incoming != 0 {
		t.Fatalf("after the decodes: GC percent %d, incoming %d; want 100, 0", rt.gcPercent, g.incoming)
	}
}

// Decoding a snapshot goes through the process's governor.
func TestDecodeKVSnapshotAnnouncesItself(t *testing.T) {
	data := kvSnapshotOf(t, 10, 8)
	rt := &fakeRuntime{gcPercent: 100}
	saved := memGovernor
	t.Cleanup(func() { memGovernor = saved })
	var held int64
	var during int64
	memGovernor = newTestGovernor(rt, &held)
	memGovernor.setLimit = func(n int64) int64 { during = n; return 0 }
	if _, err := decodeKVSnapshot(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if during != memoryLimit(int64(len(data))) || rt.gcPercent != 100 {
		t.Fatalf("limit set during the decode %d (want %d), GC percent after %d", during, memoryLimit(int64(len(data))), rt.gcPercent)
	}
}
