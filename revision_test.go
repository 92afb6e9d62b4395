package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Revisions and conditions, as the state machine applies them.

// applyNamed applies one command named origin/id and returns its outcome.
func applyNamed(t *testing.T, s *kvstore, id uint64, c command) outcome {
	t.Helper()
	c.origin, c.id, c.base = 1, id, s.ProposalClock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out appliedCommit
	s.apply(encodeCommand(c), &out)
	if len(out.outcomes) != 1 {
		t.Fatalf("command %d: %d outcomes", id, len(out.outcomes))
	}
	return out.outcomes[0].result
}

func metaOf(t *testing.T, s *kvstore, key string) (keyMeta, bool) {
	t.Helper()
	v, found, _ := s.Lookup(key)
	return v.meta, found
}

// wrote is the outcome of a write that left the store at revision and its
// key at modRevision; refused that of one whose condition failed against a
// key at modRevision.
func wrote(revision, modRevision uint64) outcome {
	return outcome{revision: revision, exists: true, modRevision: modRevision}
}

func refused(revision, modRevision uint64) outcome {
	return outcome{failed: true, revision: revision, exists: true, modRevision: modRevision}
}

func TestEveryChangeMovesTheRevisionByOneAndNothingElseDoes(t *testing.T) {
	s := kvTestStore(t)
	put := func(id uint64, key string, cond condition) outcome {
		return applyNamed(t, s, id, command{op: opPut, cond: cond, key: key, value: fmt.Sprint("v", id)})
	}
	del := func(id uint64, key string, cond condition) outcome {
		return applyNamed(t, s, id, command{op: opDelete, cond: cond, key: key})
	}
	steps := []struct {
		what     string
		do       func() outcome
		want     outcome
		revision uint64
	}{
		{"create a", func() outcome { return put(1, "a", condition{}) }, wrote(1, 1), 1},
		{"create b", func() outcome { return put(2, "b", condition{}) }, wrote(2, 2), 2},
		{"overwrite a", func() outcome { return put(3, "a", condition{}) }, wrote(3, 3), 3},
		{"delete a missing key", func() outcome { return del(4, "nope", condition{}) }, outcome{revision: 3}, 3},
		{"If-Match a stale revision", func() outcome { return put(5, "a", condition{kind: condModRevision, modRevision: 1}) }, refused(3, 3), 3},
		{"If-Match the current revision", func() outcome { return put(6, "a", condition{kind: condModRevision, modRevision: 3}) }, wrote(4, 4), 4},
		{"If-None-Match * on an existing key", func() outcome { return put(7, "b", condition{kind: condAbsent}) }, refused(4, 2), 4},
		{"If-None-Match * on a new key", func() outcome { return put(8, "c", condition{kind: condAbsent}) }, wrote(5, 5), 5},
		{"If-Match * on a missing key", func() outcome { return put(9, "d", condition{kind: condExists}) }, outcome{failed: true, revision: 5}, 5},
		{"If-Match * on an existing key", func() outcome { return put(10, "c", condition{kind: condExists}) }, wrote(6, 6), 6},
		{"delete If-Match a stale revision", func() outcome { return del(11, "b", condition{kind: condModRevision, modRevision: 1}) }, refused(6, 2), 6},
		{"delete If-Match the current revision", func() outcome { return del(12, "b", condition{kind: condModRevision, modRevision: 2}) }, outcome{revision: 7}, 7},
		{"delete If-Match * of a missing key", func() outcome { return del(13, "b", condition{kind: condExists}) }, outcome{failed: true, revision: 7}, 7},
		{"If-Match revision 0 of a missing key", func() outcome { return put(14, "b", condition{kind: condModRevision}) }, outcome{failed: true, revision: 7}, 7},
		{"re-create b", func() outcome { return put(15, "b", condition{}) }, wrote(8, 8), 8},
	}
	for _, st := range steps {
		if got := st.do(); got != st.want {
			t.Fatalf("%s: outcome %+v, want %+v", st.what, got, st.want)
		}
		if rev := s.State().revision; rev != st.revision {
			t.Fatalf("%s: store revision %d, want %d", st.what, rev, st.revision)
		}
	}
	for key, want := range map[string]keyMeta{
		"a": {createRevision: 1, modRevision: 4, version: 3},
		"b": {createRevision: 8, modRevision: 8, version: 1}, // deleted and created again: starts over
		"c": {createRevision: 5, modRevision: 6, version: 2},
	} {
		if got, found := metaOf(t, s, key); !found || got != want {
			t.Errorf("%s: revisions %+v (found %v), want %+v", key, got, found, want)
		}
	}
	if _, found := metaOf(t, s, "d"); found {
		t.Error("a failed If-Match * created d")
	}
	if v, _ := s.value("a"); v != "v6" {
		t.Errorf("a = %q: a failed condition changed it", v)
	}
}

// legacyNamed is a named command as versions before revisions wrote it (op 4
// or 5, no condition).
func legacyNamed(op byte, origin, id uint64, key, value string) []byte {
	b := []byte{op}
	b = binary.AppendUvarint(b, origin)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, 0)
	b = appendString(b, key)
	return append(b, value...)
}

func TestCommandsFromBeforeRevisionsApplyWithoutMovingTheRevision(t *testing.T) {
	s := kvTestStore(t)
	var out appliedCommit
	s.mu.Lock()
	s.apply([]byte{opPutAnonymous, 1, 1, 'a', '1'}, &out)
	s.apply(legacyNamed(opPutNamed, 2, 1, "b", "2"), &out)
	s.apply(legacyNamed(opDeleteNamed, 2, 2, "a", ""), &out)
	s.mu.Unlock()
	if v, found := s.value("b"); !found || v != "2" {
		t.Fatalf("b = %q, %v; want 2", v, found)
	}
	if _, found := s.value("a"); found {
		t.Fatal("a legacy delete did not apply")
	}
	if st := s.State(); st.revision != 0 || len(out.changes) != 0 {
		t.Fatalf("legacy commands moved the revision to %d, reported changes %v", st.revision, out.changes)
	}
	if m, _ := metaOf(t, s, "b"); m != (keyMeta{}) {
		t.Fatalf("a legacy write carries revisions %+v", m)
	}
	// A write of today to such a key: the key keeps createRevision 0.
	if got := applyNamed(t, s, 9, command{op: opPut, key: "b", value: "3"}); got != wrote(1, 1) {
		t.Fatalf("outcome %+v", got)
	}
	if m, _ := metaOf(t, s, "b"); m != (keyMeta{createRevision: 0, modRevision: 1, version: 1}) {
		t.Fatalf("revisions %+v after a new write to a legacy key", m)
	}
}

func TestApplyReportsEachChangeWithItsRevision(t *testing.T) {
	s := kvTestStore(t)
	var out appliedCommit
	err := s.applyCommit(commit{index: 1, entries: [][]byte{encodeBatch([][]byte{
		encodeCommand(command{op: opPut, origin: 1, id: 1, key: "a", value: "1"}),
		encodeCommand(command{op: opPut, origin: 1, id: 2, cond: condition{kind: condAbsent}, key: "a", value: "2"}), // fails
		encodeCommand(command{op: opDelete, origin: 1, id: 3, key: "missing"}),
		encodeCommand(command{op: opDelete, origin: 1, id: 4, key: "a"}),
	})}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := []change{
		{revision: 1, key: "a", value: "1", meta: keyMeta{createRevision: 1, modRevision: 1, version: 1}},
		{revision: 2, key: "a", deleted: true},
	}
	if fmt.Sprint(out.changes) != fmt.Sprint(want) || out.revision != 2 {
		t.Fatalf("changes %+v at revision %d, want %+v at 2", out.changes, out.revision, want)
	}
	wantOutcomes := []outcome{wrote(1, 1), refused(1, 1), {revision: 1}, {revision: 2}}
	for i, o := range out.outcomes {
		if o.result != wantOutcomes[i] {
			t.Errorf("outcome %d: %+v, want %+v", i, o.result, wantOutcomes[i])
		}
	}
}

func TestASnapshotCarriesRevisionsAndOutcomes(t *testing.T) {
	src := kvTestStore(t)
	applyNamed(t, src, 1, command{op: opPut, key: "a", value: "1"})
	applyNamed(t, src, 2, command{op: opPut, key: "a", value: "2"})
	applyNamed(t, src, 3, command{op: opPut, cond: condition{kind: condAbsent}, key: "a", value: "x"})
	applyNamed(t, src, 4, command{op: opPut, key: "b", value: "3"})
	applyNamed(t, src, 5, command{op: opDelete, key: "b"})
	dst := kvTestStore(t)
	if err := dst.restoreAll(src.snapshotBytes()); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.State(), src.State(); got.revision != 4 || got.digest != want.digest || got.keys != want.keys {
		t.Fatalf("restored state %+v, want %+v at revision 4", got, want)
	}
	if m, _ := metaOf(t, dst, "a"); m != (keyMeta{createRevision: 1, modRevision: 2, version: 2}) {
		t.Fatalf("restored revisions of a: %+v", m)
	}
	for id, want := range map[uint64]outcome{1: wrote(1, 1), 2: wrote(2, 2), 3: refused(2, 2), 5: {revision: 4}} {
		if got, ok := dst.AppliedOutcome(proposalName{1, id}); !ok || got != want {
			t.Errorf("restored outcome of proposal %d: %+v, %v; want %+v", id, got, ok, want)
		}
	}
	// And the next change continues from the restored revision.
	if got := applyNamed(t, dst, 6, command{op: opPut, key: "c", value: "4"}); got != wrote(5, 5) {
		t.Fatalf("first change after the restore: %+v, want revision 5", got)
	}
}

func TestASnapshotOfTheFormatBeforeRevisionsStillRestores(t *testing.T) {
	// Format 2: the window without outcomes, no store revision, pairs
	// without revisions.
	b := binary.AppendUvarint(nil, kvSnapshotMarker)
	b = binary.AppendUvarint(b, kvSnapshotFormatOld)
	b = binary.AppendUvarint(b, 3) // clock
	b = binary.AppendUvarint(b, 1) // one name
	b = binary.AppendUvarint(b, 2) // origin
	b = binary.AppendUvarint(b, 7) // id
	b = binary.AppendUvarint(b, 3) // at tick 3
	b = binary.AppendUvarint(b, 1) // one pair
	b = appendString(b, "k")
	b = appendString(b, "v")
	b = binary.BigEndian.AppendUint32(b, crcOf(b))
	s := kvTestStore(t)
	if err := verifyKVSnapshot(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if err := s.restoreAll(b); err != nil {
		t.Fatal(err)
	}
	if v, found := s.value("k"); !found || v != "v" || s.State().revision != 0 {
		t.Fatalf("k = %q, %v at revision %d", v, found, s.State().revision)
	}
	if m, _ := metaOf(t, s, "k"); m != (keyMeta{}) {
		t.Fatalf("revisions %+v, want none", m)
	}
	if o, ok := s.AppliedOutcome(proposalName{2, 7}); !ok || o != (outcome{unknown: true}) {
		t.Fatalf("outcome %+v, %v: want applied, revision unknown", o, ok)
	}
}

func TestASnapshotWithImpossibleRevisionsIsRefused(t *testing.T) {
	snapshot := func(revision uint64, create, mod uint64) []byte {
		b := binary.AppendUvarint(nil, kvSnapshotMarker)
		b = binary.AppendUvarint(b, kvSnapshotFormat)
		b = binary.AppendUvarint(b, 0) // clock
		b = binary.AppendUvarint(b, 0) // no names
		b = binary.AppendUvarint(b, revision)
		b = binary.AppendUvarint(b, 1)
		b = appendString(b, "k")
		b = appendString(b, "v")
		b = binary.AppendUvarint(b, create)
		b = binary.AppendUvarint(b, mod)
		b = binary.AppendUvarint(b, 1)
		b = binary.AppendUvarint(b, 0) // no ttl
		return binary.BigEndian.AppendUint32(b, crcOf(b))
	}
	if err := kvTestStore(t).restoreAll(snapshot(5, 2, 5)); err != nil {
		t.Fatalf("a sound snapshot is refused: %v", err)
	}
	for name, data := range map[string][]byte{
		"modified after the store's revision": snapshot(5, 2, 6),
		"created after its last change":       snapshot(5, 4, 3),
	} {
		if err := verifyKVSnapshot(bytes.NewReader(data), int64(len(data))); err == nil {
			t.Errorf("%s: verifyKVSnapshot accepted it", name)
		}
	}
}

// The answer to a write whose application this member learned of only from
// a snapshot is the one the snapshot's window recorded.
func TestAWriteAppliedInsideASnapshotGetsItsOutcome(t *testing.T) {
	p := newPendingCommands(1)
	pc, _ := p.add(command{op: opPut, cond: condition{kind: condAbsent}, key: "k"}, 5)
	p.restored(0, 10, func(n proposalName) (outcome, bool) { return refused(9, 3), n == proposalName{1, 5} })
	select {
	case <-pc.applied:
	default:
		t.Fatal("still pending")
	}
	if pc.result != refused(9, 3) {
		t.Fatalf("result %+v, want the failed condition the window recorded", pc.result)
	}
}

// TestANoOpWriteOnAFreshStoreAnswersRevisionZero: a DELETE of a missing key
// applied before any write changed the store leaves it at revision 0, and
// its answer must say 0, not the revision the store has reached by the time
// the answer is written (the robustness suite saw a delete answered with the
// revision of a put of the same key applied after it). Only an outcome a
// snapshot from before revisions left unknown is answered with the current
// revision.
func TestANoOpWriteOnAFreshStoreAnswersRevisionZero(t *testing.T) {
	s := kvTestStore(t)
	deleted := applyNamed(t, s, 1, command{op: opDelete, key: "nope"})
	if deleted != (outcome{}) {
		t.Fatalf("delete of a missing key on a fresh store: %+v, want revision 0", deleted)
	}

	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	api := &httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20}
	ipEventually(t, 30*time.Second, "a PUT is answered 204", func() error {
		w := httptest.NewRecorder()
		if api.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/a", strings.NewReader("1"))); w.Code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", w.Code, w.Body)
		}
		return nil
	})
	for _, tc := range []struct {
		result outcome
		want   string
	}{
		{deleted, "0"},
		{outcome{unknown: true}, "1"},
	} {
		w := httptest.NewRecorder()
		if err := api.writeAnswered(w, tc.result, false); err != nil {
			t.Fatal(err)
		}
		if got := w.Header().Get("X-Revision"); w.Code != http.StatusNoContent || got != tc.want {
			t.Errorf("%+v answered %d with X-Revision %q, want 204 and %q", tc.result, w.Code, got, tc.want)
		}
	}
}
