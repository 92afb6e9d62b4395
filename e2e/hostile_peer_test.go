package e2e

// Hostile traffic on the peer port: forged rafthttp requests from anyone
// who can reach a member's --cluster URL. Each must be refused before raft
// sees it (a 4xx answer), and the cluster must come through healthy. The
// requests are crafted with the client in peerclient_test.go.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	tc "raftexample/internal/testcluster"
)

// idOf is n's raft id.
func idOf(n *tc.Node) uint64 { return uint64(n.ID) }

// scene is who does what in the cluster right now, for forging messages
// that look like they belong.
type scene struct {
	leader, follower, other *tc.Node // other: the second follower
	term                    uint64   // the leader's term
	last                    uint64   // the follower's last (= commit) index; the cluster is idle
	members                 []tc.Member
}

func lookAt(t *testing.T, c *tc.Cluster) scene {
	t.Helper()
	leader, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	var followers []*tc.Node
	for _, n := range c.Nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	lst, fst := sts[leader.ID-1], sts[followers[0].ID-1]
	return scene{leader: leader, follower: followers[0], other: followers[1], term: lst.Term, last: fst.Commit, members: fst.Members}
}

// expectSmallTerms checks that no member's term was pushed towards the end
// of the uint64 range: raft overflows there.
func expectSmallTerms(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	sts, err := tc.Statuses(nodes...)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Term >= 1<<32 {
			t.Fatalf("member %d is at term %d (>= 2^32) after the forged heartbeat: %s", st.ID, st.Term, tc.Summary(sts))
		}
	}
}

// ---------------------------------------------------------------------------

// A heartbeat at a term near the end of the uint64 range makes raft adopt it;
// the next election overflows the term to 0. On the code before the fix every
// case is answered 204: at 2^64-1 all three members panic ("term should be
// set when sending MsgPreVote" / "...MsgPreVoteResp", exit 2) and panic again
// at every restart; at the other terms the cluster survives at the forged
// term + 1 (2^63+1, 2^62+2, current + 2^40 + 1).
func TestHeartbeatWithAHugeTermDoesNotKillTheCluster(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for _, tt := range []struct {
		name string
		term func(current uint64) uint64
	}{
		{"2^64-1", func(uint64) uint64 { return math.MaxUint64 }},
		{"2^63", func(uint64) uint64 { return 1 << 63 }},
		{"2^62+1", func(uint64) uint64 { return 1<<62 + 1 }},
		{"current term + 2^40", func(cur uint64) uint64 { return cur + 1<<40 }},
	} {
		st, err := c.Node(1).Status()
		if err != nil {
			t.Fatal(err)
		}
		term := tt.term(st.Term)
		if a := sendMessage(t, c.Node(1), heartbeat(3, 1, term)); !a.refused() {
			t.Errorf("heartbeat from 3 to 1 at term %d (%s): answered %v, want 4xx", term, tt.name, a)
		}
		expectHealthy(t, c.Nodes...)
		expectSmallTerms(t, c.Nodes...)
	}
	expectHealthyAfterRestart(t, c.Nodes...)
	expectSmallTerms(t, c.Nodes...)
}

// ---------------------------------------------------------------------------

// forged is one forged pipeline message: to picks the receiver, msg builds
// the message from what the cluster looks like now.
type forged struct {
	name string
	to   func(s scene) *tc.Node
	msg  func(s scene) *raftpb.Message
}

func toLeader(s scene) *tc.Node   { return s.leader }
func toFollower(s scene) *tc.Node { return s.follower }

// localTypes never travel between members: raft makes them for itself.
var localTypes = []raftpb.MessageType{
	raftpb.MsgHup, raftpb.MsgBeat, raftpb.MsgUnreachable, raftpb.MsgSnapStatus, raftpb.MsgCheckQuorum,
	raftpb.MsgStorageAppend, raftpb.MsgStorageAppendResp, raftpb.MsgStorageApply, raftpb.MsgStorageApplyResp,
	raftpb.MsgForgetLeader,
}

// proposal is a MsgProp with one entry (proposals carry term 0).
func proposal(from, to *tc.Node, typ raftpb.EntryType, data []byte) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MsgProp.Enum(), From: new(idOf(from)), To: new(idOf(to)),
		Entries: []*raftpb.Entry{{Type: typ.Enum(), Data: data}},
	}
}

// appendEntries is a MsgApp from the leader to the follower, after the
// follower's last entry, carrying entries at the given (index offset, term)
// pairs.
func appendEntries(s scene, ents ...[2]uint64) *raftpb.Message {
	m := &raftpb.Message{
		Type: raftpb.MsgApp.Enum(), From: new(idOf(s.leader)), To: new(idOf(s.follower)), Term: new(s.term),
		Index: new(s.last), LogTerm: new(s.term), Commit: new(s.last),
	}
	for _, e := range ents {
		m.Entries = append(m.Entries, &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: new(s.last + e[0]), Term: new(e[1])})
	}
	return m
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// absurdMessages lists forged messages that must all be refused. What the
// code before the fix does with each is noted: the ones it answers 204 and
// survives come first, those that crash members follow, worst last (so that
// a run against that code reports every acceptance before the first crash).
func absurdMessages() []forged {
	var cases []forged
	// Today: 204, and raft's node.Step drops them (local types from a peer
	// are dropped unless the sender claims to be one of raft's own storage
	// threads; MsgForgetLeader makes the follower forget its leader until the
	// next heartbeat).
	for _, typ := range localTypes {
		cases = append(cases, forged{"local-only " + typ.String() + " from the leader", toFollower, func(s scene) *raftpb.Message {
			return &raftpb.Message{Type: typ.Enum(), From: new(idOf(s.leader)), To: new(idOf(s.follower))}
		}})
	}
	cases = append(cases,
		// Today: 204, the vote is rejected.
		forged{"MsgVote at term 0", toFollower, func(s scene) *raftpb.Message {
			return &raftpb.Message{Type: raftpb.MsgVote.Enum(), From: new(idOf(s.other)), To: new(idOf(s.follower)), LogTerm: new(s.term), Index: new(s.last)}
		}},
		forged{"MsgPreVote at term 0", toFollower, func(s scene) *raftpb.Message {
			return &raftpb.Message{Type: raftpb.MsgPreVote.Enum(), From: new(idOf(s.other)), To: new(idOf(s.follower)), LogTerm: new(s.term), Index: new(s.last)}
		}},
		// Today: 204; the follower takes the sender for its leader, and
		// elections follow before the cluster settles again.
		forged{"heartbeat from non-member 99", toFollower, func(s scene) *raftpb.Message {
			return heartbeat(99, idOf(s.follower), s.term)
		}},
		forged{"heartbeat from 2^64-1 (raft's local append thread)", toFollower, func(s scene) *raftpb.Message {
			return heartbeat(math.MaxUint64, idOf(s.follower), s.term)
		}},
		forged{"heartbeat from 2^64-2 (raft's local apply thread)", toFollower, func(s scene) *raftpb.Message {
			return heartbeat(math.MaxUint64-1, idOf(s.follower), s.term)
		}},
		// Today: 204; raft does not look at To.
		forged{"heartbeat addressed to another member", toFollower, func(s scene) *raftpb.Message {
			return heartbeat(idOf(s.leader), idOf(s.other), s.term)
		}},
		// Today: 204, and the follower starts an election.
		forged{"MsgHup from 2^64-1 (raft's local append thread)", toFollower, func(s scene) *raftpb.Message {
			return &raftpb.Message{Type: raftpb.MsgHup.Enum(), From: new(uint64(math.MaxUint64)), To: new(idOf(s.follower))}
		}},
		// Today: 204; the follower forwards it, it commits, and every member
		// skips it with an error line.
		forged{"MsgProp with a normal entry that is not a command", toFollower, func(s scene) *raftpb.Message {
			return proposal(s.other, s.follower, raftpb.EntryNormal, []byte("\xffnot a command"))
		}},
		// Today: 204; it commits and the server ignores it.
		forged{"MsgProp with an EntryConfChangeV2", toLeader, func(s scene) *raftpb.Message {
			return proposal(s.follower, s.leader, raftpb.EntryConfChangeV2, mustMarshal(&raftpb.ConfChangeV2{
				Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(4))}},
			}))
		}},
		// Today: 204, and the leader survives it.
		forged{"MsgAppResp acknowledging index 2^64-1", toLeader, func(s scene) *raftpb.Message {
			return &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), From: new(idOf(s.follower)), To: new(idOf(s.leader)), Term: new(s.term), Index: new(uint64(math.MaxUint64))}
		}},

		// Today: 204, then the receiver panics ("message should not be
		// self-addressed when sending MsgHeartbeatResp") and exits 2.
		forged{"heartbeat from the receiver itself", toFollower, func(s scene) *raftpb.Message {
			return heartbeat(idOf(s.follower), idOf(s.follower), s.term)
		}},
		// Today: 204, then the follower panics ("tocommit(9223372036854775808)
		// is out of range [lastIndex(N)]") and exits 2.
		forged{"heartbeat with Commit 2^63, past the log", toFollower, func(s scene) *raftpb.Message {
			m := heartbeat(idOf(s.leader), idOf(s.follower), s.term)
			m.Commit = new(uint64(1 << 63))
			return m
		}},
		// Today: 204, then the follower panics ("applied(N+100) is out of
		// range [prevApplied(N), committed(N)]") and exits 2.
		forged{"MsgStorageApplyResp from 2^64-2 (raft's local apply thread) past the commit index", toFollower, func(s scene) *raftpb.Message {
			return &raftpb.Message{
				Type: raftpb.MsgStorageApplyResp.Enum(), From: new(uint64(math.MaxUint64 - 1)), To: new(idOf(s.follower)),
				Entries: []*raftpb.Entry{{Index: new(s.last + 100), Term: new(s.term)}},
			}
		}},
		// Today: 204, then the follower panics in raft's unstable log ("slice
		// bounds out of range [1:0]") and exits 2.
		forged{"MsgApp with entries that are not contiguous", toFollower, func(s scene) *raftpb.Message {
			return appendEntries(s, [2]uint64{1, s.term}, [2]uint64{3, s.term})
		}},
		// Today: 204; the follower takes the entries, and its answer makes the
		// real leader panic ("need non-empty snapshot") and exit 2.
		forged{"MsgApp whose entry terms go down", toFollower, func(s scene) *raftpb.Message {
			return appendEntries(s, [2]uint64{1, s.term}, [2]uint64{2, s.term - 1})
		}},
		forged{"MsgApp with an entry term above the message term", toFollower, func(s scene) *raftpb.Message {
			return appendEntries(s, [2]uint64{1, s.term + 1})
		}},
		// Today: 204; the follower installs it, finds no data file and exits 1
		// ("snapshot from leader: snapshot data file for index N: snap:
		// snapshot file doesn't exist"); the leader panics ("need non-empty
		// snapshot"): two members down.
		forged{"MsgSnap on /raft", toFollower, func(s scene) *raftpb.Message {
			return snapshotMessage(idOf(s.leader), idOf(s.follower), s.term, s.last+100, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, s.members)
		}},
		// Today: 204, then raft on the leader panics ("proto: cannot parse
		// invalid wire-format data") and it exits 2.
		forged{"MsgProp with a conf change that does not decode", toLeader, func(s scene) *raftpb.Message {
			return proposal(s.follower, s.leader, raftpb.EntryConfChange, []byte{0xff, 0xff, 0xff})
		}},
		// Today: 204; it commits and every member panics applying it
		// (rafthttp "failed NewURLs": "URL must not contain a path"), again at
		// every restart.
		forged{"MsgProp adding a member at http://127.0.0.1:1/ (trailing slash)", toLeader, func(s scene) *raftpb.Message {
			return proposal(s.follower, s.leader, raftpb.EntryConfChange, mustMarshal(&raftpb.ConfChange{
				Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(4)), Context: []byte("http://127.0.0.1:1/"),
			}))
		}},
	)
	return cases
}

// Every kind of message a peer must never send, each sent to the member that
// would act on it. They are refused, and the cluster stays healthy, case
// after case, and after a restart.
func TestAbsurdPeerMessagesAreRefused(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for _, f := range absurdMessages() {
		s := lookAt(t, c)
		to, m := f.to(s), f.msg(s)
		a := sendMessage(t, to, m)
		t.Logf("case %q: %v to %v: answered %v", f.name, m.GetType(), to, a)
		if !a.refused() {
			t.Errorf("%s (to %v): answered %v, want 4xx", f.name, to, a)
		}
		expectHealthy(t, c.Nodes...)
	}
	expectHealthyAfterRestart(t, c.Nodes...)
}

// ---------------------------------------------------------------------------

// snapFile is where the server keeps (and rafthttp writes) the data file of
// the snapshot at index.
func snapFile(n *tc.Node, index uint64) string {
	return filepath.Join(n.SnapDir(), fmt.Sprintf("%016x.snap.db", index))
}

// expectNoSnapFile waits until no data file for index is left in n's
// snapshot directory.
func expectNoSnapFile(t *testing.T, n *tc.Node, index uint64, why string) {
	t.Helper()
	path := snapFile(n, index)
	if err := tc.Poll(10*time.Second, func() error {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s is still there", path)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("%s: %v", why, err)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// snapReceiver is the member that gets the forged uploads, as it reports
// itself just before one.
type snapReceiver struct {
	n      *tc.Node
	term   uint64
	commit uint64
	snap   uint64 // index of its latest snapshot
}

// upload is one forged snapshot upload. msg builds the MsgSnap envelope;
// above is an index past the receiver's commit index, fresh for each case.
// data is the data file it carries: garbage generated on the fly
// (garbageSize bytes) or a literal file.
type upload struct {
	name        string
	msg         func(s scene, r snapReceiver, above uint64) *raftpb.Message
	garbageSize int64
	file        []byte
}

// claimedSender is the member every upload claims to come from.
const claimedSender = 3

// uploadAt is a sound-looking MsgSnap from member 3 to r at term and index,
// with voters 1-3 and the cluster's real member list.
func uploadAt(s scene, r snapReceiver, term, index uint64) *raftpb.Message {
	return snapshotMessage(claimedSender, idOf(r.n), term, index, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, s.members)
}

// snapshotUploads lists the uploads that must be refused, with what the code
// before the fix does with each: it answers 204 to all of them, after saving
// the data file and handing the message to raft.
func snapshotUploads() []upload {
	valid := kvSnapshotFile() // an empty map: sound, so only the envelope is wrong
	return []upload{
		// Today the receiver installs it and exits 1 ("state machine failed:
		// decoding kv snapshot pair 2: string runs past the end"), and again at
		// every restart; the 1 GiB one is written to disk whole first.
		{name: "garbage data, 4 MiB", garbageSize: 4 << 20,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message { return uploadAt(s, r, r.term, above) }},
		{name: "garbage data, 1 GiB streamed", garbageSize: 1 << 30,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message { return uploadAt(s, r, r.term, above) }},
		// Today the receiver installs it and drops member 3 from its transport:
		// writes through it time out (503).
		{name: "member list without member 3 while the ConfState has it", file: valid,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message {
				m := uploadAt(s, r, r.term, above)
				var without []tc.Member
				for _, mb := range s.members {
					if mb.ID != 3 {
						without = append(without, mb)
					}
				}
				m.Snapshot.Data = snapshotMembersData(without)
				return m
			}},
		// Today the receiver installs these (an empty map) and diverges.
		{name: "joint ConfState", file: valid,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message {
				m := uploadAt(s, r, r.term, above)
				m.Snapshot.Metadata.ConfState = &raftpb.ConfState{Voters: []uint64{1, 2, 3}, VotersOutgoing: []uint64{1, 2}}
				return m
			}},
		{name: "from non-member 99", file: valid,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message {
				m := uploadAt(s, r, r.term, above)
				m.From = new(uint64(99))
				return m
			}},
		// Today raft ignores these two, but their data files stay.
		{name: "at a term below the receiver's", file: valid,
			msg: func(s scene, r snapReceiver, above uint64) *raftpb.Message { return uploadAt(s, r, r.term-1, above) }},
		{name: "at an index below the receiver's commit index", file: valid,
			msg: func(s scene, r snapReceiver, _ uint64) *raftpb.Message {
				index := r.commit - 1
				if index == r.snap {
					index-- // one where it has no data file of its own
				}
				return uploadAt(s, r, r.term, index)
			}},
		// Today rafthttp keeps the receiver's own file; only the 204 is wrong.
		{name: "at the index of the receiver's own latest snapshot", file: kvSnapshotFile(tc.KV{Key: "forged", Val: "forged"}),
			msg: func(s scene, r snapReceiver, _ uint64) *raftpb.Message { return uploadAt(s, r, r.term, r.snap) }},
	}
}

// An upload to POST /raft/snapshot is refused unless it is a sound snapshot
// from a current member, at the receiver's term or later, for an index
// beyond its commit index; a refused upload leaves no data file behind (and
// never replaces the receiver's own), and a huge one does not blow up the
// receiver's memory.
func TestGarbageSnapshotUploadIsRefusedAndLeavesNoFile(t *testing.T) {
	// Frequent snapshots, so that the receiver has data files of its own.
	c := tc.StartCluster(t, 3, "--snap-count", "10")
	var kvs []tc.KV
	for i := range 30 {
		kvs = append(kvs, tc.KV{Key: fmt.Sprintf("k%d", i), Val: "v"})
	}
	tc.PutMany(t, kvs, c.Nodes...)
	tc.ExpectValues(t, kvs, c.Nodes...)

	// The receiver is a follower other than member 3, the claimed sender.
	look := func() (scene, snapReceiver) {
		s := lookAt(t, c)
		n := s.follower
		if n.ID == claimedSender {
			n = s.other
		}
		var st tc.Status
		tc.Eventually(t, tc.Timeout, func() error {
			var err error
			if st, err = n.Status(); err != nil {
				return err
			}
			if st.SnapshotIndex == 0 {
				return fmt.Errorf("%v has taken no snapshot yet", n)
			}
			return nil
		})
		return s, snapReceiver{n: n, term: st.Term, commit: st.Commit, snap: st.SnapshotIndex}
	}

	const rssLimit = 512 << 20
	for i, u := range snapshotUploads() {
		s, r := look()
		m := u.msg(s, r, r.commit+100+uint64(i))
		index := m.GetSnapshot().GetMetadata().GetIndex()
		own := snapFile(r.n, index)
		_, ownErr := os.Stat(own)
		var ownHash [32]byte
		if ownErr == nil {
			ownHash = fileHash(t, own)
		}
		t.Logf("case %q: MsgSnap from %d to %v, term %d, index %d (receiver at term %d, commit %d, snapshot %d)",
			u.name, m.GetFrom(), r.n, m.GetTerm(), index, r.term, r.commit, r.snap)

		var (
			data io.Reader = bytes.NewReader(u.file)
			size           = int64(len(u.file))
			g    *garbageReader
		)
		if u.garbageSize > 0 {
			g = newGarbageReader(u.garbageSize)
			data, size = g, u.garbageSize
		}
		ctx, cancel := context.WithCancel(context.Background())
		var over atomic.Bool
		mem := watchMemory(r.n, rssLimit, func() { over.Store(true); cancel() })
		a := sendSnapshot(ctx, t, r.n, m, data, size)
		peak := mem.Stop()
		cancel()
		t.Logf("%s: answered %v, peak RSS %d MiB", u.name, a, peak>>20)
		// A huge upload may also be refused by closing the connection early.
		cutShort := g != nil && g.cutOff(a)
		switch {
		case over.Load():
			t.Errorf("%s: the receiver's RSS passed %d MiB (peak %d MiB) during the upload", u.name, rssLimit>>20, peak>>20)
		case !a.refused() && !cutShort:
			t.Errorf("%s: answered %v, want 4xx", u.name, a)
		}

		if ownErr == nil {
			if _, err := os.Stat(own); err != nil {
				t.Errorf("%s: the receiver's own data file %s is gone: %v", u.name, own, err)
			} else if fileHash(t, own) != ownHash {
				t.Errorf("%s: the receiver's own data file %s was overwritten", u.name, own)
			}
		} else {
			expectNoSnapFile(t, r.n, index, u.name)
		}
		expectHealthy(t, c.Nodes...)
	}
	expectHealthyAfterRestart(t, c.Nodes...)
}

// ---------------------------------------------------------------------------

// A pipeline message is small; a body of 1 GiB must be refused (413, or 411
// for a body without a length) or cut off early, without the receiver reading
// it into memory. On the code before the fix rafthttp's pipeline handler
// reads the whole body with io.ReadAll.
func TestOversizedPipelineBodyIsRefusedWithBoundedMemory(t *testing.T) {
	c := tc.StartCluster(t, 3)
	const (
		size     = 1 << 30
		rssLimit = 300 << 20
	)
	for _, tt := range []struct {
		name   string
		length int64 // Content-Length; -1: chunked
		want   []int // refusals that fit
	}{
		{"1 GiB body with Content-Length", size, []int{http.StatusRequestEntityTooLarge}},
		{"1 GiB body, chunked", -1, []int{http.StatusRequestEntityTooLarge, http.StatusLengthRequired}},
	} {
		s := lookAt(t, c)
		n := s.follower
		t.Logf("case %q: POST /raft to %v", tt.name, n)
		g := newGarbageReader(size)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var over atomic.Bool
		mem := watchMemory(n, rssLimit, func() { over.Store(true); cancel() })
		start := time.Now()
		a := sendPipelineBody(ctx, t, n, idOf(s.leader), g, tt.length)
		took := time.Since(start)
		peak := mem.Stop()
		cancel()
		t.Logf("%s: %v after %v, %d MiB sent, peak RSS %d MiB", tt.name, a, took.Round(time.Millisecond), g.Sent()>>20, peak>>20)
		switch {
		case over.Load():
			t.Errorf("%s: %v's RSS passed %d MiB (peak %d MiB, %d MiB sent)", tt.name, n, rssLimit>>20, peak>>20, g.Sent()>>20)
		case a.Err == nil && !slices.Contains(tt.want, a.Code):
			t.Errorf("%s: answered %v after %d MiB, want one of %v", tt.name, a, g.Sent()>>20, tt.want)
		case a.Err != nil && !g.cutOff(a):
			t.Errorf("%s: %v after %d MiB, want %v or the connection closed early", tt.name, a.Err, g.Sent()>>20, tt.want)
		case took > 15*time.Second:
			t.Errorf("%s: took %v to refuse, want well under 15 s", tt.name, took)
		}
		expectHealthy(t, c.Nodes...)
	}
	expectHealthyAfterRestart(t, c.Nodes...)
}

// ---------------------------------------------------------------------------

// Every cluster has its own cluster ID, and a request carrying another one
// (the old shared constant 1000, another cluster's) is refused with 412.
// On the code before the fix all clusters share 1000, so a member of one
// cluster pointed at another is taken in, and if its id was removed there
// it is told it was removed and exits.
func TestWrongClusterIDIsRefused(t *testing.T) {
	a := tc.StartCluster(t, 3)
	b := tc.New(t, 1)
	b.Start()
	tc.WaitLeader(t, tc.Timeout, b.Nodes...)

	stA, err := a.Node(1).Status()
	if err != nil {
		t.Fatal(err)
	}
	stB, err := b.Node(1).Status()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case stA.ClusterID == "" || stB.ClusterID == "":
		t.Errorf("/v1/status reports no clusterID (cluster A %q, cluster B %q)", stA.ClusterID, stB.ClusterID)
	case stA.ClusterID == stB.ClusterID:
		t.Errorf("two clusters on one machine report the same clusterID %q", stA.ClusterID)
	}
	idA, idB := clusterIDOf(t, a.Node(1)), clusterIDOf(t, b.Node(1))

	// A heartbeat a term ahead is a legal message that would depose A's
	// leader; with a wrong cluster ID it must change nothing.
	for _, wrong := range []struct{ name, id string }{
		{"the old constant 1000", oldClusterID},
		{"cluster B's", idB},
	} {
		s := lookAt(t, a)
		m := heartbeat(idOf(s.leader), idOf(s.follower), s.term+1)
		if ans := sendMessageWithClusterID(t, s.follower, wrong.id, m); ans.Code != http.StatusPreconditionFailed {
			t.Errorf("heartbeat to cluster A with %s cluster ID %q: answered %v, want 412", wrong.name, wrong.id, ans)
		}
		expectHealthy(t, a.Nodes...)
		if after := lookAt(t, a); after.term != s.term || after.leader != s.leader {
			t.Errorf("heartbeat with %s cluster ID moved cluster A from leader %v term %d to leader %v term %d",
				wrong.name, s.leader, s.term, after.leader, after.term)
		}
	}

	// A stray member: id 4, once a member of A and removed since, now started
	// as a new cluster whose --cluster names A's three peer URLs and its own.
	// It is another cluster: A must refuse it (412), not tell it "removed".
	ports := tc.FreePorts(t, 2)
	strayURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if code, body, err := a.Node(1).AddMember("4", strayURL); err != nil || code >= 300 {
		t.Fatalf("adding member 4 to cluster A: %d %s %v", code, body, err)
	}
	tc.Eventually(t, tc.Timeout, func() error {
		code, body, err := a.Node(1).RemoveMember("4")
		if err != nil || code >= 300 {
			return fmt.Errorf("removing member 4 from cluster A: %d %s %v", code, strings.TrimSpace(body), err)
		}
		return nil
	})
	dir := t.TempDir()
	stray := tc.NewNode(t, tc.Build(t), filepath.Join(dir, "stray"), filepath.Join(dir, "stray.log"), ports[1], []string{
		"--id", "4", "--cluster", strings.Join(append(append([]string{}, a.URLs[:3]...), strayURL), ","),
		"--port", strconv.Itoa(ports[1]), "--data-dir", filepath.Join(dir, "stray"),
	})
	stray.ID = 4
	stray.PeerURL = strayURL
	marks := logMarks(a.Nodes...) // what cluster A logged before the stray came
	stray.Start()
	if err := stray.WaitServing(tc.Timeout); err != nil {
		t.Fatalf("the stray member: %v\n%s", err, tc.Tail(stray.RunLog(), 20))
	}
	strayID := oldClusterID
	if st, err := stray.Status(); err == nil && st.ClusterID != "" {
		strayID = clusterIDOf(t, stray)
	}
	// The stray keeps running, is never told it was removed, and runs into
	// the cluster ID check on one side or the other.
	var verdict error
	if err := tc.Poll(tc.Timeout, func() error {
		switch {
		case strings.Contains(stray.RunLog(), "removed from the cluster"):
			verdict = fmt.Errorf("the stray member was told it was removed:\n%s", tc.Tail(stray.RunLog(), 10))
		case !stray.Running():
			code, _ := stray.Wait(time.Second) // it has exited: returns at once
			verdict = fmt.Errorf("the stray member exited with code %d:\n%s", code, tc.Tail(stray.RunLog(), 10))
		case !mismatchLogged(stray, marks):
			return errors.New("no cluster ID mismatch logged by the stray member or cluster A yet")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if verdict != nil {
		t.Error(verdict)
	}
	if strayID == idA {
		t.Errorf("the stray member (a cluster founded on other URLs) has cluster A's ID %q", idA)
	}
	// What the stray's transport does when it dials A's member 1.
	if ans := openStream(t, a.Node(1), "message", 4, strayID); ans.Code != http.StatusPreconditionFailed {
		t.Errorf("stream request from the stray member to cluster A: answered %v, want 412 (410 tells it it was removed)", ans)
	}
	stray.Kill()
	expectHealthy(t, a.Nodes...)
	if st, err := a.Node(1).Status(); err != nil {
		t.Fatal(err)
	} else if ids := memberIDs(st.Members); !slices.Equal(ids, []uint64{1, 2, 3}) {
		t.Errorf("cluster A's members after the stray member: %v, want [1 2 3]", ids)
	}
	expectHealthyAfterRestart(t, a.Nodes...)
	expectHealthyAfterRestart(t, b.Nodes...)
}

func memberIDs(ms []tc.Member) []uint64 {
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// logMarks notes how much each node's current run has logged so far.
func logMarks(nodes ...*tc.Node) map[*tc.Node]int {
	marks := map[*tc.Node]int{}
	for _, n := range nodes {
		marks[n] = len(n.RunLog())
	}
	return marks
}

// mismatchLogged reports whether stray logged a cluster ID mismatch, or one
// of the nodes in marks did since its mark (rafthttp logs one on either side
// of a request refused for its cluster ID).
func mismatchLogged(stray *tc.Node, marks map[*tc.Node]int) bool {
	logs := []string{stray.RunLog()}
	for n, mark := range marks {
		if l := n.RunLog(); len(l) >= mark {
			logs = append(logs, l[mark:])
		}
	}
	for _, log := range logs {
		for _, line := range strings.Split(log, "\n") {
			l := strings.ToLower(line)
			if strings.Contains(l, "cluster") && strings.Contains(l, "mismatch") {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------

// Opening a stream to a member as another member makes it send that member's
// messages to whoever asked. That takes the cluster ID: with a wrong one the
// stream is refused (412). On the code before the fix the old constant 1000
// is the right ID, and the forged stream is accepted (200).
func TestForgedStreamTakeoverNeedsTheClusterID(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for _, tt := range []struct{ kind, clusterID string }{
		{"msgapp", oldClusterID},
		{"message", oldClusterID},
		{"msgapp", "deadbeefcafe"},
		{"message", "deadbeefcafe"},
	} {
		s := lookAt(t, c)
		if a := openStream(t, s.follower, tt.kind, idOf(s.leader), tt.clusterID); a.Code != http.StatusPreconditionFailed {
			t.Errorf("GET /raft/stream/%s/%x on %v with cluster ID %q: answered %v, want 412", tt.kind, idOf(s.leader), s.follower, tt.clusterID, a)
		}
		expectHealthy(t, c.Nodes...)
	}
	expectHealthyAfterRestart(t, c.Nodes...)
}
