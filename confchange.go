package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// This file is the raft node's side of membership changes: the checks that
// need raft's view of the cluster, asking the leader to make a change, and
// applying changes when they commit. The service makes them (see
// service.changeMembership) and waits for them.

// Reasons a membership change is refused before it is proposed. Unlike the
// apply-time rules in membership.check, these depend on this node's view of
// the cluster (who is connected, what is in flight) as well as on the log.
var (
	errBadMemberID     = fmt.Errorf("member ids are integers from 1 to %d", uint64(maxMemberID))
	errPeerURLInUse    = errors.New("another member already has that peer URL")
	errChangeInFlight  = errors.New("another membership change is in progress; retry once it is applied")
	errWouldLoseQuorum = errors.New("the change would leave the cluster without a quorum of active voters")
)

// confChangePath is where the leader takes membership changes from the
// other members, on the peer port.
const confChangePath = "/raftexample/confchange"

// leaderAnswer is the leader's refusal of a membership change a follower
// asked for, with the status the follower answers its client.
type leaderAnswer struct {
	code int
	msg  string
}

func (e *leaderAnswer) Error() string { return e.msg }

// askLeader has the leader make cc (service.leadMembershipChange), and
// returns once the leader applied it.
func (rn *raftNode) askLeader(ctx context.Context, lead uint64, cc *raftpb.ConfChange) error {
	leaderURL := rn.members.peerURL(lead)
	if leaderURL == "" {
		return errNoLeader // a leader we do not know yet; retry once we do
	}
	body, err := proto.Marshal(cc)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, leaderURL+confChangePath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Etcd-Cluster-ID", formatClusterID(rn.peers.clusterID))
	req.Header.Set("X-Server-From", types.ID(rn.cfg.id).String())
	resp, err := rn.peers.client.Do(req)
	if err != nil {
		return errOutcomeUnknown // the leader may have proposed it
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return &leaderAnswer{code: resp.StatusCode, msg: "the leader answered: " + strings.TrimSpace(string(msg))}
}

// serveConfChange is the leader's side of askLeader, on the peer port.
func (p *peers) serveConfChange(w http.ResponseWriter, r *http.Request) {
	rn := p.rn
	from, err := types.IDFromString(r.Header.Get("X-Server-From"))
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case r.Header.Get("X-Etcd-Cluster-ID") != formatClusterID(p.clusterID):
		http.Error(w, "cluster ID mismatch", http.StatusPreconditionFailed)
		return
	case err != nil || !rn.members.isMember(uint64(from)) || uint64(from) == rn.cfg.id:
		http.Error(w, "membership changes are taken only from members", http.StatusForbidden)
		return
	case rn.Leader() != rn.cfg.id:
		http.Error(w, errNoLeader.Error()+" (this member no longer leads)", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBodyBytes))
	cc := &raftpb.ConfChange{}
	if err != nil || proto.Unmarshal(body, cc) != nil || cc.GetId() == 0 {
		http.Error(w, "not a conf change", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxConfChangeWait)
	defer cancel()
	if err := rn.hooks.leadMembershipChange(ctx, cc); err != nil {
		http.Error(w, err.Error(), statusFor(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxConfChangeWait bounds how long the leader works on a follower's
// request; the follower's own request timeout usually ends it first.
const maxConfChangeWait = time.Minute

// checkMembershipChange applies, before proposing, the rules that keep a
// membership change from hurting the cluster (etcd's strict reconfiguration
// check): on top of what apply checks, ids stay in range, peer URLs stay
// unique, no other change is pending, a quorum of active voters remains even
// if an added member never starts or a removed one was needed, and a learner
// is promoted only once it has nearly all of the log (see checkVoterChange).
func (rn *raftNode) checkMembershipChange(cc *raftpb.ConfChange) error {
	id := cc.GetNodeId()
	if id == 0 || id > maxMemberID {
		return errBadMemberID
	}
	if err := rn.members.check(cc); err != nil {
		return err
	}
	if !isPromotion(cc) && cc.GetType() != raftpb.ConfChangeRemoveNode {
		want, _ := parsePeerURL(string(cc.GetContext())) // valid: check passed
		for _, m := range rn.members.list() {
			if u, err := parsePeerURL(m.PeerURL); err == nil && u == want {
				return fmt.Errorf("%w (member %d)", errPeerURLInUse, m.ID)
			}
		}
	}
	if rn.confChangePending() {
		return errChangeInFlight
	}
	last, err := rn.snaps.log.memory.LastIndex()
	if err != nil {
		return err
	}
	return checkVoterChange(rn.members, cc, rn.cfg.id, rn.node.Status(), last)
}

// Reasons a promotion is refused before it is proposed.
var errLearnerNotReady = errors.New("the learner has not caught up with the leader")

// maxLearnerLag is how many entries of the leader's log a learner may still
// miss when it is promoted (etcd's rule): a voter far behind would hold up
// commits as soon as it is needed for a quorum, and while it catches up.
const maxLearnerLag = 1000

// checkVoterChange is the part of checkMembershipChange that needs raft's
// view from the leader: st, its status, and last, its last log index.
// Learners neither vote nor count for a quorum, so adding or removing one
// never threatens it, and a promotion grows the voters by one.
func checkVoterChange(members *membership, cc *raftpb.ConfChange, self uint64, st raft.Status, last uint64) error {
	id := cc.GetNodeId()
	active := activeVoters(members, self, st)
	voters := members.voters()
	quorum := func(n int) int { return n/2 + 1 }
	switch {
	case cc.GetType() == raftpb.ConfChangeAddLearnerNode:
	case isPromotion(cc):
		pr, ok := st.Progress[id]
		if st.RaftState != raft.StateLeader || !ok {
			return fmt.Errorf("%w (this member no longer leads)", errNoLeader)
		}
		if pr.Match == 0 {
			// Raft counts a member it just added as recently active, and
			// any learner is within maxLearnerLag of a young log: without
			// this, one that never started could be made a voter.
			return fmt.Errorf("%w: member %d has not acknowledged any of the leader's log yet; start it, and retry once it has caught up",
				errLearnerNotReady, id)
		}
		if pr.Match+maxLearnerLag < last {
			return fmt.Errorf("%w: member %d has the leader's log through index %d, %d entries short of its last index %d (at most %d may be missing); retry once it has caught up",
				errLearnerNotReady, id, pr.Match, last-pr.Match, last, maxLearnerLag)
		}
		n, up := voters+1, len(active)
		if pr.RecentActive {
			up++
		}
		if up < quorum(n) {
			return fmt.Errorf("%w: only %d of the %d voters it would make are active, and %d are needed",
				errWouldLoseQuorum, up, n, quorum(n))
		}
	case cc.GetType() == raftpb.ConfChangeAddNode:
		// Growing a cluster of one always goes through two members that
		// both must run; refusing would make it impossible.
		if n := voters + 1; len(active) < quorum(n) && voters > 1 {
			return fmt.Errorf("%w: only %d of %d voters are active, and %d of %d would be needed if the new member does not start",
				errWouldLoseQuorum, len(active), voters, quorum(n), n)
		}
	case cc.GetType() == raftpb.ConfChangeRemoveNode:
		if active[id] {
			if n := voters - 1; len(active)-1 < quorum(n) {
				return fmt.Errorf("%w: only %d of the %d remaining voters are active, and %d are needed",
					errWouldLoseQuorum, len(active)-1, n, quorum(n))
			}
		}
	}
	return nil
}

// confChangePending reports whether the log holds a conf change that is not
// applied yet: raft would drop another one.
func (rn *raftNode) confChangePending() bool {
	applied := rn.node.Status().Applied
	memory := rn.snaps.log.memory // raft's log as persisted
	last, err := memory.LastIndex()
	if err != nil || last <= applied {
		return false
	}
	ents, err := memory.Entries(applied+1, last+1, math.MaxUint64)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			return true
		}
	}
	return false
}

// activeVoters is the set of voters the leader believes are up: itself, and
// the voting followers it heard from within the last election timeout. (On
// a member that just lost the lead it is just itself, so no change passes.)
func activeVoters(members *membership, self uint64, st raft.Status) map[uint64]bool {
	active := map[uint64]bool{self: true}
	for id, pr := range st.Progress {
		if st.RaftState == raft.StateLeader && pr.RecentActive && !pr.IsLearner && members.isMember(id) && !members.isLearner(id) {
			active[id] = true
		}
	}
	return active
}

// Members lists the current members.
func (rn *raftNode) Members() []member { return rn.members.list() }

// applyConfChange applies one conf-change entry to raft, the member list and
// the transport, or cancels it if it cannot be applied. Cancelling depends
// only on the entry and the replicated member list, so every replica cancels
// the same entries; nothing in a committed entry may stop a replica.
func (rn *raftNode) applyConfChange(e *raftpb.Entry) (removedSelf bool) {
	cc := &raftpb.ConfChange{}
	var refusal error
	if e.GetType() != raftpb.EntryConfChange {
		refusal = fmt.Errorf("entry type %s is not supported", e.GetType())
	} else if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		refusal = fmt.Errorf("undecodable conf change: %w", err)
	} else {
		refusal = rn.members.check(cc)
	}
	if refusal != nil {
		// Raft must still see the entry; node id 0 makes it a no-op.
		rn.applied.confState = rn.node.ApplyConfChange(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(0))})
		rn.lg.Warn("cancelled a membership change", zap.Uint64("index", e.GetIndex()), zap.Error(refusal))
		rn.hooks.membershipChangeApplied(cc.GetId(), refusal)
		return false
	}
	rn.applied.confState = rn.node.ApplyConfChange(cc)
	rn.members.apply(cc)
	id := cc.GetNodeId()
	switch {
	case isPromotion(cc):
		rn.lg.Info("learner promoted to voter", zap.Uint64("id", id))
	case cc.GetType() == raftpb.ConfChangeAddNode, cc.GetType() == raftpb.ConfChangeAddLearnerNode:
		rn.peers.add(id, string(cc.GetContext()))
		rn.lg.Info("member added", zap.Uint64("id", id), zap.ByteString("peer-url", cc.GetContext()),
			zap.Bool("learner", cc.GetType() == raftpb.ConfChangeAddLearnerNode))
	case cc.GetType() == raftpb.ConfChangeRemoveNode:
		rn.peers.remove(id)
		rn.lg.Info("member removed", zap.Uint64("id", id))
	}
	rn.hooks.membershipChangeApplied(cc.GetId(), nil)
	return cc.GetType() == raftpb.ConfChangeRemoveNode && id == rn.cfg.id
}
