package main

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

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

// linearizableReads turns concurrent requests for a read index into single
// ReadIndex rounds of raft. A round starts only after it was requested, so
// every read in it began before the leader confirmed its commit index: the
// index is at least as new as any write acknowledged before the read began.
type linearizableReads struct {
	mu      sync.Mutex
	next    *readBatch    // collecting reads for the round after the current one
	kick    chan struct{} // a read is waiting in next
	stopped chan struct{}
}

func newLinearizableReads(stopped chan struct{}) *linearizableReads {
	return &linearizableReads{kick: make(chan struct{}, 1), stopped: stopped}
}

// wait joins the next round and returns its read index.
func (r *linearizableReads) wait(ctx context.Context) (uint64, error) {
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
	case <-r.stopped:
		return 0, errStopped
	}
}

// take removes the batch waiting for a round, or returns nil.
func (r *linearizableReads) take() *readBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.next
	r.next = nil
	return b
}

// runReadLoop serves ReadIndex rounds until the node stops. It runs beside
// the Ready loop, which hands it raft's answers on readStatesC.
func (rn *raftNode) runReadLoop() {
	var seq uint64
	for {
		select {
		case <-rn.reads.kick:
		case <-rn.stopc:
			return
		}
		b := rn.reads.take()
		if b == nil {
			continue
		}
		seq++
		start := time.Now()
		b.index, b.err = rn.readIndexRound(seq)
		metricReadIndexDuration.Observe(time.Since(start).Seconds())
		close(b.done)
	}
}

// readIndexRound asks raft for the current commit index, confirmed by a
// quorum of heartbeats, and tags the request with seq to recognise its answer.
func (rn *raftNode) readIndexRound(seq uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readIndexTimeout)
	defer cancel()
	if err := rn.awaitLeader(ctx); err != nil {
		return 0, err
	}
	rctx := binary.BigEndian.AppendUint64(nil, seq)
	if err := rn.node.ReadIndex(ctx, rctx); err != nil {
		return 0, proposalError(ctx, err)
	}
	for {
		select {
		case rs := <-rn.readStatesC:
			if string(rs.RequestCtx) == string(rctx) {
				return rs.Index, nil
			}
			// An answer to an earlier round that gave up; drop it.
		case <-ctx.Done():
			rn.lg.Debug("read index round timed out", zap.Uint64("round", seq))
			return 0, errReadUnconfirmed
		case <-rn.stopc:
			return 0, errStopped
		}
	}
}

// appliedIndex tracks how far the state machine has applied the log, so that
// a read can wait until the state includes its read index.
type appliedIndex struct {
	mu      sync.Mutex
	index   uint64
	waiters []indexWaiter
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

func (a *appliedIndex) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index
}

// advance records that everything through index is applied.
func (a *appliedIndex) advance(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.index {
		return
	}
	a.index = index
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if w.index <= index {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
}

// reached returns a channel closed once index is applied.
func (a *appliedIndex) reached(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.index {
		close(ch)
	} else {
		a.waiters = append(a.waiters, indexWaiter{index: index, ch: ch})
	}
	return ch
}

// waitApplied blocks until index is applied or ctx ends. A waiter that gives up
// stays in the list until the index is reached; that is bounded by the number
// of reads in flight.
func (a *appliedIndex) waitApplied(ctx context.Context, index uint64, stopped <-chan struct{}) error {
	select {
	case <-a.reached(index):
		return nil
	case <-ctx.Done():
		return errApplyBehind
	case <-stopped:
		return errStopped
	}
}
