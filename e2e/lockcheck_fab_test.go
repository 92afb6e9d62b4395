package e2e

// lockFab fabricates lock histories by hand for the checker's meta-tests,
// and goodLockHistory is one that must pass.

import (
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// lockFab builds a history by hand.
type lockFab struct{ h lockHistory }

func newLockFab() *lockFab {
	return &lockFab{lockHistory{TTL: 2 * time.Second, Margin: 200 * time.Millisecond,
		ExpiryBound: 1500 * time.Millisecond, HandoverBound: 2500 * time.Millisecond,
		Arrivals: map[uint64]time.Duration{}}}
}

func (f *lockFab) acquire(client int, val string, call, ret int, out lockOutcome, rev uint64) *lockFab {
	f.h.Writes = append(f.h.Writes, lockWrite{Client: client, Value: val, Call: ms(call), Return: ms(ret), Outcome: out, Rev: rev})
	return f
}

func (f *lockFab) renew(client int, val string, cond uint64, call, ret int, out lockOutcome, rev uint64) *lockFab {
	f.h.Writes = append(f.h.Writes, lockWrite{Client: client, Renew: true, Cond: cond, Value: val, Call: ms(call), Return: ms(ret), Outcome: out, Rev: rev})
	return f
}

func (f *lockFab) release(client int, cond uint64, call, ret int, out lockOutcome, rev uint64) *lockFab {
	f.h.Releases = append(f.h.Releases, lockRelease{Client: client, Cond: cond, Call: ms(call), Return: ms(ret), Outcome: out, Rev: rev})
	return f
}

func (f *lockFab) resource(client int, token uint64, val string, call, ret int, out lockOutcome, rev uint64) *lockFab {
	f.h.Resource = append(f.h.Resource, lockResourceWrite{Client: client, Token: token, Value: val, Call: ms(call), Return: ms(ret), Outcome: out, Rev: rev})
	return f
}

// hold adds a hold of client whose writes are the given values: each is
// taken from the write of that value (acknowledged: its answer; otherwise
// read back at the revision and time given in readBack, or unproven).
func (f *lockFab) hold(client int, until int, end lockEnd, vals ...string) *lockFab {
	hd := lockHold{Client: client, Until: ms(until), End: end}
	for _, v := range vals {
		for _, w := range f.h.Writes {
			if w.Value == v {
				c := lockConfirmed{Value: v, Rev: w.Rev, Proof: proofAck, Send: w.Call, At: w.Return}
				if w.Outcome != lockOK {
					c.Proof = proofNone
				}
				hd.Writes = append(hd.Writes, c)
			}
		}
	}
	f.h.Holds = append(f.h.Holds, hd)
	return f
}

// readBack marks the last hold's write of val as read back at rev at time at.
func (f *lockFab) readBack(val string, rev uint64, at int) *lockFab {
	hd := &f.h.Holds[len(f.h.Holds)-1]
	for i := range hd.Writes {
		if hd.Writes[i].Value == val {
			hd.Writes[i].Proof, hd.Writes[i].Rev, hd.Writes[i].At = proofReadBack, rev, ms(at)
		}
	}
	return f
}

func (f *lockFab) stable() *lockFab {
	f.h.Holds[len(f.h.Holds)-1].Stable = true
	return f
}

// put and del add events; arrival < 0: no live watch saw it.
func (f *lockFab) put(rev uint64, key, val string, arrival int) *lockFab {
	f.h.Events = append(f.h.Events, lockEvent{Rev: rev, Key: key, Value: val})
	if arrival >= 0 {
		f.h.Arrivals[rev] = ms(arrival)
	}
	return f
}

func (f *lockFab) del(rev uint64, expired bool, arrival int) *lockFab {
	f.h.Events = append(f.h.Events, lockEvent{Rev: rev, Key: lockKey, Delete: true, Expired: expired})
	if arrival >= 0 {
		f.h.Arrivals[rev] = ms(arrival)
	}
	return f
}

// goodLockHistory has every way a hold begins and ends: acknowledged and
// read-back acquires, keep-alives (one ambiguous that never landed), a
// refused acquire, a stale resource txn refused by its compare, a release,
// a holder that crashed under a stable leader and whose lock expired and
// passed on in time, and an ambiguous acquire that landed after its
// contender had given up on it (a hold nobody claims, which expires).
func goodLockHistory() *lockFab {
	return newLockFab().
		acquire(1, "c1-1", 0, 10, lockOK, 1).
		resource(1, 1, "c1-1-w1", 20, 30, lockOK, 2).
		renew(1, "c1-1-r1", 1, 500, 510, lockOK, 3).
		resource(1, 3, "c1-1-w2", 520, 530, lockOK, 4).
		resource(1, 1, "c1-1-w3", 540, 550, lockRefused, 0).
		acquire(2, "c2-1", 600, 610, lockRefused, 0).
		release(1, 3, 700, 710, lockOK, 5).
		hold(1, 700, endReleased, "c1-1", "c1-1-r1").
		acquire(2, "c2-2", 720, 730, lockOK, 6).
		resource(2, 6, "c2-2-w1", 740, 750, lockOK, 7).
		hold(2, 800, endCrashed, "c2-2").stable().
		acquire(3, "c3-1", 2810, 2850, lockUnknown, 0).
		hold(3, 3400, endReleased, "c3-1").readBack("c3-1", 9, 2900).
		resource(3, 9, "c3-1-w1", 2910, 2920, lockOK, 10).
		renew(3, "c3-1-r1", 9, 3300, 3350, lockUnknown, 0).
		release(3, 9, 3400, 3410, lockOK, 11).
		acquire(4, "c4-1", 3000, 3100, lockUnknown, 0).
		put(1, lockKey, "c1-1", 5).
		put(2, lockResourceKey, "c1-1-w1", 25).
		put(3, lockKey, "c1-1-r1", 505).
		put(4, lockResourceKey, "c1-1-w2", 525).
		del(5, false, 705).
		put(6, lockKey, "c2-2", 725).
		put(7, lockResourceKey, "c2-2-w1", 745).
		del(8, true, 2800).
		put(9, lockKey, "c3-1", 2820).
		put(10, lockResourceKey, "c3-1-w1", 2915).
		del(11, false, 3405).
		put(12, lockKey, "c4-1", 3500).
		del(13, true, 5600)
}
