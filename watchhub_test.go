package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func puts(revs ...uint64) []change {
	var cs []change
	for _, r := range revs {
		cs = append(cs, change{revision: r, key: fmt.Sprint("k", r), value: "v"})
	}
	return cs
}

func revisionsOf(events []*watchEvent) []uint64 {
	var out []uint64
	for _, e := range events {
		out = append(out, e.revision)
	}
	return out
}

func TestTheWatchHistoryKeepsTheLatestChangesWithinItsBounds(t *testing.T) {
	h := newWatchHub(4, 1<<20)
	h.publish(puts(1, 2, 3), 3)
	h.publish(puts(4, 5, 6), 6)
	if oldest, rev := h.state(); oldest != 3 || rev != 6 {
		t.Fatalf("oldest %d, revision %d; want 3 and 6 (four events kept)", oldest, rev)
	}
	v := h.read(4, 100, nil)
	if got := fmt.Sprint(revisionsOf(v.events)); got != "[4 5 6]" || v.more || v.compacted != 2 || v.newest != 6 {
		t.Fatalf("read from 4: %s more %v compacted %d newest %d", got, v.more, v.compacted, v.newest)
	}
	// A read past the newest gets nothing, and the channel to wait on.
	if v := h.read(7, 100, nil); len(v.events) != 0 || v.changed == nil {
		t.Fatalf("read from 7: %v", revisionsOf(v.events))
	}
	// The byte bound: each event costs its key, value and the overhead.
	small := newWatchHub(100, 3*(eventOverhead+3))
	small.publish(puts(1, 2, 3, 4, 5), 5)
	if oldest, _ := small.state(); oldest != 3 {
		t.Fatalf("byte-bounded history starts at %d, want 3", oldest)
	}
}

func TestAWatchHistoryReadStopsAtAWholeRevision(t *testing.T) {
	h := newWatchHub(100, 1<<20)
	h.publish([]change{{revision: 1, key: "a"}, {revision: 2, key: "a"}, {revision: 2, key: "b"}, {revision: 2, key: "c"}, {revision: 3, key: "a"}}, 3)
	v := h.read(1, 3, nil)
	if got := fmt.Sprint(revisionsOf(v.events)); got != "[1]" || !v.more {
		t.Fatalf("read of 3 from 1: %s more %v; want [1] and more (revision 2 does not fit)", got, v.more)
	}
	v = h.read(2, 3, nil)
	if got := fmt.Sprint(revisionsOf(v.events)); got != "[2 2 2]" || !v.more {
		t.Fatalf("read of 3 from 2: %s more %v", got, v.more)
	}
}

func TestAWatchHistoryResetBySnapshotStartsAfterIt(t *testing.T) {
	h := newWatchHub(100, 1<<20)
	h.publish(puts(1, 2), 2)
	changed := h.read(3, 10, nil).changed
	h.reset(40)
	select {
	case <-changed:
	default:
		t.Fatal("a reset did not wake the streams")
	}
	if oldest, rev := h.state(); oldest != 41 || rev != 40 {
		t.Fatalf("after a reset at 40: oldest %d revision %d", oldest, rev)
	}
	if v := h.read(2, 10, nil); len(v.events) != 0 || v.compacted != 40 {
		t.Fatalf("read from 2 after the reset: %v compacted %d", revisionsOf(v.events), v.compacted)
	}
}

func TestAWatchEventIsEncodedAsTheStreamFormatSays(t *testing.T) {
	for _, c := range []struct {
		change change
		want   string
	}{
		{change{revision: 42, key: "color", value: "blue", meta: keyMeta{createRevision: 40, modRevision: 42, version: 2}},
			"id: 42\nevent: put\ndata: {\"key\":\"color\",\"value\":\"blue\",\"revision\":42,\"createRevision\":40,\"modRevision\":42,\"version\":2}\n\n"},
		{change{revision: 43, key: "color", deleted: true},
			"id: 43\nevent: delete\ndata: {\"key\":\"color\",\"revision\":43}\n\n"},
		{change{revision: 44, key: "e", value: "", meta: keyMeta{createRevision: 44, modRevision: 44, version: 1}},
			"id: 44\nevent: put\ndata: {\"key\":\"e\",\"value\":\"\",\"revision\":44,\"createRevision\":44,\"modRevision\":44,\"version\":1}\n\n"},
		{change{revision: 45, key: "\xff", value: "<&>", meta: keyMeta{createRevision: 45, modRevision: 45, version: 1}},
			"id: 45\nevent: put\ndata: {\"key\":\"/w==\",\"value\":\"PCY+\",\"revision\":45,\"createRevision\":45,\"modRevision\":45,\"version\":1,\"encoding\":\"base64\"}\n\n"},
		{change{revision: 46, key: "a\nb", value: "<&>\n", meta: keyMeta{createRevision: 46, modRevision: 46, version: 1}},
			"id: 46\nevent: put\ndata: {\"key\":\"a\\nb\",\"value\":\"<&>\\n\",\"revision\":46,\"createRevision\":46,\"modRevision\":46,\"version\":1}\n\n"},
	} {
		got, n := appendEvents(nil, []*watchEvent{{change: c.change}}, watchFilter{key: c.change.key})
		if string(got) != c.want || n != 1 {
			t.Errorf("encoded\n%q\nwant\n%q", got, c.want)
		}
	}
}

// A transaction's changes share a revision: only the last frame of the
// revision that the stream sends carries the id, so a stream cut between
// two of them resumes before the revision, not after.
func TestOnlyTheLastFrameOfARevisionCarriesItsID(t *testing.T) {
	events := []*watchEvent{
		{change: change{revision: 7, key: "a/1", deleted: true}},
		{change: change{revision: 7, key: "a/2", deleted: true}},
		{change: change{revision: 7, key: "b", deleted: true}},
		{change: change{revision: 8, key: "a/3", deleted: true}},
	}
	got, n := appendEvents(nil, events, watchFilter{key: "a/", prefix: true})
	want := "event: delete\ndata: {\"key\":\"a/1\",\"revision\":7}\n\n" +
		"id: 7\nevent: delete\ndata: {\"key\":\"a/2\",\"revision\":7}\n\n" +
		"id: 8\nevent: delete\ndata: {\"key\":\"a/3\",\"revision\":8}\n\n"
	if string(got) != want || n != 3 {
		t.Fatalf("frames\n%q\nwant\n%q", got, want)
	}
}

func TestWatchStartComesFromLastEventIDThenFromRevision(t *testing.T) {
	for _, c := range []struct {
		query, lastID string
		want          uint64
		bad           bool
	}{
		{"", "", 11, false},
		{"fromRevision=5", "", 5, false},
		{"fromRevision=0", "", 1, false},
		{"fromRevision=5", "7", 8, false},
		{"", "0", 1, false},
		{"fromRevision=-1", "", 0, true},
		{"fromRevision=x", "", 0, true},
		{"", "abc", 0, true},
		{"", "18446744073709551615", 0, true},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/v1/watch/?"+c.query, nil)
		if c.lastID != "" {
			r.Header.Set("Last-Event-ID", c.lastID)
		}
		got, err := watchStart(r, 10)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("query %q Last-Event-ID %q: start %d, err %v; want %d (refused: %v)", c.query, c.lastID, got, err, c.want, c.bad)
		}
	}
}

func TestConditionHeadersAreReadStrictly(t *testing.T) {
	for _, c := range []struct {
		headers    []string // name: value
		createOnly bool
		want       condition
		bad        bool
	}{
		{nil, true, condition{}, false},
		{[]string{`If-Match: "17"`}, true, condition{kind: condModRevision, modRevision: 17}, false},
		{[]string{`If-Match: "0"`}, false, condition{kind: condModRevision}, false},
		{[]string{`If-Match: *`}, false, condition{kind: condExists}, false},
		{[]string{`If-None-Match: *`}, true, condition{kind: condAbsent}, false},
		{[]string{`If-Match: 17`}, true, condition{}, true},
		{[]string{`If-Match: W/"17"`}, true, condition{}, true},
		{[]string{`If-Match: "1", "2"`}, true, condition{}, true},
		{[]string{`If-Match: "1"`, `If-Match: "2"`}, true, condition{}, true},
		{[]string{`If-Match: ""`}, true, condition{}, true},
		{[]string{`If-Match: "+1"`}, true, condition{}, true},
		{[]string{`If-Match: "-1"`}, true, condition{}, true},
		{[]string{`If-Match: "18446744073709551616"`}, true, condition{}, true},
		{[]string{`If-Match: "1"`, `If-None-Match: *`}, true, condition{}, true},
		{[]string{`If-None-Match: "3"`}, true, condition{}, true},
		{[]string{`If-None-Match: *`}, false, condition{}, true},
	} {
		r, _ := http.NewRequest(http.MethodPut, "/k", nil)
		for _, h := range c.headers {
			name, value, _ := strings.Cut(h, ": ")
			r.Header.Add(name, value)
		}
		got, err := writeCondition(r, c.createOnly)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%q (create only %v): %+v, %v; want %+v (refused: %v)", c.headers, c.createOnly, got, err, c.want, c.bad)
		}
	}
}

func TestStreamsAreWokenAtOnceThenAtMostEveryWakeInterval(t *testing.T) {
	h := newWatchHub(100, 1<<20)
	first := h.read(1, 10, nil).changed
	h.publish(puts(1), 1)
	select {
	case <-first:
	default:
		t.Fatal("the first change did not wake the streams at once")
	}
	second := h.read(2, 10, nil).changed
	start := time.Now()
	h.publish(puts(2), 2)
	h.publish(puts(3), 3) // within the interval: one wake-up for both
	select {
	case <-second:
		if waited := time.Since(start); waited > wakeInterval(0)+time.Second {
			t.Fatalf("woken after %v", waited)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("changes within the interval never woke the streams")
	}
	if v := h.read(2, 10, nil); fmt.Sprint(revisionsOf(v.events)) != "[2 3]" {
		t.Fatalf("after the wake-up: %v", revisionsOf(v.events))
	}
}

func TestTheWakeIntervalGrowsWithTheStreamsUpToItsBound(t *testing.T) {
	for _, c := range []struct {
		streams int64
		want    time.Duration
	}{
		{0, 10 * time.Millisecond},
		{100, 10 * time.Millisecond},
		{250, 25 * time.Millisecond},
		{1000, 50 * time.Millisecond},
		{1 << 40, 50 * time.Millisecond},
	} {
		if got := wakeInterval(c.streams); got != c.want {
			t.Errorf("%d streams: %v apart, want %v", c.streams, got, c.want)
		}
	}
	h := newWatchHub(100, 1<<20)
	closers := make([]func(), 300)
	for i := range closers {
		closers[i] = h.streamOpened()
	}
	if n := h.streams.Load(); n != 300 {
		t.Fatalf("%d streams counted open, want 300", n)
	}
	// With 300 streams open, a change just after a wake-up waits about 30 ms.
	h.publish(puts(1), 1)
	changed := h.read(2, 10, nil).changed
	start := time.Now()
	h.publish(puts(2), 2)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the second change never woke the streams")
	}
	if waited := time.Since(start); waited < 25*time.Millisecond {
		t.Fatalf("with 300 streams open the second change woke them after %v, want about 30 ms", waited)
	}
	for _, closed := range closers {
		closed()
	}
	if n := h.streams.Load(); n != 0 {
		t.Fatalf("%d streams counted open after all closed", n)
	}
}
