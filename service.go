package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/pkg/v3/notify"
	"go.etcd.io/etcd/pkg/v3/wait"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// service is what a member offers its clients, between the HTTP API and the
// raft node. A write becomes a command named by this member and an id; the
// service waits until a command of that name is applied here, proposing it
// again if it may have been lost (pending.go), and only then answers with
// what the command did (its condition is checked as it is applied). A
// linearizable read learns a read index from raft and waits until the state
// machine has applied that far. Membership changes are proposals too, made
// by the leader one at a time.
//
// The service also runs the apply loop (run): it hands the committed work the
// raft node publishes to the state machine, in log order, publishes the
// changes to the watch history, and then reports to the waiting requests.
// Its methods are safe for concurrent use.
type service struct {
	lg      *zap.Logger
	node    consensus // set by attach, before the node starts
	store   *kvstore
	batcher *batcher
	ids     *requestIDs      // for every proposal: commands and membership changes
	pending *pendingCommands // the commands requests await; set by attach
	waits   wait.Wait        // a membership change's id -> its outcome (an error, or nil)
	// inDoubt is notified when the node lost its leader while membership
	// changes may be pending: they may never commit, or commit under a later
	// leader.
	inDoubt *notify.Notifier
	applied wait.WaitTime // "applied through index N", advanced by run
	watches *watchHub     // the latest changes, published by run
	expiry  *expirer      // deadlines of the keys with a TTL, fed by run
	// leading is the one membership change this member, as the leader, is
	// making (leadMembershipChange), nil if none.
	leading atomic.Pointer[ledChange]
}

// ledChange is a membership change the leader is making, maybe for a
// follower: its id came from the follower, so it is not registered in waits
// (a foreign id could be one of ours: wait.Wait panics on that).
type ledChange struct {
	id      uint64
	outcome chan any // buffered
}

func newService(lg *zap.Logger, store *kvstore, watches *watchHub) *service {
	return &service{
		lg:      lg,
		store:   store,
		watches: watches,
		expiry:  newExpirer(),
		ids:     newRequestIDs(),
		waits:   wait.New(),
		inDoubt: notify.NewNotifier(),
		applied: wait.NewTimeList(),
	}
}

// consensus is what the service needs of the raft node (raftNode; a fake
// in the service's unit tests).
type consensus interface {
	proposer
	ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error
	ReadIndex(ctx context.Context) (uint64, error)
	awaitLeader(ctx context.Context) error
	Leader() uint64
	self() uint64
	askLeader(ctx context.Context, lead uint64, cc *raftpb.ConfChange) error
	checkMembershipChange(cc *raftpb.ConfChange) error
	Members() []member
	Status() raftStatus
	TransferLeadership(ctx context.Context, to uint64) error
	// leaderChanges is closed at the next change of leader.
	leaderChanges() <-chan struct{}
}

// attach connects the service to its raft node, before the node starts, and
// starts the goroutines that propose for it.
func (s *service) attach(node consensus) {
	s.node = node
	s.pending = newPendingCommands(node.self())
	s.batcher = newBatcher(node)
	go s.reproposer()
	go s.expireKeys()
}

// run applies commits until the channel is closed. An error means the state
// machine can no longer follow the log (a snapshot it cannot decode).
func (s *service) run(commitC <-chan commit) error {
	var done appliedCommit
	for c := range commitC {
		if c.freeze != nil {
			// Everything before this request is applied, nothing after it.
			c.freeze <- s.store.freeze()
			continue
		}
		var before uint64 // the clock a snapshot replaces
		if c.snapshot != nil {
			before = s.store.ProposalClock()
		}
		if err := s.store.applyCommit(c, &done); err != nil {
			return err
		}
		// Watchers hear of the changes before the writers: a watch opened
		// after a write's answer starts after the write.
		if done.restored {
			s.watches.reset(done.restoredRevision)
		}
		s.watches.publish(done.changes, done.revision)
		// A TTL counts from here, before the writer hears back (expiry.go).
		now := time.Now()
		if done.restored {
			s.expiry.reset(s.store.TTLKeys(), now)
		}
		s.expiry.observe(done.changes, now)
		// Reads waiting for this index may go before the writers hear back,
		// so a read issued right after a write's 204 does not wait.
		s.applied.Trigger(c.index)
		s.pending.complete(done.outcomes)
		after := s.store.ProposalClock()
		if c.snapshot != nil {
			s.pending.restored(before, after, s.store.AppliedOutcome)
		}
		// Only now: a command the re-proposer finds pending was not applied
		// through this tick (see pendingCommands.due).
		s.pending.publish(after)
	}
	return nil
}

// Put proposes key=value with the time to live ttl (0: none), if cond
// holds when it is applied, and returns once this node has applied it, so a
// nil error means the write is committed and visible here (or its
// condition failed, as the outcome says).
func (s *service) Put(ctx context.Context, key, value string, ttl time.Duration, cond condition) (outcome, error) {
	return s.proposeCommand(ctx, command{op: opPut, cond: cond, ttl: ttl, key: key, value: value})
}

// Txn proposes the transaction t and returns once this node has applied it,
// with what it did: the outcome fails if its failure branch ran, and its
// results are nil if this node learned of it only from a snapshot.
func (s *service) Txn(ctx context.Context, t *txnCommand) (outcome, error) {
	return s.proposeCommand(ctx, command{op: opTxn, txn: t})
}

// TTLRemaining is how long the write of key at modRevision has left to
// live, as this member counts it; false if it has no deadline for it.
func (s *service) TTLRemaining(key string, modRevision uint64) (time.Duration, bool) {
	return s.expiry.remaining(key, modRevision, time.Now())
}

// Delete proposes removing key (a missing key is no error), if cond holds,
// and returns once this node has applied it.
func (s *service) Delete(ctx context.Context, key string, cond condition) (outcome, error) {
	return s.proposeCommand(ctx, command{op: opDelete, cond: cond, key: key})
}

// proposeCommand proposes c and waits until it is applied here. Until then
// the re-proposer may propose it again; only the request's own timeout, or
// the node stopping, ends the wait without it.
func (s *service) proposeCommand(ctx context.Context, c command) (outcome, error) {
	metricProposalsPending.Inc()
	defer metricProposalsPending.Dec()
	pc, data := s.pending.add(c, s.ids.next())
	defer s.pending.withdraw(pc)
	switch err := s.batcher.propose(ctx, data); {
	case err == nil:
		s.pending.handedToRaft(pc)
	case !mayHaveReachedRaft(err):
		// Raft refused it (no leader yet, or one handing over): nothing was
		// done, and the re-proposer tries again under the next leader.
	case ctx.Err() != nil || errors.Is(err, errStopped) || errors.Is(err, raft.ErrStopped):
		metricProposalsFailed.Inc()
		return outcome{}, proposalError(ctx, err)
	default:
		// Raft did not say whether it took it in time: it may commit.
		s.pending.handedToRaft(pc)
	}
	select {
	case <-pc.applied:
		return pc.result, nil
	case <-ctx.Done():
	case <-s.node.Done():
		metricProposalsFailed.Inc()
		return outcome{}, errStoppedOutcomeUnknown
	}
	select {
	case <-pc.applied: // applied as the request gave up
		return pc.result, nil
	default:
	}
	metricProposalsFailed.Inc()
	if !s.pending.wasHanded(pc) {
		return outcome{}, errNoLeader // no copy ever reached raft
	}
	return outcome{}, errOutcomeUnknown
}

// mayHaveReachedRaft reports whether a proposal that failed with err may
// still be in raft's log: unless raft, or the wait for a leader before it,
// refused it outright.
func mayHaveReachedRaft(err error) bool {
	return !errors.Is(err, raft.ErrProposalDropped) && !errors.Is(err, errNoLeader)
}

// proposeAndWait waits for the outcome of proposal id, which propose hands
// to raft: until the apply path reports on id, the request gives up, the
// node loses its leader, or the node stops.
func (s *service) proposeAndWait(ctx context.Context, id uint64, propose func(context.Context) error) error {
	metricProposalsPending.Inc()
	defer metricProposalsPending.Dec()
	err := s.awaitOutcome(ctx, id, propose)
	if err != nil {
		metricProposalsFailed.Inc()
	}
	return err
}

func (s *service) awaitOutcome(ctx context.Context, id uint64, propose func(context.Context) error) error {
	// Before proposing: the entry may be applied before propose returns.
	outcome := s.waits.Register(id)
	return s.await(ctx, outcome, func() { s.waits.Trigger(id, nil) }, propose)
}

// await runs propose and waits for its outcome, which the apply path sends on
// outcome; forget withdraws the wait when the outcome will not be awaited.
func (s *service) await(ctx context.Context, outcome <-chan any, forget func(), propose func(context.Context) error) error {
	inDoubt := s.inDoubt.Receive() // before proposing: a loss after it counts
	if err := propose(ctx); err != nil {
		forget()
		return proposalError(ctx, err)
	}
	select {
	case x := <-outcome:
		err, _ := x.(error)
		return err
	case <-inDoubt:
		forget()
		return errLeaderLost
	case <-ctx.Done():
		forget()
		return errOutcomeUnknown
	case <-s.node.Done():
		forget()
		return errStoppedOutcomeUnknown
	}
}

// Get reads key. A linearizable read first learns the cluster's commit index
// through raft's ReadIndex and waits until this node has applied that far, so
// it sees every write acknowledged before it began, on any node. A
// serializable read (linearizable false) reads the local map at once and may
// be stale. It also returns the store's revision the read reflects.
func (s *service) Get(ctx context.Context, key string, linearizable bool) (v storedValue, found bool, revision uint64, err error) {
	if linearizable {
		if err := s.catchUpForRead(ctx); err != nil {
			return storedValue{}, false, 0, err
		}
	}
	v, found, revision = s.store.Lookup(key)
	return v, found, revision, nil
}

// List is kvstore.List, with Get's consistency.
func (s *service) List(ctx context.Context, prefix, start string, limit int, maxBytes int64, linearizable bool) (listPage, error) {
	if linearizable {
		if err := s.catchUpForRead(ctx); err != nil {
			return listPage{}, err
		}
	}
	return s.store.List(prefix, start, limit, maxBytes), nil
}

// catchUpForRead returns once this node has applied everything acknowledged
// anywhere before the call: the first half of a linearizable read.
func (s *service) catchUpForRead(ctx context.Context) error {
	index, err := s.node.ReadIndex(ctx)
	if err != nil {
		return err
	}
	select {
	case <-s.applied.Wait(index):
		return nil
	case <-ctx.Done():
		return errApplyBehind
	case <-s.node.Done():
		return errStopped
	}
}

// AddMember adds member id at peerURL (normalised by parsePeerURL) and
// returns once the change is applied here.
func (s *service) AddMember(ctx context.Context, id uint64, peerURL string) error {
	return s.changeMembership(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id, Context: []byte(peerURL),
	})
}

// RemoveMember removes member id and returns once the change is applied here.
func (s *service) RemoveMember(ctx context.Context, id uint64) error {
	return s.changeMembership(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: &id})
}

// changeMembership makes cc and returns once it is applied here. Changes are
// made by the leader, one at a time: raft itself drops a conf change
// proposed while another is unapplied (it turns it into an empty entry,
// which nobody waits for), so the leader refuses a second one at once
// instead, and it is also the member that knows which members are active. A
// follower asks the leader, on its peer port.
func (s *service) changeMembership(ctx context.Context, cc *raftpb.ConfChange) error {
	if err := s.node.awaitLeader(ctx); err != nil {
		return err
	}
	id := s.ids.next()
	cc.Id = &id
	lead := s.node.Leader()
	if lead == s.node.self() {
		return s.leadMembershipChange(ctx, cc)
	}
	// The entry may be applied here before the leader's answer arrives; the
	// wait is registered before asking.
	return s.proposeAndWait(ctx, id, func(ctx context.Context) error { return s.node.askLeader(ctx, lead, cc) })
}

// leadMembershipChange checks cc and proposes it, on the leader, and returns
// once it is applied here. It serves this member's requests and, through
// the peer port, those of followers.
func (s *service) leadMembershipChange(ctx context.Context, cc *raftpb.ConfChange) error {
	change := &ledChange{id: cc.GetId(), outcome: make(chan any, 1)}
	if !s.leading.CompareAndSwap(nil, change) {
		return errChangeInFlight
	}
	defer s.leading.Store(nil)
	if err := s.node.checkMembershipChange(cc); err != nil {
		return err
	}
	metricProposalsPending.Inc()
	defer metricProposalsPending.Dec()
	err := s.await(ctx, change.outcome, func() {}, func(ctx context.Context) error { return s.node.ProposeConfChange(ctx, cc) })
	if err != nil {
		metricProposalsFailed.Inc()
	}
	return err
}

// What the raft node reports to the service (see nodeHooks).

func (s *service) membershipChangeApplied(id uint64, err error) {
	if c := s.leading.Load(); c != nil && c.id == id {
		select {
		case c.outcome <- err:
		default: // an id applied twice (a forged entry): the first outcome stands
		}
	}
	s.waits.Trigger(id, err)
}

func (s *service) proposalsInDoubt() { s.inDoubt.Notify() }

// What the HTTP API reads of the member: the raft node's view, and the
// state machine's.

// Members lists the current members.
func (s *service) Members() []member { return s.node.Members() }

// Leader is the leader this member knows, 0 if none.
func (s *service) Leader() uint64 { return s.node.Leader() }

// Status is raft's view from this member.
func (s *service) Status() raftStatus { return s.node.Status() }

// TransferLeadership moves leadership to member to (raftNode.TransferLeadership).
func (s *service) TransferLeadership(ctx context.Context, to uint64) error {
	return s.node.TransferLeadership(ctx, to)
}

// State is kvstore.State: the applied index, the number of keys, the
// digest, the revision.
func (s *service) State() storeState { return s.store.State() }
