package e2e

// Cross-process tests of watches (issue #13): GET /v1/watch/... streams
// Server-Sent Events, one per change in revision order; where a stream
// starts (now, fromRevision, Last-Event-ID) and its first progress frame;
// resuming after a cut; the bounded history and 410; a watch across leader
// changes; slow watchers closed; watchers counted and released.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// ---------------------------------------------------------------------------

func TestWatchDeliversEveryChangeInOrderAndResumesExactly(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	// A watch of a key nobody writes, read at the end: all it may get is
	// progress frames, the first at once, then one after each ~5 s of quiet,
	// their ids never going backwards.
	idleStart, err := n1.Revision()
	if err != nil {
		t.Fatal(err)
	}
	idle := openWatch(t, n1, "/v1/watch/nobody-writes-this", nil)
	idleOpened := time.Now()

	t.Run("a key's watch gets its puts and deletes in the documented frames", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n2.URL("/v1/watch/color"), nil)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("GET /v1/watch/color: %d %v, want 200, Content-Type: text/event-stream, Cache-Control: no-cache", resp.StatusCode, resp.Header)
		}
		start, err := tc.HeaderUint(resp.Header, "X-Revision")
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		expectFrame(t, r, start, "progress", map[string]any{"revision": float64(start)})

		blue := putChange(t, n1, "color", "blue")
		putChange(t, n3, "colour", "not this one")
		putChange(t, n3, "color/x", "nor this one")
		red := putChange(t, n3, "color", "red")
		del := deleteChange(t, n1, "color")
		expectFrame(t, r, blue.rev, "put", map[string]any{"key": "color", "value": "blue", "revision": float64(blue.rev),
			"createRevision": float64(blue.rev), "modRevision": float64(blue.rev), "version": float64(1)})
		expectFrame(t, r, red.rev, "put", map[string]any{"key": "color", "value": "red", "revision": float64(red.rev),
			"createRevision": float64(blue.rev), "modRevision": float64(red.rev), "version": float64(2)})
		expectFrame(t, r, del.rev, "delete", map[string]any{"key": "color", "revision": float64(del.rev)})
	})

	t.Run("a prefix watch gets every key under the prefix and only those", func(t *testing.T) {
		prefixed := openWatch(t, n3, "/v1/watch/?prefix=app/", nil)
		all := openWatch(t, n1, "/v1/watch", nil)
		allSlash := openWatch(t, n2, "/v1/watch/?prefix=", nil)
		for _, w := range []*watcher{prefixed, all, allSlash} {
			w.next(t) // the progress frame
		}
		var mine, every []change
		for _, step := range []func() change{
			func() change { return putChange(t, n1, "app/a", "1") },
			func() change { return putChange(t, n2, "other", "x") },
			func() change { return putChange(t, n3, "app/b", "2") },
			func() change { return putChange(t, n2, "app", "not under app/") },
			func() change { return deleteChange(t, n1, "app/a") },
			func() change { return putChange(t, n2, "app/b", "3") },
		} {
			ch := step()
			every = append(every, ch)
			if strings.HasPrefix(ch.key, "app/") {
				mine = append(mine, ch)
			}
		}
		prefixed.expectChanges(t, mine)
		all.expectChanges(t, every)
		allSlash.expectChanges(t, every)
	})

	var history []change // this subtest's writes, for the replays below
	t.Run("a stream cut and resumed with Last-Event-ID gets the rest exactly once", func(t *testing.T) {
		w := openWatch(t, n1, "/v1/watch/?prefix=res/", nil)
		w.next(t)
		nodes := []*tc.Node{n1, n2, n3}
		for i := range 20 {
			history = append(history, putChange(t, nodes[i%3], fmt.Sprintf("res/%d", i%6), fmt.Sprintf("v%d", i)))
		}
		last := w.expectChanges(t, history[:7])
		w.close()
		for i := 20; i < 30; i++ {
			if i%4 == 3 {
				history = append(history, deleteChange(t, nodes[i%3], fmt.Sprintf("res/%d", (i-1)%6)))
				continue
			}
			history = append(history, putChange(t, nodes[i%3], fmt.Sprintf("res/%d", i%6), fmt.Sprintf("v%d", i)))
		}
		// Resumed on another member; Last-Event-ID wins over fromRevision
		// (a reconnecting EventSource sends both).
		r := openWatch(t, n2, "/v1/watch/?prefix=res/&fromRevision=1", hdr("Last-Event-ID", strconv.FormatUint(last, 10)))
		r.expectProgress(t, last)
		r.expectChanges(t, history[7:])
		end := putChange(t, n3, "res/end", "end")
		r.expectChanges(t, []change{end}) // and nothing in between
		history = append(history, end)
	})

	t.Run("fromRevision replays the history, the same on every member", func(t *testing.T) {
		first := history[0].rev
		for _, n := range c.Nodes {
			w := openWatch(t, n, fmt.Sprintf("/v1/watch/?prefix=res/&fromRevision=%d", first), nil)
			w.expectProgress(t, first-1)
			w.expectChanges(t, history)
			w.close()
		}
		// fromRevision N starts at N, Last-Event-ID N after N.
		w := openWatch(t, n3, fmt.Sprintf("/v1/watch/?prefix=res/&fromRevision=%d", history[5].rev), nil)
		w.expectProgress(t, history[5].rev-1)
		w.expectChanges(t, history[5:8])
		w = openWatch(t, n3, "/v1/watch/?prefix=res/", hdr("Last-Event-ID", strconv.FormatUint(history[5].rev, 10)))
		w.expectProgress(t, history[5].rev)
		w.expectChanges(t, history[6:8])

		// Every change since the cluster began: revisions 1 to R, one event
		// each (every revision is one change), identical on every member.
		cur, err := n1.Revision()
		if err != nil {
			t.Fatal(err)
		}
		var seqs [][]string
		for _, from := range []string{"0", "1"} {
			for _, n := range c.Nodes {
				w := openWatch(t, n, "/v1/watch/?fromRevision="+from, nil)
				w.expectProgress(t, 0)
				var seq []string
				for rev := uint64(1); rev <= cur; rev++ {
					ev := w.event(t, rev-1)
					if ev.ID != rev {
						t.Fatalf("%v: event %d, want %d", w, ev.ID, rev)
					}
					seq = append(seq, ev.Data)
				}
				w.close()
				seqs = append(seqs, seq)
			}
		}
		for i := range seqs {
			if fmt.Sprint(seqs[i]) != fmt.Sprint(seqs[0]) {
				t.Fatalf("the replays of revisions 1 to %d differ between members:\n%q\n%q", cur, seqs[0], seqs[i])
			}
		}
	})

	t.Run("a malformed start answers 400", func(t *testing.T) {
		for _, bad := range []struct {
			path string
			h    http.Header
		}{
			{"/v1/watch/?fromRevision=abc", nil},
			{"/v1/watch/?fromRevision=-1", nil},
			{"/v1/watch/?fromRevision=18446744073709551616", nil},
			{"/v1/watch/x?fromRevision=1.5", nil},
			{"/v1/watch/", hdr("Last-Event-ID", "x")},
			{"/v1/watch/", hdr("Last-Event-ID", "-2")},
		} {
			body := watchRefused(t, n2, bad.path, bad.h, http.StatusBadRequest)
			var e map[string]string
			if json.Unmarshal([]byte(body), &e) != nil || e["error"] == "" {
				t.Errorf("watch %s %v: 400 with body %q, want a JSON error", bad.path, bad.h, body)
			}
		}
	})

	t.Run("events of keys and values that are not UTF-8 are base64", func(t *testing.T) {
		w := openWatch(t, n2, "/v1/watch/?prefix="+url.QueryEscape("bin-"), nil)
		one := openWatch(t, n3, "/v1/watch/"+url.PathEscape("bin-\xff"), nil)
		w.next(t)
		one.next(t)
		want := []change{
			putChange(t, n1, "bin-\xff", "text"),
			putChange(t, n1, "bin-text", "\xfe\x00"),
			deleteChange(t, n1, "bin-\xff"),
		}
		for i, ch := range want {
			ev := w.event(t, 0)
			if ev.ID != ch.rev || ev.Type != ch.typ || ev.Key != ch.key || ev.Value != ch.val || ev.Encoding != "base64" {
				t.Fatalf("event %d: %d %s %q=%q encoding %q (data %s), want %v in base64", i, ev.ID, ev.Type, ev.Key, ev.Value, ev.Encoding, ev.Data, ch)
			}
			if ch.key == "bin-\xff" {
				if ev := one.event(t, 0); ev.ID != ch.rev || ev.Key != ch.key || ev.Encoding != "base64" {
					t.Fatalf("the watch of the key: %d %q encoding %q, want %v in base64", ev.ID, ev.Key, ev.Encoding, ch)
				}
			}
		}
	})

	t.Run("a watch on a follower keeps going across leader changes without a gap", func(t *testing.T) {
		leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
		// f keeps the watch, g is killed; not n1, which holds the idle watch.
		followers := c.Except(leader)
		f, g := followers[0], followers[1]
		if g == n1 {
			f, g = g, f
		}
		from, err := f.Revision()
		if err != nil {
			t.Fatal(err)
		}
		w := openWatch(t, f, "/v1/watch/", nil) // every key: every revision is an event
		w.expectProgress(t, from)

		// One writer through f and g (the leader will be killed), unique
		// values; every attempt is remembered, every 204 with its revision.
		var (
			mu       sync.Mutex
			attempts = map[string]string{} // value -> key
			acked    = map[uint64]change{}
			stop     = make(chan struct{})
			stopped  = make(chan struct{})
			gDown    atomic.Bool
		)
		ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
		go func() {
			defer close(stopped)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := []*tc.Node{f, g}[i%2]
				if gDown.Load() {
					n = f
				}
				key, val := fmt.Sprintf("lc/%d", i%10), fmt.Sprintf("w%d", i)
				mu.Lock()
				attempts[val] = key
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := n.DoRequestContext(ctx, http.MethodPut, kvPath(key), val, nil)
				cancel()
				if err != nil || resp.Code != http.StatusNoContent {
					continue
				}
				if rev, ok, err := tc.ETag(resp.Header); err == nil && ok {
					mu.Lock()
					acked[rev] = change{"put", key, val, rev}
					mu.Unlock()
				}
			}
		}()
		waitAcked := func(k int) {
			t.Helper()
			target := ackedCount() + k
			tc.Eventually(t, tc.Timeout, func() error {
				if n := ackedCount(); n < target {
					return fmt.Errorf("%d writes acknowledged, waiting for %d", n, target)
				}
				return nil
			})
		}
		waitAcked(20)
		// Leadership moves to g (f stays a follower), then g is killed.
		resp, err := f.DoRequest(http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, g.ID), nil)
		expectStatus(t, "POST /v1/leader", resp.Code, resp.Body, err, http.StatusOK)
		waitAcked(20)
		gDown.Store(true)
		g.Kill()
		tc.WaitLeader(t, tc.Timeout, f, leader)
		waitAcked(20)
		close(stop)
		<-stopped
		g.Restart()

		var maxAcked uint64
		for rev := range acked {
			maxAcked = max(maxAcked, rev)
		}
		// Every revision after the start, in order, once; each a write that
		// was made, applied once; each acknowledged write at its revision.
		delivered := map[string]uint64{} // value -> revision
		for rev := from + 1; rev <= maxAcked; rev++ {
			ev := w.event(t, rev-1)
			if ev.ID != rev || ev.Revision != rev || ev.Type != "put" {
				t.Fatalf("event %d %s (revision %d), want a put at revision %d", ev.ID, ev.Type, ev.Revision, rev)
			}
			if key, ok := attempts[ev.Value]; !ok || key != ev.Key {
				t.Fatalf("event %d puts %q=%q, which no client wrote", ev.ID, ev.Key, ev.Value)
			}
			if r, dup := delivered[ev.Value]; dup {
				t.Fatalf("events %d and %d both put %q=%q: one write applied twice", r, ev.ID, ev.Key, ev.Value)
			}
			delivered[ev.Value] = ev.ID
			if a, ok := acked[rev]; ok && (a.key != ev.Key || a.val != ev.Value) {
				t.Fatalf("event %d puts %q=%q, but the write acknowledged at %d was %v", ev.ID, ev.Key, ev.Value, rev, a)
			}
		}
		t.Logf("the watch on %v delivered revisions %d to %d (%d writes acknowledged) across a transfer to %v and its SIGKILL",
			f, from+1, maxAcked, len(acked), g)
	})

	t.Run("closing the connection releases the watcher", func(t *testing.T) {
		waitWatchers(t, n2, 0) // the earlier subtests' watches are closed
		var ws []*watcher
		for _, path := range []string{"/v1/watch/a", "/v1/watch/?prefix=a", "/v1/watch"} {
			w := openWatch(t, n2, path, nil)
			w.next(t)
			ws = append(ws, w)
		}
		waitWatchers(t, n2, 3)
		a := putChange(t, n3, "a", "1")
		for _, w := range ws {
			w.expectChanges(t, []change{a})
			w.close()
		}
		waitWatchers(t, n2, 0)
		m, err := n2.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := m.Value("raftexample_watch_events_sent_total", nil); !ok || v == 0 {
			t.Errorf("raftexample_watch_events_sent_total on %v: %v (present: %v), want > 0", n2, v, ok)
		}
	})

	t.Run("an idle watch gets a progress frame every few seconds", func(t *testing.T) {
		idle.expectProgress(t, idleStart)
		ev := idle.next(t)
		if ev.Type != "progress" || ev.ID < idleStart || ev.Revision != ev.ID {
			t.Fatalf("the idle watch's next frame: %s id %d data %s, want progress at %d or later", ev.Type, ev.ID, ev.Data, idleStart)
		}
		t.Logf("progress at %d, %v after the watch opened", ev.ID, time.Since(idleOpened).Round(time.Millisecond))
	})
}

// ---------------------------------------------------------------------------

func TestWatchHistoryIsBoundedAndSlowWatchersAreClosed(t *testing.T) {
	const history, snapCount = 50, 20
	c := tc.StartCluster(t, 3, "--watch-history", strconv.Itoa(history), "--snap-count", strconv.Itoa(snapCount))
	n1, n2 := c.Node(1), c.Node(2)

	// Sequential writes through n1, one entry each: revByIndex maps the
	// log index of each (n1's applied index right after its 204) to the
	// store revision it made.
	type point struct{ index, rev uint64 }
	var points []point
	st, err := n1.Status()
	if err != nil {
		t.Fatal(err)
	}
	rev0, err := n1.Revision()
	if err != nil {
		t.Fatal(err)
	}
	points = append(points, point{st.Applied, rev0})
	revAt := func(index uint64) uint64 {
		var r uint64
		for _, p := range points {
			if p.index <= index {
				r = p.rev
			}
		}
		return r
	}
	var writes []change
	for i := range 2*history - 20 {
		ch := putChange(t, n1, fmt.Sprintf("h/%d", i%7), fmt.Sprintf("v%d", i))
		writes = append(writes, ch)
		st, err := n1.Status()
		if err != nil {
			t.Fatal(err)
		}
		points = append(points, point{st.Applied, ch.rev})
	}
	last := writes[len(writes)-1].rev

	t.Run("a start older than the history answers 410 with the oldest revision", func(t *testing.T) {
		convergedStatuses(t, c.Nodes...)
		var oldest uint64
		for _, n := range c.Nodes {
			g := watchGone(t, n, "/v1/watch/?fromRevision=1", nil)
			if g.Revision != last || g.OldestRevision <= 1 || last-g.OldestRevision+1 > history {
				t.Fatalf("%v: 410 %+v; want revision %d and an oldest revision that keeps at most %d events", n, g, last, history)
			}
			if oldest == 0 {
				oldest = g.OldestRevision
			} else if g.OldestRevision != oldest {
				t.Fatalf("%v: oldest revision %d, another member's is %d", n, g.OldestRevision, oldest)
			}
		}
		t.Logf("at revision %d the history of %d events starts at %d", last, history, oldest)
		if oldest != last-history+1 {
			t.Fatalf("the history starts at %d, want %d: the latest %d changes", oldest, last-history+1, history)
		}
		// One before the oldest is gone, by either way of starting.
		watchGone(t, n2, fmt.Sprintf("/v1/watch/?fromRevision=%d", oldest-1), nil)
		watchGone(t, n2, "/v1/watch/?prefix=h/", hdr("Last-Event-ID", strconv.FormatUint(oldest-2, 10)))
		// The newer half of the history replays from fromRevision and from
		// Last-Event-ID alike.
		mid := last - history/2 + 1
		w := openWatch(t, n2, fmt.Sprintf("/v1/watch/?prefix=h/&fromRevision=%d", mid), nil)
		w.expectProgress(t, mid-1)
		w.expectChanges(t, writesFrom(writes, mid))
		w.close()
		w = openWatch(t, n2, "/v1/watch/?prefix=h/", hdr("Last-Event-ID", strconv.FormatUint(mid-1, 10)))
		w.expectProgress(t, mid-1)
		w.expectChanges(t, writesFrom(writes, mid))
		w.close()
	})

	// A stream that starts more than half the history back is not behind
	// for that: 7be8f6c closed it before it sent a single event, so that
	// the oldest revision a 410 names could not be watched from, and a
	// client resuming from there never caught up.
	t.Run("a watch from the oldest revision the history keeps replays all of it", func(t *testing.T) {
		oldest, _ := hubState(t, n2)
		w := openWatch(t, n2, fmt.Sprintf("/v1/watch/?prefix=h/&fromRevision=%d", oldest), nil)
		w.expectProgress(t, oldest-1)
		w.expectChanges(t, writesFrom(writes, oldest))
		w.close()
		w = openWatch(t, n2, "/v1/watch/?prefix=h/", hdr("Last-Event-ID", strconv.FormatUint(oldest-1, 10)))
		w.expectProgress(t, oldest-1)
		w.expectChanges(t, writesFrom(writes, oldest))
		w.close()
	})

	t.Run("after a restart the history starts after the snapshot the member started from", func(t *testing.T) {
		n3 := c.Node(3)
		if code := n3.Stop(); code != 0 {
			t.Fatalf("%v exited with %d on SIGTERM", n3, code)
		}
		n3.Restart()
		var st tc.Status
		tc.Eventually(t, tc.Timeout, func() error {
			var err error
			if st, err = n3.Status(); err != nil {
				return err
			}
			if rev, err := n3.Revision(); err != nil || rev != last {
				return fmt.Errorf("%v at revision %d (%v), want %d", n3, rev, err, last)
			}
			return nil
		})
		if st.SnapshotIndex == 0 {
			t.Fatalf("%v restarted without a snapshot: %s", n3, tc.Summary([]tc.Status{st}))
		}
		want := revAt(st.SnapshotIndex) + 1
		if last+1-want > history {
			want = last + 1 - history // more re-applied than the history holds
		}
		g := watchGone(t, n3, "/v1/watch/?fromRevision=1", nil)
		if g.OldestRevision != want {
			t.Fatalf("%v restarted from its snapshot at index %d (revision %d): oldest revision %d, want %d", n3, st.SnapshotIndex, want-1, g.OldestRevision, want)
		}
		w := openWatch(t, n3, fmt.Sprintf("/v1/watch/?prefix=h/&fromRevision=%d", want), nil)
		w.expectProgress(t, want-1)
		w.expectChanges(t, writesFrom(writes, want))
		t.Logf("%v restarted from its snapshot at index %d: history from revision %d to %d", n3, st.SnapshotIndex, want, last)
	})

	t.Run("slow watchers are closed, the others keep up, and the gauge goes back down", func(t *testing.T) {
		waitWatchers(t, n2, 0)
		closedBefore := closedStreams(t, n2)
		// One watcher never reads: a connection with a tiny receive buffer
		// that reads the answer's headers and then nothing.
		never, neverBody := rawWatchConn(t, n2, "/v1/watch/big", 4096)
		// One reads, but slowly: 8 KiB every 10 ms.
		slowConn, slowBody := rawWatchConn(t, n2, "/v1/watch/big", 0)
		slowDone := make(chan error, 1)
		go func() {
			buf := make([]byte, 8<<10)
			for {
				if _, err := slowBody.Read(buf); err != nil {
					slowDone <- err
					return
				}
				time.Sleep(10 * time.Millisecond) // a slow client, not a wait for the cluster
			}
		}()
		// The fast one reads as fast as it can and counts the ids of the
		// events (their values are not even looked at).
		start, err := n2.Revision()
		if err != nil {
			t.Fatal(err)
		}
		fastConn, fastBody := rawWatchConn(t, n2, "/v1/watch/big", 0)
		var seen atomic.Uint64
		seen.Store(start)
		fastDone := make(chan error, 1)
		go func() { fastDone <- countEventIDs(fastBody, &seen) }()
		waitWatchers(t, n2, 3)

		// Big values, written through n1 at up to 50 a second (3.2 MB/s,
		// four times what the slow reader takes), never more than 10
		// ahead of the fast watcher (well within half the history), more
		// than the history holds, and on until the slow reader is closed.
		value := strings.Repeat("x", 64<<10)
		began := time.Now()
		pace := time.NewTicker(20 * time.Millisecond) // the load's rate, not a wait for the cluster
		defer pace.Stop()
		var lastRev uint64
		writes := 0
		slowClosed := false
		for ; writes < 2*history || !slowClosed; writes++ {
			if time.Since(began) > tc.Timeout {
				t.Fatalf("%d writes of 64 KiB in %v and the slow reader is still open on %v", writes, tc.Timeout, n2)
			}
			<-pace.C
			lastRev = putChange(t, n1, "big", value).rev
			tc.Eventually(t, tc.Timeout, func() error {
				if s := seen.Load(); s+10 < lastRev {
					return fmt.Errorf("the fast watcher is at %d, the writes at %d", s, lastRev)
				}
				return nil
			})
			select {
			case err := <-slowDone:
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("the slow reader's stream ended with %v, want the member closing it", err)
				}
				slowClosed = true
			default:
			}
		}
		slowConn.Close()
		m, _ := n2.Metrics()
		t.Logf("the slow reader was closed after %d writes of 64 KiB, %v; closed streams: %v", writes, time.Since(began).Round(time.Millisecond), m.Find("raftexample_watch_streams_closed_total", nil))
		// The watcher that never reads is closed too, however long its
		// member waits for it; then only the fast one is left.
		waitWatchers(t, n2, 1)
		tc.Eventually(t, tc.Timeout, func() error {
			if s := seen.Load(); s != lastRev {
				return fmt.Errorf("the fast watcher is at %d, want %d", s, lastRev)
			}
			return nil
		})
		// Both were closed by the member, and counted: the slow reader as
		// behind or past the history, the one that never read as stalled.
		if closedAfter := closedStreams(t, n2); closedAfter != closedBefore+2 {
			m, _ := n2.Metrics()
			t.Errorf("raftexample_watch_streams_closed_total on %v went from %v to %v, want 2 more: %v", n2, closedBefore, closedAfter, m.Find("raftexample_watch_streams_closed_total", nil))
		}
		if stalled, _ := closedReason(t, n2, "stalled"); stalled != 1 {
			t.Errorf(`raftexample_watch_streams_closed_total{reason="stalled"} on %v is %v, want 1 (the watcher that never read)`, n2, stalled)
		}
		// What the one that never read was sent ends: the connection is
		// closed. It may resume from its last id if the history still has
		// it, and is gone otherwise.
		never.SetReadDeadline(time.Now().Add(tc.Timeout))
		var neverLast uint64
		for {
			lines, err := rawFrame(neverBody)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("the connection of the watcher that never read did not end: %v", err)
				}
				break
			}
			if len(lines) > 0 && strings.HasPrefix(lines[0], "id: ") {
				neverLast, _ = strconv.ParseUint(strings.TrimPrefix(lines[0], "id: "), 10, 64)
			}
		}
		if s, err := n2.Watch(context.Background(), "/v1/watch/big", hdr("Last-Event-ID", strconv.FormatUint(neverLast, 10))); err == nil {
			s.Close()
		} else {
			var refused *tc.WatchRefused
			if !errors.As(err, &refused) || refused.Code != http.StatusGone {
				t.Fatalf("resuming the watcher that never read from %d: %v, want a stream or 410", neverLast, err)
			}
		}
		t.Logf("the watcher that never read had been sent up to revision %d; the fast one read all %d events", neverLast, lastRev-start)
		fastConn.Close()
		if err := <-fastDone; !errors.Is(err, net.ErrClosed) {
			t.Errorf("the fast watcher: %v", err)
		}
		waitWatchers(t, n2, 0)
	})
}

// rawWatchConn opens a watch at path on n over a connection of its own
// with a receive buffer of rcvbuf bytes (0: the system's), reads the answer's headers (200)
// and returns the connection and the stream's body.
func rawWatchConn(t *testing.T, n *tc.Node, path string, rcvbuf int) (net.Conn, *bufio.Reader) {
	t.Helper()
	dialer := &net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		if rcvbuf > 0 {
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
		return serr
	}}
	conn, err := dialer.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("watch %s on %v: %v %v", path, n, resp, err)
	}
	return conn, bufio.NewReader(resp.Body)
}

// countEventIDs reads a stream's frames until it ends, cheaply (data lines
// are skipped, not decoded), and stores the id of each put or delete in
// seen, which they must raise.
func countEventIDs(r *bufio.Reader, seen *atomic.Uint64) error {
	var id uint64
	progress := false
	for {
		line, err := r.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // the rest of a long data line
			_, err = r.ReadSlice('\n')
			line = nil
		}
		if err != nil {
			return err
		}
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			if id, err = strconv.ParseUint(string(bytes.TrimSpace(line[4:])), 10, 64); err != nil {
				return fmt.Errorf("bad id line %q", line)
			}
		case string(line) == "event: progress\n":
			progress = true
		case string(line) == "\n":
			if !progress {
				if id <= seen.Load() {
					return fmt.Errorf("event id %d after %d", id, seen.Load())
				}
				seen.Store(id)
			}
			progress = false
		}
	}
}

// writesFrom returns the changes of revision from or later.
func writesFrom(writes []change, from uint64) []change {
	var out []change
	for _, w := range writes {
		if w.rev >= from {
			out = append(out, w)
		}
	}
	return out
}

// hubState returns the oldest revision n's history keeps and n's revision,
// from the 410 of a watch from revision 1.
func hubState(t *testing.T, n *tc.Node) (oldest, rev uint64) {
	t.Helper()
	g := watchGone(t, n, "/v1/watch/?fromRevision=1", nil)
	return g.OldestRevision, g.Revision
}

// closedReason is n's raftexample_watch_streams_closed_total{reason}.
func closedReason(t *testing.T, n *tc.Node, reason string) (float64, bool) {
	t.Helper()
	m, err := n.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m.Value("raftexample_watch_streams_closed_total", map[string]string{"reason": reason})
}

// closedStreams is the sum of n's raftexample_watch_streams_closed_total
// over its reasons.
func closedStreams(t *testing.T, n *tc.Node) float64 {
	t.Helper()
	m, err := n.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, s := range m.Find("raftexample_watch_streams_closed_total", nil) {
		sum += s.Value
	}
	return sum
}
