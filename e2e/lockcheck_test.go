package e2e

// The checker of the lock test (lock_test.go): a pure function over what the
// contenders recorded and the key's history as a watch replays it.
//
// The lock is the key lockKey, taken by a PUT with If-None-Match: * and a
// TTL, kept alive by re-PUTs with If-Match: "<token>" (the same TTL), and
// released by a DELETE with If-Match: "<token>". A token is the key's
// modRevision the contender's last write of the lock left (its ETag): a
// fencing token. A hold is a run of writes of one contender the contender
// knows took effect (answered 204, or an ambiguous answer resolved by a
// linearizable read that showed the write's value, unique per attempt, at
// that revision). While it believes it holds the lock, a holder writes
// lockResourceKey through POST /v1/txn, only if the lock's modRevision
// still equals its token.
//
// What must hold (each check finds what the ones before it may miss):
//
//  1. The key's history (every put and delete of the lock and the resource,
//     in revision order, from a replay of a whole member history) is one the
//     protocol allows: an acquire puts the key only when it is absent, a
//     keep-alive only when the key's modRevision is the token its If-Match
//     names, a delete is an expiry (marked "expired": true) or a release
//     whose If-Match matched; every value put is one a contender tried to
//     write, once, and nothing answered 412 or "nothing was done" is in it.
//     So the holds are disjoint intervals of revisions: no two holders at
//     once, in revision order. The resource is only written while the lock
//     is held, with the holder's current token (so tokens never go back).
//  2. Whatever a contender was told took effect is in the history, at the
//     revision it was told: every 204, every hold's writes (a hold whose
//     acquire was ambiguous and never confirmed is a violation by itself),
//     every acknowledged release and resource write.
//  3. Fencing, from the contenders' own records alone: each hold spans the
//     revisions from its acquire through its last confirmed write (and its
//     acknowledged resource writes and release, which its token still
//     guarded); no other hold's acquire may fall in that span.
//  4. Real time: a holder believes it holds the lock from the answer (or the
//     read back) that proved its acquire until it releases, learns it lost
//     the lock, crashes, or TTL - Margin after it sent its last confirmed
//     write, whichever comes first (the TTL runs from the leader's apply,
//     which is later, and a leader change only ever delays an expiry). No
//     two beliefs may overlap, and resource writes are only sent within one.
//  5. Expiry: the lock of a holder that crashed (stopped renewing) ends in
//     the history with a delete marked expired; no expiry is seen by a live
//     watch earlier than TTL after the call of the write it expires; and for
//     a holder that crashed under a stable leader the expiry is seen within
//     TTL + ExpiryBound of its last write's answer, and another contender's
//     acquire within TTL + HandoverBound.

import (
	"fmt"
	"time"
)

// lockReport is the checker's verdict and what the run did.
type lockReport struct {
	Violations []string

	Acquisitions, ReadBacks, Renewals, Releases, Crashes, StableCrashes int
	Expiries, Deletes, Phantoms                                         int // in the history: expired deletes, releases, chains no hold claimed
	ResourceWrites, StaleRefused                                        int // resource puts in the history; txns refused by the compare
	Ambiguous                                                           int // writes of unknown outcome
	// For each holder that crashed under a stable leader: from its last
	// write's answer to its expiry, and to the next acquire, as live
	// watches saw them.
	StableExpiry, StableHandover []time.Duration
}

func (r *lockReport) violation(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

func (r lockReport) String() string {
	return fmt.Sprintf("%d acquisitions (%d proven by a read after an ambiguous answer), %d keep-alives, %d releases sent, %d crashed holders (%d under a stable leader); "+
		"history: %d releases, %d expiries, %d holds nobody claimed, %d resource writes; %d resource txns refused by the token compare, %d ambiguous answers; %d violations",
		r.Acquisitions, r.ReadBacks, r.Renewals, r.Releases, r.Crashes, r.StableCrashes,
		r.Deletes, r.Expiries, r.Phantoms, r.ResourceWrites, r.StaleRefused, r.Ambiguous, len(r.Violations)) +
		fmt.Sprintf("; crashed under a stable leader: expiry seen %v, next acquire %v after the last write's answer", roundAll(r.StableExpiry), roundAll(r.StableHandover))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// checkLock checks h (see the top of this file).
func checkLock(h *lockHistory) lockReport {
	var rep lockReport
	for _, o := range h.Oddities {
		rep.violation("answer the contract does not allow: %s", o)
	}
	writes := map[string]*lockWrite{}
	for i := range h.Writes {
		w := &h.Writes[i]
		if writes[w.Value] != nil {
			rep.violation("two lock writes of value %q (values must be unique per attempt)", w.Value)
		}
		writes[w.Value] = w
		if w.Outcome == lockUnknown {
			rep.Ambiguous++
		}
	}
	resource := map[string]*lockResourceWrite{}
	for i := range h.Resource {
		w := &h.Resource[i]
		resource[w.Value] = w
		switch w.Outcome {
		case lockUnknown:
			rep.Ambiguous++
		case lockRefused:
			rep.StaleRefused++
		}
	}
	for _, rl := range h.Releases {
		if rl.Outcome == lockUnknown {
			rep.Ambiguous++
		}
	}
	rep.Releases = len(h.Releases)
	holdOf := map[string]*lockHold{} // a hold's confirmed values -> the hold
	for i := range h.Holds {
		hd := &h.Holds[i]
		if len(hd.Writes) == 0 {
			rep.violation("a hold of c%d without an acquire", hd.Client)
			continue
		}
		rep.Acquisitions++
		rep.Renewals += len(hd.Writes) - 1
		if hd.Writes[0].Proof == proofReadBack {
			rep.ReadBacks++
		}
		if hd.End == endCrashed {
			rep.Crashes++
			if hd.Stable {
				rep.StableCrashes++
			}
		}
		for _, c := range hd.Writes {
			holdOf[c.Value] = hd
		}
	}
	checkHoldRecords(h, &rep, writes)

	var chains []*lockChain
	if h.Events != nil {
		chains = checkLockEvents(h, &rep, writes, resource, holdOf)
		checkConfirmedInHistory(h, &rep)
	}
	checkFencing(h, &rep)
	checkBeliefs(h, &rep)
	if h.Events != nil {
		checkExpiries(h, &rep, chains, writes)
	}
	return rep
}
