package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/notify"
)

func named(origin, id, base uint64, key, value string) []byte {
	return encodeCommand(command{op: opPut, origin: origin, id: id, base: base, key: key, value: value})
}

func TestACopyOfAnAppliedCommandIsNotAppliedAgain(t *testing.T) {
	s := kvTestStore(t)
	first := named(1, 7, 0, "k", "first")
	if _, ok := s.applyOne(first); !ok {
		t.Fatal("the first copy was not applied")
	}
	s.applyOne(named(2, 7, 0, "k", "second")) // same id, another member: another command
	if _, ok := s.applyOne(first); ok {
		t.Fatal("a copy of an applied command was applied again")
	}
	if v, _ := s.value("k"); v != "second" {
		t.Fatalf("k = %q after a late copy of the first write, want %q", v, "second")
	}
	if c := s.ProposalClock(); c != 3 {
		t.Fatalf("proposal clock %d after three named commands, want 3", c)
	}
}

func TestACopyIsRememberedForAWholeWindowAndThenExpires(t *testing.T) {
	s := kvTestStore(t)
	s.applyOne(named(1, 1, 0, "k", "v")) // applied at tick 1
	for i := range uint64(proposalWindow - 2) {
		s.applyOne(named(2, i+1, i+1, "other", "x"))
	}
	// Tick proposalWindow: the last at which a copy with base 0 is decided
	// at all; the first copy is still remembered.
	if _, ok := s.applyOne(named(1, 1, 0, "k", "v")); ok {
		t.Fatal("a copy at the end of the window was applied again")
	}
	// Tick proposalWindow+1: past base 0 by more than a window, so refused
	// whether or not the first copy is still remembered.
	if _, ok := s.applyOne(named(1, 1, 0, "k", "again")); ok {
		t.Fatal("a copy older than the window was applied")
	}
	if v, _ := s.value("k"); v != "v" {
		t.Fatalf("k = %q, want v", v)
	}
	// A copy never applied, proposed afresh with a new base, is applied.
	if _, ok := s.applyOne(named(1, 99, s.ProposalClock(), "k", "rebased")); !ok {
		t.Fatal("a command with a current base was not applied")
	}
}

func TestTheWindowStaysBounded(t *testing.T) {
	s := kvTestStore(t)
	for i := range uint64(3 * proposalWindow) {
		s.applyOne(named(1, i+1, i, "k", "v"))
		if i%1000 == 0 {
			// Copies and expired ones tick the clock without being remembered.
			s.applyOne(named(1, i+1, i, "k", "v"))
			s.applyOne(named(1, 1<<40+i, 0, "k", "v"))
		}
	}
	p := s.proposals
	if len(p.byName) > proposalWindow || len(p.order)-p.head > proposalWindow || cap(p.order) > 4*proposalWindow {
		t.Fatalf("window holds %d names, %d in order (capacity %d); want at most %d", len(p.byName), len(p.order)-p.head, cap(p.order), proposalWindow)
	}
}

func TestASnapshotCarriesTheWindowSoRestoredReplicasDecideAlike(t *testing.T) {
	steady, restored := kvTestStore(t), kvTestStore(t)
	var log [][]byte
	for i := range uint64(100) {
		log = append(log, named(1+i%3, i, 0, fmt.Sprintf("k%d", i%10), fmt.Sprint(i)))
	}
	// Copies of commands from before the snapshot, and after it.
	log = append(log, log[5], log[60], named(9, 1, 0, "k1", "fresh"), log[95], log[99])
	for _, e := range log[:50] {
		steady.applyOne(e)
	}
	snap := steady.snapshotBytes()
	if err := restored.restoreAll(snap); err != nil {
		t.Fatal(err)
	}
	for _, e := range log[50:] {
		_, a := steady.applyOne(e)
		_, b := restored.applyOne(e)
		if a != b {
			c, _ := decodeCommand(e)
			t.Fatalf("command %d/%d: applied %v on the steady replica, %v on the restored one", c.origin, c.id, a, b)
		}
	}
	d1 := steady.State().digest
	d2 := restored.State().digest
	if d1 != d2 || steady.ProposalClock() != restored.ProposalClock() {
		t.Fatalf("replicas differ: digest %x vs %x, clock %d vs %d", d1, d2, steady.ProposalClock(), restored.ProposalClock())
	}
	if v, _ := restored.value("k5"); v != "95" {
		t.Fatalf("k5 = %q, want 95 (the late copy of 5 must not apply)", v)
	}
}

func TestASnapshotFromBeforeNamedCommandsRestoresAnEmptyWindow(t *testing.T) {
	// The encoding of earlier versions: pair count, pairs, checksum.
	var old []byte
	old = binary.AppendUvarint(old, 1)
	old = appendString(old, "k")
	old = appendString(old, "v")
	old = binary.BigEndian.AppendUint32(old, crcOf(old))
	s := kvTestStore(t)
	if err := s.restoreAll(old); err != nil {
		t.Fatalf("an old snapshot does not restore: %v", err)
	}
	if v, _ := s.value("k"); v != "v" || s.ProposalClock() != 0 {
		t.Fatalf("after an old snapshot: k = %q, clock %d", v, s.ProposalClock())
	}
}

func TestASnapshotWithAnImpossibleWindowIsRefused(t *testing.T) {
	header := func(clock uint64, names ...uint64) []byte {
		b := binary.AppendUvarint(nil, kvSnapshotMarker)
		b = binary.AppendUvarint(b, kvSnapshotFormat)
		b = binary.AppendUvarint(b, clock)
		b = binary.AppendUvarint(b, uint64(len(names)/3))
		for i, n := range names {
			b = binary.AppendUvarint(b, n)
			if i%3 == 2 {
				b = binary.AppendUvarint(b, 0) // the outcome
				b = binary.AppendUvarint(b, 0) // and its modRevision
			}
		}
		b = binary.AppendUvarint(b, 0) // revision
		b = binary.AppendUvarint(b, 0) // no pairs
		return binary.BigEndian.AppendUint32(b, crcOf(b))
	}
	cases := map[string][]byte{
		"applied after the clock":  header(5, 1, 1, 6),
		"applied twice":            header(5, 1, 1, 2, 1, 1, 1),
		"out of order":             header(5, 1, 1, 3, 1, 2, 0),
		"older than the window":    header(proposalWindow+5, 1, 1, 5),
		"a name of zeros":          header(5, 0, 0, 1),
		"more names than the data": append(binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, kvSnapshotMarker), kvSnapshotFormat), 9), proposalWindow), 0, 0, 0, 0),
		"unknown format":           append(binary.AppendUvarint(binary.AppendUvarint(nil, kvSnapshotMarker), kvSnapshotFormat+1), 0, 0, 0, 0, 0, 0),
	}
	if err := kvTestStore(t).restoreAll(header(5, 1, 1, 2, 1, 2, 1)); err != nil {
		t.Fatalf("a sound window is refused: %v", err)
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if err := verifyKVSnapshot(bytes.NewReader(data), int64(len(data))); err == nil {
				t.Fatal("verifyKVSnapshot accepted it")
			}
			if err := kvTestStore(t).restoreAll(data); err == nil {
				t.Fatal("decodeKVSnapshot accepted it")
			}
		})
	}
}

// TestAPendingCommandIsProposedAgainUntilApplied: raft takes the first copy
// and loses it without a word, as a leader handing over does; the command is
// proposed again under the same name and applied once.
func TestAPendingCommandIsProposedAgainUntilApplied(t *testing.T) {
	var s *service
	var proposals atomic.Int32
	moved := notify.NewNotifier()
	// The Put may return as soon as the first copy is applied, while the
	// second is still being applied on the proposing goroutine: the checks
	// below wait for that.
	bothApplied := make(chan struct{})
	node := &kvFakeNode{done: make(chan struct{}), leader: 1, moved: moved, propose: func(_ context.Context, data []byte) error {
		n := proposals.Add(1)
		if n == 1 {
			moved.Notify() // the leader changes, and the first copy is gone
			return nil
		}
		s.applyAndReport(data)
		s.applyAndReport(data) // and a second copy commits too
		if n == 2 {
			close(bothApplied)
		}
		return nil
	}}
	s = kvTestService(t, node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put = %v, want it applied once proposed again", err)
	}
	if n := proposals.Load(); n < 2 {
		t.Fatalf("%d proposals, want the command proposed again", n)
	}
	select {
	case <-bothApplied:
	case <-ctx.Done():
		t.Fatal("the second proposal never finished applying its two copies")
	}
	if c := s.store.ProposalClock(); c != 2 {
		t.Fatalf("clock %d, want two copies decided", c)
	}
	if keys := s.store.State().keys; keys != 1 {
		t.Fatalf("%d keys, want 1", keys)
	}
}

func TestAPendingCommandGetsANewBaseOnlyOnceNoCopyCanApply(t *testing.T) {
	p := newPendingCommands(1)
	pc, _ := p.add(command{op: opPut, key: "k"}, 5)
	later := time.Now()
	due := func() []*pendingCommand {
		later = later.Add(time.Hour) // everything is due
		pcs, _ := p.due(later, nil, nil)
		return pcs
	}
	p.publish(proposalWindow - 1)
	if got := due(); len(got) != 1 || got[0].cmd.base != 0 {
		t.Fatalf("inside the window the base must stay 0: %+v", got)
	}
	p.publish(proposalWindow)
	if got := due(); len(got) != 1 || got[0].cmd.base != proposalWindow {
		t.Fatalf("past the window the base must be renewed: %+v", got)
	}
	// A snapshot that jumped past ticks the window no longer shows leaves the
	// command unsure: it keeps its base for good.
	pc2, _ := p.add(command{op: opPut, key: "j"}, 6)
	p.restored(proposalWindow, 3*proposalWindow, func(proposalName) (outcome, bool) { return outcome{}, false })
	p.publish(3 * proposalWindow)
	for _, got := range due() {
		if got == pc2 && got.cmd.base != proposalWindow {
			t.Fatalf("an unsure command got a new base %d", got.cmd.base)
		}
	}
	// One the snapshot's window shows as applied is done.
	p.restored(3*proposalWindow, 3*proposalWindow+1, func(n proposalName) (outcome, bool) { return outcome{revision: 9}, n.id == 5 })
	select {
	case <-pc.applied:
	default:
		t.Fatal("a command the restored window shows as applied is still pending")
	}
}

func TestADuplicateProposalIsAppliedOnceInACluster(t *testing.T) {
	c := newIPCluster(t, 3, 3, 10000)
	nodes := []*ipNode{c.startKV(1, false), c.startKV(2, false), c.startKV(3, false)}
	c.waitLeader(nodes...)
	ipPut(t, nodes[0].svc, "k", "before")
	// The test proposes one command twice itself, with another write between.
	first := named(2, 1<<60, nodes[1].store.ProposalClock(), "k", "first")
	propose := func(data []byte) {
		ipEventually(t, 30*time.Second, "proposal accepted", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return nodes[1].rn.Propose(ctx, data)
		})
	}
	propose(first)
	ipExpectValue(t, 2, nodes[1].store, "k", "first")
	ipPut(t, nodes[2].svc, "k", "second")
	propose(first)
	ipPut(t, nodes[0].svc, "done", "x")
	for _, n := range nodes {
		ipExpectValue(t, n.id, n.store, "done", "x")
		if v, _ := n.store.value("k"); v != "second" {
			t.Errorf("node %d: k = %q, want second: the duplicate was applied", n.id, v)
		}
	}
}

func crcOf(b []byte) uint32 { return crc32.Update(0, crc32c, b) }
