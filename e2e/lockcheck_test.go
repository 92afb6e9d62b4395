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
	"sort"
	"strings"
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

// lockChain is a stretch of the history in which the key exists: from an
// acquire's put to the delete that ends it (or the end of the history).
type lockChain struct {
	owner    int
	first    uint64 // the acquire's revision
	last     uint64 // the last put's revision
	lastVal  string
	end      uint64 // the delete's revision; 0: still held at the end
	expired  bool
	claimed  bool // some hold starts at first
	nextAcq  uint64
	overtook bool // ended by another acquire (a violation, reported once)
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

// checkHoldRecords checks that each hold's writes are proven by what their
// answers said.
func checkHoldRecords(h *lockHistory, rep *lockReport, writes map[string]*lockWrite) {
	for i := range h.Holds {
		hd := &h.Holds[i]
		if len(hd.Writes) == 0 {
			continue
		}
		var prev uint64
		for k, c := range hd.Writes {
			w := writes[c.Value]
			what := "acquire"
			if k > 0 {
				what = "keep-alive"
			}
			switch {
			case w == nil:
				rep.violation("%v: its %s %q was never sent", hd, what, c.Value)
				continue
			case w.Client != hd.Client || w.Renew != (k > 0):
				rep.violation("%v: its %s %q was sent by c%d as a %s", hd, what, c.Value, w.Client, map[bool]string{false: "acquire", true: "keep-alive"}[w.Renew])
			case k > 0 && w.Cond != prev:
				rep.violation("%v: keep-alive %q named token %d, not its token %d", hd, c.Value, w.Cond, prev)
			}
			switch c.Proof {
			case proofNone:
				rep.violation("%v: treated as held after an answer of outcome %s to its %s %q, never confirmed", hd, w.Outcome, what, c.Value)
			case proofAck:
				if w.Outcome != lockOK || w.Rev != c.Rev {
					rep.violation("%v: its %s %q taken as acknowledged at revision %d, but the answer was %s (revision %d)", hd, what, c.Value, c.Rev, w.Outcome, w.Rev)
				}
			case proofReadBack:
				if w.Outcome == lockRefused || w.Outcome == lockFailed {
					rep.violation("%v: its %s %q, answered %s, taken as held after a read back", hd, what, c.Value, w.Outcome)
				}
			}
			if c.Proof != proofNone && c.Rev <= prev {
				rep.violation("%v: token %d after token %d", hd, c.Rev, prev)
			}
			if c.Send != w.Call {
				rep.violation("%v: its %s %q sent at %v, recorded as at %v", hd, what, c.Value, w.Call, c.Send)
			}
			prev = c.Rev
		}
	}
}

// checkLockEvents is check 1; it returns the history's chains.
func checkLockEvents(h *lockHistory, rep *lockReport, writes map[string]*lockWrite, resource map[string]*lockResourceWrite, holdOf map[string]*lockHold) []*lockChain {
	releases := map[uint64][]*lockRelease{} // by Cond
	for i := range h.Releases {
		releases[h.Releases[i].Cond] = append(releases[h.Releases[i].Cond], &h.Releases[i])
	}
	seen := map[string]uint64{}
	var chains []*lockChain
	var cur *lockChain // nil: the key is absent
	var lastRev, lastToken uint64
	for _, e := range h.Events {
		if e.Rev <= lastRev {
			rep.violation("history: revision %d after %d", e.Rev, lastRev)
		}
		lastRev = e.Rev
		switch {
		case e.Key == lockKey && !e.Delete:
			w := writes[e.Value]
			if r, dup := seen[e.Value]; dup {
				rep.violation("history: %v: value %q already put at revision %d", e, e.Value, r)
			}
			seen[e.Value] = e.Rev
			if w == nil {
				rep.violation("history: %v: no contender wrote that value", e)
				continue
			}
			if w.Outcome == lockRefused || w.Outcome == lockFailed {
				rep.violation("history: %v: c%d's write was answered %s", e, w.Client, w.Outcome)
			}
			if w.Outcome == lockOK && w.Rev != e.Rev {
				rep.violation("history: %v: c%d was answered revision %d", e, w.Client, w.Rev)
			}
			if !w.Renew {
				if cur != nil {
					rep.violation("two holders: revision %d: c%d acquired the lock while c%d held it (acquired at revision %d, last written at %d)",
						e.Rev, w.Client, cur.owner, cur.first, cur.last)
					cur.overtook, cur.end = true, e.Rev
				}
				_, claimed := holdOf[e.Value]
				cur = &lockChain{owner: w.Client, first: e.Rev, last: e.Rev, lastVal: e.Value, claimed: claimed}
				if n := len(chains); n > 0 && chains[n-1].nextAcq == 0 {
					chains[n-1].nextAcq = e.Rev
				}
				chains = append(chains, cur)
				if !claimed {
					rep.Phantoms++
				}
				continue
			}
			switch {
			case cur == nil:
				rep.violation("history: %v: c%d's keep-alive (If-Match %d) applied while the key was absent", e, w.Client, w.Cond)
				// Go on from the state the server is in: the key exists.
				cur = &lockChain{owner: w.Client, first: e.Rev, claimed: true}
				chains = append(chains, cur)
			case cur.last != w.Cond:
				rep.violation("two holders: revision %d: c%d's keep-alive (If-Match %d) applied while the key's modRevision was %d (c%d's)", e.Rev, w.Client, w.Cond, cur.last, cur.owner)
			case cur.owner != w.Client:
				rep.violation("two holders: revision %d: c%d renewed c%d's lock", e.Rev, w.Client, cur.owner)
			}
			cur.owner, cur.last, cur.lastVal = w.Client, e.Rev, e.Value
		case e.Key == lockKey:
			if cur == nil {
				rep.violation("history: %v: the key was absent", e)
				continue
			}
			cur.end, cur.expired = e.Rev, e.Expired
			if e.Expired {
				rep.Expiries++
			} else {
				rep.Deletes++
				var rl *lockRelease
				for _, c := range releases[cur.last] {
					if c.Client == cur.owner && c.Outcome != lockRefused && c.Outcome != lockFailed && (c.Outcome != lockOK || c.Rev == e.Rev) {
						rl = c
					}
				}
				if rl == nil {
					rep.violation("history: %v: no release of c%d's lock at token %d could have done it (answers: %s)", e, cur.owner, cur.last, describeReleases(releases[cur.last]))
				}
			}
			cur = nil
		case e.Key == lockResourceKey && !e.Delete:
			w := resource[e.Value]
			if w == nil {
				rep.violation("history: %v: no contender wrote that value", e)
				continue
			}
			rep.ResourceWrites++
			if w.Outcome == lockRefused || w.Outcome == lockFailed {
				rep.violation("history: %v: c%d's txn was answered %s", e, w.Client, w.Outcome)
			}
			if w.Outcome == lockOK && w.Rev != e.Rev {
				rep.violation("history: %v: c%d's txn was answered revision %d", e, w.Client, w.Rev)
			}
			switch {
			case cur == nil:
				rep.violation("stale token: revision %d: c%d wrote the resource with token %d while the lock was free", e.Rev, w.Client, w.Token)
			case cur.last != w.Token:
				rep.violation("stale token: revision %d: c%d wrote the resource with token %d while the lock's modRevision was %d (c%d's)", e.Rev, w.Client, w.Token, cur.last, cur.owner)
			case cur.owner != w.Client:
				rep.violation("stale token: revision %d: c%d wrote the resource while c%d held the lock", e.Rev, w.Client, cur.owner)
			}
			if w.Token < lastToken {
				rep.violation("resource out of token order: revision %d: token %d after token %d", e.Rev, w.Token, lastToken)
			}
			lastToken = max(lastToken, w.Token)
		default:
			rep.violation("history: %v: not a change the test makes", e)
		}
	}
	return chains
}

func describeReleases(rls []*lockRelease) string {
	if len(rls) == 0 {
		return "none sent"
	}
	var s []string
	for _, r := range rls {
		s = append(s, fmt.Sprintf("c%d %s %d", r.Client, r.Outcome, r.Rev))
	}
	return strings.Join(s, ", ")
}

// checkConfirmedInHistory is check 2.
func checkConfirmedInHistory(h *lockHistory, rep *lockReport) {
	at := map[uint64]lockEvent{}
	for _, e := range h.Events {
		at[e.Rev] = e
	}
	put := func(key, val string, rev uint64) bool {
		e, ok := at[rev]
		return ok && e.Key == key && !e.Delete && e.Value == val
	}
	for _, w := range h.Writes {
		if w.Outcome == lockOK && !put(lockKey, w.Value, w.Rev) {
			rep.violation("lost write: c%d's %q was answered revision %d; the history has %v", w.Client, w.Value, w.Rev, describeAt(at, w.Rev))
		}
	}
	for i := range h.Holds {
		hd := &h.Holds[i]
		for _, c := range hd.Writes {
			if c.Proof == proofReadBack && !put(lockKey, c.Value, c.Rev) {
				rep.violation("%v: %q read back at revision %d; the history has %v", hd, c.Value, c.Rev, describeAt(at, c.Rev))
			}
		}
	}
	for _, r := range h.Releases {
		if e, ok := at[r.Rev]; r.Outcome == lockOK && (!ok || e.Key != lockKey || !e.Delete || e.Expired) {
			rep.violation("lost release: c%d's release of token %d was answered revision %d; the history has %v", r.Client, r.Cond, r.Rev, describeAt(at, r.Rev))
		}
	}
	for _, w := range h.Resource {
		if w.Outcome == lockOK && !put(lockResourceKey, w.Value, w.Rev) {
			rep.violation("lost resource write: c%d's %q (token %d) was answered revision %d; the history has %v", w.Client, w.Value, w.Token, w.Rev, describeAt(at, w.Rev))
		}
	}
}

func describeAt(at map[uint64]lockEvent, rev uint64) string {
	if e, ok := at[rev]; ok {
		return e.String()
	}
	return "nothing at that revision"
}

// checkFencing is check 3.
func checkFencing(h *lockHistory, rep *lockReport) {
	type span struct {
		hd       *lockHold
		from, to uint64
	}
	var spans []span
	byToken := map[uint64][]*lockHold{}
	for i := range h.Holds {
		hd := &h.Holds[i]
		if len(hd.Writes) == 0 {
			continue
		}
		for _, c := range hd.Writes {
			byToken[c.Rev] = append(byToken[c.Rev], hd)
		}
		spans = append(spans, span{hd, hd.token(), hd.last().Rev})
	}
	for i := range spans {
		s := &spans[i]
		tokens := map[uint64]bool{}
		for _, c := range s.hd.Writes {
			tokens[c.Rev] = true
		}
		for _, w := range h.Resource {
			if w.Client == s.hd.Client && tokens[w.Token] && w.Outcome == lockOK {
				s.to = max(s.to, w.Rev)
			}
		}
		for _, r := range h.Releases {
			if r.Client == s.hd.Client && r.Cond == s.hd.last().Rev && r.Outcome == lockOK {
				s.to = max(s.to, r.Rev)
			}
		}
	}
	for tok, hs := range byToken {
		if len(hs) > 1 {
			rep.violation("fencing: token %d held by %d holds (%v and %v)", tok, len(hs), hs[0], hs[1])
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
	for i := 1; i < len(spans); i++ {
		for j := i - 1; j >= 0; j-- {
			if spans[j].to >= spans[i].from && spans[j].from != spans[i].from {
				rep.violation("fencing: the %v lies within the %v, which its holder kept through revision %d", spans[i].hd, spans[j].hd, spans[j].to)
				break
			}
		}
	}
}

// checkBeliefs is check 4.
func checkBeliefs(h *lockHistory, rep *lockReport) {
	type belief struct {
		hd       *lockHold
		from, to time.Duration
	}
	var bs []belief
	for i := range h.Holds {
		hd := &h.Holds[i]
		if len(hd.Writes) == 0 {
			continue
		}
		from, to := hd.belief(h.TTL, h.Margin)
		bs = append(bs, belief{hd, from, to})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].from < bs[j].from })
	for i := 1; i < len(bs); i++ {
		for j := i - 1; j >= 0; j-- {
			if bs[j].to > bs[i].from && bs[j].to > bs[j].from && bs[i].to > bs[i].from {
				rep.violation("two holders at once: c%d believed it held the lock (token %d) from %v to %v, c%d (token %d) from %v",
					bs[j].hd.Client, bs[j].hd.token(), bs[j].from, bs[j].to, bs[i].hd.Client, bs[i].hd.token(), bs[i].from)
				break
			}
		}
	}
	for _, w := range h.Resource {
		ok := false
		for _, b := range bs {
			if b.hd.Client != w.Client || w.Call < b.from || w.Call > b.to {
				continue
			}
			for _, c := range b.hd.Writes {
				if c.Rev == w.Token {
					ok = true
				}
			}
		}
		if !ok {
			rep.violation("c%d sent resource write %q (token %d) at %v, outside any hold it believed it had with that token", w.Client, w.Value, w.Token, w.Call)
		}
	}
}

// checkExpiries is check 5.
func checkExpiries(h *lockHistory, rep *lockReport, chains []*lockChain, writes map[string]*lockWrite) {
	byFirst := map[uint64]*lockChain{}
	for _, c := range chains {
		byFirst[c.first] = c
		if !c.expired || c.end == 0 {
			continue
		}
		w := writes[c.lastVal]
		if at, ok := h.Arrivals[c.end]; ok && w != nil && at < w.Call+h.TTL {
			rep.violation("early expiry: revision %d expired c%d's lock (its write %q at revision %d, sent at %v) at %v, before its TTL of %v",
				c.end, c.owner, c.lastVal, c.last, w.Call, at, h.TTL)
		}
	}
	for i := range h.Holds {
		hd := &h.Holds[i]
		if len(hd.Writes) == 0 || hd.End != endCrashed {
			continue
		}
		c := byFirst[hd.token()]
		switch {
		case c == nil:
			continue // not in the history: reported by check 2
		case c.overtook:
			continue // reported by check 1
		case c.end == 0:
			rep.violation("%v crashed at %v and its lock never expired (the key is still held at the end of the history)", hd, hd.Until)
			continue
		case !c.expired:
			rep.violation("%v crashed at %v, and the delete at revision %d that ended its lock is not marked expired", hd, hd.Until, c.end)
			continue
		}
		if !hd.Stable {
			continue
		}
		last := hd.last()
		if c.last != last.Rev {
			rep.violation("%v crashed under a stable leader after its write at revision %d, but the history has its lock last written at %d", hd, last.Rev, c.last)
			continue
		}
		at, ok := h.Arrivals[c.end]
		if ok {
			rep.StableExpiry = append(rep.StableExpiry, at-last.At)
		}
		switch {
		case !ok:
			rep.violation("%v crashed under a stable leader: no live watch saw its expiry (revision %d)", hd, c.end)
		case at > last.At+h.TTL+h.ExpiryBound:
			rep.violation("late expiry: %v crashed under a stable leader; its last write answered at %v, its expiry (revision %d) seen at %v, %v later (TTL %v + %v allowed)",
				hd, last.At, c.end, at, at-last.At, h.TTL, h.ExpiryBound)
		}
		if c.nextAcq == 0 {
			rep.violation("%v crashed under a stable leader and nobody acquired the lock after its expiry", hd)
			continue
		}
		at, ok = h.Arrivals[c.nextAcq]
		if ok {
			rep.StableHandover = append(rep.StableHandover, at-last.At)
		}
		if !ok || at > last.At+h.TTL+h.HandoverBound {
			rep.violation("slow handover: %v crashed under a stable leader; its last write answered at %v, the next acquire (revision %d) seen at %v (TTL %v + %v allowed; seen by a live watch: %v)",
				hd, last.At, c.nextAcq, at, h.TTL, h.HandoverBound, ok)
		}
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
