package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
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

type raftConfig struct {
	id        uint64
	peerURLs  []string // --cluster: seeds the members of a brand-new cluster
	join      bool     // start empty and learn the members from the cluster
	waldir    string
	snapdir   string
	snapCount uint64            // applied entries between snapshots
	peerTLS   transport.TLSInfo // empty for plain http:// peers
	// clusterToken tells apart clusters founded with the same URLs; see
	// deriveClusterID.
	clusterToken string
	// listenPeerURL, when set, is where the peer port listens; peers still
	// reach this node at its --cluster URL (through a proxy, say).
	listenPeerURL string
}

// raftNode owns the raft state machine, its durable storage and the peer
// transport, and runs the Ready loop that ties them together. Committed
// entries leave it in log order on the commit channel.
type raftNode struct {
	cfg raftConfig
	lg  *zap.Logger

	commitC  chan<- commit
	freezeKV func() kvImage // the kvstore's state, held still for a snapshot; see maybeSnapshot

	node       raft.Node
	storage    *raft.MemoryStorage // what raft reads: the snapshot and the log after it
	disk       *diskStorage
	transport  *rafthttp.Transport
	peerLn     *stoppableListener
	peerClient *http.Client // for asking other members (askLeader)
	clusterID  uint64       // set at start, from the WAL or for a new member
	guard      *peerGuard
	members    *membership
	// confChangeInFlight is held by the one membership change this node
	// is making as the leader; see leadConfChange.
	confChangeInFlight atomic.Bool
	ids                *requestIDs
	waits              *waitRegistry // proposals waiting to be applied, shared with the kvstore
	reads              *linearizableReads
	// readStatesC carries raft's answers to ReadIndex requests from the Ready
	// loop to the read loop. Buffered so the Ready loop never waits on it.
	readStatesC chan raft.ReadState
	leader      atomic.Uint64 // this node's view of the leader; 0 when none
	leaderMu    sync.Mutex
	leaderMoved chan struct{} // closed and replaced whenever leader changes

	// Used only by the Ready loop goroutine.
	confState       *raftpb.ConfState
	snapshotIndex   atomic.Uint64 // written only by the Ready loop; read by Status too
	appliedIndex    uint64
	startupSnap     io.ReadCloser // kv part of the snapshot loaded from disk, handed to the kvstore first
	startupSnapSize int64
	lastApplied     <-chan struct{} // closed once the kvstore applied all published commits
	persistedTerm   uint64          // the term and vote last written to the WAL
	persistedVote   uint64
	snapshotting    bool      // a snapshot is being written in the background
	snapshotWanted  bool      // take a snapshot at the next chance, whatever snapCount says
	logBytes        int       // bytes of entries applied since the last snapshot started
	leaderLostAt    time.Time // when an election took away the leader; zero once one is known
	campaignAlone   bool      // campaign once appliedIndex reaches campaignAfter
	campaignAfter   uint64
	term            uint64 // the latest term seen in a Ready

	// snapshotDone carries the outcome of the background snapshot writer to
	// the Ready loop. There is at most one writer, and the buffer means it
	// never waits for the loop, which may be stopping.
	snapshotDone chan snapshotResult
	snapshotWG   sync.WaitGroup // the writer; the WAL is closed only after it is done

	stopc    chan struct{} // closed by Stop
	donec    chan struct{} // closed when the node has fully stopped
	stopOnce sync.Once
	err      error // why the loop ended; read after donec is closed
}

// startRaftNode replays this node's storage, starts raft and the peer
// transport, and starts the Ready loop. Committed entries go to commitC;
// freezeKV must hold the kvstore's state still and return it, and is called
// only once the kvstore has applied everything sent so far. Proposals register
// in waits, which the node fails when it loses the leader.
func startRaftNode(lg *zap.Logger, cfg raftConfig, commitC chan<- commit, freezeKV func() kvImage, waits *waitRegistry) (*raftNode, error) {
	if cfg.id == 0 || cfg.id > uint64(len(cfg.peerURLs)) {
		return nil, fmt.Errorf("--id %d has no entry in --cluster (%d URLs)", cfg.id, len(cfg.peerURLs))
	}
	urls := make([]string, len(cfg.peerURLs))
	for i, u := range cfg.peerURLs {
		var err error
		if urls[i], err = parsePeerURL(u); err != nil {
			return nil, fmt.Errorf("--cluster: %w", err)
		}
	}
	cfg.peerURLs = urls
	if cfg.listenPeerURL != "" {
		if _, err := parsePeerURL(cfg.listenPeerURL); err != nil {
			return nil, fmt.Errorf("--listen-peer-url: %w", err)
		}
	}
	rn := &raftNode{
		cfg:          cfg,
		lg:           lg,
		commitC:      commitC,
		freezeKV:     freezeKV,
		storage:      raft.NewMemoryStorage(),
		members:      newMembership(),
		ids:          newRequestIDs(),
		waits:        waits,
		readStatesC:  make(chan raft.ReadState, 64),
		leaderMoved:  make(chan struct{}),
		confState:    &raftpb.ConfState{},
		lastApplied:  closedChan(),
		snapshotDone: make(chan snapshotResult, 1),
		stopc:        make(chan struct{}),
		donec:        make(chan struct{}),
	}
	disk, state, err := openDiskStorage(lg, cfg.id, cfg.waldir, cfg.snapdir, func() (uint64, error) {
		if cfg.join {
			return learnClusterID(lg, cfg.peerURLs, cfg.id, cfg.peerTLS)
		}
		return deriveClusterID(cfg.peerURLs, cfg.clusterToken), nil
	})
	if err != nil {
		return nil, err
	}
	rn.disk, rn.clusterID = disk, state.clusterID
	if rn.peerClient, err = newPeerClient(cfg.peerTLS); err != nil {
		disk.close()
		return nil, err
	}
	seeds := make([]uint64, len(cfg.peerURLs))
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	rn.guard = &peerGuard{lg: lg, self: cfg.id, members: rn.members, seeds: seeds, view: &logView{},
		remotes: &remotePeers{ids: map[uint64]bool{}}, logEvery: rate.Sometimes{Interval: time.Second}}
	rn.reads = newLinearizableReads(rn.stopc)
	if err := rn.restore(state); err != nil {
		disk.close()
		return nil, err
	}
	if hs := state.hardState; hs != nil {
		rn.guard.view.term.Store(hs.GetTerm())
		rn.guard.view.commit.Store(hs.GetCommit())
	}
	last, _ := rn.storage.LastIndex()
	rn.guard.view.last.Store(last)
	c := &raft.Config{
		ID:                        cfg.id,
		ElectionTick:              electionTicks,
		HeartbeatTick:             1,
		Storage:                   rn.storage,
		Applied:                   rn.appliedIndex,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true, // a leader cut off from the majority steps down
		PreVote:                   true, // a partitioned or removed node cannot disrupt the others
		StepDownOnRemoval:         true,
		Logger:                    newRaftLogger(lg),
	}
	if state.existed || cfg.join {
		// The members come from the log and snapshot (or, when joining, from
		// the leader), never from --cluster.
		rn.node = raft.RestartNode(c)
	} else {
		peers := make([]raft.Peer, len(cfg.peerURLs))
		for i, u := range cfg.peerURLs {
			// The URL rides in the bootstrap conf changes, so the log itself
			// records where every member listens.
			peers[i] = raft.Peer{ID: uint64(i + 1), Context: []byte(u)}
		}
		rn.node = raft.StartNode(c, peers)
	}
	// The transport starts after the node exists: peers may send us messages
	// the moment it listens, and those go straight to rn.node.
	if err := rn.startTransport(state.existed); err != nil {
		rn.node.Stop()
		disk.close()
		return nil, err
	}
	if len(cfg.peerURLs) == 1 && !cfg.join {
		// Raft refuses to campaign before the conf changes it knows of are
		// applied: the bootstrap one, or those replayed from the WAL.
		rn.campaignAlone = true
		rn.campaignAfter = max(1, state.hardState.GetCommit())
	}
	go rn.run()
	go rn.runReadLoop()
	return rn, nil
}

// restore loads the replayed disk state into raft's storage and this node's
// bookkeeping.
func (rn *raftNode) restore(st *diskState) error {
	if st.snapshot != nil {
		membersData, kv, size, err := rn.openSnapshot(st.snapshot)
		if err != nil {
			return err
		}
		if _, err := rn.members.restore(membersData); err != nil {
			kv.Close()
			return err
		}
		if err := rn.storage.ApplySnapshot(st.snapshot); err != nil {
			kv.Close()
			return err
		}
		md := st.snapshot.GetMetadata()
		rn.confState = md.GetConfState()
		rn.snapshotIndex.Store(md.GetIndex())
		rn.appliedIndex = md.GetIndex()
		rn.startupSnap, rn.startupSnapSize = kv, size
	}
	if st.hardState != nil {
		rn.persistedTerm, rn.persistedVote = st.hardState.GetTerm(), st.hardState.GetVote()
		if err := rn.storage.SetHardState(st.hardState); err != nil {
			return err
		}
	}
	return rn.storage.Append(st.entries)
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
	rn.transport.Stop()
	rn.peerLn.stop()
	rn.node.Stop()
	rn.snapshotWG.Wait()
	if cerr := rn.disk.close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing WAL: %w", cerr)
	}
	close(rn.commitC)
	rn.err = err
	close(rn.donec)
}

func (rn *raftNode) loop() error {
	if rn.startupSnap != nil {
		if err := rn.publish(commit{snapshot: rn.startupSnap, snapshotSize: rn.startupSnapSize, index: rn.appliedIndex}); err != nil {
			rn.startupSnap.Close()
			return err
		}
		rn.startupSnap = nil
	}
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			rn.node.Tick()
			rn.checkLeaderLoss()
		case rd := <-rn.node.Ready():
			if err := rn.handleReady(rd); err != nil {
				return err
			}
			rn.maybeCampaignAlone()
		case r := <-rn.snapshotDone:
			if err := rn.finishSnapshot(r); err != nil {
				return err
			}
		case err := <-rn.transport.ErrorC:
			// rafthttp reports here when the peers refuse us as removed.
			if err.Error() == rafthttpRemovedMessage {
				return errRemoved
			}
			return fmt.Errorf("peer transport: %w", err)
		case <-rn.stopc:
			return nil
		}
	}
}

// handleReady processes one Ready in the order raft's documentation lays down.
func (rn *raftNode) handleReady(rd raft.Ready) error {
	// 0. Volatile news: who leads, and answers to ReadIndex requests. The
	// peer guard learns the log's new extent before any message of this
	// Ready can make a peer refer to it.
	rn.guard.view.observe(rd)
	rn.noteLeader(rd.SoftState, rd.HardState)
	if rd.HardState != nil {
		metricTerm.Set(float64(rd.HardState.GetTerm()))
		metricCommitIndex.Set(float64(rd.HardState.GetCommit()))
	}
	metricProposalsCommitted.Add(float64(len(rd.CommittedEntries)))
	rn.forwardReadStates(rd.ReadStates)
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
	if err := rn.persist(rd); err != nil {
		return err
	}
	if !early {
		rn.send(rd.Messages)
	}
	// 3. Apply the snapshot from the leader, then committed entries.
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

// maybeCampaignAlone starts an election at once in a cluster of one, which
// need not wait out an election timeout to find that nobody else will lead.
// (With PreVote this cannot disturb a cluster that has grown since: the
// others refuse the pre-vote while they have a leader.)
func (rn *raftNode) maybeCampaignAlone() {
	if !rn.campaignAlone || rn.appliedIndex < rn.campaignAfter {
		return
	}
	rn.campaignAlone = false
	if err := rn.node.Campaign(context.Background()); err != nil {
		rn.lg.Debug("could not campaign", zap.Error(err))
	}
}

func (rn *raftNode) forwardReadStates(states []raft.ReadState) {
	for _, rs := range states {
		select {
		case rn.readStatesC <- rs:
		default:
			// Only a round that gave up can leave answers unread; its
			// successor retries with a new request.
			rn.lg.Warn("dropping a read index answer: read loop is behind")
		}
	}
}

// mayOverlapSendAndPersist reports whether this Ready's messages may leave
// before its entries are durable: only a leader's, and only when the Ready
// changes nothing of its hard state but the commit index, which raft can
// always learn again.
func (rn *raftNode) mayOverlapSendAndPersist(rd raft.Ready) bool {
	if rn.leader.Load() != rn.cfg.id || !raft.IsEmptySnap(rd.Snapshot) {
		return false
	}
	hs := rd.HardState
	return hs == nil || (hs.GetTerm() == rn.persistedTerm && hs.GetVote() == rn.persistedVote)
}

// send hands messages to the transport; snapshots go their own way, streamed
// from disk. Both report failures to raft themselves.
func (rn *raftNode) send(msgs []*raftpb.Message) {
	rest := msgs[:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			rn.sendSnapshot(m)
		} else {
			rest = append(rest, m)
		}
	}
	rn.transport.Send(rest)
}

func (rn *raftNode) persist(rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Before the hard state: its commit index may point into the
		// snapshot, and a restart must find the snapshot to honour it.
		if err := rn.disk.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
		// The .snap file now refers to the data rafthttp received.
		rn.disk.inFlight.done(rd.Snapshot.GetMetadata().GetIndex())
	}
	if err := rn.disk.save(rd.HardState, rd.Entries); err != nil {
		return fmt.Errorf("writing WAL: %w", err)
	}
	if rd.HardState != nil {
		rn.persistedTerm, rn.persistedVote = rd.HardState.GetTerm(), rd.HardState.GetVote()
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := rn.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	return rn.storage.Append(rd.Entries)
}

// applyEntries applies conf changes here and hands normal entries to the
// kvstore.
func (rn *raftNode) applyEntries(ents []*raftpb.Entry) error {
	var data [][]byte
	removedSelf := false
	before := rn.appliedIndex
	for _, e := range ents {
		if e.GetIndex() <= rn.appliedIndex {
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
		rn.appliedIndex = e.GetIndex()
		rn.logBytes += len(e.GetData())
	}
	if rn.appliedIndex > before {
		if err := rn.publish(commit{entries: data, index: rn.appliedIndex}); err != nil {
			return err
		}
	}
	if removedSelf {
		return errRemoved
	}
	return nil
}

// publish hands c to the kvstore, giving up if the node is asked to stop.
func (rn *raftNode) publish(c commit) error {
	applied := make(chan struct{})
	c.applied = applied
	select {
	case rn.commitC <- c:
		rn.lastApplied = applied
		return nil
	case <-rn.stopc:
		return errStopped
	}
}

// Stop stops the node and waits until its WAL is closed. It is safe to call
// more than once and from any goroutine.
func (rn *raftNode) Stop() {
	rn.stopOnce.Do(func() { close(rn.stopc) })
	<-rn.donec
}

// Done is closed once the node has stopped, for whatever reason.
func (rn *raftNode) Done() <-chan struct{} { return rn.donec }

// Err says why the node stopped: nil after Stop, errRemoved after this
// member's removal, anything else after a failure. Valid once Done is closed.
func (rn *raftNode) Err() error {
	<-rn.donec
	return rn.err
}

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

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
