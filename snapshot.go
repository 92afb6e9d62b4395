package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// This file is about snapshots: taking them every snap-count entries,
// sending them to followers that are too far behind for the log, installing
// the ones the leader sends, and what their data holds.
//
// A snapshot has two parts. The raft snapshot (the .snap file, and what raft
// keeps in memory) holds the metadata and the member list, and is small. The
// kvstore's state is in a file of its own beside it, named by the snapshot's
// index (rafthttp's naming: <index>.snap.db); it is streamed to and from disk
// and to followers, never held in memory as a whole.

// kvImage is the kvstore's state at one index, held still while it is written
// out (see kvstore.freeze).
type kvImage interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}

// snapshotResult is what the background snapshot writer reports to the
// Ready loop.
type snapshotResult struct {
	snapshot *raftpb.Snapshot
	bytes    int64 // size of the kvstore's part
	took     time.Duration
	err      error
}

// maybeSnapshot starts a snapshot once snapCount entries, or
// maxLogBytesBetweenSnapshots of them, were applied since the last one, or
// when one was asked for (see sendSnapshot). Only freezing the kvstore happens
// here; the state is written out in the background (finishSnapshot picks up
// the result), so the Ready loop and the kvstore go on while it is written.
func (rn *raftNode) maybeSnapshot() error {
	since := rn.appliedIndex - rn.snapshotIndex.Load()
	due := since > rn.cfg.snapCount || rn.logBytes > maxLogBytesBetweenSnapshots || rn.snapshotWanted
	if rn.snapshotting || since == 0 || !due {
		return nil
	}
	// The kvstore must have applied everything up to appliedIndex, or the
	// snapshot would claim entries it does not hold.
	select {
	case <-rn.lastApplied:
	case <-rn.stopc:
		return errStopped
	}
	term, err := rn.storage.Term(rn.appliedIndex)
	if err != nil {
		return fmt.Errorf("term of applied index %d: %w", rn.appliedIndex, err)
	}
	s := &raftpb.Snapshot{
		Data: encodeSnapshotData(rn.members.encode(rn.clusterID)),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(rn.appliedIndex),
			Term:      new(term),
			ConfState: proto.Clone(rn.confState).(*raftpb.ConfState),
		},
	}
	index, image := rn.appliedIndex, rn.freezeKV()
	rn.snapshotting, rn.snapshotWanted, rn.logBytes = true, false, 0
	rn.snapshotWG.Add(1)
	rn.disk.inFlight.add(index) // retention must leave the data file alone until its .snap exists
	go func() {
		defer rn.snapshotWG.Done()
		defer rn.disk.inFlight.done(index)
		start := time.Now()
		// The kvstore's file is durable before the .snap file that refers to
		// it, and both before the WAL records the snapshot (saveSnapshot).
		n, err := rn.disk.saveKV(index, image)
		image.Release()
		if err == nil {
			err = rn.disk.saveSnapshot(s)
		}
		rn.snapshotDone <- snapshotResult{snapshot: s, bytes: n, took: time.Since(start), err: err}
	}()
	return nil
}

// finishSnapshot, in the Ready loop, hands a snapshot that is now durable to
// raft, which then serves lagging followers from it, and compacts the log
// behind it.
func (rn *raftNode) finishSnapshot(r snapshotResult) error {
	rn.snapshotting = false
	if r.err != nil {
		return r.err
	}
	md := r.snapshot.GetMetadata()
	index := md.GetIndex()
	_, err := rn.storage.CreateSnapshot(index, md.GetConfState(), r.snapshot.GetData())
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil // a newer snapshot from the leader was installed meanwhile
	}
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	if to := rn.compactionPoint(index); to > 0 {
		if err := rn.storage.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compacting log: %w", err)
		}
	}
	rn.snapshotIndex.Store(index)
	metricSnapshotIndex.Set(float64(index))
	metricSnapshotDuration.Observe(r.took.Seconds())
	rn.disk.purge()
	rn.lg.Info("snapshot saved", zap.Uint64("index", index), zap.Int64("bytes", r.bytes), zap.Duration("took", r.took))
	return nil
}

// compactionPoint is where to compact the in-memory log after a snapshot at
// index: entries behind the snapshot are kept for a while, so that a follower
// lagging by less than that catches up from the log, but no more than
// min(snapCount, maxCatchUpEntries) of them, nor more than maxCatchUpBytes.
func (rn *raftNode) compactionPoint(index uint64) uint64 {
	catchUp := min(rn.cfg.snapCount, maxCatchUpEntries)
	if index <= catchUp {
		return 0
	}
	first, err := rn.storage.FirstIndex()
	if err != nil || first > index {
		return 0
	}
	lo := max(index-catchUp+1, first)
	ents, err := rn.storage.Entries(lo, index+1, math.MaxUint64)
	if err != nil {
		return index - catchUp
	}
	size := 0
	for i := len(ents) - 1; i >= 0; i-- {
		if size += len(ents[i].GetData()); size > maxCatchUpBytes {
			return ents[i].GetIndex()
		}
	}
	return lo - 1
}

// sendSnapshot streams the snapshot raft chose to a follower, reading the
// kvstore's part from its file. rafthttp reports the outcome to raft.
func (rn *raftNode) sendSnapshot(m *raftpb.Message) {
	md := m.GetSnapshot().GetMetadata()
	cs := md.GetConfState()
	if !slices.Contains(cs.GetVoters(), m.GetTo()) && !slices.Contains(cs.GetLearners(), m.GetTo()) {
		// The follower joined after this snapshot was taken and would refuse
		// it for not listing it. Take a new one; raft retries after a failure.
		rn.snapshotWanted = true
		rn.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	f, size, err := rn.disk.openKV(md.GetIndex())
	if err != nil {
		rn.lg.Warn("cannot send snapshot; taking a new one", zap.Uint64("to", m.GetTo()), zap.Error(err))
		rn.snapshotWanted = true
		rn.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	rn.transport.SendSnapshot(snap.NewMessage(m, f, size))
}

// installSnapshot makes a snapshot sent by the leader this node's state.
// rafthttp saved its kvstore part to disk before handing raft the message.
func (rn *raftNode) installSnapshot(s *raftpb.Snapshot) error {
	if raft.IsEmptySnap(s) {
		return nil
	}
	md := s.GetMetadata()
	if md.GetIndex() <= rn.appliedIndex {
		return fmt.Errorf("snapshot index %d is not after applied index %d", md.GetIndex(), rn.appliedIndex)
	}
	membersData, kv, size, err := rn.openSnapshot(s)
	if err != nil {
		return fmt.Errorf("snapshot from leader: %w", err)
	}
	previous, err := rn.members.restore(membersData)
	if err != nil {
		kv.Close()
		return err
	}
	rn.syncPeers(previous)
	if err := rn.publish(commit{snapshot: kv, snapshotSize: size, index: md.GetIndex()}); err != nil {
		kv.Close()
		return err
	}
	rn.confState = md.GetConfState()
	rn.snapshotIndex.Store(md.GetIndex())
	rn.appliedIndex = md.GetIndex()
	rn.logBytes = 0
	rn.disk.purge()
	rn.lg.Info("installed snapshot from leader", zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	if rn.members.isRemoved(rn.cfg.id) {
		return errRemoved
	}
	return nil
}

// checkSnapshotData checks a snapshot a peer sent before raft may see it:
// raft panics on a configuration it cannot restore, and this node fails on a
// member list or data it cannot load, at once and after every restart. With
// withData, the kvstore's part (saved by rafthttp) is read through too.
func (rn *raftNode) checkSnapshotData(s *raftpb.Snapshot, withData bool) error {
	md := s.GetMetadata()
	if md.GetIndex() == 0 || md.GetTerm() == 0 || md.GetIndex() > maxLogIndex || md.GetTerm() > maxTerm {
		return fmt.Errorf("snapshot at index %d, term %d", md.GetIndex(), md.GetTerm())
	}
	cs := md.GetConfState()
	if len(cs.GetVotersOutgoing()) > 0 || len(cs.GetLearnersNext()) > 0 || cs.GetAutoLeave() || len(cs.GetVoters()) == 0 {
		return errors.New("snapshot configuration is joint or has no voters")
	}
	ids := map[uint64]bool{}
	for _, id := range slices.Concat(cs.GetVoters(), cs.GetLearners()) {
		if id == 0 || ids[id] {
			return fmt.Errorf("snapshot configuration lists member %d twice or as 0", id)
		}
		ids[id] = true
	}
	if !ids[rn.cfg.id] {
		return fmt.Errorf("snapshot configuration does not list this member (%d)", rn.cfg.id)
	}
	membersData, inline, err := decodeSnapshotData(s.GetData())
	if err != nil {
		return err
	}
	st, err := parseMembershipState(membersData)
	if err != nil {
		return err
	}
	if len(st.Members) != len(ids) {
		return fmt.Errorf("snapshot lists %d members and a configuration of %d", len(st.Members), len(ids))
	}
	for _, m := range st.Members {
		if !ids[m.ID] {
			return fmt.Errorf("snapshot lists member %d, which its configuration does not", m.ID)
		}
	}
	if st.ClusterID != "" && st.ClusterID != formatClusterID(rn.clusterID) {
		return fmt.Errorf("snapshot of cluster %s, not of this one (%s)", st.ClusterID, formatClusterID(rn.clusterID))
	}
	if !withData {
		return nil
	}
	if inline != nil {
		return verifyKVSnapshot(bytes.NewReader(inline), int64(len(inline)))
	}
	f, size, err := rn.disk.openKV(md.GetIndex())
	if err != nil {
		return err
	}
	defer f.Close()
	return verifyKVSnapshot(f, size)
}

// openSnapshot returns the member list a snapshot holds and a reader of its
// kvstore part, of size bytes.
func (rn *raftNode) openSnapshot(s *raftpb.Snapshot) (members []byte, kv io.ReadCloser, size int64, err error) {
	index := s.GetMetadata().GetIndex()
	members, inline, err := decodeSnapshotData(s.GetData())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("snapshot at index %d: %w", index, err)
	}
	if inline != nil {
		return members, io.NopCloser(bytes.NewReader(inline)), int64(len(inline)), nil
	}
	kv, size, err = rn.disk.openKV(index)
	if err != nil {
		return nil, nil, 0, err
	}
	return members, kv, size, nil
}

// A raft snapshot's data holds the member list; the kvstore's state is in a
// file of its own:
//
//	format (1 byte, = 2) | member list (JSON)
//
// Format 1, written by earlier versions, held the kvstore's state inline:
//
//	format (1 byte, = 1) | member list length (uvarint) | member list (JSON) | kvstore state
const (
	snapshotFormatInline = 1
	snapshotFormat       = 2
)

func encodeSnapshotData(members []byte) []byte {
	return append([]byte{snapshotFormat}, members...)
}

// decodeSnapshotData returns the member list, and for format 1 the kvstore
// state (nil for format 2).
func decodeSnapshotData(data []byte) (members, inlineKV []byte, err error) {
	if len(data) == 0 {
		return nil, nil, errors.New("empty snapshot data")
	}
	switch data[0] {
	case snapshotFormat:
		return data[1:], nil, nil
	case snapshotFormatInline:
		n, rest, err := readUvarint(data[1:])
		if err != nil || n > uint64(len(rest)) {
			return nil, nil, errors.New("corrupt snapshot header")
		}
		return rest[:n], rest[n:], nil
	default:
		return nil, nil, fmt.Errorf("unknown snapshot format %d", data[0])
	}
}
