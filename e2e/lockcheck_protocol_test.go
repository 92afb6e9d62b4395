package e2e

// The lock checker's checks by revision: the holds' own records, the
// history against the protocol (check 1), what was confirmed in it (check
// 2), and fencing (check 3).

import (
	"fmt"
	"sort"
	"strings"
)

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
