package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

const (
	tickInterval  = 100 * time.Millisecond
	electionTicks = 10 // an election timeout of about one second
	// maxCatchUpEntries and maxCatchUpBytes bound the entries kept in memory
	// behind a snapshot so that a follower lagging by less than that catches
	// up from the log rather than by a whole snapshot.
	maxCatchUpEntries = 5000
	maxCatchUpBytes   = 8 << 20
	// maxLogBytesBetweenSnapshots starts a snapshot before snap-count entries
	// when they are large (batches of writes are): raft keeps every entry
	// since the last snapshot in memory, and a restart replays them all.
	maxLogBytesBetweenSnapshots = 64 << 20
)

// errRemoved ends a node that learned it is no longer a member.
var errRemoved = errors.New("this member was removed from the cluster")

// rafthttpRemovedMessage is the text of the (unexported) error rafthttp
// reports when peers refuse this node because it was removed.
const rafthttpRemovedMessage = "the member has been permanently removed from the cluster"

// nodeHooks is what the raft node reports to the service in front of it
// (service), and asks of it.
type nodeHooks interface {
	// membershipChangeApplied reports the outcome of applying membership
	// change id (nil: done), from the Ready loop.
	membershipChangeApplied(id uint64, err error)
	// proposalsInDoubt reports that the node lost its leader: pending
	// proposals may never commit, or commit under a later leader.
	proposalsInDoubt()
	// leadMembershipChange makes a membership change a follower asked this
	// member, as the leader, to make (confChangePath).
	leadMembershipChange(ctx context.Context, cc *raftpb.ConfChange) error
}

// raftNode owns raft.Node and drives its Ready loop, the one goroutine that
// touches the loop's state: what is applied (applied), the durable log, the
// snapshots and who leads. The seams are types of their own: the durable log
// (durable.go), snapshots (snapshot.go), the peers (peers.go), leadership
// (leader.go) and the read index (read.go). Committed entries leave the node
// in log order on the commit channel (see startReplica).
type raftNode struct {
	cfg       raftConfig
	lg        *zap.Logger
	node      raft.Node
	log       logStorage           // *durableLog
	transport rafthttp.Transporter // the peers' transport, for the loop's messages
	peers     *peers
	snaps     *snapshots
	lead      *leadership
	reads     *readIndex
	view      *logView // what the Ready loop publishes of the log for the peer guard
	members   *membership
	hooks     nodeHooks
	commitC   chan<- commit
	applied   appliedState
	life      lifecycle
}

// appliedState is how far the Ready loop has applied the log, and the
// configuration that produced.
type appliedState struct {
	index     uint64
	confState *raftpb.ConfState
}

// lifecycle is how the node stops: stop is closed by Stop, done once the
// node has fully stopped, and err says why (read after done).
type lifecycle struct {
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	err      error
}

// run drives raft until Stop, an unrecoverable error or this node's removal.
func (rn *raftNode) run() {
	err := rn.loop()
	if errors.Is(err, errStopped) {
		err = nil // a step gave up because Stop was called: that is a clean stop
	}
	if errors.Is(err, errRemoved) {
		rn.lg.Info(errRemoved.Error() + "; stopping")
	} else if err != nil {
		rn.lg.Error("raft node failed", zap.Error(err))
	}
	rn.peers.stop()
	rn.node.Stop()
	rn.snaps.closeStartup()
	rn.snaps.writer.Wait() // the WAL is closed only after the snapshot writer is done
	if cerr := rn.log.close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing WAL: %w", cerr)
	}
	close(rn.commitC)
	rn.life.err = err
	close(rn.life.done)
}

func (rn *raftNode) loop() error {
	if kv, size := rn.snaps.takeStartup(); kv != nil {
		if err := rn.publish(commit{snapshot: kv, snapshotSize: size, index: rn.applied.index}); err != nil {
			kv.Close()
			return err
		}
	}
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			rn.node.Tick()
			rn.lead.tick()
		case rd := <-rn.node.Ready():
			if err := rn.handleReady(rd); err != nil {
				return err
			}
			rn.lead.maybeCampaignAlone(rn.applied.index)
		case r := <-rn.snaps.done:
			if err := rn.snaps.finish(r); err != nil {
				return err
			}
			if err := rn.answerBackups(); err != nil {
				return err
			}
		case req := <-rn.snaps.backups.requests:
			if err := rn.takeBackupRequest(req); err != nil {
				return err
			}
		case err := <-rn.snaps.faults:
			return err
		case err := <-rn.peers.guard.lost.report:
			return err
		case err := <-rn.peers.errorC():
			// rafthttp reports here when the peers refuse us as removed.
			if err.Error() == rafthttpRemovedMessage {
				return errRemoved
			}
			return fmt.Errorf("peer transport: %w", err)
		case <-rn.life.stop:
			return nil
		}
	}
}

// handleReady processes one Ready in the order raft's documentation lays down.
func (rn *raftNode) handleReady(rd raft.Ready) error {
	// 0. Volatile news: who leads, and answers to ReadIndex requests. The
	// peer guard learns the log's new extent before any message of this
	// Ready can make a peer refer to it.
	rn.view.observe(rd)
	rn.lead.observe(rd.SoftState, rd.HardState)
	if rd.HardState != nil {
		metricTerm.Set(float64(rd.HardState.GetTerm()))
		metricCommitIndex.Set(float64(rd.HardState.GetCommit()))
	}
	metricProposalsCommitted.Add(float64(len(rd.CommittedEntries)))
	rn.reads.forward(rd.ReadStates)
	// 1. Persist, and 2. send. A follower's messages may promise what this
	// Ready writes (a vote, an acknowledged entry), so they leave only once
	// the write is durable. A leader's do not: it counts its own new entries
	// towards commit only after they are persisted (when Advance is called),
	// so it sends first and writes its log while the followers write theirs
	// (Raft thesis, 10.2.1) — as long as its term and vote are on disk.
	early := rn.mayOverlapSendAndPersist(rd)
	if early {
		rn.send(rd.Messages)
	}
	if err := rn.log.persist(rd); err != nil {
		return err
	}
	if !early {
		rn.send(rd.Messages)
	}
	// 3. Apply the snapshot from the leader, then committed entries: only
	// now, once they are durable here (a restart must find what was applied).
	if err := rn.installSnapshot(rd.Snapshot); err != nil {
		return err
	}
	if err := rn.applyEntries(rd.CommittedEntries); err != nil {
		return err
	}
	if err := rn.maybeSnapshot(); err != nil {
		return err
	}
	// 4. Ready for the next batch.
	rn.node.Advance()
	return nil
}

// mayOverlapSendAndPersist reports whether this Ready's messages may leave
// before its entries are durable: only a leader's, and only when the Ready
// changes nothing of its hard state but the commit index, which raft can
// always learn again.
func (rn *raftNode) mayOverlapSendAndPersist(rd raft.Ready) bool {
	if rn.lead.leader() != rn.cfg.id || !raft.IsEmptySnap(rd.Snapshot) {
		return false
	}
	return rn.log.termAndVoteDurable(rd.HardState)
}

// send hands messages to the transport; snapshots go their own way, streamed
// from disk. Both report failures to raft themselves.
func (rn *raftNode) send(msgs []*raftpb.Message) {
	rest := msgs[:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			rn.snaps.send(m, rn.transport, rn.node)
		} else {
			rest = append(rest, m)
		}
	}
	rn.transport.Send(rest)
}

// applyEntries applies conf changes here and hands normal entries to the
// state machine.
func (rn *raftNode) applyEntries(ents []*raftpb.Entry) error {
	var data [][]byte
	removedSelf := false
	before := rn.applied.index
	for _, e := range ents {
		if e.GetIndex() <= rn.applied.index {
			continue // already covered by an installed snapshot
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) > 0 { // empty entries are new leaders' no-ops
				data = append(data, e.GetData())
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			removedSelf = rn.applyConfChange(e) || removedSelf
		}
		rn.applied.index = e.GetIndex()
		rn.snaps.noteApplied(len(e.GetData()))
	}
	if rn.applied.index > before {
		if err := rn.publish(commit{entries: data, index: rn.applied.index}); err != nil {
			return err
		}
	}
	if removedSelf {
		return errRemoved
	}
	return nil
}

// publish hands c to the state machine, giving up if the node is asked to
// stop.
func (rn *raftNode) publish(c commit) error {
	select {
	case rn.commitC <- c:
		return nil
	case <-rn.life.stop:
		return errStopped
	}
}

// Stop stops the node and waits until its WAL is closed. It is safe to call
// more than once and from any goroutine.
func (rn *raftNode) Stop() {
	rn.life.stopOnce.Do(func() { close(rn.life.stop) })
	<-rn.life.done
}

// Done is closed once the node has stopped, for whatever reason.
func (rn *raftNode) Done() <-chan struct{} { return rn.life.done }

// Err says why the node stopped: nil after Stop, errRemoved after this
// member's removal, anything else after a failure. Valid once Done is closed.
func (rn *raftNode) Err() error {
	<-rn.life.done
	return rn.life.err
}

// self is this member's id.
func (rn *raftNode) self() uint64 { return rn.cfg.id }

// ReadIndex returns an index such that state applied through it reflects every
// write acknowledged before the call. Concurrent callers share one round.
func (rn *raftNode) ReadIndex(ctx context.Context) (uint64, error) {
	return rn.reads.wait(ctx)
}

// acceptTimeout bounds how long raft may take to accept a proposal. It takes
// one at once while it knows a leader; a longer wait means the leader was lost
// in the meantime, and the request should not hang until its own timeout.
const acceptTimeout = 2 * electionTimeout

// propose waits for a leader, then hands a proposal to raft with submit.
func (rn *raftNode) propose(ctx context.Context, submit func(context.Context) error) error {
	if err := rn.awaitLeader(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, acceptTimeout)
	defer cancel()
	return submit(ctx)
}

// Propose hands data to raft as a normal entry.
func (rn *raftNode) Propose(ctx context.Context, data []byte) error {
	return rn.propose(ctx, func(ctx context.Context) error { return rn.node.Propose(ctx, data) })
}

// ProposeConfChange hands cc to raft; the service checked it
// (checkMembershipChange) and waits for its outcome.
func (rn *raftNode) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	return rn.propose(ctx, func(ctx context.Context) error { return rn.node.ProposeConfChange(ctx, cc) })
}

// kvImage is the state machine's state at one index, held still while it is
// written out (see kvstore.freeze).
type kvImage interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}
