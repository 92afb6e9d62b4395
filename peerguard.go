package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
)

// The raft library trusts its peers: a message it is handed may make it
// panic (a heartbeat committing past the log, a term that wraps to 0 on the
// next election) or write nonsense into the log. Every byte on the peer port
// is hostile until checked, so each message passes peerGuard.check before it
// reaches raft.Step, and every rule below is one that a correct peer's
// messages always satisfy.

const (
	// maxTermLead bounds how far a message's term may be ahead of ours, and
	// maxTerm bounds terms outright, far below where adding 1 wraps around.
	//
	// Why a legitimate term never comes near them: a term grows by one per
	// election, and with PreVote a member raises its term only after a
	// majority granted it a pre-vote, that is, in an election the cluster
	// really held; with CheckQuorum, members that hear from a leader refuse
	// pre-votes, so terms do not climb while a leader is healthy, nor on a
	// member that is partitioned or restarting (its pre-votes fail). A peer
	// is therefore ahead of us by at most the number of elections held while
	// we were not listening: one or two per lost leader. A million of them
	// is beyond any cluster's lifetime, and at one election per millisecond
	// 2^62 terms take 146 million years. A forger, on the other hand, can
	// move a cluster's term up by at most maxTermLead per message it gets
	// accepted, never past maxTerm, so elections keep working.
	maxTermLead = 1 << 20
	maxTerm     = 1 << 62
	// maxLogIndex bounds indexes in the same way (one entry per index).
	maxLogIndex = 1 << 62
)

// logView is the Ready loop's latest view of raft's log, published for the
// peer guard, which runs on rafthttp's goroutines. Only the Ready loop
// writes it, before it sends the messages of a Ready, so every index a
// correct peer can refer to (an entry we sent, or acknowledged) is covered.
type logView struct {
	term   atomic.Uint64 // our current term
	commit atomic.Uint64 // our commit index
	last   atomic.Uint64 // index of the last entry in our log
}

// observe records what a Ready shows of the log.
func (v *logView) observe(rd raft.Ready) {
	if rd.HardState != nil {
		v.term.Store(rd.HardState.GetTerm())
		v.commit.Store(rd.HardState.GetCommit())
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		v.last.Store(rd.Snapshot.GetMetadata().GetIndex())
	}
	if n := len(rd.Entries); n > 0 {
		// Entries may replace an uncommitted tail, so the last index can go
		// down as well as up.
		v.last.Store(rd.Entries[n-1].GetIndex())
	}
}

// peerRefusal is why a peer's request was refused. rafthttp writes it as the
// answer (it implements rafthttp's writerToResponse) instead of treating it
// as a failure of its own.
type peerRefusal struct {
	reason string // the metric label: term, sender, type, log, entries, snapshot, body
	msg    string
	code   int
	// pastLog marks a heartbeat committing past our log: a forgery, or the
	// sign that our log lost entries it had acknowledged (see lostLog).
	pastLog bool
}

func (e *peerRefusal) Error() string { return "refused peer message: " + e.msg }

func (e *peerRefusal) WriteTo(w http.ResponseWriter) { http.Error(w, e.Error(), e.code) }

func refuse(reason, format string, args ...any) *peerRefusal {
	return &peerRefusal{reason: reason, msg: fmt.Sprintf(format, args...), code: http.StatusBadRequest}
}

// peerGuard decides which peer messages raft may see. It is used by
// rafthttp's goroutines; its parts are safe for concurrent use.
type peerGuard struct {
	lg      *zap.Logger
	self    uint64
	members *membership
	// seeds are the ids --cluster names. Until the log has named the
	// members (a joining member starts with none), messages from them are
	// accepted.
	seeds []uint64
	view  *logView
	// remotes are peers that are not members yet in our log but told us
	// where they listen: a member that lags behind a conf change hears from
	// members added since (even from a new leader) and must answer them.
	remotes  *remotePeers
	lost     *lostLog
	logEvery rate.Sometimes
	// receiving is the index of the snapshot being received on
	// /raft/snapshot, 0 if none: a MsgSnap is taken only from there, after
	// its data was checked.
	receiving atomic.Uint64
}

// check returns nil if m is a message a correct member could have sent us.
func (g *peerGuard) check(m *raftpb.Message) *peerRefusal {
	t := m.GetType()
	switch {
	case m.GetTo() != g.self:
		return refuse("sender", "addressed to %d, not to this member (%d)", m.GetTo(), g.self)
	case m.GetFrom() == g.self:
		return refuse("sender", "claims to come from this member (%d)", g.self)
	case !g.knownSender(m.GetFrom()):
		return refuse("sender", "sender %d is not a member", m.GetFrom())
	case !peerMessageTypes[t]:
		return refuse("type", "%s does not come from peers", t)
	}
	// Raft leaves the term of forwarded proposals and read requests unset and
	// sets it on everything else; a term-0 vote would slip past raft's
	// checks for stale terms.
	if term := m.GetTerm(); (t == raftpb.MsgProp || t == raftpb.MsgReadIndex) != (term == 0) {
		return refuse("term", "%s with term %d", t, term)
	} else if ours := g.view.term.Load(); term > maxTerm || term > ours+maxTermLead {
		return refuse("term", "%s at term %d, implausibly far beyond ours (%d)", t, term, ours)
	}
	if m.GetIndex() > maxLogIndex || m.GetCommit() > maxLogIndex {
		return refuse("log", "%s with index %d, commit %d", t, m.GetIndex(), m.GetCommit())
	}
	last := g.view.last.Load()
	switch t {
	case raftpb.MsgApp:
		return checkAppendedEntries(m)
	case raftpb.MsgHeartbeat:
		// A leader commits on a follower only what the follower has
		// acknowledged; raft panics on a commit index past its log.
		if m.GetCommit() > last {
			err := refuse("log", "heartbeat commits %d, past our last index %d", m.GetCommit(), last)
			err.pastLog = true
			return err
		}
	case raftpb.MsgAppResp:
		// Only entries we sent can be acknowledged or refused.
		if m.GetIndex() > last || m.GetRejectHint() > m.GetIndex() {
			return refuse("log", "append response for index %d (hint %d), past our last index %d", m.GetIndex(), m.GetRejectHint(), last)
		}
	case raftpb.MsgReadIndex, raftpb.MsgReadIndexResp:
		if len(m.GetEntries()) != 1 {
			return refuse("entries", "%s with %d entries, want 1", t, len(m.GetEntries()))
		}
	case raftpb.MsgProp:
		return g.checkProposedEntries(m.GetEntries())
	}
	return nil
}

// peerMessageTypes are the messages raft sends to other members. The rest
// are raft's own internal signals, some of which it accepts from anyone who
// claims to be its storage thread.
var peerMessageTypes = map[raftpb.MessageType]bool{
	raftpb.MsgProp: true, raftpb.MsgApp: true, raftpb.MsgAppResp: true,
	raftpb.MsgVote: true, raftpb.MsgVoteResp: true, raftpb.MsgPreVote: true, raftpb.MsgPreVoteResp: true,
	raftpb.MsgSnap: true, raftpb.MsgHeartbeat: true, raftpb.MsgHeartbeatResp: true,
	raftpb.MsgTransferLeader: true, raftpb.MsgTimeoutNow: true,
	raftpb.MsgReadIndex: true, raftpb.MsgReadIndexResp: true,
}

func (g *peerGuard) knownSender(id uint64) bool {
	if g.members.isMember(id) || g.remotes.admitted(id) {
		return true
	}
	return g.members.empty() && slices.Contains(g.seeds, id)
}

// checkAppendedEntries applies raft's own rule for an append (its logSlice
// validity, which raft leaves unchecked on receipt): the entries follow the
// message's index one by one, their terms never go down, and none is newer
// than the leader's term.
func checkAppendedEntries(m *raftpb.Message) *peerRefusal {
	index, term := m.GetIndex(), m.GetLogTerm()
	for _, e := range m.GetEntries() {
		if e.GetIndex() != index+1 || e.GetTerm() < term {
			return refuse("entries", "entry %d/%d does not follow %d/%d", e.GetIndex(), e.GetTerm(), index, term)
		}
		index, term = e.GetIndex(), e.GetTerm()
	}
	if term > m.GetTerm() {
		return refuse("entries", "entry term %d is newer than the leader's term %d", term, m.GetTerm())
	}
	return nil
}

// checkProposedEntries refuses a forwarded proposal that would not apply:
// with the same decoders the apply path uses, so the two cannot disagree.
func (g *peerGuard) checkProposedEntries(ents []*raftpb.Entry) *peerRefusal {
	if len(ents) == 0 {
		return refuse("entries", "empty proposal") // raft panics on one
	}
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) > 0 {
				if err := validateEntryData(e.GetData()); err != nil {
					return refuse("entries", "proposed entry does not decode: %v", err)
				}
			}
		case raftpb.EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return refuse("entries", "proposed conf change does not decode: %v", err)
			}
			if err := g.members.check(cc); err != nil {
				return refuse("entries", "proposed conf change would be cancelled: %v", err)
			}
		default:
			return refuse("entries", "proposed %s entries are not supported", e.GetType())
		}
	}
	return nil
}

// refused counts a refusal and logs it, at most once a second: a flood of
// forged messages must not become a flood of log lines.
func (g *peerGuard) refused(remote string, err *peerRefusal) {
	metricPeerMessagesRefused.WithLabelValues(err.reason).Inc()
	g.logEvery.Do(func() {
		g.lg.Warn("refused a peer message (further refusals within a second are only counted in raftexample_peer_messages_refused_total)",
			zap.String("remote", remote), zap.String("reason", err.msg))
	})
}

// remotePeers are the peers that are not members in our log but may be
// members already (see peerGuard.remotes). rafthttp starts a sender for each
// and never stops it, so how many it may hold is capped.
type remotePeers struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

const maxRemotePeers = 8

// admit records id as a remote, and reports whether it is one (now or
// already). It refuses once the cap is reached.
func (r *remotePeers) admit(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids[id] {
		return true
	}
	if len(r.ids) >= maxRemotePeers {
		return false
	}
	r.ids[id] = true
	return true
}

func (r *remotePeers) admitted(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

// lostLogPatience is how long the leader must keep committing past our log
// before this member concludes its log lost entries.
const lostLogPatience = 3 * time.Second

// lostLog notices that this member's log lost entries it had acknowledged (a
// damaged or truncated WAL): a correct leader commits on a follower only what
// the follower acknowledged, so a leader that keeps telling it that entries
// past its log are committed means its own data is wrong. Raft panics on the
// first such heartbeat; the guard refuses it, since one forged message must
// not stop a member, and only a leader of our term or a later one insisting
// for lostLogPatience stops it, with an error that says what to do. Safe for
// concurrent use.
type lostLog struct {
	first, latest atomic.Int64 // unix nanoseconds of the current streak's first and latest sighting
	report        chan error   // buffered; the Ready loop stops on it
}

func newLostLog() *lostLog { return &lostLog{report: make(chan error, 1)} }

// note records one heartbeat from leader committing commit past last.
func (l *lostLog) note(leader, commit, last uint64) {
	now := time.Now().UnixNano()
	if prev := l.latest.Swap(now); prev == 0 || now-prev > int64(2*electionTimeout) {
		l.first.Store(now) // a new streak
	}
	if now-l.first.Load() < int64(lostLogPatience) {
		return
	}
	select {
	case l.report <- fmt.Errorf("this member's log ends at index %d, but its leader (member %d) keeps saying that entries through %d, "+
		"which this member acknowledged, are committed: its WAL or snapshot files lost data; remove the member (DELETE /{id}), "+
		"wipe its data directory and add it back under a new id", last, leader, commit):
	default:
	}
}
