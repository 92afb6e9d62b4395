package e2e

// The lock test's run (lock_test.go): what it records, and how a contender
// sends a request and files its answer.

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

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
