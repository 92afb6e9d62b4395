package e2e

// Cross-process tests of watches (issue #13): GET /v1/watch/... streams
// Server-Sent Events, one per change in revision order; where a stream
// starts (now, fromRevision, Last-Event-ID) and its first progress frame;
// resuming after a cut; a watch across leader changes; watchers counted and
// released.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
		caughtUp(t, n1, n2, n3) // watches from now: see caughtUp
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
		caughtUp(t, f)
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
		// A watch from now starts at the member's own revision: a
		// linearizable read first, so that n2 has applied every earlier
		// write and the watches see only the one below.
		caughtUp(t, n2)
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
