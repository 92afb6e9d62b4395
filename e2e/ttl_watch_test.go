package e2e

// A watch whose events are stamped with when they arrive, to time expiries.

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// timedEvent is a watch event and when the test received it.
type timedEvent struct {
	tc.WatchEvent
	at time.Time
}

// timedWatch reads a watch stream in a goroutine of its own and stamps each
// event the moment it is read.
type timedWatch struct {
	path string
	n    *tc.Node
	ch   chan timedEvent
	s    *tc.WatchStream
	err  error // why the stream ended, once ch is closed
}

// watchTimed opens a watch at path on n, from now on (after a linearizable
// read there, so that the member has applied every earlier write). It is
// closed when the test ends.
func watchTimed(t *testing.T, n *tc.Node, path string) *timedWatch {
	t.Helper()
	caughtUp(t, n)
	s, err := n.Watch(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("watch %s on %v: %v", path, n, err)
	}
	w := &timedWatch{path: path, n: n, ch: make(chan timedEvent, 1024), s: s}
	go func() {
		defer close(w.ch)
		for {
			ev, err := s.Next()
			if err != nil {
				w.err = err
				return
			}
			w.ch <- timedEvent{ev, time.Now()}
		}
	}()
	t.Cleanup(s.Close)
	return w
}

// next returns the next put or delete (progress frames skipped), failing the
// test if none comes within timeout.
func (w *timedWatch) next(t *testing.T, timeout time.Duration) timedEvent {
	t.Helper()
	ev, ok := w.tryNext(timeout)
	if !ok {
		t.Fatalf("watch %s on %v: no event within %v (stream: %v)", w.path, w.n, timeout, w.err)
	}
	return ev
}

// tryNext is next without the test: ok is false if no event came within
// timeout or the stream ended.
func (w *timedWatch) tryNext(timeout time.Duration) (timedEvent, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-w.ch:
			if !ok {
				return timedEvent{}, false
			}
			if ev.Type != "progress" {
				return ev, true
			}
		case <-deadline:
			return timedEvent{}, false
		}
	}
}

// expectExpiredEvent reads w's next event and requires it to be the expiry
// of key: event: delete whose data has "expired": true, after revision
// after, received no earlier than notBefore. It returns the event.
func (w *timedWatch) expectExpiredEvent(t *testing.T, key string, after uint64, notBefore time.Time) timedEvent {
	t.Helper()
	ev := w.next(t, tc.Timeout)
	if ev.Type != "delete" || ev.Key != key || ev.ID != ev.Revision || ev.Revision <= after {
		t.Fatalf("watch %s on %v: %s %q at %d (data %s), want the deletion of %q after revision %d", w.path, w.n, ev.Type, ev.Key, ev.ID, ev.Data, key, after)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(ev.Data), &data); err != nil || data["expired"] != true {
		t.Fatalf("watch %s on %v: delete of %q with data %s, want \"expired\": true", w.path, w.n, key, ev.Data)
	}
	if ev.at.Before(notBefore) {
		t.Fatalf("watch %s on %v: the expiry of %q arrived at %s, %v before it may happen (%s)", w.path, w.n, key,
			ev.at.Format("15:04:05.000"), notBefore.Sub(ev.at).Round(time.Millisecond), notBefore.Format("15:04:05.000"))
	}
	return ev
}
