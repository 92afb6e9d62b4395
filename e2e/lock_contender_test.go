package e2e

// The lock test's contenders: each takes the lock over and over, holds it
// (resource writes, keep-alives) and releases it, or crashes.

import (
	"fmt"
	"math/rand"
	"time"
)

// contender takes the lock over and over, preferring member i.
func (l *lockRun) contender(i int, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	client := int(l.clients.Add(1))
	pref := i
	for seq := 1; !l.stopping(); seq++ {
		n := l.member(pref)
		val := fmt.Sprintf("c%d-%d", client, seq)
		w, a := l.putLock(n, client, val, false, 0)
		var first lockConfirmed
		switch w.Outcome {
		case lockOK:
			first = lockConfirmed{Value: val, Rev: w.Rev, Proof: proofAck, Send: w.Call, At: w.Return}
		case lockRefused:
			after, _ := xRevision(a.Header)
			l.await(n, after, rng)
			continue
		case lockFailed:
			pref++
			l.pause(rng, 50, 150)
			continue
		case lockUnknown:
			// Did it take the lock? Only a read that shows this attempt's
			// value says so; not finding it says nothing about later (the
			// write may still land, and then expires: nobody renews it).
			pref++
			found, got, rev, ok := l.readLock(pref, w.Call+lockTTL-lockMargin)
			switch {
			case !ok:
				l.readLate.Add(1)
				continue
			case !found || got != val:
				l.readNot.Add(1)
				continue
			}
			l.readHeld.Add(1)
			first = lockConfirmed{Value: val, Rev: rev, Proof: proofReadBack, Send: w.Call, At: l.now()}
		}
		if l.hold(rng, &pref, client, first) {
			client = int(l.clients.Add(1)) // the crashed client comes back as another
			l.pause(rng, 100, 300)
		} else {
			l.pause(rng, 0, 100)
		}
	}
}

// hold holds the lock taken by first: it writes the resource, keeps the
// lock alive a few times, and releases it, unless it finds out it lost it,
// its belief runs out, or it crashes (then it returns true).
func (l *lockRun) hold(rng *rand.Rand, pref *int, client int, first lockConfirmed) (crashed bool) {
	hd := lockHold{Client: client, Writes: []lockConfirmed{first}, End: endReleased}
	renewals := rng.Intn(4)
	crashAt := -1
	stable := l.crashOn.CompareAndSwap(true, false)
	switch {
	case stable:
		crashAt = 0
	case rng.Float64() < lockCrashChance:
		crashAt = rng.Intn(renewals + 1)
	}
	l.mu.Lock()
	l.acquired++
	l.mu.Unlock()
	deadline := func() time.Duration { return hd.last().Send + lockTTL - lockMargin }
loop:
	for k := 0; ; k++ {
		tok := hd.last().Rev
		call := l.now()
		if call >= deadline() {
			hd.End, hd.Until = endDeadline, deadline()
			break
		}
		rw := l.writeResource(l.member(*pref), client, tok, fmt.Sprintf("%s-w%d", first.Value, k), call)
		switch rw.Outcome {
		case lockRefused: // the lock has moved on
			hd.End, hd.Until = endLost, rw.Return
			break loop
		case lockFailed, lockUnknown:
			*pref++
		}
		if k == crashAt {
			hd.End, hd.Until, hd.Stable = endCrashed, l.now(), stable
			l.addHold(hd)
			l.r.event("c%d crashed holding the lock (token %d)%s", client, hd.last().Rev, map[bool]string{true: " under a stable leader"}[stable])
			if stable {
				l.crashed <- first.Rev
			}
			return true
		}
		if k >= renewals || l.stopping() {
			break
		}
		// The keep-alive: a third of the TTL or so after the last one,
		// never later than the belief allows.
		wait := time.Duration(250+rng.Intn(250)) * time.Millisecond
		l.sleep(min(wait, deadline()-l.now()-100*time.Millisecond))
		if l.now() >= deadline() {
			hd.End, hd.Until = endDeadline, deadline()
			break
		}
		rv := fmt.Sprintf("%s-r%d", first.Value, k+1)
		w, _ := l.putLock(l.member(*pref), client, rv, true, tok)
		switch w.Outcome {
		case lockOK:
			hd.Writes = append(hd.Writes, lockConfirmed{Value: rv, Rev: w.Rev, Proof: proofAck, Send: w.Call, At: w.Return})
		case lockRefused:
			hd.End, hd.Until = endLost, w.Return
			break loop
		case lockFailed:
			*pref++
		case lockUnknown:
			*pref++
			found, got, rev, ok := l.readLock(*pref, deadline())
			switch {
			case !ok:
				hd.End, hd.Until = endDeadline, deadline()
				break loop
			case found && got == rv:
				hd.Writes = append(hd.Writes, lockConfirmed{Value: rv, Rev: rev, Proof: proofReadBack, Send: w.Call, At: l.now()})
			case found && got == hd.last().Value && rev == tok:
				// Not applied (yet): still ours under the old token.
			default:
				hd.End, hd.Until = endLost, l.now()
				break loop
			}
		}
	}
	if hd.End == endReleased {
		hd.Until = l.now()
	}
	l.addHold(hd)
	if hd.End != endLost {
		// Also after the belief ran out: if the token still matches, the
		// lock is still ours to free.
		l.release(l.member(*pref), client, hd.last().Rev)
	}
	return false
}
