package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"
)

func TestBatchEncodingRoundTrips(t *testing.T) {
	for _, cmds := range [][][]byte{
		{encodeCommand(command{op: opPut, id: 1, key: "a", value: "1"})},
		{encodeCommand(command{op: opPut, id: 1, key: "a", value: "1"}), encodeCommand(command{op: opDelete, id: 2, key: "b"})},
		{bytes.Repeat([]byte{opPut}, 300), {opDelete}},
	} {
		got, err := splitEntry(encodeBatch(cmds), nil)
		if err != nil {
			t.Fatalf("splitEntry(encodeBatch(%d commands)): %v", len(cmds), err)
		}
		if len(got) != len(cmds) {
			t.Fatalf("split %d commands, want %d", len(got), len(cmds))
		}
		for i := range cmds {
			if !bytes.Equal(got[i], cmds[i]) {
				t.Fatalf("command %d = %q, want %q", i, got[i], cmds[i])
			}
		}
	}
	single := encodeCommand(command{op: opPut, id: 1, key: "k", value: "v"})
	if got, err := splitEntry(single, nil); err != nil || len(got) != 1 || !bytes.Equal(got[0], single) {
		t.Fatalf("splitEntry(a single command) = %q, %v; want the command itself", got, err)
	}
}

func TestSplitEntryRejectsDamagedBatches(t *testing.T) {
	valid := encodeBatch([][]byte{{opPut, 1, 1, 'k'}, {opDelete, 2, 1, 'k'}})
	cases := map[string][]byte{
		"no count":              {opBatch},
		"count past the end":    {opBatch, 5, 1, opPut},
		"command past the end":  {opBatch, 1, 9, opPut},
		"trailing bytes":        append(append([]byte(nil), valid...), 'x'),
		"cut in the second one": valid[:len(valid)-1],
	}
	for name, data := range cases {
		if got, err := splitEntry(data, nil); err == nil {
			t.Errorf("%s: splitEntry(%q) = %q, want an error", name, data, got)
		}
	}
}

func TestApplyEntryAppliesEveryCommandOfABatchAndReportsEachName(t *testing.T) {
	s := kvTestStore(t)
	s.applyOne(encodeCommand(command{op: opPut, id: 1, key: "gone", value: "x"}))
	batch := encodeBatch([][]byte{
		encodeCommand(command{op: opPut, origin: 1, id: 10, key: "a", value: "1"}),
		encodeCommand(command{op: opDelete, origin: 2, id: 11, key: "gone"}),
		encodeCommand(command{op: opPut, origin: 1, id: 12, key: "a", value: "2"}), // later in the batch wins
	})
	s.mu.Lock()
	var out appliedCommit
	s.applyEntry(batch, &out)
	s.mu.Unlock()
	var names []proposalName
	for _, o := range out.outcomes {
		names = append(names, o.name)
	}
	if fmt.Sprint(names) != "[{1 10} {2 11} {1 12}]" {
		t.Fatalf("names = %v, want [{1 10} {2 11} {1 12}]", names)
	}
	if got, want := kvContents(s), map[string]string{"a": "2"}; !maps.Equal(got, want) {
		t.Fatalf("map = %v, want %v", got, want)
	}
	st := s.State()
	keys, digest := st.keys, st.digest
	if keys != 1 || digest != s.pairsDigest() {
		t.Fatalf("State() keys %d digest %x; want 1 and the digest of a=2", keys, digest)
	}
}

// While one entry is being proposed, requests that arrive queue up; the next
// entry carries all of them.
func TestConcurrentPutsShareOneEntry(t *testing.T) {
	const waiting = 20
	var s *service
	release := make(chan struct{})
	var mu sync.Mutex
	var entries [][]byte
	first := true
	p := &kvFakeNode{done: make(chan struct{}), propose: func(_ context.Context, data []byte) error {
		mu.Lock()
		entries = append(entries, data)
		block := first
		first = false
		mu.Unlock()
		if block {
			<-release // hold the batcher until the others have queued
		}
		s.applyAndReport(data)
		return nil
	}}
	s = kvTestService(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, waiting+1)
	go func() { errs <- s.put(ctx, "first", "v") }()
	ipEventually(t, 5*time.Second, "the first entry proposed", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(entries) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	for i := range waiting {
		go func() { errs <- s.put(ctx, fmt.Sprintf("k%d", i), "v") }()
	}
	ipEventually(t, 5*time.Second, "the others queued", func() error {
		if n := len(s.batcher.queue); n < waiting {
			return fmt.Errorf("%d queued", n)
		}
		return nil
	})
	close(release)
	for range waiting + 1 {
		if err := <-errs; err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(entries) != 2 {
		t.Fatalf("%d entries proposed for %d Puts, want 2 (the first alone, then one batch)", len(entries), waiting+1)
	}
	if cmds, err := splitEntry(entries[1], nil); err != nil || len(cmds) != waiting {
		t.Fatalf("second entry carries %d commands (%v), want %d", len(cmds), err, waiting)
	}
	if got := len(kvContents(s.store)); got != waiting+1 {
		t.Fatalf("%d keys after the Puts, want %d", got, waiting+1)
	}
}

// splitEntry must never panic on what it is given, and the commands of a
// batch it accepts survive encoding again.
func FuzzSplitEntry(f *testing.F) {
	f.Add(encodeBatch([][]byte{{opPut, 1, 1, 'k', 'v'}, {opDelete, 2, 1, 'k'}}))
	f.Add([]byte{opBatch, 0})
	f.Add([]byte{opBatch, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := splitEntry(data, nil)
		if err != nil || len(data) == 0 || data[0] != opBatch {
			return
		}
		again, err := splitEntry(encodeBatch(cmds), nil)
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("splitEntry(encodeBatch(%d commands)) = %d commands, %v", len(cmds), len(again), err)
		}
		for i := range cmds {
			if !bytes.Equal(again[i], cmds[i]) {
				t.Fatalf("command %d = %x after encoding again, want %x", i, again[i], cmds[i])
			}
		}
	})
}
