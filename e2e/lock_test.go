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
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// lockRun is one run: the contenders' records and the watches'.
type lockRun struct {
	t    *testing.T
	c    *tc.Cluster
	r    *scenario // the robustness suite's fault injector
	t0   time.Time
	stop chan struct{} // closed: the contenders release and return
	wg   sync.WaitGroup
	// ctx ends the waiters' watches with the contenders; obsCtx the
	// observer's, at the very end.
	ctx       context.Context
	cancel    context.CancelFunc
	obsCancel context.CancelFunc
	obsWG     sync.WaitGroup
	stopOnce  sync.Once

	clients atomic.Int64 // incarnations: a crashed contender comes back as a new client
	crashOn atomic.Bool  // the next holder crashes, under a stable leader
	crashed chan uint64  // the token of that hold

	woken, waitTimeouts atomic.Int64 // waiters woken by a delete, or not within their time
	// How the reads after ambiguous acquires ended: the value was there,
	// it was not, no answer within the belief.
	readHeld, readNot, readLate atomic.Int64

	mu       sync.Mutex
	h        lockHistory
	acquired int                  // holds so far
	live     map[uint64]lockEvent // every event a live watch delivered, by revision
	liveErrs []string             // live watches that disagree, or go back
	obsMark  uint64               // the last id the observer received
	obsLog   []lockEvent          // the observer's events, in order
}

func newLockRun(t *testing.T, c *tc.Cluster, seed int64) *lockRun {
	t0 := time.Now()
	l := &lockRun{
		t: t, c: c, t0: t0, stop: make(chan struct{}), crashed: make(chan uint64, 1),
		r: &scenario{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), c: c, t0: t0, stopped: map[int]bool{}},
		h: lockHistory{TTL: lockTTL, Margin: lockMargin, ExpiryBound: lockExpiryBound, HandoverBound: lockHandoverBound,
			Arrivals: map[uint64]time.Duration{}},
		live: map[uint64]lockEvent{},
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

func (l *lockRun) now() time.Duration { return time.Since(l.t0) }

func (l *lockRun) stopping() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// pause waits between lo and hi milliseconds, less if the run stops.
func (l *lockRun) pause(rng *rand.Rand, lo, hi int) {
	l.sleep(time.Duration(lo+rng.Intn(hi-lo+1)) * time.Millisecond)
}

func (l *lockRun) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-l.stop:
	case <-time.After(d):
	}
}

// stopContenders makes the contenders release and return, and waits.
func (l *lockRun) stopContenders() {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.cancel()
		l.wg.Wait()
	})
}

func (l *lockRun) stopAll() {
	l.stopContenders()
	if l.obsCancel != nil {
		l.obsCancel()
		l.obsWG.Wait()
	}
}

func (l *lockRun) oddity(format string, args ...any) {
	l.mu.Lock()
	if len(l.h.Oddities) < 20 {
		l.h.Oddities = append(l.h.Oddities, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// member is the contender's member: its preferred one, moved on by pref
// after a failure.
func (l *lockRun) member(pref int) *tc.Node {
	ms := l.c.Members()
	return ms[pref%len(ms)]
}

// send is a request of at most lockRequestTimeout.
func (l *lockRun) send(n *tc.Node, method, path, body string, header http.Header) answer {
	ctx, cancel := context.WithTimeout(context.Background(), lockRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL(path), strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := robustClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{tc.Response{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}, err}
}

// outcome files an answer: okCode, 412, certainly not done (the request
// never reached a member, or was never proposed), or unknown. Other 4xx
// answers break the contract.
func (l *lockRun) outcome(a answer, okCode int, what string) lockOutcome {
	switch {
	case a.err == nil && a.Code == okCode:
		return lockOK
	case a.err == nil && a.Code == http.StatusPreconditionFailed:
		return lockRefused
	case a.err != nil && strings.Contains(a.err.Error(), "connection refused"),
		a.err == nil && a.Code == http.StatusServiceUnavailable && strings.Contains(a.Body, "nothing was done"):
		return lockFailed
	case a.err == nil && a.Code >= 400 && a.Code < 500:
		l.oddity("%s: %d %s", what, a.Code, strings.TrimSpace(a.Body))
		return lockFailed
	}
	return lockUnknown
}

var lockPath = "/v1/kv/" + lockKey

// putLock sends an acquire (renew false) or a keep-alive under If-Match:
// "cond", with the TTL, and records it.
func (l *lockRun) putLock(n *tc.Node, client int, val string, renew bool, cond uint64) (lockWrite, answer) {
	hdr := http.Header{"If-None-Match": {"*"}}
	if renew {
		hdr = http.Header{"If-Match": {fmt.Sprintf(`"%d"`, cond)}}
	}
	w := lockWrite{Client: client, Renew: renew, Cond: cond, Value: val, Call: l.now()}
	a := l.send(n, http.MethodPut, lockPath+"?ttl="+lockTTL.String(), val, hdr)
	w.Return = l.now()
	what := fmt.Sprintf("PUT %s %v=%q on %v", lockPath, hdr, val, n)
	w.Outcome = l.outcome(a, http.StatusNoContent, what)
	switch w.Outcome {
	case lockOK:
		rev, has, err := etag(a.Header)
		if x, xerr := xRevision(a.Header); err != nil || !has || xerr != nil || x != rev {
			l.oddity("%s: 204 with ETag %q and X-Revision %q", what, a.Header.Get("ETag"), a.Header.Get("X-Revision"))
		}
		w.Rev = rev
	case lockRefused:
		if _, err := xRevision(a.Header); err != nil {
			l.oddity("%s: 412 without X-Revision", what)
		}
	}
	l.mu.Lock()
	l.h.Writes = append(l.h.Writes, w)
	l.mu.Unlock()
	return w, a
}

// readLock reads the lock linearizably, trying the members in turn, until
// an answer or the deadline (ok false).
func (l *lockRun) readLock(pref int, deadline time.Duration) (found bool, val string, rev uint64, ok bool) {
	for try := pref; l.now() < deadline; try++ {
		n := l.member(try)
		a := l.send(n, http.MethodGet, lockPath, "", nil)
		switch {
		case a.is(http.StatusOK):
			rev, has, err := etag(a.Header)
			if err != nil || !has {
				l.oddity("GET %s on %v: 200 with ETag %q", lockPath, n, a.Header.Get("ETag"))
			}
			return true, a.Body, rev, l.now() < deadline
		case a.is(http.StatusNotFound):
			return false, "", 0, l.now() < deadline
		}
		l.sleep(50 * time.Millisecond)
		if l.stopping() {
			return false, "", 0, false
		}
	}
	return false, "", 0, false
}

// writeResource writes the resource with the holder's token: a txn that
// puts it only if the lock's modRevision is still the token. call is when
// the holder decided to send it (within its belief).
func (l *lockRun) writeResource(n *tc.Node, client int, token uint64, val string, call time.Duration) lockResourceWrite {
	body, _ := json.Marshal(map[string]any{
		"compare": []any{map[string]any{"key": lockKey, "modRevision": token}},
		"success": []any{map[string]any{"put": map[string]any{"key": lockResourceKey, "value": val}}},
		"failure": []any{map[string]any{"get": map[string]any{"key": lockKey}}},
	})
	w := lockResourceWrite{Client: client, Token: token, Value: val, Call: call}
	a := l.send(n, http.MethodPost, "/v1/txn", string(body), nil)
	w.Return = l.now()
	what := fmt.Sprintf("POST /v1/txn (resource %q if modRevision %d) on %v", val, token, n)
	w.Outcome = l.outcome(a, http.StatusOK, what)
	if w.Outcome == lockRefused { // a txn answers a failed compare with 200
		l.oddity("%s: 412", what)
		w.Outcome = lockFailed
	}
	if w.Outcome == lockOK {
		var res struct {
			Succeeded *bool
			Revision  uint64
			Results   []json.RawMessage
		}
		if err := json.Unmarshal([]byte(a.Body), &res); err != nil || res.Succeeded == nil || res.Revision == 0 {
			l.oddity("%s: 200 %s", what, a.Body)
			w.Outcome = lockUnknown
		} else if *res.Succeeded {
			w.Rev = res.Revision
		} else {
			w.Outcome = lockRefused
		}
	}
	l.mu.Lock()
	l.h.Resource = append(l.h.Resource, w)
	l.mu.Unlock()
	return w
}

// release deletes the lock under If-Match: "token".
func (l *lockRun) release(n *tc.Node, client int, token uint64) {
	rl := lockRelease{Client: client, Cond: token, Call: l.now()}
	a := l.send(n, http.MethodDelete, lockPath, "", http.Header{"If-Match": {fmt.Sprintf(`"%d"`, token)}})
	rl.Return = l.now()
	what := fmt.Sprintf("DELETE %s If-Match %d on %v", lockPath, token, n)
	rl.Outcome = l.outcome(a, http.StatusNoContent, what)
	if rl.Outcome == lockOK {
		x, err := xRevision(a.Header)
		if err != nil || x == 0 {
			l.oddity("%s: 204 with X-Revision %q", what, a.Header.Get("X-Revision"))
		}
		rl.Rev = x
	}
	l.mu.Lock()
	l.h.Releases = append(l.h.Releases, rl)
	l.mu.Unlock()
}

func (l *lockRun) addHold(hd lockHold) {
	l.mu.Lock()
	l.h.Holds = append(l.h.Holds, hd)
	l.mu.Unlock()
}

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

// arrive notes an event a live watch delivered.
func (l *lockRun) arrive(ev tc.WatchEvent, at time.Duration) {
	if ev.Type == "progress" {
		return
	}
	e := lockEvent{Rev: ev.ID, Key: ev.Key, Delete: ev.Type == "delete", Value: ev.Value, Expired: ev.Expired}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.live[e.Rev]; ok && old != e {
		l.liveErrs = append(l.liveErrs, fmt.Sprintf("live watches delivered %v and %v", old, e))
	} else if !ok {
		l.live[e.Rev] = e
	}
	if old, ok := l.h.Arrivals[e.Rev]; !ok || at < old {
		l.h.Arrivals[e.Rev] = at
	}
}

// await is a waiter: it watches the lock from after (the 412's revision)
// until it is deleted, or a while passes.
func (l *lockRun) await(n *tc.Node, after uint64, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(l.ctx, 2*lockTTL+time.Second)
	defer cancel()
	var hdr http.Header
	if after > 0 {
		hdr = http.Header{"Last-Event-ID": {strconv.FormatUint(after, 10)}}
	}
	s, err := n.Watch(ctx, "/v1/watch/"+lockKey, hdr)
	if err != nil {
		l.pause(rng, 50, 150)
		return
	}
	defer s.Close()
	for {
		ev, err := s.Next()
		if err != nil {
			l.waitTimeouts.Add(1)
			return
		}
		l.arrive(ev, l.now())
		if ev.Type == "delete" {
			l.woken.Add(1)
			return
		}
	}
}

// startObserver watches both keys for the whole run, from revision 0,
// resuming every stream that ends (elsewhere now and then): its arrival
// times time the expiries.
func (l *lockRun) startObserver() {
	ctx, cancel := context.WithCancel(context.Background())
	l.obsCancel = cancel
	l.obsWG.Add(1)
	go func() {
		defer l.obsWG.Done()
		for try := 0; ctx.Err() == nil; try++ {
			l.mu.Lock()
			after := l.obsMark
			l.mu.Unlock()
			n := l.member(try)
			s, err := n.Watch(ctx, "/v1/watch/?prefix="+url.QueryEscape(lockKey), http.Header{"Last-Event-ID": {strconv.FormatUint(after, 10)}})
			if err != nil {
				var refused *tc.WatchRefused
				if errors.As(err, &refused) {
					l.mu.Lock()
					l.liveErrs = append(l.liveErrs, fmt.Sprintf("observer: %v refused a watch after %d: %v", n, after, err))
					l.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for {
				ev, err := s.Next()
				if err != nil {
					break
				}
				at := l.now()
				l.mu.Lock()
				if ev.ID <= l.obsMark && ev.Type != "progress" || ev.ID < l.obsMark {
					l.liveErrs = append(l.liveErrs, fmt.Sprintf("observer: %s %d after %d on %v", ev.Type, ev.ID, l.obsMark, n))
				}
				l.obsMark = max(l.obsMark, ev.ID)
				if ev.Type != "progress" {
					l.obsLog = append(l.obsLog, lockEvent{Rev: ev.ID, Key: ev.Key, Delete: ev.Type == "delete", Value: ev.Value, Expired: ev.Expired})
				}
				l.mu.Unlock()
				l.arrive(ev, at)
			}
			s.Close()
		}
	}()
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

// finish stops the contenders, waits until the lock is free (the locks of
// crashed holders, and of acquires nobody knew took effect, expire), and
// returns the run's history with the keys' whole history replayed from a
// member.
func (l *lockRun) finish() (*lockHistory, error) {
	l.stopContenders()
	l.r.event("contenders stopped")
	var errs []error
	var final uint64
	try := 0
	if err := tc.Poll(3*lockTTL+20*time.Second, func() error {
		n := l.member(try)
		try++
		a := l.send(n, http.MethodGet, lockPath, "", nil)
		switch {
		case a.is(http.StatusNotFound):
			x, err := xRevision(a.Header)
			if err != nil {
				return err
			}
			final = x
			return nil
		case a.is(http.StatusOK):
			return fmt.Errorf("still held: %q at %s", a.Body, a.Header.Get("ETag"))
		}
		return fmt.Errorf("GET %s on %v: %d %v", lockPath, n, a.Code, a.err)
	}); err != nil {
		errs = append(errs, fmt.Errorf("the lock is not free at the end: %v", err))
	}
	l.r.event("the lock is free at revision %d", final)
	if err := tc.Poll(30*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.obsMark < final {
			return fmt.Errorf("the observer is at revision %d of %d", l.obsMark, final)
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	l.obsCancel()
	l.obsWG.Wait()

	// The whole history, from every member that still has it.
	var events []lockEvent
	from := 0
	for _, n := range l.c.Members() {
		evs, err := replayLock(n, final)
		if err != nil {
			l.t.Logf("replay of %v: %v", n, err)
			continue
		}
		if events == nil {
			events, from = evs, n.ID
			continue
		}
		if d := diffLockEvents(events, evs); d != "" {
			errs = append(errs, fmt.Errorf("members %d and %d replay different histories: %s", from, n.ID, d))
		}
	}
	if events == nil {
		errs = append(errs, errors.New("no member replays the whole history"))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.h
	h.Events = events
	at := map[uint64]lockEvent{}
	for _, e := range events {
		at[e.Rev] = e
	}
	for rev, e := range l.live {
		if events != nil && at[rev] != e {
			l.liveErrs = append(l.liveErrs, fmt.Sprintf("a live watch delivered %v; the history has %v", e, describeAt(at, rev)))
		}
	}
	if len(l.liveErrs) > 0 {
		errs = append(errs, fmt.Errorf("live watches: %s", strings.Join(firstN(l.liveErrs, 10), "; ")))
	}
	l.t.Logf("history: %d events through revision %d (replayed from node %d); live watches delivered %d of them", len(events), final, from, len(l.live))
	return &h, errors.Join(errs...)
}

// replayLock reads both keys' history on n from revision 1 through through.
func replayLock(n *tc.Node, through uint64) ([]lockEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := n.Watch(ctx, "/v1/watch/?prefix="+url.QueryEscape(lockKey), http.Header{"Last-Event-ID": {"0"}})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	evs := []lockEvent{}
	for {
		ev, err := s.Next()
		if err != nil {
			return nil, fmt.Errorf("after %d events: %v", len(evs), err)
		}
		if ev.Type != "progress" {
			evs = append(evs, lockEvent{Rev: ev.ID, Key: ev.Key, Delete: ev.Type == "delete", Value: ev.Value, Expired: ev.Expired})
		}
		if ev.ID >= through {
			return evs, nil
		}
	}
}

// diffLockEvents describes the first difference of a and b ("" if none).
func diffLockEvents(a, b []lockEvent) string {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("event %d: %v, %v", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d events, %d", len(a), len(b))
	}
	return ""
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
