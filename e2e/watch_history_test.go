package e2e

// Cross-process tests of the watch history (issue #13): bounded by
// --watch-history, 410 past it, what a restarted member keeps, and slow
// watchers closed while the others go on.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

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
		expectReplayFrom(t, n2, "h/", mid, writes)
	})

	// A stream that starts more than half the history back is not behind
	// for that: 7be8f6c closed it before it sent a single event, so that
	// the oldest revision a 410 names could not be watched from, and a
	// client resuming from there never caught up.
	t.Run("a watch from the oldest revision the history keeps replays all of it", func(t *testing.T) {
		oldest, _ := hubState(t, n2)
		expectReplayFrom(t, n2, "h/", oldest, writes)
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

// expectReplayFrom watches prefix on n from revision from, both ways of
// starting there (fromRevision, Last-Event-ID), and expects the writes
// from it on.
func expectReplayFrom(t *testing.T, n *tc.Node, prefix string, from uint64, writes []change) {
	t.Helper()
	for _, start := range []struct {
		query  string
		header http.Header
	}{
		{fmt.Sprintf("&fromRevision=%d", from), nil},
		{"", hdr("Last-Event-ID", strconv.FormatUint(from-1, 10))},
	} {
		w := openWatch(t, n, "/v1/watch/?prefix="+url.QueryEscape(prefix)+start.query, start.header)
		w.expectProgress(t, from-1)
		w.expectChanges(t, writesFrom(writes, from))
		w.close()
	}
}
