package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/notify"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

func TestCommandEncodingRoundTrips(t *testing.T) {
	long := strings.Repeat("k", 100000)
	cases := map[string]command{
		"plain":              {op: opPut, id: 1, key: "key", value: "value"},
		"empty value":        {op: opPut, id: 2, key: "key", value: ""},
		"id zero":            {op: opPut, id: 0, key: "k", value: "v"},
		"largest id":         {op: opPut, id: math.MaxUint64, key: "k", value: "v"},
		"binary key":         {op: opPut, id: 3, key: "\x00\xff\x80key\n", value: "v"},
		"binary value":       {op: opPut, id: 4, key: "k", value: "\x00\x01\x02\xfe\xff\x00"},
		"long key and value": {op: opPut, id: 5, key: long, value: long + "v"},
		"key of 128 bytes":   {op: opPut, id: 6, key: strings.Repeat("x", 128), value: "two-byte length"},
		"if the revision":    {op: opPut, origin: 3, id: 7, base: 9, cond: condition{kind: condModRevision, modRevision: 1 << 50}, key: "k", value: "v"},
		"if revision 0":      {op: opPut, id: 8, cond: condition{kind: condModRevision}, key: "k", value: "v"},
		"if it exists":       {op: opDelete, id: 9, cond: condition{kind: condExists}, key: "k"},
		"if it is absent":    {op: opPut, id: 10, cond: condition{kind: condAbsent}, key: "k", value: "v"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := decodeCommand(encodeCommand(c))
			if err != nil {
				t.Fatalf("decodeCommand(encodeCommand(%+.40v)) failed: %v", c, err)
			}
			if got != c {
				t.Fatalf("round trip changed the command: got %+.60v, want %+.60v", got, c)
			}
		})
	}
}

func TestDecodeCommandRejectsMalformedInput(t *testing.T) {
	valid := encodeCommand(command{op: opPut, id: 300, key: "key", value: "value"})
	cases := map[string][]byte{
		"nil":                       nil,
		"empty":                     {},
		"op zero":                   append([]byte{0}, valid[1:]...),
		"unknown op":                append([]byte{opDelete + 1}, valid[1:]...),
		"delete with a value":       append([]byte{opDelete}, valid[1:]...),
		"op only":                   {opPut},
		"id cut in its varint":      {opPut, 0x80},
		"id varint overflows":       append([]byte{opPut}, bytes.Repeat([]byte{0xff}, 11)...),
		"no key length":             {opPut, 7},
		"key length cut":            {opPut, 7, 0x80},
		"key longer than the input": {opPut, 7, 4, 'a', 'b', 'c'},
		"key length overflows":      append([]byte{opPut, 7}, bytes.Repeat([]byte{0xff}, 11)...),
		"no condition":              {opPut, 1, 1, 1},
		"unknown condition":         {opPut, 1, 1, 1, condAbsent + 1, 1, 'k'},
		"condition revision cut":    {opPut, 1, 1, 1, condModRevision, 0x80},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := decodeCommand(data); err == nil {
				t.Fatalf("decodeCommand(%q) = %+v, want an error", data, c)
			}
		})
	}
	// Every cut before the end of the key is an error; a cut in the value is
	// just a shorter value.
	headerEnd := len(valid) - len("value")
	for n := range headerEnd {
		if c, err := decodeCommand(valid[:n]); err == nil {
			t.Errorf("decodeCommand of the first %d of %d header bytes = %+v, want an error", n, headerEnd, c)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeCommand(command{op: opPut, id: 1, key: "k", value: "v"}))
	f.Add(encodeCommand(command{op: opPut, id: math.MaxUint64, key: "", value: ""}))
	f.Add([]byte{opPut, 0x80, 0x00, 0x01, 'k'}) // a non-minimal id varint
	f.Add([]byte{})
	f.Add([]byte{opDelete, 1, 1, 'k'})
	f.Add([]byte{opDelete + 1, 1, 1, 'k'})
	f.Add([]byte{opPutNamed, 1, 2, 3, 1, 'k', 'v'})
	f.Add([]byte{opPutAnonymous, 2, 1, 'k', 'v'})
	f.Add(encodeCommand(command{op: opPut, origin: 1, id: 2, base: 3, cond: condition{kind: condModRevision, modRevision: 300}, key: "k", value: "v"}))
	f.Add(encodeCommand(command{op: opPut, origin: 1, id: 2, ttl: time.Minute, key: "k", value: "v"}))
	f.Add(encodeCommand(command{op: opDelete, expiry: true, cond: condition{kind: condModRevision, modRevision: 1}, key: "k"}))
	f.Add(encodeCommand(txnOf([]txnCompare{{field: cmpValue, key: "k", value: "v"}, {field: cmpExists, key: "b", number: 1}},
		[]txnOp{{kind: txnPut, key: "k", value: "w", ttl: time.Hour}, {kind: txnGet, key: "k"}}, []txnOp{{kind: txnDelete, key: "k"}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			return
		}
		if c.op != opPut && c.op != opDelete && c.op != opTxn {
			t.Fatalf("decodeCommand accepted op %d", c.op)
		}
		again, err := decodeCommand(encodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoding accepted command %+v does not decode: %v", c, err)
		}
		c.legacy = false // commands are encoded in the current format only
		if c.txn != nil && fmt.Sprint(*c.txn) != fmt.Sprint(*again.txn) {
			t.Fatalf("round trip of %+v gave %+v", *c.txn, *again.txn)
		}
		c.txn, again.txn = nil, nil
		if again != c {
			t.Fatalf("round trip of %+v gave %+v", c, again)
		}
		// Whatever decodes applies, without a panic, leaving a digest that
		// matches the pairs.
		s := kvTestStore(t)
		var out appliedCommit
		s.mu.Lock()
		s.apply(encodeCommand(command{op: opPut, origin: 9, id: 1, key: "k", value: "v"}), &out)
		s.apply(data, &out)
		s.mu.Unlock()
		var digest uint64
		for _, p := range s.List("", "", maxListLimit, 1<<30).Pairs {
			digest += pairDigest(p.Key, storedValue{value: p.Value, meta: p.Meta})
		}
		if st := s.State(); digest != st.digest {
			t.Fatalf("digest %x, pairs sum to %x", st.digest, digest)
		}
	})
}

func FuzzCommandRoundTrip(f *testing.F) {
	f.Add(uint64(1), "k", "v")
	f.Add(uint64(0), "", "")
	f.Add(uint64(math.MaxUint64), "\x00\xff", "\xff\x00")
	f.Fuzz(func(t *testing.T, id uint64, key, value string) {
		c := command{op: opPut, id: id, key: key, value: value}
		got, err := decodeCommand(encodeCommand(c))
		if err != nil || got != c {
			t.Fatalf("round trip of %+v gave %+v, %v", c, got, err)
		}
	})
}

func kvTestStore(t *testing.T) *kvstore {
	t.Helper()
	return newKVStore(zap.NewNop())
}

// kvTestService is a service whose raft node is node; the fake node stops
// (ending the service's goroutines) when the test ends.
func kvTestService(t *testing.T, node *kvFakeNode) *service {
	t.Helper()
	s := newService(zap.NewNop(), kvTestStore(t), newWatchHub(100, 1<<20))
	s.attach(node)
	t.Cleanup(node.stop)
	return s
}

// kvContents is the store's state as readers see it, pending changes included.
func kvContents(s *kvstore) map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := valuesOf(s.kv)
	for k, p := range s.pending {
		if p.deleted {
			delete(out, k)
		} else {
			out[k] = p.value
		}
	}
	return out
}

// valuesOf is the values of kv, without their revisions.
func valuesOf(kv map[string]storedValue) map[string]string {
	out := make(map[string]string, len(kv))
	for k, v := range kv {
		out[k] = v.value
	}
	return out
}

// withValues is kv as the store holds it, without revisions.
func withValues(kv map[string]string) map[string]storedValue {
	out := make(map[string]storedValue, len(kv))
	for k, v := range kv {
		out[k] = storedValue{value: v}
	}
	return out
}

// pairsDigest is the digest of the pairs readers see, computed afresh.
func (s *kvstore) pairsDigest() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var d uint64
	for k, v := range s.kv {
		if p, ok := s.pending[k]; ok {
			if !p.deleted {
				d += pairDigest(k, p.storedValue)
			}
			continue
		}
		d += pairDigest(k, v)
	}
	for k, p := range s.pending {
		if _, ok := s.kv[k]; !ok && !p.deleted {
			d += pairDigest(k, p.storedValue)
		}
	}
	return d
}

func TestApplySkipsUndecodableEntriesWithoutChangingTheMap(t *testing.T) {
	s := kvTestStore(t)
	s.applyOne(encodeCommand(command{op: opPut, id: 1, key: "a", value: "1"}))
	want := map[string]string{"a": "1"}
	for _, bad := range [][]byte{nil, {}, {9, 1, 1, 'a', 'X'}, {opPut}, {opPut, 1, 5, 'a'}} {
		s.applyOne(bad)
		if got := kvContents(s); !maps.Equal(got, want) {
			t.Fatalf("after applying undecodable %q the map is %v, want %v", bad, got, want)
		}
	}
	s.applyOne(encodeCommand(command{op: opPut, id: 2, key: "a", value: "2"}))
	if v, _ := s.value("a"); v != "2" {
		t.Fatalf("a valid entry after the bad ones was not applied: a=%q", v)
	}
}

func TestApplyCommitReportsTheNamesOfTheCommandsItApplied(t *testing.T) {
	s := kvTestStore(t)
	var out appliedCommit
	err := s.applyCommit(commit{index: 3, entries: [][]byte{
		encodeCommand(command{op: opPut, origin: 7, id: 42, key: "k", value: "v"}),
		{9, 9}, // undecodable: skipped, no name
		encodeCommand(command{op: opPut, key: "anonymous", value: "v"}), // applied, no name
		encodeBatch([][]byte{encodeCommand(command{op: opDelete, origin: 7, id: 43, key: "k"}), encodeCommand(command{op: opPut, origin: 8, id: 44, key: "j", value: "w"})}),
	}}, &out)
	var names []proposalName
	for _, o := range out.outcomes {
		names = append(names, o.name)
	}
	if want := []proposalName{{7, 42}, {7, 43}, {8, 44}}; err != nil || !slices.Equal(names, want) {
		t.Fatalf("applyCommit = %v, %v; want %v", names, err, want)
	}
	if st := s.State(); st.index != 3 || st.keys != 2 {
		t.Fatalf("State after the commit: index %d keys %d, want 3 and 2", st.index, st.keys)
	}
}

func TestRunAppliesSnapshotThenEntriesAndReportsEachProposal(t *testing.T) {
	src := kvTestStore(t)
	src.applyOne(encodeCommand(command{op: opPut, id: 1, key: "from-snapshot", value: "s"}))
	src.applyOne(encodeCommand(command{op: opPut, id: 2, key: "overwritten", value: "old"}))
	snap := src.snapshotBytes()

	svc := kvTestService(t, &kvFakeNode{done: make(chan struct{})})
	s := svc.store
	s.applyOne(encodeCommand(command{op: opPut, id: 3, key: "dropped-by-snapshot", value: "x"}))
	mine, data := svc.pending.add(command{op: opPut, key: "overwritten", value: "new"}, 4)
	other, _ := svc.pending.add(command{op: opPut, key: "never", value: "proposed"}, 99)
	applied := svc.applied.Wait(2)
	commitC := make(chan commit, 2)
	commitC <- commit{snapshot: io.NopCloser(bytes.NewReader(snap)), snapshotSize: int64(len(snap)), index: 1, entries: [][]byte{data}}
	// Another member's proposal 99 is not ours.
	commitC <- commit{entries: [][]byte{encodeCommand(command{op: opPut, origin: 2, id: 99, key: "later", value: "l"})}, index: 2}
	close(commitC)
	if err := svc.run(commitC); err != nil {
		t.Fatalf("run: %v", err)
	}
	select {
	case <-mine.applied:
	default:
		t.Error("applying proposal 4 did not report to its waiter")
	}
	select {
	case <-other.applied:
		t.Error("the waiter of proposal 99 heard back from another member's proposal 99")
	default:
	}
	select {
	case <-applied:
	default:
		t.Error("a wait for index 2 did not end when index 2 was applied")
	}
	want := map[string]string{"from-snapshot": "s", "overwritten": "new", "later": "l"}
	if got := kvContents(s); !maps.Equal(got, want) {
		t.Fatalf("map after run = %v, want %v", got, want)
	}
}

func TestRunFailsOnAnUndecodableSnapshot(t *testing.T) {
	svc := kvTestService(t, &kvFakeNode{done: make(chan struct{})})
	commitC := make(chan commit, 1)
	commitC <- commit{snapshot: io.NopCloser(bytes.NewReader([]byte{5})), snapshotSize: 1}
	close(commitC)
	if err := svc.run(commitC); err == nil {
		t.Fatal("run accepted a snapshot claiming 5 pairs and holding none")
	}
}

func TestSnapshotRestoreRoundTrips(t *testing.T) {
	cases := map[string]map[string]string{
		"empty store": {},
		"one pair":    {"k": "v"},
		"binary and empty values": {
			"bin":            "\x00\x01\xff\xfe",
			"\x00key\xff":    "v",
			"empty":          "",
			"":               "empty key",
			"long":           strings.Repeat("v", 70000),
			"unicode-ключ-键": "значение",
		},
	}
	for name, kv := range cases {
		t.Run(name, func(t *testing.T) {
			src := kvTestStore(t)
			src.kv = withValues(kv)
			data := src.snapshotBytes()

			dst := kvTestStore(t)
			dst.kv["stale"] = storedValue{value: "must disappear"}
			if err := dst.restoreAll(data); err != nil {
				t.Fatalf("restore: %v", err)
			}
			if got := kvContents(dst); !maps.Equal(got, kv) {
				t.Fatalf("restored %d pairs %.200v, want %d pairs", len(got), got, len(kv))
			}
		})
	}
}

func TestRestoreRejectsTruncatedOrTrailingDataAndKeepsTheMap(t *testing.T) {
	src := kvTestStore(t)
	src.kv = withValues(map[string]string{"a": "1", "bb": "22", "ccc": ""})
	data := src.snapshotBytes()
	before := map[string]string{"keep": "me"}

	check := func(what string, bad []byte) {
		t.Helper()
		s := kvTestStore(t)
		s.kv = withValues(before)
		if err := s.restoreAll(bad); err == nil {
			t.Errorf("restore of %s (%q) succeeded, want an error", what, bad)
		}
		if got := kvContents(s); !maps.Equal(got, before) {
			t.Errorf("failed restore of %s changed the map to %v", what, got)
		}
	}
	for n := range len(data) {
		check(fmt.Sprintf("the first %d of %d bytes", n, len(data)), data[:n])
	}
	check("trailing data", append(append([]byte(nil), data...), 'x'))
	check("a count larger than the pairs", append(binary.AppendUvarint(nil, 4), data[1:]...))
	check("a string length past the end", []byte{1, 200, 'a'})
}

// A snapshot whose header claims a huge number of pairs, but that holds none,
// must be refused without first allocating room for all of them.
func TestRestoreOfAHugePairCountFailsWithoutAllocatingForIt(t *testing.T) {
	data := binary.AppendUvarint(nil, 1<<20) // three bytes claiming a million pairs
	s := kvTestStore(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := s.restoreAll(data)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("restore accepted a count with no pairs")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("restore of a %d-byte snapshot allocated %d bytes before failing: it trusts the pair count", len(data), alloc)
	}
}

func TestSnapshotDataEncodingRoundTrips(t *testing.T) {
	for _, members := range [][]byte{nil, []byte(`{"members":[]}`), []byte(`{"members":[{"id":1,"peerURL":"http://127.0.0.1:1"}],"removed":[2]}`)} {
		got, inline, err := decodeSnapshotData(encodeSnapshotData(members))
		if err != nil {
			t.Fatalf("decode(encode(%q)): %v", members, err)
		}
		if !bytes.Equal(got, members) || inline != nil {
			t.Fatalf("round trip gave (%q, %q), want (%q, nil)", got, inline, members)
		}
	}
}

// Data directories written before the kvstore's state moved to a file of its
// own hold format 1 snapshots, with the state inline.
func TestDecodeSnapshotDataReadsTheInlineFormat(t *testing.T) {
	members, kv := []byte(`{"members":[]}`), []byte{1, 1, 'k', 1, 'v'}
	data := append(binary.AppendUvarint([]byte{snapshotFormatInline}, uint64(len(members))), members...)
	data = append(data, kv...)
	gotMembers, gotKV, err := decodeSnapshotData(data)
	if err != nil || !bytes.Equal(gotMembers, members) || !bytes.Equal(gotKV, kv) {
		t.Fatalf("decodeSnapshotData(format 1) = (%q, %q, %v), want (%q, %q, nil)", gotMembers, gotKV, err, members, kv)
	}
}

func TestDecodeSnapshotDataRejectsUnknownOrCorruptData(t *testing.T) {
	cases := map[string][]byte{
		"nil":                                   nil,
		"empty":                                 {},
		"format zero":                           {0, '{', '}'},
		"format three":                          {snapshotFormat + 1, '{', '}'},
		"format 1 with no member length":        {snapshotFormatInline},
		"format 1 member length cut":            {snapshotFormatInline, 0x80},
		"format 1 member list longer than data": {snapshotFormatInline, 10, 'a', 'b'},
		"format 1 member length overflows varint": append([]byte{snapshotFormatInline}, bytes.Repeat([]byte{0xff}, 11)...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if m, kv, err := decodeSnapshotData(data); err == nil {
				t.Fatalf("decodeSnapshotData(%q) = (%q, %q), want an error", data, m, kv)
			}
		})
	}
}

// kvFakeNode stands in for the raft node in the service's unit tests: only
// what they use is implemented.
type kvFakeNode struct {
	consensus
	propose func(ctx context.Context, data []byte) error
	done    chan struct{}
	once    sync.Once
	leader  uint64
	moved   *notify.Notifier // nil: the leader never changes
}

func (p *kvFakeNode) stop() { p.once.Do(func() { close(p.done) }) }

func (p *kvFakeNode) Propose(ctx context.Context, data []byte) error { return p.propose(ctx, data) }
func (p *kvFakeNode) Done() <-chan struct{}                          { return p.done }
func (p *kvFakeNode) self() uint64                                   { return 1 }
func (p *kvFakeNode) Leader() uint64                                 { return p.leader }

// Status says this node is a follower: the fake proposes no expiries.
func (p *kvFakeNode) Status() raftStatus {
	return raftStatus{ID: 1, State: "follower", Leader: p.leader}
}
func (p *kvFakeNode) leaderChanges() <-chan struct{} {
	if p.moved == nil {
		return nil
	}
	return p.moved.Receive()
}

// applyOne applies one command under the lock, as applyCommit does, and
// reports its name and whether it was applied (an anonymous one: whether it
// decoded).
func (s *kvstore) applyOne(data []byte) (name proposalName, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out appliedCommit
	s.apply(data, &out)
	if len(out.outcomes) > 0 {
		return out.outcomes[0].name, true
	}
	cmd, err := decodeCommand(data)
	return proposalName{}, err == nil && cmd.origin == 0
}

// applyAndReport applies one entry and reports to its proposals' waiters,
// as run does.
func (s *service) applyAndReport(data []byte) {
	s.store.mu.Lock()
	var out appliedCommit
	s.store.applyEntry(data, &out)
	s.store.mu.Unlock()
	s.pending.complete(out.outcomes)
	s.pending.publish(s.store.ProposalClock())
}

// restoreAll replaces the map with a snapshot's, as run does.
func (s *kvstore) restoreAll(data []byte) error {
	d, err := decodeKVSnapshot(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaceLocked(d)
	return nil
}

// snapshotBytes is the store's snapshot, written out.
func (s *kvstore) snapshotBytes() []byte {
	f := s.freeze()
	defer f.Release()
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	return b.Bytes()
}

func TestPutReportsTheOutcomeOfItsProposal(t *testing.T) {
	var s *service
	cases := []struct {
		name    string
		propose func(ctx context.Context, data []byte) error
		stop    bool
		timeout time.Duration
		want    error
	}{
		{name: "applied", want: nil, propose: func(_ context.Context, data []byte) error {
			s.applyAndReport(data) // commits at once
			return nil
		}},
		{name: "dropped for want of a leader", want: errNoLeader, timeout: 50 * time.Millisecond, propose: func(context.Context, []byte) error { return raft.ErrProposalDropped }},
		{name: "raft stopped", want: errStopped, propose: func(context.Context, []byte) error { return raft.ErrStopped }},
		{name: "node stopped while waiting", want: errStopped, stop: true, propose: func(context.Context, []byte) error { return nil }},
		{name: "timed out while waiting", want: errOutcomeUnknown, timeout: 50 * time.Millisecond, propose: func(context.Context, []byte) error { return nil }},
		{name: "timed out while proposing", want: errOutcomeUnknown, timeout: 50 * time.Millisecond, propose: func(ctx context.Context, _ []byte) error {
			<-ctx.Done()
			return ctx.Err()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &kvFakeNode{propose: tc.propose, done: make(chan struct{})}
			if tc.stop {
				p.stop()
			}
			s = kvTestService(t, p)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			err := s.put(ctx, "k", "v")
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Put = %v, want %v", err, tc.want)
			}
			v, ok := s.store.value("k")
			if (tc.want == nil) != ok || (ok && v != "v") {
				t.Fatalf("after Put returned %v, Lookup(k) = %q, %v", err, v, ok)
			}
			s.pending.mu.Lock()
			defer s.pending.mu.Unlock()
			if n := len(s.pending.byID); n != 0 {
				t.Fatalf("%d commands still pending after Put returned", n)
			}
		})
	}
}

// DataBytes, which sizes the soft memory limit, follows puts, overwrites,
// deletes (also while frozen for a snapshot) and a restored snapshot.
func TestDataBytesFollowsTheMap(t *testing.T) {
	s := kvTestStore(t)
	s.applyOne(encodeCommand(command{op: opPut, id: 1, key: "a", value: "1234"})) // 5
	s.applyOne(encodeCommand(command{op: opPut, id: 2, key: "bb", value: "12"}))  // 4
	s.applyOne(encodeCommand(command{op: opPut, id: 3, key: "a", value: "12"}))   // 5 -> 3
	s.applyOne(encodeCommand(command{op: opDelete, id: 4, key: "missing"}))       // nothing
	if got := s.DataBytes(); got != 7 {
		t.Fatalf("DataBytes = %d, want 7", got)
	}
	f := s.freeze()
	s.applyOne(encodeCommand(command{op: opDelete, id: 5, key: "bb"}))
	s.applyOne(encodeCommand(command{op: opPut, id: 6, key: "c", value: "xyz"})) // 4
	if got := s.DataBytes(); got != 7 {
		t.Fatalf("DataBytes while frozen = %d, want 7", got)
	}
	f.Release()
	data := s.snapshotBytes()
	other := kvTestStore(t)
	if err := other.restoreAll(data); err != nil {
		t.Fatal(err)
	}
	if got := other.DataBytes(); got != 7 {
		t.Fatalf("DataBytes after restoring the snapshot = %d, want 7", got)
	}
}

// A frozen map is written out as it was when frozen, while entries applied
// meanwhile are visible to reads at once and are all there after Release.
func TestFrozenMapIsWrittenAsOfFreezeWhileAppliesGoOn(t *testing.T) {
	s := kvTestStore(t)
	for i, k := range []string{"a", "b", "c"} {
		s.applyOne(encodeCommand(command{op: opPut, id: uint64(i), key: k, value: "old-" + k}))
	}
	atFreeze := kvContents(s)
	f := s.freeze()
	s.applyOne(encodeCommand(command{op: opPut, id: 10, key: "a", value: "new-a"}))
	s.applyOne(encodeCommand(command{op: opDelete, id: 11, key: "b"}))
	s.applyOne(encodeCommand(command{op: opPut, id: 12, key: "d", value: "new-d"}))
	s.applyOne(encodeCommand(command{op: opDelete, id: 13, key: "d"}))
	s.applyOne(encodeCommand(command{op: opPut, id: 14, key: "e", value: "new-e"}))
	want := map[string]string{"a": "new-a", "c": "old-c", "e": "new-e"}

	for k, v := range map[string]string{"a": "new-a", "c": "old-c", "e": "new-e"} {
		if got, ok := s.value(k); !ok || got != v {
			t.Errorf("while frozen, Get(%s) = %q, %v; want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"b", "d"} {
		if got, ok := s.value(k); ok {
			t.Errorf("while frozen, Get(%s) = %q; want not found", k, got)
		}
	}
	page := s.List("", "", 10, 1<<20)
	var list []string
	for _, p := range page.Pairs {
		list = append(list, p.Key+"="+p.Value)
	}
	if fmt.Sprint(list) != "[a=new-a c=old-c e=new-e]" || page.Next != "" {
		t.Errorf("while frozen, List = %+v", page)
	}
	if st := s.State(); st.keys != 3 || st.digest != s.pairsDigest() {
		t.Errorf("while frozen, State keys %d digest %x, want those of %v", st.keys, st.digest, want)
	}

	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	written, err := decodeKVSnapshot(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(valuesOf(written.kv), atFreeze) {
		t.Fatalf("frozen map written as %v, want the state at freeze %v", written.kv, atFreeze)
	}
	f.Release()
	if got := kvContents(s); !maps.Equal(got, want) || s.pending != nil {
		t.Fatalf("after Release the map is %v (pending %v), want %v", got, s.pending, want)
	}
}

// Flipping any bit of a snapshot, or cutting it short, makes decoding fail.
func TestDamagedKVSnapshotIsRefused(t *testing.T) {
	s := kvTestStore(t)
	s.applyOne(encodeCommand(command{op: opPut, id: 1, key: "key", value: "value"}))
	data := s.snapshotBytes()
	for i := range data {
		for bit := range 8 {
			bad := bytes.Clone(data)
			bad[i] ^= 1 << bit
			if d, err := decodeKVSnapshot(bytes.NewReader(bad), int64(len(bad))); err == nil {
				t.Fatalf("flipping bit %d of byte %d decoded as %v", bit, i, d.kv)
			}
		}
	}
}
