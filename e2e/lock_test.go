package e2e

// A lock built the way the README's recipe builds it with curl, under the
// robustness suite's faults: five contenders spread over the three members
// take lock/x with PUT If-None-Match: * and a TTL, keep it alive with
// re-PUTs under If-Match: "<token>", write a guarded resource with a
// transaction that compares the lock's modRevision with their token, and
// release it with a DELETE under If-Match; a contender refused with 412
// waits on a watch of the key for its delete. Now and then a holder
// crashes (stops renewing and never releases); once under a stable leader,
// on purpose, to time its lock's expiry. Everything is recorded and handed
// to the checker (lockcheck_test.go) with the key's whole history as a
// watch replays it from revision 0.
//
// -lock.soak=DURATION runs random faults for that long instead of the fixed
// set; -robustness.seed replays a run.

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

var lockSoakFlag = flag.Duration("lock.soak", 0, "TestLockUnderFaults injects random faults for this long (0: its short fixed set)")

const (
	lockTTL         = 2 * time.Second
	lockMargin      = 200 * time.Millisecond // a holder believes until TTL - this after sending its last confirmed write
	lockContenders  = 5
	lockCrashChance = 0.1 // of a hold: its holder crashes
	// lockRequestTimeout bounds every request (the outcome is then
	// unknown): well within the TTL, so that a contender can still find out
	// by a read, within its belief, whether an ambiguous write took.
	lockRequestTimeout = time.Second
	// Under a stable leader a key is gone within TTL + 1 s (the contract);
	// a second more for the watch to deliver it on a loaded machine, and
	// another for a waiter to take the lock.
	lockExpiryBound   = 2 * time.Second
	lockHandoverBound = 3 * time.Second
)

// lockFaults stress the lock: its holder's member or the leader gone,
// cut off or stopped (keep-alives time out with unknown outcomes, a new
// leader restarts the TTLs), and slow links.
var lockFaults = []string{"kill-leader", "partition-leader", "sigstop-leader", "delay", "kill-follower", "partition-follower", "one-way-partition", "drop"}

// lockCIFaults is the short fixed set.
var lockCIFaults = []string{"kill-leader", "partition-leader", "sigstop-leader", "delay"}

func TestLockUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster under faults for half a minute")
	}
	seed := pickSeed()
	start := time.Now()
	t.Logf("seed %d (replay: go test -run '^TestLockUnderFaults$' -v ./e2e -args -robustness.seed=%d)", seed, seed)
	c := tc.NewProxied(t, 3, seed, "--request-timeout", memberRequestTimeout.String())
	c.Start()
	tc.WaitLeader(t, 30*time.Second, c.Members()...)

	l := newLockRun(t, c, seed)
	l.r.event("cluster of 3 up")
	l.startObserver()
	for i := 0; i < lockContenders; i++ {
		l.wg.Add(1)
		go func(i int) { defer l.wg.Done(); l.contender(i, seed+int64(i)+1) }(i)
	}
	defer l.stopAll()
	defer l.r.healAll()

	// Faults, each once the lock has changed hands twice since the last.
	var faults []string
	var faultErr error
	next := func(i int) (string, bool) {
		if *lockSoakFlag > 0 {
			return lockFaults[l.r.rng.Intn(len(lockFaults))], time.Since(start) < *lockSoakFlag
		}
		if i < len(lockCIFaults) {
			return lockCIFaults[i], true
		}
		return "", false
	}
	for i := 0; ; i++ {
		f, ok := next(i)
		if !ok {
			break
		}
		if err := l.waitAcquisitions(2, 20*time.Second); err != nil {
			faultErr = fmt.Errorf("before %s: %v", f, err)
			break
		}
		l.r.event("fault %s: begin", f)
		err := faultKinds[f](l.r)
		faults = append(faults, f)
		if err != nil {
			faultErr = fmt.Errorf("fault %s: %v", f, err)
			l.r.event("fault %s: FAILED: %v", f, err)
			break
		}
		l.r.event("fault %s: healed", f)
		if *lockSoakFlag > 0 && i%5 == 4 {
			if err := l.stableCrash(); err != nil {
				faultErr = err
				break
			}
		}
	}
	l.r.healAll()
	l.r.event("all faults healed")
	if faultErr == nil {
		faultErr = l.waitAcquisitions(2, 20*time.Second)
	}
	if faultErr == nil {
		faultErr = l.stableCrash()
	}
	if faultErr != nil {
		t.Errorf("faults: %v", faultErr)
	}
	hist, err := l.finish()
	if err != nil {
		t.Errorf("%v", err)
	}
	rep := checkLock(hist)
	t.Logf("faults injected: %d %v", len(faults), faults)
	t.Logf("lock: %v", rep)
	t.Logf("lock: %d writes of the lock, %d releases, %d resource txns, %d history events; waiters woken by a delete %d, by their timeout %d",
		len(hist.Writes), len(hist.Releases), len(hist.Resource), len(hist.Events), l.woken.Load(), l.waitTimeouts.Load())
	t.Logf("lock: ambiguous acquires resolved by a read: %d held, %d not held, %d unresolved within the belief; outcomes: %s",
		l.readHeld.Load(), l.readNot.Load(), l.readLate.Load(), outcomeCounts(hist))
	for i, v := range rep.Violations {
		if i == 40 {
			t.Errorf("... and %d more violations", len(rep.Violations)-i)
			break
		}
		t.Errorf("violation: %s", v)
	}
	if rep.StableCrashes == 0 {
		t.Errorf("no holder crashed under a stable leader: the expiry was not timed")
	}
	if len(rep.Violations) > 0 {
		t.Errorf("%d violations; replay: go test -run '^TestLockUnderFaults$' -v ./e2e -args -robustness.seed=%d", len(rep.Violations), seed)
	}
	t.Logf("TestLockUnderFaults took %v", time.Since(start).Round(100*time.Millisecond))
}

// waitAcquisitions waits until k more holds have begun.
func (l *lockRun) waitAcquisitions(k int, timeout time.Duration) error {
	l.mu.Lock()
	want := l.acquired + k
	l.mu.Unlock()
	return tc.Poll(timeout, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.acquired < want {
			return fmt.Errorf("%d of %d acquisitions", l.acquired, want)
		}
		return nil
	})
}

// stableCrash has the next holder crash under a stable leader, and waits
// until its lock expired and passed to another contender. If the leader
// changed meanwhile the hold's expiry is not timed (and one more try is
// made).
func (l *lockRun) stableCrash() error {
	for attempt := 1; attempt <= 3; attempt++ {
		lead, err := l.r.leader()
		if err != nil {
			return fmt.Errorf("stable crash: %v", err)
		}
		st0, err := lead.Status()
		if err != nil {
			return fmt.Errorf("stable crash: %v", err)
		}
		l.crashOn.Store(true)
		var tok uint64
		select {
		case tok = <-l.crashed:
		case <-time.After(20 * time.Second):
			l.crashOn.Store(false)
			return fmt.Errorf("stable crash: no contender acquired the lock within 20s")
		}
		// Its expiry, then another acquire, as the observer sees them.
		var expiry uint64
		var expired bool
		err = tc.Poll(lockTTL+lockHandoverBound+10*time.Second, func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, e := range l.obsLog {
				switch {
				case e.Rev <= tok:
				case expiry == 0 && e.Key == lockKey && e.Delete:
					expiry, expired = e.Rev, e.Expired
				case expiry != 0 && e.Rev > expiry && e.Key == lockKey && !e.Delete:
					return nil
				}
			}
			return fmt.Errorf("the crashed hold of token %d: expiry at revision %d; no acquire after it yet", tok, expiry)
		})
		if err != nil {
			return fmt.Errorf("stable crash: %v", err)
		}
		st1, err := lead.Status()
		if err == nil && st1.State == "leader" && st1.Term == st0.Term {
			l.r.event("the lock of the holder that crashed (token %d) was deleted at revision %d (expired: %v) and passed on; leader %d stable in term %d", tok, expiry, expired, lead.ID, st0.Term)
			return nil
		}
		l.r.event("leader %d (term %d) did not stay leader during the stable crash (now %+v, %v): not timed", lead.ID, st0.Term, st1, err)
		l.mu.Lock()
		for i := range l.h.Holds {
			if hd := &l.h.Holds[i]; hd.Stable && hd.token() == tok {
				hd.Stable = false
			}
		}
		l.mu.Unlock()
	}
	return fmt.Errorf("stable crash: the leader changed in each of 3 tries")
}

// outcomeCounts sums up the answers by kind of request.
func outcomeCounts(h *lockHistory) string {
	var acq, renew, res, rel [4]int
	for _, w := range h.Writes {
		if w.Renew {
			renew[w.Outcome]++
		} else {
			acq[w.Outcome]++
		}
	}
	for _, w := range h.Resource {
		res[w.Outcome]++
	}
	for _, r := range h.Releases {
		rel[r.Outcome]++
	}
	f := func(name string, c [4]int) string {
		return fmt.Sprintf("%s %d ok/%d 412/%d failed/%d unknown", name, c[lockOK], c[lockRefused], c[lockFailed], c[lockUnknown])
	}
	return strings.Join([]string{f("acquire", acq), f("keep-alive", renew), f("resource txn", res), f("release", rel)}, ", ")
}
