package main

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// Keys that expire: the leader's deadlines, and expiries as the state
// machine applies them.

func putWithTTL(key string, modRevision uint64, ttl time.Duration) change {
	return change{revision: modRevision, key: key, value: "v", meta: keyMeta{createRevision: modRevision, modRevision: modRevision, version: 1, ttl: ttl}}
}

func expiryOf(t *testing.T, data []byte) command {
	t.Helper()
	c, err := decodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTheLeaderProposesAnExpiryOnlyOnceTheTTLHasPassed(t *testing.T) {
	e := newExpirer()
	t0 := time.Now()
	e.observe([]change{putWithTTL("k", 7, 10*time.Second)}, t0)
	if got, _ := e.due(t0.Add(expiryGrace + time.Hour)); len(got) != 0 {
		t.Fatal("a follower proposed an expiry")
	}
	e.lead(true, 3, t0) // leading from t0: deadlines restart at t0
	if got, next := e.due(t0.Add(expiryGrace + 10*time.Second - time.Millisecond)); len(got) != 0 || next != time.Millisecond {
		t.Fatalf("before the TTL: %d expiries, next in %v", len(got), next)
	}
	got, _ := e.due(t0.Add(expiryGrace + 10*time.Second))
	if len(got) != 1 {
		t.Fatalf("at the TTL: %d expiries", len(got))
	}
	if c := expiryOf(t, got[0]); !c.expiry || c.op != opDelete || c.key != "k" || c.cond != (condition{kind: condModRevision, modRevision: 7}) {
		t.Fatalf("expiry %+v: want a delete of k if its modRevision is still 7", c)
	}
	// Not applied yet (raft may have dropped it): proposed again, later.
	if again, _ := e.due(t0.Add(expiryGrace + 10*time.Second + expiryRetry - time.Millisecond)); len(again) != 0 {
		t.Fatal("proposed again before expiryRetry")
	}
	if again, _ := e.due(t0.Add(expiryGrace + 10*time.Second + expiryRetry)); len(again) != 1 {
		t.Fatal("not proposed again after expiryRetry")
	}
	// Applied: the deadline is gone.
	e.observe([]change{{revision: 8, key: "k", deleted: true, expired: true}}, t0.Add(11*time.Second))
	if again, _ := e.due(t0.Add(expiryGrace + time.Hour)); len(again) != 0 {
		t.Fatal("an expired key expires again")
	}
}

func TestANewLeaderRestartsEveryTTLInFull(t *testing.T) {
	e := newExpirer()
	t0 := time.Now()
	e.observe([]change{putWithTTL("a", 1, 4*time.Second), putWithTTL("b", 2, 8*time.Second)}, t0)
	e.lead(true, 5, t0.Add(3*time.Second))
	if got, _ := e.due(t0.Add(expiryGrace + 7*time.Second - time.Millisecond)); len(got) != 0 {
		t.Fatalf("%d expiries before 4 s from the start of the term", len(got))
	}
	if got, _ := e.due(t0.Add(expiryGrace + 7*time.Second)); len(got) != 1 {
		t.Fatalf("%d expiries 4 s into the term, want a", len(got))
	}
	// Leading on in the same term changes nothing; a new term restarts.
	e.lead(true, 5, t0.Add(9*time.Second))
	if got, _ := e.due(t0.Add(expiryGrace + 11*time.Second - time.Millisecond)); len(got) != 1 || expiryOf(t, got[0]).key != "a" {
		t.Fatalf("%d expiries just before 8 s into the term, want a's retry", len(got))
	}
	if got, _ := e.due(t0.Add(expiryGrace + 11*time.Second)); len(got) != 1 || expiryOf(t, got[0]).key != "b" {
		t.Fatalf("b not due 8 s into the term: %d expiries", len(got))
	}
	e.lead(false, 0, t0.Add(12*time.Second))
	e.lead(true, 7, t0.Add(20*time.Second))
	if got, _ := e.due(t0.Add(expiryGrace + 24*time.Second - time.Millisecond)); len(got) != 0 {
		t.Fatalf("%d expiries before a full TTL into the new term", len(got))
	}
	if left, ok := e.remaining("b", 2, t0.Add(21*time.Second)); !ok || left != 7*time.Second {
		t.Fatalf("b has %v left (%v), want 7s", left, ok)
	}
}

func TestAWriteWithoutATTLClearsIt(t *testing.T) {
	e := newExpirer()
	t0 := time.Now()
	e.lead(true, 1, t0)
	e.observe([]change{putWithTTL("k", 1, time.Second)}, t0)
	e.observe([]change{{revision: 2, key: "k", value: "kept", meta: keyMeta{createRevision: 1, modRevision: 2, version: 2}}}, t0)
	if got, _ := e.due(t0.Add(expiryGrace + time.Hour)); len(got) != 0 {
		t.Fatal("a key whose TTL was cleared expires")
	}
	if _, ok := e.remaining("k", 2, t0); ok {
		t.Fatal("a key without a TTL has time remaining")
	}
}

func TestAnExpiryNeverRemovesANewerWrite(t *testing.T) {
	s := kvTestStore(t)
	applyNamed(t, s, 1, command{op: opPut, key: "k", value: "old", ttl: time.Second})
	applyNamed(t, s, 2, command{op: opPut, key: "k", value: "new"})
	expire := func(modRevision uint64) appliedCommit {
		var out appliedCommit
		s.mu.Lock()
		defer s.mu.Unlock()
		s.apply(encodeCommand(command{op: opDelete, expiry: true, key: "k", cond: condition{kind: condModRevision, modRevision: modRevision}}), &out)
		return out
	}
	if out := expire(1); len(out.changes) != 0 {
		t.Fatalf("the old write's expiry changed %+v", out.changes)
	}
	if v, found := s.value("k"); !found || v != "new" {
		t.Fatalf("k = %q, %v after a stale expiry", v, found)
	}
	out := expire(2)
	if len(out.changes) != 1 || !out.changes[0].expired || !out.changes[0].deleted || out.changes[0].revision != 3 {
		t.Fatalf("expiry changes %+v, want one expired delete at revision 3", out.changes)
	}
	if _, found := s.value("k"); found {
		t.Fatal("k is still there")
	}
}

func TestAnExpiryMustBeConditional(t *testing.T) {
	data := encodeCommand(command{op: opDelete, expiry: true, key: "k"})
	if _, err := decodeCommand(data); err == nil {
		t.Fatal("an unconditional expiry decoded")
	}
}

func TestTTLsSurviveASnapshot(t *testing.T) {
	s := kvTestStore(t)
	applyNamed(t, s, 1, command{op: opPut, key: "a", value: "1", ttl: 90 * time.Second})
	applyNamed(t, s, 2, command{op: opPut, key: "b", value: "2"})
	restored := kvTestStore(t)
	if err := restored.restoreAll(s.snapshotBytes()); err != nil {
		t.Fatal(err)
	}
	if restored.State() != s.State() {
		t.Fatalf("state %+v, want %+v", restored.State(), s.State())
	}
	keys := restored.TTLKeys()
	if len(keys) != 1 || keys[0] != (ttlKey{key: "a", modRevision: 1, ttl: 90 * time.Second}) {
		t.Fatalf("TTL keys %+v", keys)
	}
	// The digest covers the TTL: members that disagree on it differ.
	v, _, _ := s.Lookup("a")
	noTTL := v
	noTTL.meta.ttl = 0
	if pairDigest("a", v) == pairDigest("a", noTTL) {
		t.Fatal("the digest ignores the TTL")
	}
}

func TestASnapshotOfFormat3RestoresKeysWithoutTTLs(t *testing.T) {
	b := binary.AppendUvarint(nil, kvSnapshotMarker)
	for _, n := range []uint64{kvSnapshotFormatRevisions, 0, 0, 5, 1} { // format, clock, names, revision, pairs
		b = binary.AppendUvarint(b, n)
	}
	b = appendString(b, "k")
	b = appendString(b, "v")
	for _, n := range []uint64{2, 5, 3} {
		b = binary.AppendUvarint(b, n)
	}
	b = binary.BigEndian.AppendUint32(b, crcOf(b))
	s := kvTestStore(t)
	if err := s.restoreAll(b); err != nil {
		t.Fatal(err)
	}
	if m, _ := metaOf(t, s, "k"); m != (keyMeta{createRevision: 2, modRevision: 5, version: 3}) {
		t.Fatalf("meta %+v", m)
	}
	bad := append([]byte(nil), b[:len(b)-4]...)
	bad[bytes.IndexByte(bad, kvSnapshotFormatRevisions)] = kvSnapshotFormat // read as format 4: a pair short of its ttl
	bad = binary.BigEndian.AppendUint32(bad, crcOf(bad))
	if err := s.restoreAll(bad); err == nil {
		t.Fatal("a truncated format 4 snapshot restored")
	}
}
