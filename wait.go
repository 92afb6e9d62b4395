package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
)

// requestIDs hands out the identities that tie a proposal to the moment it is
// applied. The counter starts at a random point so that entries written by an
// earlier run of this node (replayed from the WAL after a restart) never carry
// an id that a request of this run is waiting for.
type requestIDs struct{ last atomic.Uint64 }

func newRequestIDs() *requestIDs {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	ids := &requestIDs{}
	ids.last.Store(binary.LittleEndian.Uint64(seed[:]))
	return ids
}

func (r *requestIDs) next() uint64 { return r.last.Add(1) }

// waitRegistry connects a request waiting for its proposal with the apply path
// that learns the proposal's outcome. Only the node that took the request
// registers; every other node applies the same entry and finds no waiter.
type waitRegistry struct {
	mu      sync.Mutex
	pending map[uint64]chan error
}

func newWaitRegistry() *waitRegistry {
	return &waitRegistry{pending: make(map[uint64]chan error)}
}

// register must be called before the proposal is handed to raft, or the entry
// could be applied before anyone listens for it.
func (w *waitRegistry) register(id uint64) <-chan error {
	ch := make(chan error, 1)
	w.mu.Lock()
	w.pending[id] = ch
	w.mu.Unlock()
	return ch
}

// trigger reports the outcome of applying proposal id (nil means success).
func (w *waitRegistry) trigger(id uint64, err error) {
	w.mu.Lock()
	ch, ok := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if ok {
		ch <- err
	}
}

// failAll answers every waiting proposal with err.
func (w *waitRegistry) failAll(err error) {
	w.mu.Lock()
	pending := w.pending
	w.pending = make(map[uint64]chan error)
	w.mu.Unlock()
	for _, ch := range pending {
		ch <- err
	}
}

// cancel forgets a waiter whose request gave up.
func (w *waitRegistry) cancel(id uint64) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

// proposeAndWait registers id, runs propose (which hands the entry carrying id
// to raft) and waits until the apply path reports on id, the request gives up,
// or the node stops.
func (w *waitRegistry) proposeAndWait(ctx context.Context, id uint64, stopped <-chan struct{}, propose func(context.Context) error) error {
	metricProposalsPending.Inc()
	defer metricProposalsPending.Dec()
	err := w.awaitOutcome(ctx, id, stopped, propose)
	if err != nil {
		metricProposalsFailed.Inc()
	}
	return err
}

func (w *waitRegistry) awaitOutcome(ctx context.Context, id uint64, stopped <-chan struct{}, propose func(context.Context) error) error {
	applied := w.register(id)
	if err := propose(ctx); err != nil {
		w.cancel(id)
		return proposalError(ctx, err)
	}
	select {
	case err := <-applied:
		return err
	case <-ctx.Done():
		w.cancel(id)
		return errOutcomeUnknown
	case <-stopped:
		w.cancel(id)
		return errStoppedOutcomeUnknown
	}
}

// Errors a proposal can end with before its outcome is known. All of them mean
// "not acknowledged"; only errOutcomeUnknown leaves open that it may commit.
var (
	errNoLeader       = errors.New("no leader: nothing was done, retry later")
	errOutcomeUnknown = errors.New("request timed out: the outcome is unknown (the write may still commit)")
	errStopped        = errors.New("this node is shutting down")
	// errStoppedOutcomeUnknown is errStopped for a proposal raft may have taken.
	errStoppedOutcomeUnknown = fmt.Errorf("%w: the outcome is unknown (the write may still commit)", errStopped)
	errLeaderLost            = errors.New("this node lost the leader while the request was pending: the outcome is unknown (the write may still commit)")
)

func proposalError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrProposalDropped):
		return errNoLeader
	case errors.Is(err, raft.ErrStopped):
		return errStopped
	case ctx.Err() != nil:
		// raft had not taken the proposal when the request gave up; it may
		// still be queued inside the node.
		return errOutcomeUnknown
	}
	return err
}
