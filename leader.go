package main

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/pkg/v3/notify"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// This file is about who leads: noticing changes, waiting for a leader,
// reporting raft's view, and moving leadership on purpose.

const electionTimeout = electionTicks * tickInterval

var (
	errTransferTimeout   = errors.New("leadership did not move to that member in time; retry later")
	errLearnerCannotLead = errors.New("that member is a learner and cannot lead; promote it first")
)

// leaderLossGrace is how long pending proposals wait for a new leader when
// the old one was lost to an election already under way (a vote request at a
// higher term, as after a leadership transfer): such an election finishes well
// within it, and the proposals commit under the new leader.
const leaderLossGrace = electionTimeout / 2

// leadership is this node's view of who leads, kept from the Ready loop's
// soft and hard state, and what follows from it: waiting for a leader, and
// telling the service when pending proposals are in doubt. The Ready loop
// owns lostAt, term and the campaign fields; the leader itself, and the
// channel of its changes, are read by any goroutine.
type leadership struct {
	rn     *raftNode
	id     atomic.Uint64    // the leader; 0 when none is known
	moved  *notify.Notifier // notified whenever the leader changes
	lostAt time.Time        // when an election took away the leader; zero once one is known
	term   uint64           // the latest term seen in a Ready
	// campaignAfter, when set, is the applied index at which a member
	// alone campaigns at once (see maybeCampaignAlone).
	campaignAfter uint64
}

func newLeadership(rn *raftNode) *leadership {
	return &leadership{rn: rn, moved: notify.NewNotifier()}
}

// leader is the leader this node knows, 0 if none.
func (l *leadership) leader() uint64 { return l.id.Load() }

// observe records leadership changes. When this node loses its leader
// without a new term (it stopped hearing from it, or as leader it lost the
// quorum), pending proposals may never commit, or may under a later leader:
// they are answered at once as of unknown outcome rather than left hanging
// until their timeout. When a new term took the leader away, they get
// leaderLossGrace to see the new leader first.
func (l *leadership) observe(ss *raft.SoftState, hs *raftpb.HardState) {
	newTerm := false
	if hs != nil && hs.GetTerm() > l.term {
		l.term, newTerm = hs.GetTerm(), true
	}
	if ss == nil {
		return
	}
	prev := l.id.Swap(ss.Lead)
	metricHasLeader.Set(boolGauge(ss.Lead != 0))
	if prev != ss.Lead && ss.Lead != 0 {
		metricLeaderChanges.Inc()
	}
	if prev != ss.Lead {
		l.moved.Notify()
	}
	switch {
	case ss.Lead != 0 || prev == 0:
	case newTerm:
		l.lostAt = time.Now()
	default:
		l.rn.hooks.proposalsInDoubt()
	}
}

// tick answers pending proposals once this node has been without a leader
// for leaderLossGrace: they may never commit (or may, under a later leader),
// and should not hang until their own timeout. Called every tick.
func (l *leadership) tick() {
	if l.lostAt.IsZero() {
		return
	}
	if l.leader() != 0 {
		l.lostAt = time.Time{}
		return
	}
	if time.Since(l.lostAt) >= leaderLossGrace {
		l.lostAt = time.Time{}
		l.rn.hooks.proposalsInDoubt()
	}
}

// campaignOnceApplied makes a member alone campaign once it has applied index.
func (l *leadership) campaignOnceApplied(index uint64) { l.campaignAfter = index }

// maybeCampaignAlone starts an election at once in a cluster of one, which
// need not wait out an election timeout to find that nobody else will lead.
// (With PreVote this cannot disturb a cluster that has grown since: the
// others refuse the pre-vote while they have a leader.)
func (l *leadership) maybeCampaignAlone(applied uint64) {
	if l.campaignAfter == 0 || applied < l.campaignAfter {
		return
	}
	l.campaignAfter = 0
	if err := l.rn.node.Campaign(context.Background()); err != nil {
		l.rn.lg.Debug("could not campaign", zap.Error(err))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Leader is this node's view of the current leader, 0 if it knows none.
func (rn *raftNode) Leader() uint64 { return rn.lead.leader() }

// leaderChanges is closed at the next change of leader.
func (rn *raftNode) leaderChanges() <-chan struct{} { return rn.lead.moved.Receive() }

// awaitLeader returns once this node knows a leader, or errNoLeader after
// about one election timeout without one. Raft does not take proposals while
// there is no leader: they would block rather than fail.
func (rn *raftNode) awaitLeader(ctx context.Context) error {
	timeout := time.NewTimer(electionTimeout)
	defer timeout.Stop()
	for {
		moved := rn.lead.moved.Receive()
		if rn.Leader() != 0 {
			return nil
		}
		select {
		case <-moved:
		case <-timeout.C:
			return errNoLeader
		case <-ctx.Done():
			return errNoLeader
		case <-rn.life.stop:
			return errStopped
		}
	}
}

// TransferLeadership moves leadership to member to and returns once this
// node sees it lead. Raft's transfer makes the leader bring to up to date,
// then tells it to campaign at once, so writes pause for about a round trip
// rather than an election timeout.
func (rn *raftNode) TransferLeadership(ctx context.Context, to uint64) error {
	if !rn.members.isMember(to) {
		return errNotMember
	}
	if rn.members.isLearner(to) {
		// Raft ignores such a transfer: the request would only time out.
		return errLearnerCannotLead
	}
	for {
		moved := rn.lead.moved.Receive()
		lead := rn.Leader()
		if lead == to {
			return nil
		}
		if lead == 0 {
			if err := rn.awaitLeader(ctx); err != nil {
				return err
			}
			continue
		}
		// A follower forwards the request to the leader. The leader gives up
		// on a transfer after an election timeout; then we ask again.
		rn.node.TransferLeadership(ctx, lead, to)
		retry := time.NewTimer(electionTimeout)
		select {
		case <-moved:
		case <-retry.C:
		case <-ctx.Done():
			retry.Stop()
			return errTransferTimeout
		case <-rn.life.stop:
			retry.Stop()
			return errStopped
		}
		retry.Stop()
	}
}

// HandOff moves leadership away before this node stops, to the follower that
// has the most of the log, so the cluster does not wait out an election
// timeout to notice the leader is gone. It does nothing on a follower.
func (rn *raftNode) HandOff(ctx context.Context) (to uint64, err error) {
	st := rn.node.Status()
	if st.RaftState != raft.StateLeader {
		return 0, nil
	}
	var best, bestMatch uint64
	for id, pr := range st.Progress {
		if id != rn.cfg.id && !pr.IsLearner && pr.RecentActive && pr.Match >= bestMatch {
			best, bestMatch = id, pr.Match
		}
	}
	if best == 0 {
		return 0, nil
	}
	return best, rn.TransferLeadership(ctx, best)
}

// raftStatus is raft's view from this node, as GET /v1/status shows it.
type raftStatus struct {
	ID            uint64           `json:"id"`
	ClusterID     string           `json:"clusterID"`
	State         string           `json:"state"` // leader, follower, candidate or pre-candidate
	Leader        uint64           `json:"leader"`
	Term          uint64           `json:"term"`
	Commit        uint64           `json:"commit"`
	SnapshotIndex uint64           `json:"snapshotIndex"`
	Members       []member         `json:"members"`
	Learners      []uint64         `json:"learners,omitempty"`  // the members that do not vote
	Learner       bool             `json:"learner,omitempty"`   // this member is one of them
	Followers     []followerStatus `json:"followers,omitempty"` // on the leader only
	LastIndex     uint64           `json:"lastIndex,omitempty"` // on the leader only: the last index of its log
}

// followerStatus is the leader's record of one follower's replication.
type followerStatus struct {
	ID           uint64 `json:"id"`
	Match        uint64 `json:"match"` // highest index known to be in its log
	Next         uint64 `json:"next"`  // next index to send it
	State        string `json:"state"` // probe, replicate or snapshot
	RecentActive bool   `json:"recentActive"`
	Learner      bool   `json:"learner,omitempty"`
}

var raftStateNames = map[raft.StateType]string{
	raft.StateFollower:     "follower",
	raft.StateCandidate:    "candidate",
	raft.StateLeader:       "leader",
	raft.StatePreCandidate: "pre-candidate",
}

// Status reports this node's raft state.
func (rn *raftNode) Status() raftStatus {
	st := rn.node.Status()
	out := raftStatus{
		ID:            rn.cfg.id,
		ClusterID:     formatClusterID(rn.peers.clusterID),
		State:         raftStateNames[st.RaftState],
		Leader:        st.Lead,
		Term:          st.HardState.GetTerm(),
		Commit:        st.HardState.GetCommit(),
		SnapshotIndex: rn.snaps.index.Load(),
		Members:       rn.members.list(),
		Learners:      rn.members.learnerIDs(),
		Learner:       rn.members.isLearner(rn.cfg.id),
	}
	for id, pr := range st.Progress {
		if id == rn.cfg.id {
			out.LastIndex = pr.Match // a leader's own progress is its log
			continue
		}
		out.Followers = append(out.Followers, followerStatus{
			ID:           id,
			Match:        pr.Match,
			Next:         pr.Next,
			State:        strings.ToLower(strings.TrimPrefix(pr.State.String(), "State")),
			RecentActive: pr.RecentActive,
			Learner:      pr.IsLearner,
		})
	}
	slices.SortFunc(out.Followers, func(a, b followerStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
