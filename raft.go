package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	stats "go.etcd.io/etcd/server/v3/etcdserver/api/v2stats"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

const (
	tickInterval  = 100 * time.Millisecond
	electionTicks = 10 // an election timeout of about one second
	// maxCatchUpEntries bounds the entries kept in memory behind a snapshot so
	// that a follower lagging by less than that catches up from the log rather
	// than by a whole snapshot.
	maxCatchUpEntries = 5000
	// clusterID tags rafthttp traffic; all members of one cluster share it.
	clusterID = 0x1000
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
	snapCount uint64 // applied entries between snapshots
}

// raftNode owns the raft state machine, its durable storage and the peer
// transport, and runs the Ready loop that ties them together. Committed
// entries leave it in log order on the commit channel.
type raftNode struct {
	cfg raftConfig
	lg  *zap.Logger

	commitC    chan<- commit
	kvSnapshot func() []byte // the kvstore's state, encoded; see currentSnapshot

	node      raft.Node
	storage   *raft.MemoryStorage // what raft reads: the snapshot and the log after it
	disk      *diskStorage
	transport *rafthttp.Transport
	peerLn    *stoppableListener
	members   *membership
	ids       *requestIDs
	waits     *waitRegistry // proposals waiting to be applied, shared with the kvstore
	reads     *linearizableReads
	// readStatesC carries raft's answers to ReadIndex requests from the Ready
	// loop to the read loop. Buffered so the Ready loop never waits on it.
	readStatesC chan raft.ReadState
	leader      atomic.Uint64 // this node's view of the leader; 0 when none
	leaderMu    sync.Mutex
	leaderMoved chan struct{} // closed and replaced whenever leader changes

	// Used only by the Ready loop goroutine.
	confState     *raftpb.ConfState
	snapshotIndex uint64
	appliedIndex  uint64
	startupSnap   []byte          // kv part of the snapshot loaded from disk, handed to the kvstore first
	lastApplied   <-chan struct{} // closed once the kvstore applied all published commits

	stopc    chan struct{} // closed by Stop
	donec    chan struct{} // closed when the node has fully stopped
	stopOnce sync.Once
	err      error // why the loop ended; read after donec is closed
}

// startRaftNode replays this node's storage, starts raft and the peer
// transport, and starts the Ready loop. Committed entries go to commitC;
// kvSnapshot must return the kvstore's state once it has applied everything
// sent so far (the loop waits for that before calling it). Proposals register
// in waits, which the node fails when it loses the leader.
func startRaftNode(lg *zap.Logger, cfg raftConfig, commitC chan<- commit, kvSnapshot func() []byte, waits *waitRegistry) (*raftNode, error) {
	if cfg.id == 0 || cfg.id > uint64(len(cfg.peerURLs)) {
		return nil, fmt.Errorf("--id %d has no entry in --cluster (%d URLs)", cfg.id, len(cfg.peerURLs))
	}
	for _, u := range cfg.peerURLs {
		if err := validatePeerURL(u); err != nil {
			return nil, fmt.Errorf("--cluster: %w", err)
		}
	}
	rn := &raftNode{
		cfg:         cfg,
		lg:          lg,
		commitC:     commitC,
		kvSnapshot:  kvSnapshot,
		storage:     raft.NewMemoryStorage(),
		members:     newMembership(),
		ids:         newRequestIDs(),
		waits:       waits,
		readStatesC: make(chan raft.ReadState, 64),
		leaderMoved: make(chan struct{}),
		confState:   &raftpb.ConfState{},
		lastApplied: closedChan(),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
	}
	disk, state, err := openDiskStorage(lg, cfg.id, cfg.waldir, cfg.snapdir)
	if err != nil {
		return nil, err
	}
	rn.disk = disk
	rn.reads = newLinearizableReads(rn.stopc)
	if err := rn.restore(state); err != nil {
		disk.close()
		return nil, err
	}
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
	go rn.run()
	go rn.runReadLoop()
	return rn, nil
}

// restore loads the replayed disk state into raft's storage and this node's
// bookkeeping.
func (rn *raftNode) restore(st *diskState) error {
	if st.snapshot != nil {
		membersData, kvData, err := decodeSnapshotData(st.snapshot.GetData())
		if err != nil {
			return fmt.Errorf("snapshot at index %d: %w", st.snapshot.GetMetadata().GetIndex(), err)
		}
		if _, err := rn.members.restore(membersData); err != nil {
			return err
		}
		if err := rn.storage.ApplySnapshot(st.snapshot); err != nil {
			return err
		}
		md := st.snapshot.GetMetadata()
		rn.confState = md.GetConfState()
		rn.snapshotIndex, rn.appliedIndex = md.GetIndex(), md.GetIndex()
		rn.startupSnap = kvData
	}
	if st.hardState != nil {
		if err := rn.storage.SetHardState(st.hardState); err != nil {
			return err
		}
	}
	return rn.storage.Append(st.entries)
}

func (rn *raftNode) startTransport(existed bool) error {
	ownURL := rn.cfg.peerURLs[rn.cfg.id-1]
	rn.transport = &rafthttp.Transport{
		Logger:      rn.lg.Named("rafthttp"),
		ID:          types.ID(rn.cfg.id),
		URLs:        types.MustNewURLs([]string{ownURL}),
		ClusterID:   clusterID,
		Raft:        rn,
		ServerStats: stats.NewServerStats("", ""),
		LeaderStats: stats.NewLeaderStats(rn.lg, strconv.FormatUint(rn.cfg.id, 10)),
		ErrorC:      make(chan error, 1),
	}
	if err := rn.transport.Start(); err != nil {
		return fmt.Errorf("starting peer transport: %w", err)
	}
	if existed {
		// Peers known from the snapshot; the rest come with replayed entries.
		for _, m := range rn.members.list() {
			rn.addPeer(m.ID, m.PeerURL)
		}
	} else {
		for i, u := range rn.cfg.peerURLs {
			rn.addPeer(uint64(i+1), u)
		}
	}
	u, _ := url.Parse(ownURL)
	ln, err := newStoppableListener(u.Host)
	if err != nil {
		rn.transport.Stop()
		return fmt.Errorf("listening for peers on %s: %w", u.Host, err)
	}
	rn.peerLn = ln
	srv := &http.Server{Handler: rn.transport.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, errListenerStopped) {
			rn.lg.Error("peer server stopped", zap.Error(err))
		}
	}()
	return nil
}

func (rn *raftNode) addPeer(id uint64, peerURL string) {
	if id != rn.cfg.id {
		rn.transport.AddPeer(types.ID(id), []string{peerURL})
	}
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
	if cerr := rn.disk.close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing WAL: %w", cerr)
	}
	close(rn.commitC)
	rn.err = err
	close(rn.donec)
}

func (rn *raftNode) loop() error {
	if rn.startupSnap != nil {
		if err := rn.publish(commit{snapshot: rn.startupSnap, index: rn.appliedIndex}); err != nil {
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
		case rd := <-rn.node.Ready():
			if err := rn.handleReady(rd); err != nil {
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
	// 0. Volatile news: who leads, and answers to ReadIndex requests.
	rn.noteLeader(rd.SoftState)
	rn.forwardReadStates(rd.ReadStates)
	// 1. Persist first: a message may promise what we have written (a vote,
	// an acknowledged entry), so it must not leave before the write is durable.
	if err := rn.persist(rd); err != nil {
		return err
	}
	// 2. Send. Snapshot messages report their own outcome to raft from the
	// transport's pipeline.
	if err := rn.refreshSnapshots(rd.Messages); err != nil {
		return err
	}
	rn.transport.Send(rd.Messages)
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

// noteLeader records leadership changes. When this node no longer knows a
// leader, proposals it is waiting on may never commit (or may, under a later
// leader): they are answered at once as of unknown outcome, instead of
// hanging until their timeout.
func (rn *raftNode) noteLeader(ss *raft.SoftState) {
	if ss == nil {
		return
	}
	prev := rn.leader.Swap(ss.Lead)
	if prev != ss.Lead {
		rn.leaderMu.Lock()
		close(rn.leaderMoved)
		rn.leaderMoved = make(chan struct{})
		rn.leaderMu.Unlock()
	}
	if ss.Lead == 0 && prev != 0 {
		rn.waits.failAll(errLeaderLost)
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

func (rn *raftNode) persist(rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Before the hard state: its commit index may point into the
		// snapshot, and a restart must find the snapshot to honour it.
		if err := rn.disk.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := rn.disk.save(rd.HardState, rd.Entries); err != nil {
		return fmt.Errorf("writing WAL: %w", err)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := rn.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	return rn.storage.Append(rd.Entries)
}

// refreshSnapshots replaces the snapshot in each outgoing MsgSnap with one of
// the current state. Raft sends the snapshot it last stored, and if a member
// was added since, its member list lacks the very follower it is sent to,
// which then refuses it and never catches up.
func (rn *raftNode) refreshSnapshots(msgs []*raftpb.Message) error {
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgSnap {
			continue
		}
		s, err := rn.currentSnapshot()
		if err != nil {
			return err
		}
		m.Snapshot = s // a new value: the stored snapshot is raft's and stays as it was
	}
	return nil
}

// currentSnapshot encodes the state at appliedIndex, once the kvstore has
// applied everything published so far.
func (rn *raftNode) currentSnapshot() (*raftpb.Snapshot, error) {
	select {
	case <-rn.lastApplied:
	case <-rn.stopc:
		return nil, errStopped
	}
	term, err := rn.storage.Term(rn.appliedIndex)
	if err != nil {
		return nil, fmt.Errorf("term of applied index %d: %w", rn.appliedIndex, err)
	}
	return &raftpb.Snapshot{
		Data: encodeSnapshotData(rn.members.encode(), rn.kvSnapshot()),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(rn.appliedIndex),
			Term:      new(term),
			ConfState: proto.Clone(rn.confState).(*raftpb.ConfState),
		},
	}, nil
}

// installSnapshot makes a snapshot sent by the leader this node's state.
func (rn *raftNode) installSnapshot(s *raftpb.Snapshot) error {
	if raft.IsEmptySnap(s) {
		return nil
	}
	md := s.GetMetadata()
	if md.GetIndex() <= rn.appliedIndex {
		return fmt.Errorf("snapshot index %d is not after applied index %d", md.GetIndex(), rn.appliedIndex)
	}
	membersData, kvData, err := decodeSnapshotData(s.GetData())
	if err != nil {
		return fmt.Errorf("snapshot from leader at index %d: %w", md.GetIndex(), err)
	}
	previous, err := rn.members.restore(membersData)
	if err != nil {
		return err
	}
	current := rn.members.list()
	for id := range previous {
		if id != rn.cfg.id && !containsMember(current, id) {
			rn.transport.RemovePeer(types.ID(id))
		}
	}
	for _, m := range current {
		if old, ok := previous[m.ID]; ok && old != m.PeerURL && m.ID != rn.cfg.id {
			rn.transport.UpdatePeer(types.ID(m.ID), []string{m.PeerURL})
		}
		rn.addPeer(m.ID, m.PeerURL)
	}
	if err := rn.publish(commit{snapshot: kvData, index: md.GetIndex()}); err != nil {
		return err
	}
	rn.confState = md.GetConfState()
	rn.snapshotIndex, rn.appliedIndex = md.GetIndex(), md.GetIndex()
	rn.lg.Info("installed snapshot from leader", zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	if rn.members.isRemoved(rn.cfg.id) {
		return errRemoved
	}
	return nil
}

func containsMember(ms []member, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
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
		case raftpb.EntryConfChange:
			removed, err := rn.applyConfChange(e)
			if err != nil {
				return err
			}
			removedSelf = removedSelf || removed
		}
		rn.appliedIndex = e.GetIndex()
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

// applyConfChange applies one conf-change entry to raft, the member list and
// the transport, or cancels it if the member list refuses it.
func (rn *raftNode) applyConfChange(e *raftpb.Entry) (removedSelf bool, err error) {
	cc := &raftpb.ConfChange{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return false, fmt.Errorf("decoding conf change at index %d: %w", e.GetIndex(), err)
	}
	refusal := rn.members.check(cc)
	if refusal != nil {
		// Raft must still see the entry; node id 0 makes it a no-op.
		cancelled := proto.Clone(cc).(*raftpb.ConfChange)
		cancelled.NodeId = new(uint64(0))
		rn.confState = rn.node.ApplyConfChange(cancelled)
		rn.waits.trigger(cc.GetId(), refusal)
		return false, nil
	}
	rn.confState = rn.node.ApplyConfChange(cc)
	rn.members.apply(cc)
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		rn.addPeer(id, string(cc.GetContext()))
		rn.lg.Info("member added", zap.Uint64("id", id), zap.ByteString("peer-url", cc.GetContext()))
	case raftpb.ConfChangeRemoveNode:
		if id != rn.cfg.id {
			rn.transport.RemovePeer(types.ID(id))
		}
		rn.lg.Info("member removed", zap.Uint64("id", id))
	}
	rn.waits.trigger(cc.GetId(), nil)
	return cc.GetType() == raftpb.ConfChangeRemoveNode && id == rn.cfg.id, nil
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

// maybeSnapshot takes a snapshot once snapCount entries were applied since
// the last one, then compacts the in-memory log behind it.
func (rn *raftNode) maybeSnapshot() error {
	if rn.appliedIndex-rn.snapshotIndex <= rn.cfg.snapCount {
		return nil
	}
	current, err := rn.currentSnapshot()
	if err != nil {
		return err
	}
	s, err := rn.storage.CreateSnapshot(rn.appliedIndex, rn.confState, current.GetData())
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	if err := rn.disk.saveSnapshot(s); err != nil {
		return err
	}
	catchUp := min(rn.cfg.snapCount, maxCatchUpEntries)
	if rn.appliedIndex > catchUp {
		if err := rn.storage.Compact(rn.appliedIndex - catchUp); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compacting log: %w", err)
		}
	}
	rn.snapshotIndex = rn.appliedIndex
	rn.disk.purge()
	rn.lg.Info("snapshot saved", zap.Uint64("index", rn.appliedIndex), zap.Int("bytes", len(s.GetData())))
	return nil
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

// Leader is this node's view of the current leader, 0 if it knows none.
func (rn *raftNode) Leader() uint64 { return rn.leader.Load() }

// ReadIndex returns an index such that state applied through it reflects every
// write acknowledged before the call. Concurrent callers share one round.
func (rn *raftNode) ReadIndex(ctx context.Context) (uint64, error) {
	return rn.reads.wait(ctx)
}

// awaitLeader returns once this node knows a leader, or errNoLeader after
// about one election timeout without one. Raft does not take proposals while
// there is no leader: they would block rather than fail.
func (rn *raftNode) awaitLeader(ctx context.Context) error {
	timeout := time.NewTimer(electionTicks * tickInterval)
	defer timeout.Stop()
	for {
		rn.leaderMu.Lock()
		moved := rn.leaderMoved
		rn.leaderMu.Unlock()
		if rn.Leader() != 0 {
			return nil
		}
		select {
		case <-moved:
		case <-timeout.C:
			return errNoLeader
		case <-ctx.Done():
			return errNoLeader
		case <-rn.stopc:
			return errStopped
		}
	}
}

// handoffTimeout bounds how long raft may take to accept a proposal. It takes
// one at once while it knows a leader; a longer wait means the leader was lost
// in the meantime, and the request should not hang until its own timeout.
const handoffTimeout = 2 * electionTicks * tickInterval

// propose waits for a leader, then hands a proposal to raft with submit.
func (rn *raftNode) propose(ctx context.Context, submit func(context.Context) error) error {
	if err := rn.awaitLeader(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	return submit(ctx)
}

// Propose hands data to raft as a normal entry.
func (rn *raftNode) Propose(ctx context.Context, data []byte) error {
	return rn.propose(ctx, func(ctx context.Context) error { return rn.node.Propose(ctx, data) })
}

// AddMember proposes adding member id at peerURL and returns once the change
// is applied here (or refused at apply time).
func (rn *raftNode) AddMember(ctx context.Context, id uint64, peerURL string) error {
	if err := rn.members.check(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id}); err != nil {
		return err
	}
	return rn.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id, Context: []byte(peerURL),
	})
}

// RemoveMember proposes removing member id and returns once it is applied.
func (rn *raftNode) RemoveMember(ctx context.Context, id uint64) error {
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: &id}
	if err := rn.members.check(cc); err != nil {
		return err
	}
	return rn.proposeConfChange(ctx, cc)
}

func (rn *raftNode) proposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	id := rn.ids.next()
	cc.Id = &id
	return rn.waits.proposeAndWait(ctx, id, rn.donec, func(ctx context.Context) error {
		return rn.propose(ctx, func(ctx context.Context) error { return rn.node.ProposeConfChange(ctx, cc) })
	})
}

// nodeStatus is this node's view of the cluster, as GET /v1/status shows it.
type nodeStatus struct {
	ID      uint64   `json:"id"`
	State   string   `json:"state"` // leader, follower, candidate or pre-candidate
	Leader  uint64   `json:"leader"`
	Term    uint64   `json:"term"`
	Commit  uint64   `json:"commit"`
	Applied uint64   `json:"applied"`
	Members []member `json:"members"`
}

var raftStateNames = map[raft.StateType]string{
	raft.StateFollower:     "follower",
	raft.StateCandidate:    "candidate",
	raft.StateLeader:       "leader",
	raft.StatePreCandidate: "pre-candidate",
}

// Status reports this node's raft state.
func (rn *raftNode) Status() nodeStatus {
	st := rn.node.Status()
	return nodeStatus{
		ID:      rn.cfg.id,
		State:   raftStateNames[st.RaftState],
		Leader:  st.Lead,
		Term:    st.HardState.GetTerm(),
		Commit:  st.HardState.GetCommit(),
		Applied: st.Applied,
		Members: rn.members.list(),
	}
}

// Members lists the current members.
func (rn *raftNode) Members() []member { return rn.members.list() }

// The rafthttp.Raft interface: how the transport hands us peers' messages.

func (rn *raftNode) Process(ctx context.Context, m *raftpb.Message) error {
	return rn.node.Step(ctx, m)
}
func (rn *raftNode) IsIDRemoved(id uint64) bool  { return rn.members.isRemoved(id) }
func (rn *raftNode) ReportUnreachable(id uint64) { rn.node.ReportUnreachable(id) }
func (rn *raftNode) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	rn.node.ReportSnapshot(id, status)
}

// A snapshot's data holds the member list and the kvstore's state:
//
//	format (1 byte, = 1) | member list length (uvarint) | member list (JSON) | kvstore state
const snapshotFormat = 1

func encodeSnapshotData(members, kv []byte) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(members)+len(kv))
	buf = append(buf, snapshotFormat)
	buf = binary.AppendUvarint(buf, uint64(len(members)))
	buf = append(buf, members...)
	return append(buf, kv...)
}

func decodeSnapshotData(data []byte) (members, kv []byte, err error) {
	if len(data) == 0 || data[0] != snapshotFormat {
		return nil, nil, errors.New("unknown snapshot format")
	}
	n, rest, err := readUvarint(data[1:])
	if err != nil || n > uint64(len(rest)) {
		return nil, nil, errors.New("corrupt snapshot header")
	}
	return rest[:n], rest[n:], nil
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
