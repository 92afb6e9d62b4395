package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// This file is about snapshots: taking them every snap-count entries,
// installing the ones the leader sends, and what their data holds.

// maybeSnapshot takes a snapshot once snapCount entries were applied since
// the last one, then compacts the in-memory log behind it.
func (rn *raftNode) maybeSnapshot() error {
	if rn.appliedIndex-rn.snapshotIndex.Load() <= rn.cfg.snapCount {
		return nil
	}
	start := time.Now()
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
	rn.snapshotIndex.Store(rn.appliedIndex)
	metricSnapshotIndex.Set(float64(rn.appliedIndex))
	metricSnapshotDuration.Observe(time.Since(start).Seconds())
	rn.disk.purge()
	rn.lg.Info("snapshot saved", zap.Uint64("index", rn.appliedIndex), zap.Int("bytes", len(s.GetData())))
	return nil
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
	rn.syncPeers(previous)
	if err := rn.publish(commit{snapshot: kvData, index: md.GetIndex()}); err != nil {
		return err
	}
	rn.confState = md.GetConfState()
	rn.snapshotIndex.Store(md.GetIndex())
	rn.appliedIndex = md.GetIndex()
	rn.lg.Info("installed snapshot from leader", zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	if rn.members.isRemoved(rn.cfg.id) {
		return errRemoved
	}
	return nil
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
