package e2e

// The lock test's watches: the waiters', the observer's for the whole run,
// and the replay of the keys' whole history at the end.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	tc "raftexample/internal/testcluster"
)

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
