package e2e

// The lock checker's real-time checks: beliefs (check 4) and expiries
// (check 5).

import (
	"sort"
	"time"
)

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
