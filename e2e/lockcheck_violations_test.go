package e2e

// Each kind of fabricated violation of the lock, and the words the checker
// must report it with.

import (
	"strings"
	"testing"
)

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
