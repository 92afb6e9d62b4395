package e2e

// What the lock test records, as the checker (lockcheck_test.go) reads it:
// the contenders' writes, holds, releases and resource txns, and the keys'
// history.

import (
	"fmt"
	"time"
)

const (
	lockKey         = "lock/x"
	lockResourceKey = "lock/x/resource"
)

// lockOutcome is what an answer says a write did.
type lockOutcome int

const (
	lockOK      lockOutcome = iota // 204 (a txn: 200 and succeeded)
	lockRefused                    // 412 (a txn: 200, not succeeded): nothing written
	lockFailed                     // certainly not done: connection refused, 503 "nothing was done"
	lockUnknown                    // may have taken effect, or still may
)

func (o lockOutcome) String() string {
	return [...]string{"ok", "refused", "failed", "unknown"}[o]
}

// lockWrite is one PUT of the lock key a contender sent: an acquire
// (If-None-Match: *) or a keep-alive (If-Match: "Cond").
type lockWrite struct {
	Client       int
	Renew        bool
	Cond         uint64 // a keep-alive's If-Match
	Value        string // unique per attempt
	Call, Return time.Duration
	Outcome      lockOutcome
	Rev          uint64 // lockOK: the ETag
}

// lockProof is how a contender knows one of its writes took effect.
type lockProof int

const (
	proofNone     lockProof = iota // it does not: a bug of the contender
	proofAck                       // a 204 with the revision
	proofReadBack                  // an ambiguous answer, then a linearizable read showed the value at Rev
)

// lockConfirmed is a write of a hold that the contender knows took effect.
type lockConfirmed struct {
	Value string
	Rev   uint64
	Proof lockProof
	Send  time.Duration // the write's call: its TTL runs from later than this
	At    time.Duration // when the contender learnt it took effect
}

// lockEnd is how a hold ended, as its holder saw it.
type lockEnd int

const (
	endReleased lockEnd = iota // it sent a release
	endLost                    // a 412 or a failed compare told it the lock had moved on
	endDeadline                // TTL - Margin passed since its last confirmed write
	endCrashed                 // it stopped abruptly: no more keep-alives, no release
)

func (e lockEnd) String() string {
	return [...]string{"released", "lost", "deadline", "crashed"}[e]
}

// lockHold is one hold as its contender lived it.
type lockHold struct {
	Client int
	Writes []lockConfirmed // the acquire, then each confirmed keep-alive
	Until  time.Duration   // when the holder stopped believing
	End    lockEnd
	// Stable: it crashed while the leader was stable; its expiry is timed.
	Stable bool
}

func (h *lockHold) token() uint64 { return h.Writes[0].Rev }
func (h *lockHold) last() lockConfirmed {
	return h.Writes[len(h.Writes)-1]
}

// belief is when the holder believed it held the lock.
func (h *lockHold) belief(ttl, margin time.Duration) (from, until time.Duration) {
	return h.Writes[0].At, min(h.Until, h.last().Send+ttl-margin)
}

func (h *lockHold) String() string {
	return fmt.Sprintf("hold of c%d from revision %d", h.Client, h.token())
}

// lockRelease is one DELETE of the lock key with If-Match: "Cond".
type lockRelease struct {
	Client       int
	Cond         uint64
	Call, Return time.Duration
	Outcome      lockOutcome
	Rev          uint64 // lockOK: X-Revision
}

// lockResourceWrite is one txn that puts the resource if the lock's
// modRevision is Token.
type lockResourceWrite struct {
	Client       int
	Token        uint64
	Value        string // unique per attempt
	Call, Return time.Duration
	Outcome      lockOutcome
	Rev          uint64 // lockOK: the txn's revision
}

// lockEvent is one change of the lock or the resource, as a watch delivers
// it.
type lockEvent struct {
	Rev     uint64
	Key     string
	Delete  bool
	Value   string
	Expired bool
}

func (e lockEvent) String() string {
	if e.Delete {
		if e.Expired {
			return fmt.Sprintf("%d expire %s", e.Rev, e.Key)
		}
		return fmt.Sprintf("%d delete %s", e.Rev, e.Key)
	}
	return fmt.Sprintf("%d put %s=%s", e.Rev, e.Key, e.Value)
}

// lockHistory is everything a run recorded.
type lockHistory struct {
	TTL    time.Duration
	Margin time.Duration // beliefs end TTL - Margin after the last confirmed write's call
	// For holders that crashed under a stable leader, after their last
	// write's answer: the expiry is seen within TTL + ExpiryBound, another
	// acquire within TTL + HandoverBound.
	ExpiryBound, HandoverBound time.Duration

	Writes   []lockWrite
	Releases []lockRelease
	Resource []lockResourceWrite
	Holds    []lockHold
	// Events is the whole history of the two keys, in revision order (nil:
	// unknown; checks 1, 2 and 5 are then skipped).
	Events []lockEvent
	// Arrivals is when a live watch first delivered each revision.
	Arrivals map[uint64]time.Duration
	// Oddities are answers the contract does not allow, found while running.
	Oddities []string
}
