package e2e

// Meta-tests of the lock checker (lockcheck_test.go): a good history
// passes, and every kind of fabricated violation is reported.

import (
	"strings"
	"testing"
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

func TestLockCheckerGoodHistory(t *testing.T) {
	f := goodLockHistory()
	rep := checkLock(&f.h)
	if len(rep.Violations) > 0 {
		t.Fatalf("a good history has violations:\n%s", strings.Join(rep.Violations, "\n"))
	}
	t.Logf("good history: %v", rep)
	if rep.Acquisitions != 3 || rep.ReadBacks != 1 || rep.Renewals != 1 || rep.Expiries != 2 || rep.Deletes != 2 ||
		rep.Phantoms != 1 || rep.ResourceWrites != 4 || rep.StaleRefused != 1 || rep.StableCrashes != 1 {
		t.Errorf("counts: %+v", rep)
	}
	// Without the key's history, the checks of the contenders' records
	// alone pass too.
	f.h.Events = nil
	if rep := checkLock(&f.h); len(rep.Violations) > 0 {
		t.Fatalf("without the history: %s", strings.Join(rep.Violations, "\n"))
	}
}

// TestLockCheckerViolations fabricates each kind of violation; the checker
// must report every one, with the given words.
func TestLockCheckerViolations(t *testing.T) {
	cases := []struct {
		name string
		fab  func() *lockFab
		want []string // each in some violation
		// records: also without the history (Events nil), these words
		// must be reported, from the contenders' records alone.
		records []string
	}{
		{
			// If-None-Match: * ignored: c2 acquires while c1 holds; c1
			// learns it only at its next keep-alive.
			name: "two holders in revision order",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					acquire(2, "b", 100, 110, lockOK, 2).
					renew(1, "a-r1", 1, 500, 510, lockRefused, 0).
					hold(1, 510, endLost, "a").
					release(2, 2, 600, 610, lockOK, 3).
					hold(2, 600, endReleased, "b").
					put(1, lockKey, "a", 5).put(2, lockKey, "b", 105).del(3, false, 605)
			},
			want:    []string{"two holders: revision 2: c2 acquired the lock while c1 held it"},
			records: []string{"two holders at once: c1 believed it held the lock (token 1) from 10ms to 510ms, c2 (token 2) from 110ms"},
		},
		{
			// The keep-alive's If-Match ignored too: c1's hold spans c2's
			// acquire in revisions.
			name: "overlapping tokens",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					acquire(2, "b", 100, 110, lockOK, 2).
					renew(1, "a-r1", 1, 500, 510, lockOK, 3).
					hold(1, 600, endReleased, "a", "a-r1").
					hold(2, 120, endReleased, "b").
					release(2, 2, 120, 130, lockRefused, 0).
					release(1, 3, 600, 610, lockOK, 4).
					put(1, lockKey, "a", 5).put(2, lockKey, "b", 105).put(3, lockKey, "a-r1", 505).del(4, false, 605)
			},
			want:    []string{"two holders: revision 2", "two holders: revision 3: c1's keep-alive (If-Match 1) applied while the key's modRevision was 2"},
			records: []string{"fencing: the hold of c2 from revision 2 lies within the hold of c1 from revision 1, which its holder kept through revision 4"},
		},
		{
			// A txn sent while c1 held the lock lands after the lock
			// expired and passed to c2: its compare should have failed.
			name: "stale token accepted on the resource",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					resource(1, 1, "a-w1", 40, 5000, lockUnknown, 0).
					hold(1, 50, endCrashed, "a").
					acquire(2, "b", 2200, 2210, lockOK, 3).
					release(2, 3, 2300, 2310, lockOK, 5).
					hold(2, 2300, endReleased, "b").
					put(1, lockKey, "a", 5).del(2, true, 2100).put(3, lockKey, "b", 2205).
					put(4, lockResourceKey, "a-w1", 2250).del(5, false, 2305)
			},
			want: []string{"stale token: revision 4: c1 wrote the resource with token 1 while the lock's modRevision was 3 (c2's)"},
		},
		{
			name: "resource written while the lock is free",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					resource(1, 1, "a-w1", 40, 5000, lockUnknown, 0).
					hold(1, 50, endCrashed, "a").
					put(1, lockKey, "a", 5).del(2, true, 2100).put(3, lockResourceKey, "a-w1", 2250)
			},
			want: []string{"stale token: revision 3: c1 wrote the resource with token 1 while the lock was free"},
		},
		{
			name: "resource tokens go back",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					renew(1, "a-r1", 1, 100, 110, lockOK, 2).
					resource(1, 2, "w2", 120, 130, lockOK, 3).
					resource(1, 1, "w1", 30, 140, lockOK, 4).
					hold(1, 200, endReleased, "a", "a-r1").
					release(1, 2, 200, 210, lockOK, 5).
					put(1, lockKey, "a", 5).put(2, lockKey, "a-r1", 105).put(3, lockResourceKey, "w2", 125).
					put(4, lockResourceKey, "w1", 135).del(5, false, 205)
			},
			want: []string{"stale token: revision 4: c1 wrote the resource with token 1 while the lock's modRevision was 2", "resource out of token order: revision 4: token 1 after token 2"},
		},
		{
			// c2's acquire timed out; it went on as holder without
			// finding out. (It had not taken the lock: c1 had.)
			name: "ambiguous acquire treated as held",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					acquire(2, "b", 100, 2600, lockUnknown, 0).
					hold(2, 2700, endReleased, "b").
					hold(1, 1000, endReleased, "a").
					release(1, 1, 1000, 1010, lockOK, 2).
					put(1, lockKey, "a", 5).del(2, false, 1005)
			},
			want:    []string{"hold of c2 from revision 0: treated as held after an answer of outcome unknown to its acquire \"b\", never confirmed"},
			records: []string{"treated as held after an answer of outcome unknown"},
		},
		{
			// c2 resolved its ambiguous acquire with a read that (it
			// says) showed its value; the history shows c1's.
			name: "read back of a value not there",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					acquire(2, "b", 100, 2600, lockUnknown, 0).
					hold(2, 1500, endReleased, "b").readBack("b", 1, 2650).
					hold(1, 1000, endReleased, "a").
					release(1, 1, 1000, 1010, lockOK, 2).
					put(1, lockKey, "a", 5).del(2, false, 1005)
			},
			want:    []string{"hold of c2 from revision 1: \"b\" read back at revision 1; the history has 1 put lock/x=a", "fencing: token 1 held by 2 holds"},
			records: []string{"fencing: token 1 held by 2 holds"},
		},
		{
			name: "acquire answered 412 yet in the history",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					release(1, 1, 100, 110, lockOK, 2).
					hold(1, 100, endReleased, "a").
					acquire(2, "b", 120, 130, lockRefused, 0).
					put(1, lockKey, "a", 5).del(2, false, 105).put(3, lockKey, "b", 125).del(4, true, 2200)
			},
			want: []string{"history: 3 put lock/x=b: c2's write was answered refused"},
		},
		{
			name: "acknowledged keep-alive lost",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					renew(1, "a-r1", 1, 100, 110, lockOK, 2).
					hold(1, 300, endReleased, "a", "a-r1").
					release(1, 2, 300, 310, lockRefused, 0).
					put(1, lockKey, "a", 5).del(2, true, 2100)
			},
			want: []string{"lost write: c1's \"a-r1\" was answered revision 2; the history has 2 expire lock/x"},
		},
		{
			name: "acknowledged revision differs",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 2).
					release(1, 2, 100, 110, lockOK, 3).
					hold(1, 100, endReleased, "a").
					put(1, lockKey, "a", 5).del(3, false, 105)
			},
			want: []string{"history: 1 put lock/x=a: c1 was answered revision 2"},
		},
		{
			name: "keep-alive applied to an absent key",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					renew(1, "a-r1", 1, 1500, 5000, lockUnknown, 0).
					hold(1, 1700, endDeadline, "a").
					put(1, lockKey, "a", 5).del(2, true, 2100).put(3, lockKey, "a-r1", 4000).del(4, true, 6100)
			},
			want: []string{"3 put lock/x=a-r1: c1's keep-alive (If-Match 1) applied while the key was absent"},
		},
		{
			name: "release that matched no release",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					hold(1, 100, endReleased, "a").
					release(1, 7, 100, 110, lockOK, 2).
					put(1, lockKey, "a", 5).del(2, false, 105)
			},
			want: []string{"history: 2 delete lock/x: no release of c1's lock at token 1 could have done it"},
		},
		{
			name: "crashed holder's lock never expires",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					hold(1, 100, endCrashed, "a").
					put(1, lockKey, "a", 5)
			},
			want: []string{"hold of c1 from revision 1 crashed at 100ms and its lock never expired"},
		},
		{
			name: "crashed holder's lock deleted, not expired",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					hold(1, 100, endCrashed, "a").
					put(1, lockKey, "a", 5).del(2, false, 2100)
			},
			want: []string{"the delete at revision 2 that ended its lock is not marked expired", "no release of c1's lock at token 1"},
		},
		{
			name: "early expiry",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					renew(1, "a-r1", 1, 500, 510, lockOK, 2).
					hold(1, 600, endCrashed, "a", "a-r1").
					put(1, lockKey, "a", 5).put(2, lockKey, "a-r1", 505).del(3, true, 2100)
			},
			want: []string{"early expiry: revision 3 expired c1's lock (its write \"a-r1\" at revision 2, sent at 500ms) at 2.1s, before its TTL of 2s"},
		},
		{
			name: "late expiry under a stable leader",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					hold(1, 100, endCrashed, "a").stable().
					acquire(2, "b", 5010, 5020, lockOK, 3).
					hold(2, 5100, endReleased, "b").
					release(2, 3, 5100, 5110, lockOK, 4).
					put(1, lockKey, "a", 5).del(2, true, 5000).put(3, lockKey, "b", 5015).del(4, false, 5105)
			},
			want: []string{"late expiry: hold of c1 from revision 1 crashed under a stable leader", "slow handover"},
		},
		{
			name: "stable crash, expiry seen by no live watch, nobody acquires",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					hold(1, 100, endCrashed, "a").stable().
					put(1, lockKey, "a", 5).del(2, true, -1)
			},
			want: []string{"no live watch saw its expiry (revision 2)", "nobody acquired the lock after its expiry"},
		},
		{
			name: "resource written outside a believed hold",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 1).
					resource(1, 1, "a-w1", 1900, 1910, lockOK, 2).
					hold(1, 2500, endReleased, "a").
					release(1, 1, 2500, 2510, lockOK, 3).
					put(1, lockKey, "a", 5).put(2, lockResourceKey, "a-w1", 1905).del(3, false, 2505)
			},
			want:    []string{"c1 sent resource write \"a-w1\" (token 1) at 1.9s, outside any hold it believed it had with that token"},
			records: []string{"outside any hold it believed it had"},
		},
		{
			name: "a value nobody wrote",
			fab: func() *lockFab {
				return newLockFab().put(1, lockKey, "zzz", 5)
			},
			want: []string{"history: 1 put lock/x=zzz: no contender wrote that value"},
		},
		{
			name: "history goes back",
			fab: func() *lockFab {
				return newLockFab().
					acquire(1, "a", 0, 10, lockOK, 2).
					acquire(2, "b", 0, 10, lockUnknown, 0).
					put(2, lockKey, "a", 5).del(1, true, 2100)
			},
			want: []string{"history: revision 1 after 2"},
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fab()
			rep := checkLock(&f.h)
			expectViolations(t, rep, tt.want)
			if tt.records != nil {
				f.h.Events = nil
				expectViolations(t, checkLock(&f.h), tt.records)
			}
		})
	}
}

func expectViolations(t *testing.T, rep lockReport, want []string) {
	t.Helper()
	all := strings.Join(rep.Violations, "\n")
	if len(rep.Violations) == 0 {
		t.Fatalf("no violation reported, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("no violation says %q; got:\n%s", w, all)
		}
	}
	t.Logf("reported:\n%s", all)
}

// TestLockCheckerEachGoodStepMatters removes, from the good history, each
// event in turn: every removal is reported (a lost acknowledged change, a
// chain that no longer adds up, or an expiry that never comes).
func TestLockCheckerEachGoodStepMatters(t *testing.T) {
	n := len(goodLockHistory().h.Events)
	for i := 0; i < n; i++ {
		f := goodLockHistory()
		gone := f.h.Events[i]
		f.h.Events = append(f.h.Events[:i:i], f.h.Events[i+1:]...)
		if rep := checkLock(&f.h); len(rep.Violations) == 0 {
			// The last expiry ends a hold nobody claimed: without it the
			// key is simply still held at the end.
			if i == n-1 {
				continue
			}
			t.Errorf("without %v the good history still passes", gone)
		}
	}
}
