package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
)

// What a snapshot's data holds, and checking a snapshot a peer sent.

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
		// Our member list and raft's configuration must agree on who votes.
		if m.Learner != slices.Contains(cs.GetLearners(), m.ID) {
			return fmt.Errorf("snapshot lists member %d as learner=%v, and its configuration does not", m.ID, m.Learner)
		}
	}
	if ours := formatClusterID(rn.peers.clusterID); st.ClusterID != "" && st.ClusterID != ours {
		return fmt.Errorf("snapshot of cluster %s, not of this one (%s)", st.ClusterID, ours)
	}
	if !withData {
		return nil
	}
	if inline != nil {
		return verifyKVSnapshot(bytes.NewReader(inline), int64(len(inline)))
	}
	f, size, err := rn.snaps.log.disk.openKV(md.GetIndex())
	if err != nil {
		return err
	}
	defer f.Close()
	return verifyKVSnapshot(f, size)
}
