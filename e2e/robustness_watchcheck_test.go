package e2e

// Check 6's verdict (see robustness_watch_test.go for what it checks and
// how the watchers run): the frames each watcher logged, against each other,
// the history of answers and the final listing.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }

// watchAttempts is what the clients tried, for the checks.
type watchAttempts struct {
	attempts map[string]int64  // PUT value -> call time
	attKey   map[string]string // PUT value -> key
	refused  map[string]bool   // PUT values refused with 412
	deletes  map[string]int64  // key -> first DELETE's call time
}

// watchSeen is one watcher's view: the events by revision, the ranges it
// saw completely, its replayed state at the end.
type watchSeen struct {
	name   string
	events map[uint64]watchFrame
	segs   [][2]uint64 // (from, through]: every revision in it delivered
	state  map[string]watchKV
	last   uint64 // through of the last segment
	count  int
}

func (s *watchSeen) covers(rev uint64) bool {
	for _, g := range s.segs {
		if g[0] < rev && rev <= g[1] {
			return true
		}
	}
	return false
}

// checkWatchLog checks one watcher's streams for order, duplicates, gaps
// and self-consistency, and returns what it saw.
func checkWatchLog(w *watchLog) (*watchSeen, []string) {
	seen := &watchSeen{name: w.name, events: map[uint64]watchFrame{}}
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, w.name+": "+fmt.Sprintf(format, args...))
	}
	var pos uint64
	var state map[string]watchKV // nil: not known (blind)
	for si, s := range w.streams {
		where := func(f watchFrame) string {
			return fmt.Sprintf("stream %d (node %d, after %d), frame id %d %s", si, s.node, s.after, f.ID, f.Type)
		}
		switch {
		case s.fresh():
			state = map[string]watchKV{}
			if s.blind {
				state = nil
			}
			if s.base != nil {
				for k, v := range s.base.items {
					state[k] = v
				}
			}
			seen.segs = append(seen.segs, [2]uint64{s.after, s.after})
		case len(seen.segs) == 0:
			bad("stream %d resumes nothing", si)
			continue
		case s.after != pos:
			bad("stream %d resumed after %d, but the one before ended at %d", si, s.after, pos)
		}
		pos = s.after
		for fi, f := range s.frames {
			if fi == 0 && (f.Type != "progress" || f.ID != s.after) {
				bad("%s: the first frame is not progress at %d, the revision resumed after", where(f), s.after)
			}
			switch f.Type {
			case "progress":
				if f.Revision != f.ID {
					bad("%s: data revision %d", where(f), f.Revision)
				}
				if f.ID < pos {
					bad("%s: progress back from %d", where(f), pos)
				} else if f.ID > pos {
					bad("%s: complete through %d, but %d..%d never delivered (a gap)", where(f), f.ID, pos+1, f.ID)
				}
			case "put", "delete":
				seen.count++
				switch {
				case f.Revision != f.ID:
					bad("%s: data revision %d", where(f), f.Revision)
				case f.ID <= pos:
					bad("%s: after %d (a duplicate or out of order)", where(f), pos)
				case f.ID > pos+1:
					bad("%s: after %d, so %d..%d missing (a gap)", where(f), pos, pos+1, f.ID-1)
				}
				if old, ok := seen.events[f.ID]; ok && !sameEvent(old.WatchEvent, f.WatchEvent) {
					bad("%s: revision %d seen before as %s, now %s", where(f), f.ID, old.Data, f.Data)
				}
				seen.events[f.ID] = f
				if state == nil {
					break // a replay from an unknown state
				}
				cur, exists := state[f.Key]
				if f.Type == "delete" {
					if !exists {
						bad("%s: delete of %q, which does not exist", where(f), f.Key)
					}
					delete(state, f.Key)
					break
				}
				want := watchKV{value: f.Value, create: f.ID, mod: f.ID, version: 1}
				if exists {
					want.create, want.version = cur.create, cur.version+1
				}
				if got := (watchKV{value: f.Value, create: f.CreateRevision, mod: f.ModRevision, version: f.Version}); got != want {
					bad("%s: put %q: createRevision %d, modRevision %d, version %d; replayed from the events: %d, %d, %d",
						where(f), f.Key, got.create, got.mod, got.version, want.create, want.mod, want.version)
				}
				state[f.Key] = want
			default:
				bad("%s: unknown event type", where(f))
			}
			if f.ID > pos {
				pos = f.ID
			}
		}
		seen.segs[len(seen.segs)-1][1] = pos
	}
	if len(w.streams) == 0 {
		bad("no stream ever opened")
	}
	seen.state, seen.last = state, pos
	return seen, errs
}

func sameEvent(a, b tc.WatchEvent) bool {
	return a.Type == b.Type && a.Key == b.Key && a.Value == b.Value && a.Revision == b.Revision &&
		a.CreateRevision == b.CreateRevision && a.ModRevision == b.ModRevision && a.Version == b.Version
}

// checkWatches is check 6 on the watchers' logs, the history, the clients'
// attempts and the final listing (nil if none was taken).
func checkWatches(logs []*watchLog, history []lincheck.Op, att watchAttempts, final *watchListing) (string, error) {
	var errs []string
	var seens []*watchSeen
	for _, w := range logs {
		s, e := checkWatchLog(w)
		seens = append(seens, s)
		errs = append(errs, e...)
	}

	// Every event is a write that was tried.
	for _, s := range seens {
		byValue := map[string]uint64{}
		for rev, f := range s.events {
			switch f.Type {
			case "put":
				call, tried := att.attempts[f.Value]
				switch {
				case !tried || att.attKey[f.Value] != f.Key:
					errs = append(errs, fmt.Sprintf("%s: revision %d: put %s=%q, which no PUT tried", s.name, rev, f.Key, f.Value))
				case call > f.at:
					errs = append(errs, fmt.Sprintf("%s: revision %d: put %s=%q delivered before its PUT was sent", s.name, rev, f.Key, f.Value))
				case att.refused[f.Value]:
					errs = append(errs, fmt.Sprintf("%s: revision %d: put %s=%q, whose PUT was refused (412)", s.name, rev, f.Key, f.Value))
				}
				if other, ok := byValue[f.Value]; ok {
					errs = append(errs, fmt.Sprintf("%s: the PUT of %q took effect twice, at revisions %d and %d", s.name, f.Value, min(rev, other), max(rev, other)))
				}
				byValue[f.Value] = rev
			case "delete":
				if call, ok := att.deletes[f.Key]; !ok || call > f.at {
					errs = append(errs, fmt.Sprintf("%s: revision %d: delete of %s, which no DELETE tried before", s.name, rev, f.Key))
				}
			}
		}
	}

	// Every acknowledged answer in range is in the stream.
	checked := 0
	for _, op := range history {
		if op.Unknown() || op.Revision == 0 {
			continue
		}
		for _, s := range seens {
			if !s.covers(op.Revision) {
				continue
			}
			f, ok := s.events[op.Revision]
			var want string
			switch {
			case op.Kind == lincheck.Delete && op.Refused, op.Kind == lincheck.Put && op.Refused:
				if !op.Found || (f.Type == "put" && f.Key == op.Key) {
					continue // a 412's ETag: the key was put at that revision
				}
				want = "put of " + op.Key
			case op.Kind == lincheck.Get:
				if f.Type == "put" && f.Key == op.Key && f.Value == op.Value {
					continue
				}
				want = fmt.Sprintf("put %s=%q", op.Key, op.Value)
			case op.Kind == lincheck.Put:
				if f.Type == "put" && f.Key == op.Key && f.Value == op.Value {
					checked++
					continue
				}
				want = fmt.Sprintf("put %s=%q", op.Key, op.Value)
			case op.Kind == lincheck.Delete && op.Cond.Kind != lincheck.Always:
				if f.Type == "delete" && f.Key == op.Key {
					checked++
					continue
				}
				want = "delete of " + op.Key
			default: // a delete's X-Revision: its own, or the store's if the key was missing
				if !(f.Type == "put" && f.Key == op.Key) {
					continue
				}
				want = fmt.Sprintf("delete of %s, or a change that left it absent", op.Key)
			}
			got := "nothing"
			if ok {
				got = f.Data
				if f.Type == "delete" {
					got = "delete " + got
				}
			}
			errs = append(errs, fmt.Sprintf("%s: %v answered revision %d, where the watch delivered %s, not %s", s.name, op, op.Revision, got, want))
		}
	}

	// The watchers agree, with each other and with the final listing.
	both := 0
	for i := range seens {
		for j := i + 1; j < len(seens); j++ {
			for rev, a := range seens[i].events {
				b, ok := seens[j].events[rev]
				if !ok {
					continue
				}
				both++
				if !sameEvent(a.WatchEvent, b.WatchEvent) {
					errs = append(errs, fmt.Sprintf("revision %d: %s saw %s %s, %s saw %s %s", rev, seens[i].name, a.Type, a.Data, seens[j].name, b.Type, b.Data))
				}
			}
		}
	}
	if final != nil {
		for _, s := range seens {
			if s.state == nil {
				continue
			}
			if s.last != final.rev {
				errs = append(errs, fmt.Sprintf("%s ended at %d, the final listing is at %d", s.name, s.last, final.rev))
				continue
			}
			if d := diffKV(s.state, final.items); d != "" {
				errs = append(errs, fmt.Sprintf("%s: the events replay to another state than the final listing at %d: %s", s.name, final.rev, d))
			}
		}
	}

	var parts []string
	for _, s := range seens {
		parts = append(parts, fmt.Sprintf("%s %d events in %d segments %v", s.name, s.count, len(s.segs), s.segs))
	}
	stats := fmt.Sprintf("%s; %d revisions seen by both; %d acknowledged writes found in the streams", strings.Join(parts, ", "), both, checked)
	if len(errs) > 0 {
		sort.Strings(errs)
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("and %d more", len(errs)-20))
		}
		return stats, fmt.Errorf("watches: %s", strings.Join(errs, "; "))
	}
	return stats, nil
}

// diffKV describes how two states differ ("" if they do not).
func diffKV(a, b map[string]watchKV) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			d = append(d, fmt.Sprintf("%s: %+v vs %+v", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: absent vs %+v", k, w))
		}
	}
	sort.Strings(d)
	return strings.Join(firstN(d, 5), "; ")
}

// saveHistory writes the history (one operation a line, in call order) and
// each watcher's frames to dir, for a failed run.
func (ws *watchers) saveHistory(dir string, history []lincheck.Op) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ws.r.t.Log(err)
		return
	}
	var b strings.Builder
	for _, op := range history {
		fmt.Fprintln(&b, op)
	}
	os.WriteFile(filepath.Join(dir, "history.txt"), []byte(b.String()), 0o644)
	for _, w := range ws.logs {
		b.Reset()
		for i, s := range w.streams {
			fmt.Fprintf(&b, "stream %d: node %d, Last-Event-ID %d, fresh %v, ended: %s\n", i, s.node, s.after, s.fresh(), s.end)
			for _, f := range s.frames {
				fmt.Fprintf(&b, "  %d %s %s\n", f.ID, f.Type, f.Data)
			}
		}
		os.WriteFile(filepath.Join(dir, strings.ReplaceAll(w.name, " ", "-")+".txt"), []byte(b.String()), 0o644)
	}
}
