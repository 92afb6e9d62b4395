package main

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// The Ready loop's ordering rules, each checked with fakes for raft, the
// durable log, the transport and the state machine, recording what happens
// in which order.

// readyEvents records the order of what handleReady does.
type readyEvents struct {
	mu     sync.Mutex
	events []string
}

func (r *readyEvents) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// drain records a "publish" for each commit published so far.
func (r *readyEvents) drain(commits chan commit) {
	for len(commits) > 0 {
		<-commits
		r.add("publish")
	}
}

func (r *readyEvents) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

type fakeLog struct {
	ev      *readyEvents
	durable bool // what termAndVoteDurable answers
	commits chan commit
}

// persist records what was published before it, then itself.
func (l *fakeLog) persist(raft.Ready) error {
	l.ev.drain(l.commits)
	l.ev.add("persist")
	return nil
}
func (l *fakeLog) termAndVoteDurable(*raftpb.HardState) bool { return l.durable }
func (l *fakeLog) close() error                              { return nil }

type fakeTransport struct {
	rafthttp.Transporter // only Send is used
	ev                   *readyEvents
}

func (t *fakeTransport) Send(msgs []*raftpb.Message) {
	if len(msgs) > 0 {
		t.ev.add("send")
	}
}

type fakeRaft struct{ raft.Node } // only Advance is used

func (fakeRaft) Advance() {}

// readyTestNode is a raft node of member 1 made of fakes; leader says whether
// it leads. What it publishes on the commit channel is recorded as "publish"
// (see fakeLog.persist and readyEvents.drain).
func readyTestNode(ev *readyEvents, leader, durable bool) (*raftNode, chan commit) {
	commitC := make(chan commit, 16)
	rn := &raftNode{
		cfg:       raftConfig{id: 1},
		lg:        zap.NewNop(),
		node:      fakeRaft{},
		log:       &fakeLog{ev: ev, durable: durable, commits: commitC},
		transport: &fakeTransport{ev: ev},
		view:      &logView{},
		members:   newMembership(),
		hooks:     ipNoService{},
		commitC:   commitC,
		applied:   appliedState{confState: &raftpb.ConfState{}},
		life:      lifecycle{stop: make(chan struct{}), done: make(chan struct{})},
	}
	rn.snaps = newSnapshots(rn.lg, 1<<40, nil) // never due
	rn.lead = newLeadership(rn)
	rn.reads = newReadIndex(rn)
	if leader {
		rn.lead.id.Store(1)
	} else {
		rn.lead.id.Store(2)
	}
	return rn, commitC
}

func readyWith(messages bool, committed bool) raft.Ready {
	rd := raft.Ready{
		HardState: &raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(1)), Commit: new(uint64(1))},
		Entries:   []*raftpb.Entry{{Index: new(uint64(1)), Term: new(uint64(2)), Data: []byte("x")}},
	}
	if messages {
		rd.Messages = []*raftpb.Message{{Type: raftpb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1))}}
	}
	if committed {
		rd.CommittedEntries = rd.Entries
	}
	return rd
}

func TestReadyLoopOrder(t *testing.T) {
	cases := []struct {
		name            string
		leader, durable bool
		want            []string
	}{
		// A follower's messages promise what the Ready writes (a vote, an
		// acknowledged entry): they leave only once it is durable.
		{"a follower persists before it sends", false, true, []string{"persist", "send"}},
		// A leader counts its own entries only once persisted; with its term
		// and vote on disk, its messages may go first.
		{"a leader whose term and vote are on disk sends first", true, true, []string{"send", "persist"}},
		// A leader's messages carry its term: a new term or vote is written
		// first.
		{"a leader with a new term or vote persists first", true, false, []string{"persist", "send"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := &readyEvents{}
			rn, commits := readyTestNode(ev, c.leader, c.durable)
			if err := rn.handleReady(readyWith(true, false)); err != nil {
				t.Fatal(err)
			}
			ev.drain(commits)
			if got := ev.list(); !slices.Equal(got, c.want) {
				t.Fatalf("order %v, want %v", got, c.want)
			}
		})
	}
	t.Run("committed entries are published only once persisted", func(t *testing.T) {
		for _, leader := range []bool{false, true} {
			ev := &readyEvents{}
			rn, commits := readyTestNode(ev, leader, true)
			if err := rn.handleReady(readyWith(false, true)); err != nil {
				t.Fatal(err)
			}
			ev.drain(commits)
			if got := ev.list(); !slices.Equal(got, []string{"persist", "publish"}) {
				t.Fatalf("leader %v: order %v, want persist, then publish", leader, got)
			}
		}
	})
}

// snapFirstWAL is a WAL that checks, when the snapshot record comes, that the
// snapshot's .snap file is on disk already, and records the order of writes.
type snapFirstWAL struct {
	t      *testing.T
	dir    string
	events []string
}

func (w *snapFirstWAL) Save(*raftpb.HardState, []*raftpb.Entry) error {
	w.events = append(w.events, "hard state and entries")
	return nil
}

func (w *snapFirstWAL) SaveSnapshot(e *walpb.Snapshot) error {
	if m, _ := filepath.Glob(filepath.Join(w.dir, "*.snap")); len(m) == 0 {
		w.t.Errorf("the WAL records snapshot %d before its .snap file exists", e.GetIndex())
	}
	w.events = append(w.events, "snapshot record")
	return nil
}

func (w *snapFirstWAL) ReleaseLockTo(uint64) error { return nil }
func (w *snapFirstWAL) Close() error               { return nil }

// A snapshot's file is durable before the WAL records it (a crash between
// leaves an unused file, never a record pointing at nothing), and both come
// before the hard state, whose commit index may point into the snapshot.
func TestSnapshotFileBeforeItsWALRecordBeforeTheHardState(t *testing.T) {
	dir := t.TempDir()
	w := &snapFirstWAL{t: t, dir: dir}
	l := &durableLog{memory: raft.NewMemoryStorage(), disk: &diskStorage{lg: zap.NewNop(), snapdir: dir, wal: w, snapshotter: snap.New(zap.NewNop(), dir)}}
	rd := raft.Ready{
		Snapshot: &raftpb.Snapshot{Data: []byte{snapshotFormat}, Metadata: &raftpb.SnapshotMetadata{
			Index: new(uint64(10)), Term: new(uint64(2)), ConfState: &raftpb.ConfState{Voters: []uint64{1}},
		}},
		HardState: &raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(10))},
	}
	if err := l.persist(rd); err != nil {
		t.Fatal(err)
	}
	if want := []string{"snapshot record", "hard state and entries"}; !slices.Equal(w.events, want) {
		t.Fatalf("WAL writes %v, want %v", w.events, want)
	}
}
