package e2e

// Meta-tests of the lock checker (lockcheck_test.go): a good history
// passes, and every kind of fabricated violation is reported.

import (
	"strings"
	"testing"
)

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
