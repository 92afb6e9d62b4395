package e2e

// Check 6's verdict (see robustness_watch_test.go for what it checks and
// how the watchers run): the frames each watcher logged, against each other,
// the history of answers and the final listing. A revision may carry
// several events (a transaction's writes, in the order of its branch, on
// distinct keys); a delete may be an expiry ("expired": true), which must
// remove a value a PUT with a TTL wrote, no sooner than TTL after that PUT
// was sent.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }

// watchAttempts is what the clients tried, for the checks.
type watchAttempts struct {
	attempts map[string]int64         // PUT value -> call time
	attKey   map[string]string        // PUT value -> key
	refused  map[string]bool          // PUT values refused with 412
	deletes  map[string]int64         // key -> first DELETE's call time
	ttls     map[string]time.Duration // PUT value -> its TTL, if it had one
}

// watchSeen is one watcher's view: the events by revision, the ranges it
// saw completely, its replayed state at the end.
type watchSeen struct {
	name   string
	events map[uint64][]watchFrame // by revision, in the order delivered
	// expired are the values expiries removed, by revision and key ("" if
	// not known: a replay from an unknown state).
	expired map[uint64]map[string]string
	segs    [][2]uint64 // (from, through]: every revision in it delivered
	state   map[string]watchKV
	last    uint64 // through of the last segment
	count   int
}

func (s *watchSeen) covers(rev uint64) bool {
	for _, g := range s.segs {
		if g[0] < rev && rev <= g[1] {
			return true
		}
	}
	return false
}

// kinds counts the expiries and the revisions of several events s saw.
func (s *watchSeen) kinds() (expiries, multi int) {
	for _, evs := range s.events {
		if len(evs) > 1 {
			multi++
		}
		for _, f := range evs {
			if f.Expired {
				expiries++
			}
		}
	}
	return expiries, multi
}

// checkWatchLog checks one watcher's streams for order, duplicates, gaps
// and self-consistency, and returns what it saw. A revision's events count
// once the revision is known to be complete: a later frame of the stream
// came, or the next stream resumed after it. A stream that ends after
// events of a revision may have ended in the middle of it: the watcher then
// resumes before it, and the stream's last revision is dropped (it comes
// again, whole).
func checkWatchLog(w *watchLog) (*watchSeen, []string) {
	seen := &watchSeen{name: w.name, events: map[uint64][]watchFrame{}, expired: map[uint64]map[string]string{}}
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, w.name+": "+fmt.Sprintf(format, args...))
	}
	type event struct {
		f     watchFrame
		where string
	}
	var pos uint64
	var state map[string]watchKV // nil: not known (blind)
	// apply takes in a complete revision's events.
	apply := func(evs []event) {
		if len(evs) == 0 {
			return
		}
		rev := evs[0].f.ID
		var frames []watchFrame
		for _, e := range evs {
			frames = append(frames, e.f)
		}
		if old, ok := seen.events[rev]; ok && !sameEvents(old, frames) {
			bad("%s: revision %d seen before as %s, now %s", evs[0].where, rev, eventsData(old), eventsData(frames))
		}
		seen.events[rev] = frames
		for _, e := range evs {
			f := e.f
			seen.count++
			if f.Type == "delete" && f.Expired {
				if seen.expired[rev] == nil {
					seen.expired[rev] = map[string]string{}
				}
				seen.expired[rev][f.Key] = ""
			}
			if state == nil {
				continue // a replay from an unknown state
			}
			cur, exists := state[f.Key]
			if f.Type == "delete" {
				if !exists {
					bad("%s: delete of %q, which does not exist", e.where, f.Key)
				} else if f.Expired {
					seen.expired[rev][f.Key] = cur.value
				}
				delete(state, f.Key)
				continue
			}
			want := watchKV{value: f.Value, create: f.ID, mod: f.ID, version: 1}
			if exists {
				want.create, want.version = cur.create, cur.version+1
			}
			if got := (watchKV{value: f.Value, create: f.CreateRevision, mod: f.ModRevision, version: f.Version}); got != want {
				bad("%s: put %q: createRevision %d, modRevision %d, version %d; replayed from the events: %d, %d, %d",
					e.where, f.Key, got.create, got.mod, got.version, want.create, want.mod, want.version)
			}
			state[f.Key] = want
		}
	}
	var tail []event // the last revision of the stream before, if it ended with events
	for si, s := range w.streams {
		where := func(f watchFrame) string {
			return fmt.Sprintf("stream %d (node %d, after %d), frame id %d %s", si, s.node, s.after, f.ID, f.Type)
		}
		if tail != nil {
			if tr := tail[0].f.ID; s.after < tr && (s.fresh() || s.after == tr-1) {
				// Resumed before it (or started afresh): it may have
				// been cut short.
				pos = tr - 1
				seen.segs[len(seen.segs)-1][1] = pos
			} else {
				apply(tail)
			}
			tail = nil
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
		var cur []event // the events of revision pos so far
		for fi, f := range s.frames {
			if fi == 0 && (f.Type != "progress" || f.ID != s.after) {
				bad("%s: the first frame is not progress at %d, the revision resumed after", where(f), s.after)
			}
			switch f.Type {
			case "progress":
				if f.Revision != f.ID {
					bad("%s: data revision %d", where(f), f.Revision)
				}
				apply(cur)
				cur = nil
				if f.ID < pos {
					bad("%s: progress back from %d", where(f), pos)
				} else if f.ID > pos {
					bad("%s: complete through %d, but %d..%d never delivered (a gap)", where(f), f.ID, pos+1, f.ID)
				}
			case "put", "delete":
				sameKey := false
				for _, e := range cur {
					sameKey = sameKey || e.f.Key == f.Key
				}
				switch {
				case f.Revision != f.ID:
					bad("%s: data revision %d", where(f), f.Revision)
				case f.ID == pos && cur != nil && sameKey:
					bad("%s: a second event for %q at revision %d (a duplicate)", where(f), f.Key, pos)
				case f.ID == pos && cur != nil:
					// the next event of the same revision
				case f.ID <= pos:
					bad("%s: after %d (a duplicate or out of order)", where(f), pos)
				case f.ID > pos+1:
					bad("%s: after %d, so %d..%d missing (a gap)", where(f), pos, pos+1, f.ID-1)
				}
				if f.ID != pos || cur == nil {
					apply(cur)
					cur = nil
				}
				cur = append(cur, event{f, where(f)})
			default:
				bad("%s: unknown event type", where(f))
			}
			if f.ID > pos {
				pos = f.ID
			}
		}
		tail = cur
		seen.segs[len(seen.segs)-1][1] = pos
	}
	apply(tail) // the run waited for the last revision to come whole
	if len(w.streams) == 0 {
		bad("no stream ever opened")
	}
	seen.state, seen.last = state, pos
	return seen, errs
}

func sameEvent(a, b tc.WatchEvent) bool {
	return a.Type == b.Type && a.Key == b.Key && a.Value == b.Value && a.Revision == b.Revision &&
		a.CreateRevision == b.CreateRevision && a.ModRevision == b.ModRevision && a.Version == b.Version && a.Expired == b.Expired
}

// sameEvents tells whether two revisions' events are the same, in order.
func sameEvents(a, b []watchFrame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameEvent(a[i].WatchEvent, b[i].WatchEvent) {
			return false
		}
	}
	return true
}

// eventsData describes a revision's events.
func eventsData(evs []watchFrame) string {
	if len(evs) == 0 {
		return "nothing"
	}
	var parts []string
	for _, f := range evs {
		d := f.Data
		if f.Type == "delete" {
			d = "delete " + d
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, " + ")
}

// putIn tells whether evs have a put of key (with value, unless any).
func putIn(evs []watchFrame, key, value string, any bool) bool {
	for _, f := range evs {
		if f.Type == "put" && f.Key == key && (any || f.Value == value) {
			return true
		}
	}
	return false
}

// txnWrites are the events an acknowledged transaction's writes must be at
// its revision, in order (deletes only if they deleted something; ok is
// false when that is not known), or none if it wrote nothing.
func txnWrites(t *lincheck.TxnInfo) (want []string, ok bool) {
	branch := t.Failure
	if t.Succeeded {
		branch = t.Success
	}
	for i, o := range branch {
		switch {
		case o.Kind == lincheck.Put:
			want = append(want, fmt.Sprintf("put %s=%q", o.Key, o.Value))
		case o.Kind == lincheck.Delete && t.Results == nil:
			return nil, false
		case o.Kind == lincheck.Delete && t.Results[i].Found:
			want = append(want, "delete "+o.Key)
		}
	}
	return want, true
}

func describeEvents(evs []watchFrame) []string {
	var out []string
	for _, f := range evs {
		if f.Type == "put" {
			out = append(out, fmt.Sprintf("put %s=%q", f.Key, f.Value))
		} else {
			out = append(out, "delete "+f.Key)
		}
	}
	return out
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
		for rev, evs := range s.events {
			for _, f := range evs {
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
					if f.Expired {
						if e := checkExpiry(att, f, s.expired[rev][f.Key]); e != "" {
							errs = append(errs, fmt.Sprintf("%s: revision %d: expiry of %s: %s", s.name, rev, f.Key, e))
						}
					} else if call, ok := att.deletes[f.Key]; !ok || call > f.at {
						errs = append(errs, fmt.Sprintf("%s: revision %d: delete of %s, which no DELETE tried before", s.name, rev, f.Key))
					}
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
			evs := s.events[op.Revision]
			var want string
			switch {
			case op.Kind == lincheck.Delete && op.Refused, op.Kind == lincheck.Put && op.Refused:
				if !op.Found || putIn(evs, op.Key, "", true) {
					continue // a 412's ETag: the key was put at that revision
				}
				want = "put of " + op.Key
			case op.Kind == lincheck.Get:
				if putIn(evs, op.Key, op.Value, false) {
					continue
				}
				want = fmt.Sprintf("put %s=%q", op.Key, op.Value)
			case op.Kind == lincheck.Put:
				if len(evs) == 1 && putIn(evs, op.Key, op.Value, false) {
					checked++
					continue
				}
				want = fmt.Sprintf("put %s=%q", op.Key, op.Value)
			case op.Kind == lincheck.Txn:
				w, known := txnWrites(op.Txn)
				if !known || len(w) == 0 {
					continue // its writes unknown, or none: the store's revision
				}
				if strings.Join(describeEvents(evs), ", ") == strings.Join(w, ", ") {
					checked++
					continue
				}
				want = strings.Join(w, " + ")
			case op.Kind == lincheck.Delete && op.Cond.Kind != lincheck.Always:
				if len(evs) == 1 && evs[0].Type == "delete" && evs[0].Key == op.Key && !evs[0].Expired {
					checked++
					continue
				}
				want = "delete of " + op.Key
			default: // a delete's X-Revision: its own, or the store's if the key was missing
				if !putIn(evs, op.Key, "", true) {
					continue
				}
				want = fmt.Sprintf("delete of %s, or a change that left it absent", op.Key)
			}
			errs = append(errs, fmt.Sprintf("%s: %v answered revision %d, where the watch delivered %s, not %s", s.name, op, op.Revision, eventsData(evs), want))
		}
	}

	// Every found get of an acknowledged transaction shows a put at its
	// modRevision.
	for _, op := range history {
		if op.Kind != lincheck.Txn || op.Unknown() || op.Txn.Results == nil {
			continue
		}
		for _, res := range op.Txn.Results {
			if res.Kind != lincheck.Get || !res.Found {
				continue
			}
			for _, s := range seens {
				if evs := s.events[res.ModRevision]; s.covers(res.ModRevision) && !putIn(evs, res.Key, res.Value, false) {
					errs = append(errs, fmt.Sprintf("%s: %v read %s=%q at revision %d, where the watch delivered %s", s.name, op, res.Key, res.Value, res.ModRevision, eventsData(evs)))
				}
			}
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
				if !sameEvents(a, b) {
					errs = append(errs, fmt.Sprintf("revision %d: %s saw %s, %s saw %s", rev, seens[i].name, eventsData(a), seens[j].name, eventsData(b)))
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
		if exp, multi := s.kinds(); exp > 0 || multi > 0 {
			parts[len(parts)-1] += fmt.Sprintf(" (%d expiries, %d revisions of several events)", exp, multi)
		}
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

// checkExpiry checks an expiry event f against the clients' attempts:
// the value it removed (value, "" if not known) was written by a PUT with
// a TTL sent at least TTL before the event arrived (not known: some PUT
// with a TTL on that key was). It returns what is wrong, or "".
func checkExpiry(att watchAttempts, f watchFrame, value string) string {
	if value != "" {
		ttl, call := att.ttls[value], att.attempts[value]
		switch {
		case ttl == 0:
			return fmt.Sprintf("it removed %q, which no PUT with a TTL wrote", value)
		case f.at < call+int64(ttl):
			return fmt.Sprintf("it removed %q %v after its PUT (with TTL %v) was sent", value, time.Duration(f.at-call), ttl)
		}
		return ""
	}
	for v, ttl := range att.ttls {
		if att.attKey[v] == f.Key && ttl > 0 && att.attempts[v]+int64(ttl) <= f.at {
			return ""
		}
	}
	return "no PUT with a TTL tried on it long enough before"
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
