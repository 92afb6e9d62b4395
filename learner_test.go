package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

func mbAddLearner(id uint64, url string) *raftpb.ConfChange {
	return &raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: &id, Context: []byte(url)}
}

func mbPromote(id uint64) *raftpb.ConfChange {
	return &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id}
}

// mbApplyAll checks and applies ccs in order, failing on the first refusal.
func mbApplyAll(t *testing.T, m *membership, ccs ...*raftpb.ConfChange) {
	t.Helper()
	for _, cc := range ccs {
		if err := m.check(cc); err != nil {
			t.Fatalf("setting up: check(%v) = %v", cc, err)
		}
		m.apply(cc)
	}
}

func TestMembershipCheckAppliesTheLearnerRules(t *testing.T) {
	m := newMembership()
	mbApplyAll(t, m, mbAdd(1, "http://127.0.0.1:1"), mbAddLearner(2, "http://127.0.0.1:2"),
		mbAddLearner(3, "http://127.0.0.1:3"), mbRemove(3))
	// Now: voter 1, learner 2; 3 was a learner and was removed.
	cases := []struct {
		name string
		cc   *raftpb.ConfChange
		want error
	}{
		{"add a learner", mbAddLearner(4, "http://127.0.0.1:4"), nil},
		{"add a learner without a peer URL", mbAddLearner(4, ""), errors.New("any")},
		{"add a learner at a bad peer URL", mbAddLearner(4, "http://127.0.0.1:4/"), errors.New("any")},
		{"add a learner under a removed id", mbAddLearner(3, "http://127.0.0.1:3"), errIDRemoved},
		{"add a voter as a learner (raft would demote it)", mbAddLearner(1, "http://127.0.0.1:1"), errMemberExists},
		{"add a learner again", mbAddLearner(2, "http://127.0.0.1:2"), errMemberExists},
		{"add a learner as a voter with a peer URL", mbAdd(2, "http://127.0.0.1:2"), errMemberExists},
		{"promote a learner", mbPromote(2), nil},
		{"promote a voter", mbPromote(1), errNotLearner},
		{"promote a removed learner", mbPromote(3), errNotMember},
		{"promote a never-member", mbPromote(9), errNotMember},
		{"remove a learner", mbRemove(2), nil},
		// Raft refuses (panics) when no voter would remain.
		{"remove the only voter while a learner remains", mbRemove(1), errLastMember},
	}
	for _, tc := range cases {
		err := m.check(tc.cc)
		if tc.want == nil && err != nil || tc.want != nil && err == nil ||
			tc.want != nil && tc.want.Error() != "any" && !errors.Is(err, tc.want) {
			t.Errorf("%s: check = %v, want %v", tc.name, err, tc.want)
		}
	}
	if got := m.list(); len(got) != 2 || got[0].Learner || !got[1].Learner {
		t.Fatalf("check changed the member list: %+v", got)
	}

	mbApplyAll(t, m, mbPromote(2))
	want := []member{{ID: 1, PeerURL: "http://127.0.0.1:1"}, {ID: 2, PeerURL: "http://127.0.0.1:2"}}
	if got := m.list(); !slices.Equal(got, want) || m.voters() != 2 || m.learnerIDs() != nil {
		t.Fatalf("after promoting 2: %+v (%d voters, learners %v), want %+v", got, m.voters(), m.learnerIDs(), want)
	}
	if err := m.check(mbRemove(1)); err != nil {
		t.Fatalf("removing one of two voters: check = %v", err)
	}
	mbApplyAll(t, m, mbAddLearner(5, "http://127.0.0.1:5"), mbRemove(5))
	if !m.isRemoved(5) || m.isMember(5) || m.isLearner(5) {
		t.Fatalf("a removed learner is still listed: %+v", m.list())
	}
}

func TestMembershipStateCarriesLearnersAndOldSnapshotsHaveNone(t *testing.T) {
	m := newMembership()
	mbApplyAll(t, m, mbAdd(1, "http://127.0.0.1:1"), mbAddLearner(2, "http://127.0.0.1:2"), mbAddLearner(3, "http://127.0.0.1:3"), mbPromote(3))
	data := m.encode(7)
	if !strings.Contains(string(data), `{"id":2,"peerURL":"http://127.0.0.1:2","learner":true}`) ||
		strings.Count(string(data), "learner") != 1 {
		t.Fatalf("encoded member list %s: want the flag on member 2 only", data)
	}
	other := newMembership()
	if _, err := other.restore(data); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(other.list(), m.list()) || !slices.Equal(other.learnerIDs(), []uint64{2}) {
		t.Fatalf("restored %+v, want %+v", other.list(), m.list())
	}
	// A restore replaces the learners too.
	if _, err := other.restore(newMembership().encode(7)); err != nil || other.learnerIDs() != nil {
		t.Fatalf("restoring an empty list left learners %v (%v)", other.learnerIDs(), err)
	}

	old := []byte(`{"clusterID":"7","members":[{"id":1,"peerURL":"http://127.0.0.1:1"},{"id":2,"peerURL":"http://127.0.0.1:2"}],"removed":[3]}`)
	if _, err := other.restore(old); err != nil {
		t.Fatalf("restoring a member list from before learners: %v", err)
	}
	if other.voters() != 2 || other.learnerIDs() != nil {
		t.Fatalf("a list from before learners restored as %+v", other.list())
	}

	allLearners := []byte(`{"members":[{"id":1,"peerURL":"http://127.0.0.1:1","learner":true}],"removed":[]}`)
	if _, err := parseMembershipState(allLearners); err == nil {
		t.Fatal("parseMembershipState accepted a list without a voter")
	}
}

func TestASnapshotMustAgreeWithItsConfigurationOnWhoIsALearner(t *testing.T) {
	rn := &raftNode{cfg: raftConfig{id: 1}, peers: &peers{clusterID: 7}}
	m := newMembership()
	mbApplyAll(t, m, mbAdd(1, "http://127.0.0.1:1"), mbAddLearner(2, "http://127.0.0.1:2"))
	snap := func(cs *raftpb.ConfState) *raftpb.Snapshot {
		return &raftpb.Snapshot{Data: encodeSnapshotData(m.encode(7)),
			Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2)), ConfState: cs}}
	}
	if err := rn.checkSnapshotData(snap(&raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}), false); err != nil {
		t.Fatalf("a snapshot whose configuration agrees: %v", err)
	}
	if err := rn.checkSnapshotData(snap(&raftpb.ConfState{Voters: []uint64{1, 2}}), false); err == nil {
		t.Fatal("accepted a snapshot listing a learner its configuration has as a voter")
	}
}

// leaderStatus is raft's status on leader 1 with the given followers.
func leaderStatus(followers map[uint64]tracker.Progress) raft.Status {
	st := raft.Status{Progress: map[uint64]tracker.Progress{1: {Match: 100, RecentActive: true}}}
	st.RaftState = raft.StateLeader
	maps.Copy(st.Progress, followers)
	return st
}

func TestVoterChangesCountOnlyVotersAndWaitForTheLearner(t *testing.T) {
	urls := func(id uint64) string { return fmt.Sprintf("http://127.0.0.1:%d", id) }
	// Voters 1, 2, 3 and learners 4, 5.
	m := newMembership()
	mbApplyAll(t, m, mbAdd(1, urls(1)), mbAdd(2, urls(2)), mbAdd(3, urls(3)), mbAddLearner(4, urls(4)), mbAddLearner(5, urls(5)))
	up := func(match uint64) tracker.Progress { return tracker.Progress{Match: match, RecentActive: true} }
	down := func(match uint64) tracker.Progress { return tracker.Progress{Match: match} }
	learner := func(pr tracker.Progress) tracker.Progress { pr.IsLearner = true; return pr }
	const last = 5000
	cases := []struct {
		name      string
		cc        *raftpb.ConfChange
		followers map[uint64]tracker.Progress
		want      error
		says      string // part of the message
	}{
		// Two voters down: with learners counted the leader would see 3 of 5 up.
		{"add a voter while only learners make up the numbers", mbAdd(6, urls(6)),
			map[uint64]tracker.Progress{2: down(last), 3: down(last), 4: learner(up(last)), 5: learner(up(last))}, errWouldLoseQuorum, "only 1 of 3 voters"},
		{"add a voter with every voter up and the learners down", mbAdd(6, urls(6)),
			map[uint64]tracker.Progress{2: up(last), 3: up(last), 4: learner(down(0)), 5: learner(down(0))}, nil, ""},
		{"remove a voter with one voter down", mbRemove(2),
			map[uint64]tracker.Progress{2: up(last), 3: down(last), 4: learner(up(last)), 5: learner(up(last))}, errWouldLoseQuorum, "only 1 of the 2 remaining voters"},
		{"add a learner with every other member down", mbAddLearner(6, urls(6)),
			map[uint64]tracker.Progress{2: down(0), 3: down(0), 4: learner(down(0)), 5: learner(down(0))}, nil, ""},
		{"remove a learner with every other member down", mbRemove(4),
			map[uint64]tracker.Progress{2: down(0), 3: down(0), 4: learner(up(last)), 5: learner(down(0))}, nil, ""},
		{"promote a learner 1001 entries behind", mbPromote(4),
			map[uint64]tracker.Progress{2: up(last), 3: up(last), 4: learner(up(last - 1001)), 5: learner(up(last))}, errLearnerNotReady,
			"member 4 has the leader's log through index 3999, 1001 entries short of its last index 5000 (at most 1000 may be missing)"},
		{"promote a learner that never answered in a young log", mbPromote(4),
			map[uint64]tracker.Progress{2: up(last), 3: up(last), 4: learner(up(0)), 5: learner(up(last))}, errLearnerNotReady, "member 4 has not acknowledged"},
		{"promote a learner 1000 entries behind", mbPromote(4),
			map[uint64]tracker.Progress{2: up(last), 3: up(last), 4: learner(up(last - 1000)), 5: learner(up(last))}, nil, ""},
		// Four voters would need three active; the learner is not.
		{"promote a caught-up learner that is down, with a voter down", mbPromote(4),
			map[uint64]tracker.Progress{2: up(last), 3: down(last), 4: learner(down(last)), 5: learner(up(last))}, errWouldLoseQuorum, "only 2 of the 4 voters"},
		{"promote a caught-up learner that is up, with a voter down", mbPromote(4),
			map[uint64]tracker.Progress{2: up(last), 3: down(last), 4: learner(up(last)), 5: learner(up(last))}, nil, ""},
	}
	for _, tc := range cases {
		err := checkVoterChange(m, tc.cc, 1, leaderStatus(tc.followers), last)
		if tc.want == nil && err != nil || !errors.Is(err, tc.want) || err != nil && !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.want, tc.says)
		}
	}
	follower := raft.Status{}
	follower.RaftState = raft.StateFollower
	if err := checkVoterChange(m, mbPromote(4), 1, follower, last); !errors.Is(err, errNoLeader) {
		t.Errorf("promoting on a member that no longer leads: %v, want %v", err, errNoLeader)
	}
}

// TestALearnerReplicatesSurvivesRestartsAndIsPromoted runs a learner in an
// in-process cluster: it gets the writes without voting, stays a learner
// across restarts from its snapshot and WAL (on itself and on a voter), and
// once promoted stays a voter. At every step raft's configuration and the
// member list agree on every node.
func TestALearnerReplicatesSurvivesRestartsAndIsPromoted(t *testing.T) {
	c := newIPCluster(t, 3, 4, 20)
	for id := uint64(1); id <= 3; id++ {
		c.startKV(id, false)
	}
	c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.nodes[2].svc.AddLearner(ctx, 4, c.urls[3]); err != nil {
		t.Fatalf("AddLearner(4) through a follower or the leader: %v", err)
	}
	c.startKV(4, true)
	for i := range 30 { // past snap-count: the snapshots list the learner
		ipPut(t, c.nodes[uint64(i%4+1)].svc, fmt.Sprintf("k%d", i), "v")
	}
	for id := uint64(1); id <= 4; id++ {
		ipExpectValue(t, id, c.nodes[id].store, "k29", "v")
	}
	agree := func(what string, wantLearners []uint64) {
		t.Helper()
		for id, n := range c.nodes {
			ipEventually(t, 10*time.Second, fmt.Sprintf("%s: node %d's configuration", what, id), func() error {
				cfg := n.rn.node.Status().Config
				raftLearners := slices.Sorted(maps.Keys(cfg.Learners))
				raftVoters := slices.Sorted(maps.Keys(cfg.Voters[0]))
				var voters []uint64
				for _, m := range n.rn.Members() {
					if !m.Learner {
						voters = append(voters, m.ID)
					}
				}
				if !slices.Equal(raftLearners, n.rn.members.learnerIDs()) || !slices.Equal(raftVoters, voters) {
					return fmt.Errorf("raft has voters %v and learners %v, the member list %+v", raftVoters, raftLearners, n.rn.Members())
				}
				if !slices.Equal(raftLearners, wantLearners) {
					return fmt.Errorf("learners %v, want %v", raftLearners, wantLearners)
				}
				return nil
			})
		}
	}
	agree("learner added", []uint64{4})
	if st := c.nodes[4].rn.Status(); !st.Learner || !slices.Equal(st.Learners, []uint64{4}) {
		t.Errorf("the learner's status says learner=%v, learners %v", st.Learner, st.Learners)
	}
	if err := c.nodes[1].svc.TransferLeadership(ctx, 4); !errors.Is(err, errLearnerCannotLead) {
		t.Errorf("transferring leadership to the learner: %v, want %v", err, errLearnerCannotLead)
	}

	for _, id := range []uint64{4, 1} {
		c.nodes[id].stop(t)
		c.startKV(id, id == 4)
		c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3], c.nodes[4])
		agree(fmt.Sprintf("node %d restarted", id), []uint64{4})
	}
	if c.nodes[4].rn.snaps.index.Load() == 0 {
		t.Error("the learner has no snapshot: its restart did not go through one")
	}

	ipEventually(t, 20*time.Second, "promoting 4", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.nodes[4].svc.PromoteMember(ctx, 4)
	})
	agree("learner promoted", nil)
	c.nodes[4].stop(t)
	c.startKV(4, true)
	agree("promoted member restarted", nil)
	ipPut(t, c.nodes[4].svc, "after", "promotion")
	ipExpectValue(t, 3, c.nodes[3].store, "after", "promotion")
}

// TestLearnerRequestsAreCheckedBeforeProposing drives the HTTP API of a
// cluster of one: bad requests are 400 and change nothing; a learner that
// never starts may be added (it cannot hurt the quorum) but not promoted.
func TestLearnerRequestsAreCheckedBeforeProposing(t *testing.T) {
	c := newIPCluster(t, 1, 2, 10000)
	n := c.startKV(1, false)
	api := &httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w.Code, strings.TrimSpace(w.Body.String())
	}
	ipEventually(t, 30*time.Second, "a PUT is answered 204", func() error {
		if code, body := do(http.MethodPut, "/ready", "yes"); code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})
	expect := func(method, path, body string, want int, says string) string {
		t.Helper()
		code, got := do(method, path, body)
		if code != want || !strings.Contains(got, says) {
			t.Errorf("%s %s %s: %d %s, want %d saying %q", method, path, body, code, got, want, says)
		}
		return got
	}
	learnerURL := c.urls[1]
	before := n.svc.State().index // the ready PUT is applied: it was answered
	for _, bad := range []string{
		`{"id": 2, "peerURL": "` + learnerURL + `/", "learner": true}`,
		`{"id": 2, "learner": true}`,
		`{"id": 0, "peerURL": "` + learnerURL + `", "learner": true}`,
		`{"id": 2, "peerURL": "` + learnerURL + `", "learner": "yes"}`,
		`{"id": 2, "peerURL": "` + learnerURL + `", "learner": true, "learner": false}`,
		`{"id": 2, "peerURL": "` + learnerURL + `", "voter": false}`,
	} {
		expect(http.MethodPost, "/v1/members", bad, http.StatusBadRequest, "")
	}
	for _, path := range []string{"/v1/members/0/promote", "/v1/members/x/promote", "/v1/members//promote", "/v1/members/1/2/promote"} {
		expect(http.MethodPost, path, "", http.StatusBadRequest, "member id")
	}
	// Had a bad request been proposed, its entry would come before this
	// PUT's: the PUT must be the one entry applied since.
	expect(http.MethodPut, "/after-bad-requests", "yes", http.StatusNoContent, "")
	if ms, applied := n.rn.Members(), n.svc.State().index; len(ms) != 1 || applied != before+1 {
		t.Fatalf("members after bad requests: %+v; applied index %d, want %d (only the PUT since)", ms, applied, before+1)
	}

	got := expect(http.MethodPost, "/v1/members", `{"id": 2, "peerURL": "`+strings.ToUpper(learnerURL[:4])+learnerURL[4:]+`", "learner": true}`, http.StatusCreated, "")
	var added map[string]any
	if err := json.Unmarshal([]byte(got), &added); err != nil || added["id"] != 2.0 || added["peerURL"] != learnerURL || added["learner"] != true || len(added) != 3 {
		t.Errorf("POST /v1/members for a learner answered %s, want id, normalised peerURL and learner", got)
	}
	expect(http.MethodGet, "/v1/members", "", http.StatusOK, `{"id":2,"peerURL":"`+learnerURL+`","learner":true}`)
	expect(http.MethodGet, "/v1/status", "", http.StatusOK, `"learners":[2]`)
	if _, body := do(http.MethodGet, "/v1/status", ""); strings.Contains(body, `"learner":true,"followers"`) || !strings.Contains(body, `"learner":true}]`) {
		t.Errorf("GET /v1/status: the leader's own status or its follower list is wrong about who is a learner: %s", body)
	}

	expect(http.MethodPost, "/2", learnerURL, http.StatusConflict, errMemberExists.Error())
	expect(http.MethodPost, "/v1/members", `{"id": 2, "peerURL": "`+learnerURL+`"}`, http.StatusConflict, errMemberExists.Error())
	expect(http.MethodPost, "/v1/members/1/promote", "", http.StatusConflict, errNotLearner.Error())
	expect(http.MethodPost, "/v1/members/9/promote", "", http.StatusNotFound, errNotMember.Error())
	expect(http.MethodPost, "/v1/members/2/promote", "", http.StatusConflict, "member 2 has not acknowledged any of the leader's log yet")
	expect(http.MethodPost, "/v1/leader", `{"id": 2}`, http.StatusConflict, errLearnerCannotLead.Error())
	expect(http.MethodGet, "/v1/members/2/promote", "", http.StatusMethodNotAllowed, "")
	expect(http.MethodDelete, "/v1/members/1", "", http.StatusConflict, errLastMember.Error())
	expect(http.MethodDelete, "/v1/members/2", "", http.StatusNoContent, "")
	if ms := n.rn.Members(); len(ms) != 1 || ms[0].ID != 1 || n.rn.members.learnerIDs() != nil {
		t.Fatalf("members at the end: %+v", ms)
	}
	if _, body := do(http.MethodGet, "/v1/status", ""); strings.Contains(body, "learner") {
		t.Errorf("GET /v1/status without learners mentions them: %s", body)
	}
}
