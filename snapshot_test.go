package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// After a snapshot the in-memory log keeps entries behind it for lagging
// followers: up to min(snap-count, 5000) of them, and no more than
// maxCatchUpBytes, which batched entries reach long before the count.
func TestCompactionKeepsBoundedCatchUpEntries(t *testing.T) {
	build := func(n int, entryBytes int) *snapshots {
		st := raft.NewMemoryStorage()
		ents := make([]*raftpb.Entry, n)
		for i := range ents {
			ents[i] = &raftpb.Entry{Index: new(uint64(i + 1)), Term: new(uint64(1)), Data: make([]byte, entryBytes)}
		}
		if err := st.Append(ents); err != nil {
			t.Fatal(err)
		}
		return newSnapshots(zap.NewNop(), 10000, &durableLog{memory: st})
	}
	cases := []struct {
		name       string
		entries    int
		entryBytes int
		snapIndex  uint64
		want       uint64
	}{
		{"short log: nothing to compact", 3000, 100, 3000, 0},
		{"small entries: the count bounds it", 9000, 100, 9000, 9000 - maxCatchUpEntries},
		{"large entries: the bytes bound it", 9000, 64 << 10, 9000, 9000 - maxCatchUpBytes/(64<<10)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := build(c.entries, c.entryBytes)
			if got := s.compactionPoint(c.snapIndex); got != c.want {
				t.Fatalf("compactionPoint(%d) = %d, want %d", c.snapIndex, got, c.want)
			}
		})
	}
}

// kvSnapshotOf encodes n keys of valueBytes as a snapshot writes them.
func kvSnapshotOf(tb testing.TB, n, valueBytes int) []byte {
	tb.Helper()
	kv := make(map[string]storedValue, n)
	value := strings.Repeat("v", valueBytes)
	for i := range n {
		r := uint64(i + 1)
		kv[fmt.Sprintf("bench-%d", i)] = storedValue{value: value, meta: keyMeta{createRevision: r, modRevision: r, version: 1}}
	}
	var buf bytes.Buffer
	f := &frozenKV{kv: kv, revision: uint64(n)}
	if _, err := f.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Decoding a snapshot is most of a restart's work at a million keys.
func BenchmarkDecodeKVSnapshot(b *testing.B) {
	data := kvSnapshotOf(b, 200_000, 256)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeKVSnapshot(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}

// A snapshot cut short anywhere, or with a byte after it, is refused,
// whether its size is that of what is there or that of the whole.
func TestCutOrLongerKVSnapshotIsRefused(t *testing.T) {
	data := kvSnapshotOf(t, 3, 5)
	if _, err := decodeKVSnapshot(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("intact: %v", err)
	}
	for n := range len(data) {
		cut := data[:n]
		if _, err := decodeKVSnapshot(bytes.NewReader(cut), int64(n)); err == nil {
			t.Fatalf("cut to %d of %d bytes: decoded", n, len(data))
		}
		if _, err := decodeKVSnapshot(bytes.NewReader(cut), int64(len(data))); err == nil {
			t.Fatalf("cut to %d of %d bytes, said to be whole: decoded", n, len(data))
		}
		if err := verifyKVSnapshot(bytes.NewReader(cut), int64(n)); err == nil {
			t.Fatalf("cut to %d of %d bytes: verified", n, len(data))
		}
	}
	longer := append(bytes.Clone(data), 0)
	for _, size := range []int{len(data), len(longer)} {
		if _, err := decodeKVSnapshot(bytes.NewReader(longer), int64(size)); err == nil {
			t.Fatalf("a byte after the checksum (size %d): decoded", size)
		}
		if err := verifyKVSnapshot(bytes.NewReader(longer), int64(size)); err == nil {
			t.Fatalf("a byte after the checksum (size %d): verified", size)
		}
	}
}
