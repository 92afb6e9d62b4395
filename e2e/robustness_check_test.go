package e2e

// The robustness checks must be able to fail: fed bad data, each reports it.

import (
	"strings"
	"testing"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

func TestRobustnessLeaderCheckCatchesTwoLeadersInATerm(t *testing.T) {
	leaders := map[uint64]map[uint64]bool{}
	digests := map[uint64]map[string]uint64{}
	for _, st := range []tc.Status{
		{ID: 1, State: "leader", Term: 2},
		{ID: 2, State: "follower", Term: 2, Leader: 1},
		{ID: 2, State: "leader", Term: 3},
		{ID: 1, State: "follower", Term: 3, Leader: 2},
	} {
		recordStatus(leaders, digests, st)
	}
	if err := checkLeaders(leaders); err != nil {
		t.Fatalf("one leader per term, yet: %v", err)
	}
	recordStatus(leaders, digests, tc.Status{ID: 3, State: "leader", Term: 3})
	err := checkLeaders(leaders)
	if err == nil || !strings.Contains(err.Error(), "term 3: leaders [2 3]") {
		t.Fatalf("two leaders in term 3: got %v", err)
	}
}

func TestRobustnessConvergenceCheckCatchesDivergence(t *testing.T) {
	same := []tc.Status{{ID: 1, Applied: 10, Digest: "ab"}, {ID: 2, Applied: 10, Digest: "ab"}, {ID: 3, Applied: 10, Digest: "ab"}}
	if err := converged(same); err != nil {
		t.Fatalf("converged, yet: %v", err)
	}
	behind := []tc.Status{{ID: 1, Applied: 10, Digest: "ab"}, {ID: 2, Applied: 9, Digest: "aa"}, {ID: 3, Applied: 10, Digest: "ab"}}
	if err := converged(behind); err == nil {
		t.Fatal("a replica behind passed as converged")
	}
	diverged := []tc.Status{{ID: 1, Applied: 10, Digest: "ab"}, {ID: 2, Applied: 10, Digest: "cd"}, {ID: 3, Applied: 10, Digest: "ab"}}
	if err := converged(diverged); err == nil {
		t.Fatal("different digests at the same applied index passed as converged")
	}
	if err := converged([]tc.Status{{ID: 1, Applied: 10}}); err == nil {
		t.Fatal("a status without digest passed")
	}

	// The sampler's record: the same applied index with two digests, even at
	// different times, is divergence.
	leaders := map[uint64]map[uint64]bool{}
	digests := map[uint64]map[string]uint64{}
	recordStatus(leaders, digests, tc.Status{ID: 1, Applied: 7, Digest: "x"})
	recordStatus(leaders, digests, tc.Status{ID: 2, Applied: 7, Digest: "x"})
	if err := checkDigests(digests); err != nil {
		t.Fatalf("same digests, yet: %v", err)
	}
	recordStatus(leaders, digests, tc.Status{ID: 3, Applied: 7, Digest: "y"})
	if err := checkDigests(digests); err == nil {
		t.Fatal("two digests at applied 7 passed")
	}
}

func TestRobustnessLastWriteCheckCatchesLostWrite(t *testing.T) {
	const final = 8
	put := func(c int, v string, call, ret int64) lincheck.Op {
		return lincheck.Op{Client: c, Kind: lincheck.Put, Key: "k", Value: v, Found: true, Call: call, Return: ret}
	}
	read := func(v string, found bool) lincheck.Op {
		return lincheck.Op{Client: final, Kind: lincheck.Get, Key: "k", Value: v, Found: found, Call: 100, Return: 110}
	}
	ok := []lincheck.Op{put(0, "a", 0, 10), put(1, "b", 20, 30), read("b", true)}
	if err := checkLastWrites(ok, final); err != nil {
		t.Fatalf("intact, yet: %v", err)
	}
	lost := []lincheck.Op{put(0, "a", 0, 10), put(1, "b", 20, 30), read("a", true)}
	if err := checkLastWrites(lost, final); err == nil {
		t.Fatal("final read of an older value passed")
	}
	gone := []lincheck.Op{put(0, "a", 0, 10), read("", false)}
	if err := checkLastWrites(gone, final); err == nil {
		t.Fatal("final read finding nothing after an acknowledged put passed")
	}
	deleted := []lincheck.Op{put(0, "a", 0, 10),
		{Client: 1, Kind: lincheck.Delete, Key: "k", Call: 20, Return: 30}, read("a", true)}
	if err := checkLastWrites(deleted, final); err == nil {
		t.Fatal("a deleted value coming back passed")
	}
	// With revisions: the final read must show the last put's.
	putRev := func(c int, v string, rev uint64, call, ret int64) lincheck.Op {
		op := put(c, v, call, ret)
		op.Revision = rev
		return op
	}
	readRev := func(v string, rev uint64) lincheck.Op { op := read(v, true); op.Revision = rev; return op }
	if err := checkLastWrites([]lincheck.Op{putRev(0, "a", 4, 0, 10), readRev("a", 4)}, final); err != nil {
		t.Fatalf("same revision, yet: %v", err)
	}
	if err := checkLastWrites([]lincheck.Op{putRev(0, "a", 4, 0, 10), readRev("a", 5)}, final); err == nil {
		t.Fatal("final read showing another revision than the last put's passed")
	}
	// A write refused for its condition wrote nothing, and is no write.
	refused := put(1, "b", 20, 30)
	refused.Refused, refused.Cond = true, lincheck.Cond{Kind: lincheck.IfNoneMatch}
	if err := checkLastWrites([]lincheck.Op{put(0, "a", 0, 10), refused, read("a", true)}, final); err != nil {
		t.Fatalf("a refused write, yet: %v", err)
	}
	if err := checkLastWrites([]lincheck.Op{put(0, "a", 0, 10), refused, read("b", true)}, final); err == nil {
		t.Fatal("the value of a refused write read last passed")
	}
	// An unknown write may land after the last acknowledged one: no verdict.
	unknown := []lincheck.Op{put(0, "a", 0, 10), put(1, "b", 5, lincheck.Infinity), read("b", true)}
	if err := checkLastWrites(unknown, final); err != nil {
		t.Fatalf("unknown write, yet: %v", err)
	}
}

func TestRobustnessSerializableCheckCatchesUnwrittenValue(t *testing.T) {
	r := &scenario{rec: lincheck.NewRecorder(), attempts: map[string]int64{"c0-1": 5, "c0-2": 6}, attKey: map[string]string{"c0-1": "k", "c0-2": "k"},
		refusedVals: map[string]bool{"c0-2": true}}
	r.serial = []serialRead{{key: "k", value: "c0-1", found: true, ret: 10}, {key: "k", found: false, ret: 3}}
	if err := r.checkSerializable(nil); err != nil {
		t.Fatalf("written value, yet: %v", err)
	}
	for _, bad := range []serialRead{
		{key: "k", value: "never", found: true, ret: 10}, // never written
		{key: "j", value: "c0-1", found: true, ret: 10},  // written to another key
		{key: "k", value: "c0-1", found: true, ret: 4},   // read before the write began
		{key: "k", value: "c0-2", found: true, ret: 10},  // its conditional PUT was refused (412)
	} {
		r.serial = []serialRead{bad}
		if err := r.checkSerializable(nil); err == nil {
			t.Fatalf("%+v passed", bad)
		}
	}
}

func TestRobustnessCheck1CatchesSharedRevisionsAndAnswersAgainstTheContract(t *testing.T) {
	r := &scenario{rec: lincheck.NewRecorder()}
	twice := []lincheck.Op{
		{Kind: lincheck.Put, Key: "k", Value: "a", Found: true, Revision: 3, Call: 0, Return: 10},
		{Kind: lincheck.Put, Key: "j", Value: "b", Found: true, Revision: 3, Call: 11, Return: 20},
	}
	if err := r.checkSerializable(twice); err == nil {
		t.Fatal("two puts with one revision passed")
	}
	r.oddity("PUT /k: 204 without ETag")
	if err := r.checkSerializable(nil); err == nil || !strings.Contains(err.Error(), "without ETag") {
		t.Fatalf("an answer against the contract: got %v", err)
	}
}
