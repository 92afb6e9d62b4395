package main

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// durableLog is raft's log as this node keeps it: raft reads the snapshot
// and the entries after it from memory (MemoryStorage), and every change
// reaches the WAL and the snapshot files (diskStorage) before it reaches
// memory. The Ready loop owns it; raft reads the memory part from its own
// goroutine, which MemoryStorage's lock allows, and the snapshot writer
// uses the disk part (see snapshots).
type durableLog struct {
	memory *raft.MemoryStorage
	disk   *diskStorage
	// term and vote are the hard state's as last written to the WAL.
	term, vote uint64
}

// logStorage is the durable log as the Ready loop uses it (durableLog, or a
// fake in the tests of handleReady's order).
type logStorage interface {
	// persist makes a Ready's snapshot, hard state and entries durable.
	persist(rd raft.Ready) error
	// termAndVoteDurable reports whether hs, the hard state of a Ready,
	// keeps the term and vote already on disk.
	termAndVoteDurable(hs *raftpb.HardState) bool
	// close closes the WAL, once nothing writes any more.
	close() error
}

// load gives raft's memory what the node found on disk at start.
func (l *durableLog) load(st *diskState) error {
	if st.snapshot != nil {
		if err := l.memory.ApplySnapshot(st.snapshot); err != nil {
			return err
		}
	}
	if st.hardState != nil {
		l.term, l.vote = st.hardState.GetTerm(), st.hardState.GetVote()
		if err := l.memory.SetHardState(st.hardState); err != nil {
			return err
		}
	}
	return l.memory.Append(st.entries)
}

func (l *durableLog) persist(rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Before the hard state: its commit index may point into the
		// snapshot, and a restart must find the snapshot to honour it.
		if err := l.disk.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
		// The .snap file now refers to the data rafthttp received.
		l.disk.inFlight.done(rd.Snapshot.GetMetadata().GetIndex())
	}
	// On a failure the Ready loop stops here: nothing of this Ready is
	// applied, raft is not told it was persisted (Advance), and a follower
	// sends nothing that could promise it.
	if err := l.disk.save(rd.HardState, rd.Entries); err != nil {
		return err
	}
	if rd.HardState != nil {
		l.term, l.vote = rd.HardState.GetTerm(), rd.HardState.GetVote()
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := l.memory.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	return l.memory.Append(rd.Entries)
}

func (l *durableLog) termAndVoteDurable(hs *raftpb.HardState) bool {
	return hs == nil || (hs.GetTerm() == l.term && hs.GetVote() == l.vote)
}

func (l *durableLog) close() error { return l.disk.close() }
