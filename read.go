package main

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

// readIndexTimeout bounds one ReadIndex round: long enough for a leader to
// hear from a quorum, short enough that a leader cut off from the majority
// answers 503 promptly instead of serving a read it cannot vouch for.
const readIndexTimeout = 2 * electionTicks * tickInterval

var (
	errReadUnconfirmed = errors.New("could not confirm with a quorum that this read is current (leader unreachable or changing); retry later")
	errApplyBehind     = errors.New("this node has not applied up to the read index in time; retry later")
)

// readBatch is one ReadIndex round shared by every read that arrived while
// the previous round was in flight.
type readBatch struct {
	done  chan struct{}
	index uint64 // the read index: apply through here, then read
	err   error
}

// readIndex turns concurrent requests for a read index into single
// ReadIndex rounds of raft. A round starts only after it was requested, so
// every read in it began before the leader confirmed its commit index: the
// index is at least as new as any write acknowledged before the read began.
// Its own goroutine (run) runs the rounds; the Ready loop hands it raft's
// answers (forward); readers join the next round (wait).
type readIndex struct {
	rn   *raftNode
	mu   sync.Mutex
	next *readBatch    // collecting reads for the round after the current one
	kick chan struct{} // a read is waiting in next
	// states carries raft's answers to ReadIndex requests from the Ready
	// loop to run. Buffered so the Ready loop never waits on it.
	states chan raft.ReadState
}

func newReadIndex(rn *raftNode) *readIndex {
	return &readIndex{rn: rn, kick: make(chan struct{}, 1), states: make(chan raft.ReadState, 64)}
}

// wait joins the next round and returns its read index.
func (r *readIndex) wait(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	if r.next == nil {
		r.next = &readBatch{done: make(chan struct{})}
	}
	b := r.next
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default: // a round is already requested
	}
	select {
	case <-b.done:
		return b.index, b.err
	case <-ctx.Done():
		return 0, errReadUnconfirmed
	case <-r.rn.life.stop:
		return 0, errStopped
	}
}

// take removes the batch waiting for a round, or returns nil.
func (r *readIndex) take() *readBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.next
	r.next = nil
	return b
}

// forward hands raft's answers to the read loop, from the Ready loop.
func (r *readIndex) forward(states []raft.ReadState) {
	for _, rs := range states {
		select {
		case r.states <- rs:
		default:
			// Only a round that gave up can leave answers unread; its
			// successor retries with a new request.
			r.rn.lg.Warn("dropping a read index answer: read loop is behind")
		}
	}
}

// run serves ReadIndex rounds until the node stops.
func (r *readIndex) run() {
	var seq uint64
	for {
		select {
		case <-r.kick:
		case <-r.rn.life.stop:
			return
		}
		b := r.take()
		if b == nil {
			continue
		}
		seq++
		start := time.Now()
		b.index, b.err = r.round(seq)
		metricReadIndexDuration.Observe(time.Since(start).Seconds())
		close(b.done)
	}
}

// round asks raft for the current commit index, confirmed by a quorum of
// heartbeats, and tags the request with seq to recognise its answer.
func (r *readIndex) round(seq uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readIndexTimeout)
	defer cancel()
	if err := r.rn.awaitLeader(ctx); err != nil {
		return 0, err
	}
	rctx := binary.BigEndian.AppendUint64(nil, seq)
	if err := r.rn.node.ReadIndex(ctx, rctx); err != nil {
		return 0, proposalError(ctx, err)
	}
	for {
		select {
		case rs := <-r.states:
			if string(rs.RequestCtx) == string(rctx) {
				return rs.Index, nil
			}
			// An answer to an earlier round that gave up; drop it.
		case <-ctx.Done():
			r.rn.lg.Debug("read index round timed out", zap.Uint64("round", seq))
			return 0, errReadUnconfirmed
		case <-r.rn.life.stop:
			return 0, errStopped
		}
	}
}
