package e2e

// What the watch tests (watch_test.go, watch_history_test.go) share: a
// watcher that reads a stream event by event, the changes it expects, raw
// frames, and the metrics of watches.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// watchTimeout bounds the wait for one frame that must come.
const watchTimeout = 15 * time.Second

// watcher reads a watch stream in a goroutine of its own, so that a test
// can wait for the next frame with a deadline.
type watcher struct {
	n    *tc.Node
	path string
	s    *tc.WatchStream
	ch   chan tc.WatchEvent
	err  error // why the stream ended, once ch is closed
	done chan struct{}
	once sync.Once
}

// openWatch opens a watch at path on n with headers h (nil for none); the
// test fails if the member refuses it. It is closed when the test ends.
func openWatch(t *testing.T, n *tc.Node, path string, h http.Header) *watcher {
	t.Helper()
	w, err := tryWatch(n, path, h)
	if err != nil {
		t.Fatalf("watch %s on %v: %v", path, n, err)
	}
	t.Cleanup(w.close)
	return w
}

func tryWatch(n *tc.Node, path string, h http.Header) (*watcher, error) {
	s, err := n.Watch(context.Background(), path, h)
	if err != nil {
		return nil, err
	}
	w := &watcher{n: n, path: path, s: s, ch: make(chan tc.WatchEvent), done: make(chan struct{})}
	go func() {
		defer close(w.ch)
		for {
			ev, err := s.Next()
			if err != nil {
				w.err = err
				return
			}
			select {
			case w.ch <- ev:
			case <-w.done:
				w.err = errors.New("closed by the test")
				return
			}
		}
	}()
	return w, nil
}

func (w *watcher) close() {
	w.once.Do(func() {
		close(w.done)
		w.s.Close()
	})
}

func (w *watcher) String() string { return fmt.Sprintf("watch %s on %v", w.path, w.n) }

// next returns the next frame, progress included, failing the test if none
// comes within watchTimeout.
func (w *watcher) next(t *testing.T) tc.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-w.ch:
		if !ok {
			t.Fatalf("%v ended: %v", w, w.err)
		}
		return ev
	case <-time.After(watchTimeout):
		t.Fatalf("%v: no frame within %v", w, watchTimeout)
	}
	panic("unreachable")
}

// event returns the next put or delete, checking that the progress frames
// before it do not go back below last (the last id seen).
func (w *watcher) event(t *testing.T, last uint64) tc.WatchEvent {
	t.Helper()
	for {
		ev := w.next(t)
		if ev.Type != "progress" {
			return ev
		}
		if ev.ID < last || ev.Revision != ev.ID {
			t.Fatalf("%v: progress frame id %d revision %d after id %d", w, ev.ID, ev.Revision, last)
		}
	}
}

// change is a write a test made and expects a watch to deliver.
type change struct {
	typ      string // put or delete
	key, val string
	rev      uint64
}

func (c change) String() string {
	if c.typ == "delete" {
		return fmt.Sprintf("%d delete %q", c.rev, c.key)
	}
	return fmt.Sprintf("%d put %q=%q", c.rev, c.key, tc.Shorten(c.val, 20))
}

// expectChanges reads the next len(want) events of w (skipping progress
// frames) and requires them to be want, in order, with ids equal to their
// revisions. It returns the last id.
func (w *watcher) expectChanges(t *testing.T, want []change) uint64 {
	t.Helper()
	var last uint64
	for i, c := range want {
		ev := w.event(t, last)
		if ev.ID != c.rev || ev.Revision != c.rev || ev.Type != c.typ || ev.Key != c.key || (c.typ == "put" && ev.Value != c.val) {
			t.Fatalf("%v: event %d of %d is %d %s %q=%q (revision %d), want %v", w, i+1, len(want), ev.ID, ev.Type, ev.Key, tc.Shorten(ev.Value, 20), ev.Revision, c)
		}
		last = ev.ID
	}
	return last
}

// putChange PUTs val under key through n and returns the change.
func putChange(t *testing.T, n *tc.Node, key, val string) change {
	t.Helper()
	resp := expectPutAny(t, n, kvPath(key), val)
	rev, _, _ := tc.ETag(resp.Header)
	return change{"put", key, val, rev}
}

// deleteChange deletes key (which must exist) through n and returns the
// change.
func deleteChange(t *testing.T, n *tc.Node, key string) change {
	t.Helper()
	resp, err := n.DoRequest(http.MethodDelete, kvPath(key), "", nil)
	expectStatus(t, "DELETE "+kvPath(key), resp.Code, resp.Body, err, http.StatusNoContent)
	rev, err := tc.HeaderUint(resp.Header, "X-Revision")
	if err != nil {
		t.Fatal(err)
	}
	return change{typ: "delete", key: key, rev: rev}
}

// expectProgress reads w's first frame and requires it to be progress at id.
func (w *watcher) expectProgress(t *testing.T, id uint64) {
	t.Helper()
	ev := w.next(t)
	if ev.Type != "progress" || ev.ID != id || ev.Revision != id {
		t.Fatalf("%v: first frame %s id %d data %s, want progress at %d", w, ev.Type, ev.ID, ev.Data, id)
	}
}

// watchRefused requires a watch at path on n to be refused with code, and
// returns the body.
func watchRefused(t *testing.T, n *tc.Node, path string, h http.Header, code int) string {
	t.Helper()
	s, err := n.Watch(context.Background(), path, h)
	if err == nil {
		s.Close()
		t.Fatalf("watch %s %v on %v: a stream, want %d", path, h, n, code)
	}
	var refused *tc.WatchRefused
	if !errors.As(err, &refused) || refused.Code != code {
		t.Fatalf("watch %s %v on %v: %v, want %d", path, h, n, err, code)
	}
	return refused.Body
}

// gone is the body of a 410.
type gone struct {
	Error          string `json:"error"`
	OldestRevision uint64 `json:"oldestRevision"`
	Revision       uint64 `json:"revision"`
}

func watchGone(t *testing.T, n *tc.Node, path string, h http.Header) gone {
	t.Helper()
	body := watchRefused(t, n, path, h, http.StatusGone)
	var g gone
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil || g.Error == "" || g.OldestRevision == 0 || g.Revision == 0 {
		t.Fatalf("watch %s %v on %v: 410 with body %q (%v), want {\"error\", \"oldestRevision\", \"revision\"}", path, h, n, body, err)
	}
	return g
}

// waitWatchers polls until n's raftexample_watchers gauge is want.
func waitWatchers(t *testing.T, n *tc.Node, want float64) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		v, err := n.Metric("raftexample_watchers", nil)
		if err != nil {
			return err
		}
		if v != want {
			return fmt.Errorf("%v: raftexample_watchers is %v, want %v", n, v, want)
		}
		return nil
	})
}

// rawFrame reads one frame of a stream as its lines (comments left out).
func rawFrame(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && len(lines) > 0:
			return lines, nil
		case line == "" || strings.HasPrefix(line, ":"):
		default:
			lines = append(lines, line)
		}
	}
}

// expectFrame reads a frame and requires its id and event lines exactly,
// then one data line whose JSON has exactly the fields of want.
func expectFrame(t *testing.T, r *bufio.Reader, id uint64, event string, want map[string]any) {
	t.Helper()
	lines, err := rawFrame(r)
	if err != nil {
		t.Fatalf("reading a frame: %v (got %q)", err, lines)
	}
	if len(lines) != 3 || lines[0] != fmt.Sprintf("id: %d", id) || lines[1] != "event: "+event || !strings.HasPrefix(lines[2], "data: ") {
		t.Fatalf("frame %q, want id: %d, event: %s and one data line", lines, id, event)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[2], "data: ")), &got); err != nil {
		t.Fatalf("frame %q: %v", lines, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frame %q: data %v, want %v", lines, got, want)
	}
}

// caughtUp makes a linearizable read through each node, so that each has
// applied every write acknowledged before: a watch opened from now starts at
// the member's own revision, which on a member still applying is behind.
func caughtUp(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	for _, n := range nodes {
		if code, body, err := n.Get("caught-up"); err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
			t.Fatalf("linearizable GET on %v: %d %s %v", n, code, body, err)
		}
	}
}
