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
	errWouldLoseQuorum = errors.New("the change would leave the cluster without a quorum of active members")
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
// unique, no other change is pending, and a quorum of active members remains
// even if an added member never starts or a removed one was needed.
func (rn *raftNode) checkMembershipChange(cc *raftpb.ConfChange) error {
	id := cc.GetNodeId()
	if id == 0 || id > maxMemberID {
		return errBadMemberID
	}
	if err := rn.members.check(cc); err != nil {
		return err
	}
	members := rn.members.list()
	if cc.GetType() == raftpb.ConfChangeAddNode {
		want, _ := parsePeerURL(string(cc.GetContext())) // valid: check passed
		for _, m := range members {
			if u, err := parsePeerURL(m.PeerURL); err == nil && u == want {
				return fmt.Errorf("%w (member %d)", errPeerURLInUse, m.ID)
			}
		}
	}
	if rn.confChangePending() {
		return errChangeInFlight
	}
	active := rn.activeMembers()
	quorum := func(n int) int { return n/2 + 1 }
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		// Growing a cluster of one always goes through two members that
		// both must run; refusing would make it impossible.
		if n := len(members) + 1; len(active) < quorum(n) && len(members) > 1 {
			return fmt.Errorf("%w: only %d of %d members are active, and %d of %d would be needed if the new member does not start",
				errWouldLoseQuorum, len(active), len(members), quorum(n), n)
		}
	case raftpb.ConfChangeRemoveNode:
		if active[id] {
			if n := len(members) - 1; len(active)-1 < quorum(n) {
				return fmt.Errorf("%w: only %d of the %d remaining members are active, and %d are needed",
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

// activeMembers is the set of members the leader believes are up: itself,
// and the followers it heard from within the last election timeout. (On a
// member that just lost the lead it is just itself, so no change passes.)
func (rn *raftNode) activeMembers() map[uint64]bool {
	active := map[uint64]bool{rn.cfg.id: true}
	st := rn.node.Status()
	for id, pr := range st.Progress {
		if st.RaftState == raft.StateLeader && pr.RecentActive && rn.members.isMember(id) {
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
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		rn.peers.add(id, string(cc.GetContext()))
		rn.lg.Info("member added", zap.Uint64("id", id), zap.ByteString("peer-url", cc.GetContext()))
	case raftpb.ConfChangeRemoveNode:
		rn.peers.remove(id)
		rn.lg.Info("member removed", zap.Uint64("id", id))
	}
	rn.hooks.membershipChangeApplied(cc.GetId(), nil)
	return cc.GetType() == raftpb.ConfChangeRemoveNode && id == rn.cfg.id
}
