package e2e

// The robustness checks must be able to fail: fed bad data, each reports it.

import (
	"fmt"
	"net/http"
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

// A watch run that holds: watcher A sees revisions 1-4 over two streams, B
// over one, then a 410 and a re-list at 6 (5 happened unseen by B), then 7.
func goodWatchRun() ([]*watchLog, []lincheck.Op, watchAttempts, *watchListing) {
	prog := func(id uint64) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "progress", Revision: id, Data: fmt.Sprintf(`{"revision":%d}`, id)}, at: 100}
	}
	put := func(id uint64, k, v string, create, version uint64) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "put", Key: k, Value: v, Revision: id, CreateRevision: create, ModRevision: id, Version: version,
			Data: fmt.Sprintf(`{"key":%q,"value":%q,"revision":%d}`, k, v, id)}, at: 100}
	}
	del := func(id uint64, k string) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "delete", Key: k, Revision: id, Data: fmt.Sprintf(`{"key":%q,"revision":%d}`, k, id)}, at: 100}
	}
	a := &watchLog{name: "watcher A", streams: []watchStream{
		{node: 1, after: 0, first: true, frames: []watchFrame{prog(0), put(1, "k", "a", 1, 1), put(2, "k", "b", 1, 2), del(3, "k")}},
		{node: 2, after: 3, frames: []watchFrame{prog(3), put(4, "j", "c", 4, 1), put(5, "k", "d", 5, 1), prog(5)}},
		{node: 1, after: 5, frames: []watchFrame{prog(5), put(6, "k", "e", 5, 2), put(7, "j", "f", 4, 2)}},
	}}
	b := &watchLog{name: "watcher B", streams: []watchStream{
		{node: 2, after: 0, first: true, frames: []watchFrame{prog(0), put(1, "k", "a", 1, 1), put(2, "k", "b", 1, 2), del(3, "k"), put(4, "j", "c", 4, 1)}},
		{node: 3, after: 6, base: &watchListing{rev: 6, items: map[string]watchKV{"j": {"c", 4, 4, 1}, "k": {"e", 5, 6, 2}}},
			frames: []watchFrame{prog(6), put(7, "j", "f", 4, 2)}},
	}}
	// A replay of a member's history from its oldest revision, 5.
	c := &watchLog{name: "replay of node 3", streams: []watchStream{
		{node: 3, after: 4, blind: true, frames: []watchFrame{prog(4), put(5, "k", "d", 5, 1), put(6, "k", "e", 5, 2), put(7, "j", "f", 4, 2)}},
	}}
	op := func(kind lincheck.Kind, k, v string, rev uint64) lincheck.Op {
		return lincheck.Op{Kind: kind, Key: k, Value: v, Found: kind != lincheck.Delete, Revision: rev, Call: 10, Return: 20}
	}
	cdel := op(lincheck.Delete, "k", "", 3)
	cdel.Cond = lincheck.Cond{Kind: lincheck.IfMatch, Rev: 2}
	refused := op(lincheck.Put, "k", "x", 2)
	refused.Refused, refused.Cond = true, lincheck.Cond{Kind: lincheck.IfMatch, Rev: 1}
	unknown := op(lincheck.Put, "j", "y", 0)
	unknown.Return = lincheck.Infinity
	history := []lincheck.Op{
		op(lincheck.Put, "k", "a", 1), op(lincheck.Put, "k", "b", 2), cdel, refused, op(lincheck.Put, "j", "c", 4),
		op(lincheck.Get, "j", "c", 4), op(lincheck.Delete, "j", "", 3) /* a delete of missing j answering 3 */, op(lincheck.Put, "k", "d", 5),
		op(lincheck.Put, "k", "e", 6), op(lincheck.Put, "j", "f", 7), unknown,
	}
	att := watchAttempts{
		attempts: map[string]int64{"a": 10, "b": 10, "c": 10, "d": 10, "e": 10, "f": 10, "x": 10, "y": 10},
		attKey:   map[string]string{"a": "k", "b": "k", "c": "j", "d": "k", "e": "k", "f": "j", "x": "k", "y": "j"},
		refused:  map[string]bool{"x": true},
		deletes:  map[string]int64{"k": 10, "j": 10},
	}
	final := &watchListing{rev: 7, items: map[string]watchKV{"j": {"f", 4, 7, 2}, "k": {"e", 5, 6, 2}}}
	return []*watchLog{a, b, c}, history, att, final
}

func TestRobustnessWatchCheckPassesAGoodRun(t *testing.T) {
	logs, history, att, final := goodWatchRun()
	stats, err := checkWatches(logs, history, att, final)
	if err != nil {
		t.Fatalf("a good run, yet: %v", err)
	}
	t.Log(stats)
	for _, want := range []string{"watcher A 7 events in 1 segments", "watcher B 5 events in 2 segments [[0 4] [6 7]]", "replay of node 3 3 events in 1 segments [[4 7]]", "9 revisions seen by both"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats %q lack %q", stats, want)
		}
	}
}

func TestRobustnessWatchChecksCatchDoctoredStreams(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		doctor     func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing)
	}{
		{"events out of order", "out of order", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			f := a.streams[0].frames
			f[1], f[2] = f[2], f[1]
		}},
		{"an event delivered twice", "duplicate", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[0].frames = append(a.streams[0].frames, a.streams[0].frames[3])
		}},
		{"an event delivered again after a resume", "duplicate", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			s := &a.streams[1]
			s.frames = append([]watchFrame{s.frames[0], a.streams[0].frames[3]}, s.frames[1:]...)
		}},
		{"an event missing", "gap", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			f := a.streams[0].frames
			a.streams[0].frames = append(f[:2:2], f[3:]...)
		}},
		{"an event missing after a resume", "gap", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[1].frames = append(a.streams[1].frames[:1:1], a.streams[1].frames[2:]...)
		}},
		{"progress past what was delivered", "never delivered", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			p := a.streams[1].frames[3]
			p.ID, p.Revision = 6, 6
			a.streams[1].frames[3] = p
		}},
		{"progress going back", "progress back", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			p := a.streams[1].frames[3]
			p.ID, p.Revision = 4, 4
			a.streams[1].frames[3] = p
		}},
		{"a resumed stream not starting with progress at Last-Event-ID", "first frame", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[1].frames = a.streams[1].frames[1:]
		}},
		{"an event id other than its revision", "data revision", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[0].frames[1].Revision = 9
		}},
		{"a value no PUT tried", "no PUT tried", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			delete(att.attempts, "c")
		}},
		{"a value tried on another key", "no PUT tried", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			att.attKey["c"] = "k"
		}},
		{"a value whose PUT was refused", "refused (412)", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			att.refused["b"] = true
		}},
		{"a value delivered before its PUT was sent", "before its PUT was sent", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			att.attempts["a"] = 200
		}},
		{"a delete no DELETE tried", "no DELETE tried", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			delete(att.deletes, "k")
		}},
		{"one PUT applied twice", "took effect twice", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			for _, w := range []*watchLog{a, b} {
				s := &w.streams[len(w.streams)-1]
				f := s.frames[len(s.frames)-1]
				f.ID, f.Revision, f.ModRevision, f.Version, f.Value = 8, 8, 8, 3, "f"
				s.frames = append(s.frames, f)
			}
			(*final).rev, (*final).items["j"] = 8, watchKV{"f", 4, 8, 3}
		}},
		{"an acknowledged put not delivered at its revision", "not put j=\"c\"", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*h)[4].Revision = 5
		}},
		{"an acknowledged conditional delete not delivered", "not delete of k", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*h)[2].Revision = 2
		}},
		{"a get's ETag another put's revision", "not put j=\"c\"", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*h)[5].Revision = 7
		}},
		{"a 412's ETag a revision that put another key", "not put of k", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*h)[3].Revision = 4
		}},
		{"a delete of a missing key answering a revision where it existed", "left it absent", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*h)[6].Revision = 4
		}},
		{"the watchers disagree", "B saw", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			b.streams[0].frames[4].Value = "d"
			att.attKey["d"] = "j"
		}},
		{"a replay that disagrees", "node 3 saw", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			c.streams[0].frames[2].Version = 7
		}},
		{"a replay with a gap", "gap", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			f := c.streams[0].frames
			c.streams[0].frames = append(f[:2:2], f[3:]...)
		}},
		{"a version that does not follow from the events", "replayed from the events", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[0].frames[2].Version = 1
		}},
		{"a delete of a key that does not exist", "does not exist", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[1].frames[1] = watchFrame{WatchEvent: tc.WatchEvent{ID: 4, Type: "delete", Key: "j", Revision: 4}, at: 100}
		}},
		{"events that replay to another state than the final listing", "another state than the final listing", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			(*final).items["k"] = watchKV{"d", 5, 5, 1}
		}},
		{"a watcher short of the final listing", "ended at 6", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			s := &a.streams[2]
			s.frames = s.frames[:2]
		}},
		{"an unknown event type", "unknown event type", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			a.streams[0].frames[1].Type = "expire"
		}},
		{"a watcher that never opened a stream", "no stream", func(a, b, c *watchLog, h *[]lincheck.Op, att *watchAttempts, final **watchListing) {
			b.streams = nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs, history, att, final := goodWatchRun()
			tt.doctor(logs[0], logs[1], logs[2], &history, &att, &final)
			_, err := checkWatches(logs, history, att, final)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestRobustnessClientsRefuseMalformedRevisionHeaders(t *testing.T) {
	for tag, want := range map[string]uint64{`"17"`: 17, `"1"`: 1} {
		if rev, ok, err := etag(http.Header{"Etag": {tag}}); err != nil || !ok || rev != want {
			t.Errorf("ETag %s: %d %v %v", tag, rev, ok, err)
		}
	}
	if _, ok, err := etag(http.Header{}); ok || err != nil {
		t.Errorf("no ETag: %v %v", ok, err)
	}
	for _, tag := range []string{`17`, `W/"17"`, `"17", "18"`, `""`, `"0"`, `"-1"`, `"x"`, `"18446744073709551616"`} {
		if _, _, err := etag(http.Header{"Etag": {tag}}); err == nil {
			t.Errorf("ETag %s passed", tag)
		}
	}
	if _, err := xRevision(http.Header{}); err == nil {
		t.Error("a missing X-Revision passed")
	}
	if x, err := xRevision(http.Header{"X-Revision": {"0"}}); err != nil || x != 0 {
		t.Errorf("X-Revision 0: %d %v", x, err)
	}
	if _, err := xRevision(http.Header{"X-Revision": {"abc"}}); err == nil {
		t.Error("X-Revision abc passed")
	}
}
