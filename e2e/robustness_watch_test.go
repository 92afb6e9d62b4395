package e2e

// The robustness suite's watch checker (check 6, see robustness_test.go).
// Two watchers, each preferring its own member, watch every key
// (/v1/watch/?prefix=) from revision 0 for the whole run. A stream that
// ends (its member killed, stopped, restarted, replaced, or cut by the
// watcher itself at random) is resumed with Last-Event-ID, on the same
// member or now and then another one; a 410 (the member's history no longer
// reaches back) is counted, and the watcher lists every key and watches on
// from the listing's revision, as a client would. After the run:
//
//   - in order, no duplicates, no gaps: every change moves the store's
//     revision by one and matches an all-keys watch, so from its start to its
//     last frame each stream of frames and resumed streams delivers
//     consecutive revisions, every progress frame names the last revision
//     delivered (the first one the revision resumed from), and the events
//     replayed from the empty store (or the listing after a 410) agree with
//     their own createRevision and version;
//   - every event is a write that happened: a put of a value some PUT tried
//     to write on that key before the event arrived (values are unique per
//     attempt, so one value at one revision), not one refused with 412; a
//     delete of a key a DELETE was tried on;
//   - every acknowledged answer within a watcher's range is in its stream:
//     a PUT's revision delivered as that put, a GET's or a 412's ETag as the
//     put of that key (and value);
//   - the watchers (and the listings) agree on every revision more than one
//     saw, and each replays to the final listing of the store;
//   - each watcher catches up with the store's final revision;
//   - at the end, every member's history replays (from revision 1, or from
//     the oldest revision its 410 names) to the same events.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

const (
	// The members' --watch-history: a few seconds of writes, so that a
	// watcher stalled with its member (SIGSTOP, a partition) or resuming on
	// a member that restarted from a snapshot meets 410s.
	scenarioWatchHistory = 300
	scenarioWatchers     = 2
	watchCatchUp         = 30 * time.Second // for the watchers to reach the final revision
)

// watchFrame is one frame as a watcher received it.
type watchFrame struct {
	tc.WatchEvent
	at int64 // when it arrived, on the recorder's clock
}

// watchKV is a key's state as a listing or a replay of events shows it.
type watchKV struct {
	value                string
	create, mod, version uint64
}

// watchListing is a listing of every key at a revision.
type watchListing struct {
	rev   uint64
	items map[string]watchKV
	ttls  int // keys with a TTL: each may still expire, a change after rev
}

// watchStream is one stream a watcher opened.
type watchStream struct {
	node   int
	after  uint64        // the Last-Event-ID sent: revisions > after
	base   *watchListing // for a stream that starts after a re-list (410)
	first  bool          // the watcher's first stream (from the empty store)
	blind  bool          // starts a segment whose state at after is unknown (a replay from a member's oldest revision)
	frames []watchFrame
	end    string // how it ended
}

// fresh reports whether s starts a new segment: the watcher knows the
// whole state at s.after (empty, or the listing), not from the stream
// before.
func (s *watchStream) fresh() bool { return s.first || s.base != nil || s.blind }

// watchLog is what one watcher did and saw.
type watchLog struct {
	name    string
	mu      sync.Mutex
	streams []watchStream
	through uint64 // the last revision received whole
	gone    int    // 410s
	cuts    int    // streams the watcher cut itself
	lags    int    // times it waited, before resuming, for its position to leave the history
	refused []string
}

func (w *watchLog) mark() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.through
}

// watchers are the scenario's watchers.
type watchers struct {
	r      *scenario
	logs   []*watchLog
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	quiet  atomic.Bool // the traffic is over: no more falling behind on purpose

	// The replays at the end: every member's history from revision 1, or
	// after a 410 from its oldest revision.
	replayLogs []*watchLog
	full, gone int
	replayErr  error

	stats watchStats
}

// watchStats sums up a run's watches, for the soak's summary.
type watchStats struct {
	events  int // put and delete events the watchers received (each counted once per watcher)
	streams int // streams opened (the first ones, and resumes)
	cuts    int // streams the watchers cut themselves
	gone    int // 410s while watching
	replays int // members whose whole history replayed at the end, from revision 1
	old     int // ... from their oldest revision, after a 410
}

func (a *watchStats) add(b watchStats) {
	a.events, a.streams, a.cuts, a.gone, a.replays, a.old = a.events+b.events, a.streams+b.streams, a.cuts+b.cuts, a.gone+b.gone, a.replays+b.replays, a.old+b.old
}

func (a watchStats) String() string {
	return fmt.Sprintf("%d watch events in %d streams (%d cut by the watchers), %d 410s; %d members' histories replayed from revision 1, %d from their oldest after a 410",
		a.events, a.streams, a.cuts, a.gone, a.replays, a.old)
}

// startWatchers starts the watchers, from revision 0.
func (r *scenario) startWatchers() *watchers {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{r: r, cancel: cancel}
	for i := 0; i < scenarioWatchers; i++ {
		w := &watchLog{name: fmt.Sprintf("watcher %c", 'A'+i)}
		ws.logs = append(ws.logs, w)
		ws.wg.Add(1)
		go func(i int) { defer ws.wg.Done(); r.watch(ctx, w, i, r.seed+100+int64(i), &ws.quiet) }(i)
	}
	return ws
}

// stop stops the watchers and waits for them.
func (ws *watchers) stop() {
	ws.once.Do(func() { ws.cancel(); ws.wg.Wait() })
}

// watch is one watcher: it prefers member pref (by position), resumes
// every stream that ends, and cuts its streams at random.
func (r *scenario) watch(ctx context.Context, w *watchLog, pref int, seed int64, quiet *atomic.Bool) {
	rng := rand.New(rand.NewSource(seed))
	var after uint64
	first := true
	var base *watchListing
	for try := 0; ctx.Err() == nil; try++ {
		members := r.c.Members()
		i := pref
		if try%2 == 1 || rng.Intn(4) == 0 {
			i = rng.Intn(len(members)) // now and then, and when its own member fails, another one
		}
		n := members[i%len(members)]
		hdr := http.Header{"Last-Event-ID": {strconv.FormatUint(after, 10)}}
		s, err := n.Watch(ctx, "/v1/watch/?prefix=", hdr)
		var refused *tc.WatchRefused
		switch {
		case err == nil:
		case errors.As(err, &refused) && refused.Code == http.StatusGone:
			w.mu.Lock()
			w.gone++
			w.mu.Unlock()
			r.event("%s: 410 from node %d resuming after %d: %s", w.name, n.ID, after, strings.TrimSpace(refused.Body))
			l, err := relist(ctx, n)
			if err != nil {
				r.event("%s: re-list on node %d: %v", w.name, n.ID, err)
				break
			}
			after, base, first = l.rev, l, false
			continue
		case errors.As(err, &refused):
			w.mu.Lock()
			w.refused = append(w.refused, fmt.Sprintf("node %d after %d: %d %s", n.ID, after, refused.Code, strings.TrimSpace(refused.Body)))
			w.mu.Unlock()
			if refused.Code == http.StatusBadRequest {
				r.oddity("%s: watch on node %d after %d: %v", w.name, n.ID, after, err)
			}
		}
		if err != nil {
			// The member is down or busy: try again soon (elsewhere).
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(50+rng.Intn(200)) * time.Millisecond):
			}
			continue
		}
		try = -1
		st := watchStream{node: n.ID, after: after, base: base, first: first}
		first, base = false, nil
		cut := time.AfterFunc(time.Duration(500+rng.Intn(4500))*time.Millisecond, func() {
			w.mu.Lock()
			w.cuts++
			w.mu.Unlock()
			s.Close()
		})
		for {
			ev, err := s.Next()
			if err != nil {
				st.end = err.Error()
				break
			}
			st.frames = append(st.frames, watchFrame{ev, r.rec.Now()})
			// Resume after the last revision surely complete: a
			// revision's events (a transaction's) share its revision,
			// only the last of them carries the id, and the stream may
			// end between them.
			if ev.Type == "progress" || ev.CarriesID {
				after = ev.ID
			} else {
				after = ev.ID - 1
			}
			w.mu.Lock()
			w.through = after
			w.mu.Unlock()
		}
		cut.Stop()
		s.Close()
		w.mu.Lock()
		w.streams = append(w.streams, st)
		lag := pref == 1 && w.lags < 2 && rng.Intn(3) == 0 && !quiet.Load()
		if lag {
			w.lags++
		}
		w.mu.Unlock()
		if lag {
			// Watcher B falls behind now and then: it waits until the
			// store has moved on by more than a member's history, so that
			// it meets a 410, lists, and watches on from the listing.
			// (Watcher A keeps the whole run in view.)
			r.event("%s waits after revision %d until the history has moved past it", w.name, after)
			tc.Poll(10*time.Second, func() error {
				if ctx.Err() != nil || quiet.Load() {
					return nil
				}
				var st struct{ Revision uint64 }
				if _, err := r.c.Members()[0].GetJSON("/v1/status", &st); err != nil {
					return err
				}
				if st.Revision <= after+scenarioWatchHistory+10 {
					return fmt.Errorf("store at revision %d", st.Revision)
				}
				return nil
			})
		}
	}
}

// replays watches every member's whole history, through revision through:
// from revision 1, or, if the member answers 410 (it restarted from a
// snapshot), from the oldest revision it names, which must then work. The
// replays join the watchers in the checks.
func (ws *watchers) replays(through uint64) {
	var errs []error
	for _, n := range ws.r.c.Members() {
		w := &watchLog{name: fmt.Sprintf("replay of node %d", n.ID)}
		st := watchStream{node: n.ID, first: true}
		err := ws.replay(n, &st, through)
		var refused *tc.WatchRefused
		if errors.As(err, &refused) && refused.Code == http.StatusGone {
			var b struct{ OldestRevision, Revision uint64 }
			if json.Unmarshal([]byte(refused.Body), &b) != nil || b.OldestRevision < 2 || b.OldestRevision > b.Revision+1 || b.Revision < through {
				errs = append(errs, fmt.Errorf("%s: 410 with %s", w.name, refused.Body))
				continue
			}
			ws.gone++
			st = watchStream{node: n.ID, after: b.OldestRevision - 1, blind: true}
			err = ws.replay(n, &st, through)
		} else if err == nil {
			ws.full++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", w.name, err))
			continue
		}
		w.streams = []watchStream{st}
		ws.replayLogs = append(ws.replayLogs, w)
	}
	ws.replayErr = errors.Join(errs...)
}

// replay reads a stream on n after st.after into st, up to revision
// through.
func (ws *watchers) replay(n *tc.Node, st *watchStream, through uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), watchCatchUp)
	defer cancel()
	s, err := n.Watch(ctx, "/v1/watch/?prefix=", http.Header{"Last-Event-ID": {strconv.FormatUint(st.after, 10)}})
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		ev, err := s.Next()
		if err != nil {
			return fmt.Errorf("after %d frames: %v", len(st.frames), err)
		}
		if ev.ID > through {
			return nil // a later write (an expiry)
		}
		st.frames = append(st.frames, watchFrame{ev, ws.r.rec.Now()})
		if ev.ID == through && (ev.Type == "progress" || ev.CarriesID) {
			return nil // the whole of revision through was read
		}
	}
}

// relist lists every key through n, with the revision the listing reflects.
func relist(ctx context.Context, n *tc.Node) (*watchListing, error) {
	ctx, cancel := context.WithTimeout(ctx, memberRequestTimeout+3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL("/v1/kv/?prefix=&limit=10000"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := robustClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing: %d", resp.StatusCode)
	}
	if resp.Header.Get("X-Next-Start") != "" {
		return nil, fmt.Errorf("listing of more than 10000 keys")
	}
	rev, err := strconv.ParseUint(resp.Header.Get("X-Revision"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("listing: X-Revision %q", resp.Header.Get("X-Revision"))
	}
	var items []struct {
		Key, Value, Encoding, TTL            string
		CreateRevision, ModRevision, Version uint64
	}
	if err := json.NewDecoder(resp.Body).Decode(&items); err != nil {
		return nil, fmt.Errorf("listing: %v", err)
	}
	l := &watchListing{rev: rev, items: map[string]watchKV{}}
	for _, it := range items {
		if it.Encoding == "base64" {
			k, err1 := base64.StdEncoding.DecodeString(it.Key)
			v, err2 := base64.StdEncoding.DecodeString(it.Value)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("listing: bad base64 in %+v", it)
			}
			it.Key, it.Value = string(k), string(v)
		}
		l.items[it.Key] = watchKV{value: it.Value, create: it.CreateRevision, mod: it.ModRevision, version: it.Version}
		if it.TTL != "" {
			l.ttls++
		}
	}
	return l, nil
}

// finish waits until every watcher has caught up with the store's final
// revision (r.finalRev), lists the store, stops the watchers and checks
// what they saw against the history.
func (ws *watchers) finish(history []lincheck.Op) error {
	r := ws.r
	ws.quiet.Store(true)
	r.mu.Lock()
	target := r.finalRev
	r.mu.Unlock()
	var final *watchListing
	ahead := 0
	catchUp := tc.Poll(watchCatchUp, func() error {
		for _, w := range ws.logs {
			if m := w.mark(); m < target {
				return fmt.Errorf("%s delivered through revision %d of %d", w.name, m, target)
			}
		}
		// The listing, once the watchers are at its revision (a write of
		// unknown outcome may still land).
		members := r.c.Members()
		l, err := relist(context.Background(), members[0])
		if err != nil {
			return err
		}
		target = max(target, l.rev)
		if l.ttls > 0 {
			// Their expiries are changes yet to come: the final state is
			// the one after the last (the clients' TTLs are a few seconds).
			return fmt.Errorf("%d keys at revision %d may still expire", l.ttls, l.rev)
		}
		for _, w := range ws.logs {
			if m := w.mark(); m > l.rev {
				// Delivered past the store's revision: a write landing
				// after the listing, or the store went back.
				if ahead++; ahead > 20 {
					return tc.GiveUp(fmt.Errorf("%s delivered through %d, past the store's revision %d", w.name, m, l.rev))
				}
				return fmt.Errorf("%s at %d, the listing at %d", w.name, m, l.rev)
			} else if m != l.rev {
				return fmt.Errorf("%s at %d, the listing at %d", w.name, m, l.rev)
			}
		}
		final = l
		return nil
	})
	// Each watcher has read the final revision whole (its last frame
	// carries the id), and resumes after it if its stream is cut now.
	ws.stop()
	if final != nil {
		ws.replays(final.rev)
	}
	r.mu.Lock()
	att := watchAttempts{attempts: r.attempts, attKey: r.attKey, refused: r.refusedVals, deletes: r.delAttempts, ttls: r.ttls}
	stats, err := checkWatches(append(ws.logs, ws.replayLogs...), history, att, final)
	if ws.replayErr != nil {
		err = errors.Join(ws.replayErr, err)
	}
	r.mu.Unlock()
	ws.stats.replays, ws.stats.old = ws.full, ws.gone
	for _, w := range ws.logs {
		r.t.Logf("%s: %d streams (%d cut by the watcher, %d waits to fall behind), %d 410s, %d refusals %v", w.name, len(w.streams), w.cuts, w.lags, w.gone, len(w.refused), firstN(w.refused, 3))
		ws.stats.streams, ws.stats.cuts, ws.stats.gone = ws.stats.streams+len(w.streams), ws.stats.cuts+w.cuts, ws.stats.gone+w.gone
		for _, st := range w.streams {
			for _, f := range st.frames {
				if f.Type != "progress" {
					ws.stats.events++
				}
			}
		}
	}
	r.t.Logf("watches: %s; replays of every member's history: %d of %d from revision 1, %d after a 410", stats, ws.full, len(ws.replayLogs), ws.gone)
	if catchUp != nil {
		err = errors.Join(fmt.Errorf("watchers did not catch up with revision %d within %v: %v", target, watchCatchUp, catchUp), err)
	}
	return err
}
