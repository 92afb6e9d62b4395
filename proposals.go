package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"go.etcd.io/raft/v3"
)

// requestIDs hands out the identities that tie a proposal to the moment it is
// applied. The counter starts at a random point so that entries written by an
// earlier run of this node (replayed from the WAL after a restart), or by
// another member (every member applies every entry), never carry an id that a
// request of this run is waiting for. (etcd's idutil takes 16 bits from the
// member id instead, so members whose ids agree in those bits could collide.)
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
