package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
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

// snapshots takes this node's snapshots in the background, sends them to
// followers too far behind for the log, and installs the leader's. The Ready
// loop owns it; the one writer goroutine it may start reports on done.
type snapshots struct {
	lg        *zap.Logger
	snapCount uint64
	log       *durableLog
	index     atomic.Uint64 // of the newest snapshot; read by Status too
	writing   bool          // a snapshot is being written in the background
	wanted    bool          // take a snapshot at the next chance, whatever snapCount says
	logBytes  int           // bytes of entries applied since the last snapshot started
	// done carries the writer's outcome to the Ready loop. The buffer means
	// the writer never waits for the loop, which may be stopping.
	done   chan snapshotResult
	writer sync.WaitGroup // the WAL is closed only after the writer is done
	// faults carries a failure to store a snapshot received from the leader
	// (rafthttp writes it, on the peer port's goroutine) to the Ready loop,
	// which stops on it as on any failed write.
	faults chan error
	// startup is the state machine's part of the snapshot found on disk,
	// until the loop hands it over.
	startup     io.ReadCloser
	startupSize int64
	// backups are the snapshots GET /v1/snapshot asks for (backup.go).
	backups backupRequests
}

func newSnapshots(lg *zap.Logger, snapCount uint64, log *durableLog) *snapshots {
	return &snapshots{lg: lg, snapCount: snapCount, log: log, done: make(chan snapshotResult, 1), faults: make(chan error, 1),
		backups: backupRequests{requests: make(chan backupRequest)}}
}

// fault reports a failed write of a received snapshot; the first one is
// enough to stop the node.
func (s *snapshots) fault(err error) {
	select {
	case s.faults <- err:
	default:
	}
}

// snapshotResult is what the background snapshot writer reports to the
// Ready loop.
type snapshotResult struct {
	snapshot *raftpb.Snapshot
	bytes    int64 // size of the kvstore's part
	took     time.Duration
	err      error
}

// restored records the snapshot the node starts from.
func (s *snapshots) restored(index uint64, kv io.ReadCloser, size int64) {
	s.index.Store(index)
	s.startup, s.startupSize = kv, size
}

// takeStartup hands over the startup snapshot's state, once.
func (s *snapshots) takeStartup() (io.ReadCloser, int64) {
	kv, size := s.startup, s.startupSize
	s.startup = nil
	return kv, size
}

func (s *snapshots) closeStartup() {
	if s.startup != nil {
		s.startup.Close()
		s.startup = nil
	}
}

// noteApplied counts the bytes of an applied entry towards the next
// snapshot.
func (s *snapshots) noteApplied(bytes int) { s.logBytes += bytes }

// maybeSnapshot starts a snapshot once snapCount entries, or
// maxLogBytesBetweenSnapshots of them, were applied since the last one, or
// when one was asked for (see snapshots.send). The loop only asks the state
// machine, through the commit channel, to hold its state still once it has
// applied everything published so far; the state is written out in the
// background (finish picks up the result), so neither the loop nor the state
// machine waits for it.
func (rn *raftNode) maybeSnapshot() error {
	s := rn.snaps
	index := rn.applied.index
	since := index - s.index.Load()
	due := since > s.snapCount || s.logBytes > maxLogBytesBetweenSnapshots || s.wanted
	if s.writing || since == 0 || !due {
		return nil
	}
	term, err := s.log.memory.Term(index)
	if err != nil {
		return fmt.Errorf("term of applied index %d: %w", index, err)
	}
	snap := &raftpb.Snapshot{
		Data: encodeSnapshotData(rn.members.encode(rn.peers.clusterID)),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(index),
			Term:      new(term),
			ConfState: proto.Clone(rn.applied.confState).(*raftpb.ConfState),
		},
	}
	// The commit channel is in log order, so the state machine holds its
	// state still exactly at index: a snapshot at index i holds every entry
	// up to i and none after.
	frozen := make(chan kvImage, 1)
	if err := rn.publish(commit{freeze: frozen}); err != nil {
		return err
	}
	s.writing, s.wanted, s.logBytes = true, false, 0
	s.writer.Add(1)
	s.log.disk.inFlight.add(index) // retention must leave the data file alone until its .snap exists
	go func() {
		defer s.writer.Done()
		defer s.log.disk.inFlight.done(index)
		var image kvImage
		select {
		case image = <-frozen:
		case <-rn.life.stop:
			s.done <- snapshotResult{snapshot: snap, err: errStopped}
			return
		}
		start := time.Now()
		// The kvstore's file is durable before the .snap file that refers to
		// it, and both before the WAL records the snapshot (saveSnapshot).
		n, err := s.log.disk.saveKV(index, image)
		image.Release()
		if err == nil {
			err = s.log.disk.saveSnapshot(snap)
		}
		s.done <- snapshotResult{snapshot: snap, bytes: n, took: time.Since(start), err: err}
	}()
	return nil
}

// finish, in the Ready loop, hands a snapshot that is now durable to raft,
// which then serves lagging followers from it, and compacts the log behind
// it.
func (s *snapshots) finish(r snapshotResult) error {
	s.writing = false
	if r.err != nil {
		return r.err
	}
	md := r.snapshot.GetMetadata()
	index := md.GetIndex()
	_, err := s.log.memory.CreateSnapshot(index, md.GetConfState(), r.snapshot.GetData())
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil // a newer snapshot from the leader was installed meanwhile
	}
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	if to := s.compactionPoint(index); to > 0 {
		if err := s.log.memory.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compacting log: %w", err)
		}
	}
	s.index.Store(index)
	metricSnapshotIndex.Set(float64(index))
	metricSnapshotDuration.Observe(r.took.Seconds())
	s.purge(index)
	s.lg.Info("snapshot saved", zap.Uint64("index", index), zap.Int64("bytes", r.bytes), zap.Duration("took", r.took))
	return nil
}

// purge deletes, in the background, the snapshot and WAL files that a
// restart from the snapshot at index, or from the one before it, does not
// need (diskStorage.purge). Not in the Ready loop: unlinking a snapshot
// file of a few hundred MiB took 100 ms on ext4, and every write waited.
// The WAL is closed only once it is done (writer).
func (s *snapshots) purge(index uint64) {
	s.writer.Add(1)
	go func() {
		defer s.writer.Done()
		s.log.disk.purge(index)
	}()
}

// compactionPoint is where to compact the in-memory log after a snapshot at
// index: entries behind the snapshot are kept for a while, so that a follower
// lagging by less than that catches up from the log, but no more than
// min(snapCount, maxCatchUpEntries) of them, nor more than maxCatchUpBytes.
func (s *snapshots) compactionPoint(index uint64) uint64 {
	catchUp := min(s.snapCount, maxCatchUpEntries)
	if index <= catchUp {
		return 0
	}
	first, err := s.log.memory.FirstIndex()
	if err != nil || first > index {
		return 0
	}
	lo := max(index-catchUp+1, first)
	ents, err := s.log.memory.Entries(lo, index+1, math.MaxUint64)
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

// send streams the snapshot raft chose to a follower, reading the kvstore's
// part from its file. rafthttp reports the outcome to raft.
func (s *snapshots) send(m *raftpb.Message, tr rafthttp.Transporter, node raft.Node) {
	md := m.GetSnapshot().GetMetadata()
	cs := md.GetConfState()
	if !slices.Contains(cs.GetVoters(), m.GetTo()) && !slices.Contains(cs.GetLearners(), m.GetTo()) {
		// The follower joined after this snapshot was taken and would refuse
		// it for not listing it. Take a new one; raft retries after a failure.
		s.wanted = true
		node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	f, size, err := s.log.disk.openKV(md.GetIndex())
	if err != nil {
		s.lg.Warn("cannot send snapshot; taking a new one", zap.Uint64("to", m.GetTo()), zap.Error(err))
		s.wanted = true
		node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	tr.SendSnapshot(snap.NewMessage(m, f, size))
}

// installSnapshot makes a snapshot sent by the leader this node's state.
// rafthttp saved its kvstore part to disk before handing raft the message.
func (rn *raftNode) installSnapshot(s *raftpb.Snapshot) error {
	if raft.IsEmptySnap(s) {
		return nil
	}
	md := s.GetMetadata()
	if md.GetIndex() <= rn.applied.index {
		return fmt.Errorf("snapshot index %d is not after applied index %d", md.GetIndex(), rn.applied.index)
	}
	membersData, kv, size, err := rn.snaps.open(s)
	if err != nil {
		return fmt.Errorf("snapshot from leader: %w", err)
	}
	previous, err := rn.members.restore(membersData)
	if err != nil {
		kv.Close()
		return err
	}
	rn.peers.sync(previous)
	if err := rn.publish(commit{snapshot: kv, snapshotSize: size, index: md.GetIndex()}); err != nil {
		kv.Close()
		return err
	}
	rn.applied = appliedState{index: md.GetIndex(), confState: md.GetConfState()}
	rn.snaps.index.Store(md.GetIndex())
	rn.snaps.logBytes = 0
	rn.snaps.purge(md.GetIndex())
	rn.lg.Info("installed snapshot from leader", zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	if rn.members.isRemoved(rn.cfg.id) {
		return errRemoved
	}
	return nil
}

// open returns the member list a snapshot holds and a reader of its kvstore
// part, of size bytes.
func (sn *snapshots) open(s *raftpb.Snapshot) (members []byte, kv io.ReadCloser, size int64, err error) {
	index := s.GetMetadata().GetIndex()
	members, inline, err := decodeSnapshotData(s.GetData())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("snapshot at index %d: %w", index, err)
	}
	if inline != nil {
		return members, io.NopCloser(bytes.NewReader(inline)), int64(len(inline)), nil
	}
	kv, size, err = sn.log.disk.openKV(index)
	if err != nil {
		return nil, nil, 0, err
	}
	return members, kv, size, nil
}
