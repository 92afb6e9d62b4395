package e2e

// Cross-process tests of keys that expire (issue #14): PUT ?ttl=D, the key
// gone within TTL + 1 s with a stable leader and never before TTL since its
// acknowledgement, kept alive by re-PUTs, cleared by a PUT without ttl,
// never removing a newer write; the TTL headers and the listing; bad ttls;
// and TTLs across leader changes and a restart of every member.
//
// The timing checks are sound on a slow machine: a key is "early" only if
// an answer that arrived before the bound showed it gone, and "late" only
// if a GET sent after the bound still found it (a linearizable read reflects
// the state at some point after it was sent).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

func TestKeysWithATTLExpireWithinTTLPlusOneSecondAndNeverEarly(t *testing.T) {
	c := tc.StartCluster(t, 3, "--snap-count", "50")
	leader, _ := stableLeader(t, c)
	follower := c.Except(leader)[0]

	t.Run("a bad ttl answers 400 with the reason and writes nothing", func(t *testing.T) {
		expectPutAny(t, leader, "/v1/kv/bad-ttl", "kept")
		leader, term := stableLeader(t, c)
		rev0, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		for _, ttl := range []string{"0s", "500ms", "999ms", "25h", "24h0m1s", "abc", "-1s", "1", "0"} {
			for _, n := range []*tc.Node{leader, follower} {
				for _, cs := range []struct {
					path string
					h    http.Header
				}{
					{"/v1/kv/bad-ttl?ttl=" + ttl, nil},
					{"/v1/kv/bad-ttl-new?ttl=" + ttl, hdr("If-None-Match", "*")},
					{"/bad-ttl?ttl=" + ttl, nil},
				} {
					what := fmt.Sprintf("PUT %s %v on %v", cs.path, cs.h, n)
					resp, err := n.DoRequest(http.MethodPut, cs.path, "changed", cs.h)
					expectStatus(t, what, resp.Code, resp.Body, err, http.StatusBadRequest)
					if strings.HasPrefix(cs.path, "/v1/") {
						var e map[string]string
						if err := json.Unmarshal([]byte(resp.Body), &e); err != nil || len(e) != 1 || e["error"] != ttlError(ttl) {
							t.Errorf("%s: body %q, want {\"error\": %q}", what, resp.Body, ttlError(ttl))
						}
					} else if strings.TrimSpace(resp.Body) != ttlError(ttl) || strings.Count(resp.Body, "\n") != 1 {
						t.Errorf("%s: body %q, want the line %q", what, resp.Body, ttlError(ttl))
					}
				}
			}
		}
		// Nothing was proposed: the store revision did not move, the key kept
		// its value and has no TTL, and the next write is the next revision.
		if rev, err := leader.Revision(); err != nil || rev != rev0 {
			t.Fatalf("after the bad ttls %v's revision is %d (%v), want %d", leader, rev, err, rev0)
		}
		resp, err := follower.DoRequest(http.MethodGet, "/v1/kv/bad-ttl", "", nil)
		if _, _, has, _ := tc.TTLOf(resp.Header); err != nil || resp.Code != http.StatusOK || resp.Body != "kept" || has {
			t.Fatalf("after the bad ttls: GET bad-ttl %d %q %v (X-TTL %q), want kept without a TTL", resp.Code, resp.Body, err, resp.Header.Get("X-TTL"))
		}
		if sameTerm(c, term) {
			expectPut(t, follower, "/v1/kv/after-bad-ttl", "1", nil, rev0+1)
		}
		// The bounds themselves are good.
		for _, ttl := range []string{"1s", "24h"} {
			putTTL(t, follower, "/v1/kv/good-ttl-"+ttl, "v", ttl, nil)
		}
	})

	t.Run("GET answers X-TTL and X-TTL-Remaining on leader and follower, the listing ttl", func(t *testing.T) {
		sent := time.Now()
		putTTL(t, follower, "/v1/kv/ttl-headers/ten", "v", "10s", nil)
		putTTL(t, leader, "/ttl-headers/ninety", "v", "90s", nil)
		expectPutAny(t, leader, "/v1/kv/ttl-headers/none", "v")
		for _, n := range []*tc.Node{leader, follower} {
			for _, cs := range []struct {
				method, path string
				ttl          time.Duration // 0: none
			}{
				{http.MethodGet, "/v1/kv/ttl-headers/ten", 10 * time.Second},
				{http.MethodHead, "/v1/kv/ttl-headers/ten", 10 * time.Second},
				{http.MethodGet, "/ttl-headers/ten", 10 * time.Second},
				{http.MethodGet, "/v1/kv/ttl-headers/ten?consistency=serializable", 10 * time.Second},
				{http.MethodGet, "/v1/kv/ttl-headers/ninety", 90 * time.Second},
				{http.MethodGet, "/v1/kv/ttl-headers/none", 0},
				{http.MethodGet, "/v1/kv/" + tc.ReadyKey, 0},
			} {
				what := fmt.Sprintf("%s %s on %v", cs.method, cs.path, n)
				resp, err := n.DoRequest(cs.method, cs.path, "", nil)
				expectStatus(t, what, resp.Code, resp.Body, err, http.StatusOK)
				ttl, rem, has, err := tc.TTLOf(resp.Header)
				elapsed := time.Since(sent)
				switch {
				case err != nil:
					t.Errorf("%s: %v", what, err)
				case cs.ttl == 0 && has:
					t.Errorf("%s: X-TTL %q X-TTL-Remaining %q on a key without a TTL", what, resp.Header.Get("X-TTL"), resp.Header.Get("X-TTL-Remaining"))
				case cs.ttl == 0:
				case !has || ttl != cs.ttl:
					t.Errorf("%s: X-TTL %q, want %v", what, resp.Header.Get("X-TTL"), cs.ttl)
				case rem < 1 || time.Duration(rem)*time.Second > cs.ttl:
					t.Errorf("%s: X-TTL-Remaining %d, want 1 to %d", what, rem, int(cs.ttl.Seconds()))
				case n == leader && cs.ttl == 10*time.Second && time.Duration(rem)*time.Second < cs.ttl-elapsed:
					// Rounded up, as seen by the leader that runs the TTL.
					t.Errorf("%s: X-TTL-Remaining %d on the leader %v after the write, want at least %v", what, rem, elapsed.Round(time.Millisecond), cs.ttl-elapsed)
				}
			}
		}
		resp, err := follower.DoRequest(http.MethodGet, "/v1/kv/?prefix=ttl-headers/", "", nil)
		expectStatus(t, "GET /v1/kv/?prefix=ttl-headers/", resp.Code, resp.Body, err, http.StatusOK)
		var items []map[string]any
		if err := json.Unmarshal([]byte(resp.Body), &items); err != nil || len(items) != 3 {
			t.Fatalf("listing %q (%v), want 3 items", resp.Body, err)
		}
		for _, it := range items {
			ttl, has := it["ttl"]
			switch it["key"] {
			case "ttl-headers/ten", "ttl-headers/ninety":
				want := map[any]time.Duration{"ttl-headers/ten": 10 * time.Second, "ttl-headers/ninety": 90 * time.Second}[it["key"]]
				s, _ := ttl.(string)
				if d, err := time.ParseDuration(s); err != nil || d != want {
					t.Errorf("listing item %v: ttl %v, want %v", it, ttl, want)
				}
			default:
				if has {
					t.Errorf("listing item %v: a ttl on a key without one", it)
				}
			}
		}
	})

	t.Run("with a stable leader", func(t *testing.T) {
		_, term := stableLeader(t, c)
		t.Cleanup(func() {
			if !sameTerm(c, term) {
				t.Logf("the term changed during these subtests: their upper bounds may not have held for a reason")
			}
		})

		t.Run("a key with ttl=1s is gone within 2 s of its ack and not 1 s before, on GET and on a watch", func(t *testing.T) {
			t.Parallel()
			w := watchTimed(t, follower, "/v1/watch/expires/one")
			rev, ack := putTTL(t, follower, "/v1/kv/expires/one", "v", "1s", nil)
			if ev := w.next(t, watchTimeout); ev.Type != "put" || ev.ID != rev {
				t.Fatalf("watch: %s at %d, want the put at %d", ev.Type, ev.ID, rev)
			}
			gone := expectExpiry(t, leader, "/v1/kv/expires/one", "v", expiryBounds{ack.Add(time.Second), ack.Add(2 * time.Second)})
			ev := w.expectExpiredEvent(t, "expires/one", rev, ack.Add(time.Second))
			t.Logf("acknowledged at %s; GET saw it gone %v later, the watch %v later, at revision %d",
				ack.Format("15:04:05.000"), gone.Sub(ack).Round(time.Millisecond), ev.at.Sub(ack).Round(time.Millisecond), ev.Revision)
			// The deletion took a revision like any delete.
			if k, err := leader.Revs("/v1/kv/expires/one"); err != nil || k.Code != http.StatusNotFound || k.Revision < ev.Revision {
				t.Fatalf("after the expiry: %v %v, want 404 at revision %d or later", k, err, ev.Revision)
			}
			// And the root API's PUT takes a ttl the same way.
			_, ack = putTTL(t, leader, "/expires/root", "r", "1s", nil)
			expectExpiry(t, follower, "/expires/root", "r", expiryBounds{ack.Add(time.Second), ack.Add(2 * time.Second)})
			var expired float64
			for _, n := range c.Nodes {
				if v, err := n.Metric("raftexample_keys_expired_total", nil); err == nil {
					expired += v
				}
			}
			if expired < 1 {
				t.Errorf("raftexample_keys_expired_total is %v over all members after an expiry, want at least 1", expired)
			}
		})

		t.Run("re-PUTs with If-Match and the ttl keep a key alive past several TTLs", func(t *testing.T) {
			t.Parallel()
			rev, ack := putTTL(t, leader, "/v1/kv/expires/renewed", "v", "1s", nil)
			first := ack
			for time.Since(first) < 3500*time.Millisecond {
				// Renew after 0.5 s, long before the 1 s are up.
				for time.Since(ack) < 500*time.Millisecond {
					if k, err := follower.Revs("/v1/kv/expires/renewed"); err != nil || k.Code != http.StatusOK || k.ModRevision != rev {
						t.Fatalf("%v after the last renewal: %v %v, want the key at %d", time.Since(ack).Round(time.Millisecond), k, err, rev)
					}
					time.Sleep(50 * time.Millisecond)
				}
				rev, ack = putTTL(t, follower, "/v1/kv/expires/renewed", "v", "1s", hdr("If-Match", tag(rev)))
			}
			// Once the renewals stop, it expires on time.
			expectExpiry(t, follower, "/v1/kv/expires/renewed", "v", expiryBounds{ack.Add(time.Second), ack.Add(2 * time.Second)})
			t.Logf("kept alive for %v with a 1 s TTL", ack.Sub(first).Round(time.Millisecond))
		})

		t.Run("a PUT without ttl clears the TTL: the key survives it", func(t *testing.T) {
			t.Parallel()
			putTTL(t, leader, "/v1/kv/expires/cleared", "v", "1s", nil)
			_, ack := putTTL(t, follower, "/v1/kv/expires/cleared", "w", "", nil)
			resp, err := leader.DoRequest(http.MethodGet, "/v1/kv/expires/cleared", "", nil)
			if _, _, has, _ := tc.TTLOf(resp.Header); err != nil || resp.Code != http.StatusOK || has {
				t.Fatalf("after a PUT without ttl: %d %q %v, X-TTL %q; want 200 without TTL headers", resp.Code, resp.Body, err, resp.Header.Get("X-TTL"))
			}
			// Past the old deadline + 1 s, read through every member.
			for time.Since(ack) < 2200*time.Millisecond {
				for _, n := range c.Nodes {
					if code, body, err := n.Do(http.MethodGet, "/v1/kv/expires/cleared", ""); err != nil || code != http.StatusOK || body != "w" {
						t.Fatalf("%v after the PUT without ttl, on %v: %d %q %v; want w", time.Since(ack).Round(time.Millisecond), n, code, body, err)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		})

		t.Run("an expiry never removes a newer write, however close to the deadline", func(t *testing.T) {
			t.Parallel()
			// Keys with a 1 s TTL, each overwritten at its own moment around
			// when the leader's expiry is on its way through the log: with no
			// ttl (even keys, which must then stay) or with ttl=2s (odd keys,
			// which must then live 2 s from that write). When that is, a probe
			// tells: how long after its acknowledgement a key with a 1 s TTL
			// is gone on the leader (the TTL, the server's grace, the expiry's
			// trip through the log).
			_, probeAck := putTTL(t, leader, "/v1/kv/newer-probe", "p", "1s", nil)
			var lag time.Duration
			for {
				code, _, err := leader.Do(http.MethodGet, "/v1/kv/newer-probe?consistency=serializable", "")
				if err == nil && code == http.StatusNotFound {
					lag = time.Since(probeAck)
					break
				}
				if time.Since(probeAck) > tc.Timeout {
					t.Fatalf("the probe key did not expire: %d %v", code, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			const keys = 64
			const step = 1250 * time.Microsecond
			w := watchTimed(t, follower, "/v1/watch/?prefix=newer/")
			type key struct {
				name        string
				rev, newRev uint64
				ack, newAck time.Time
				newSent     time.Time // the overwrite's leader applied it after this
			}
			ks := make([]*key, keys)
			for i := range ks {
				ks[i] = &key{name: fmt.Sprintf("newer/%02d", i)}
				ks[i].rev, ks[i].ack = putTTL(t, leader, "/v1/kv/"+ks[i].name, "old", "1s", nil)
			}
			var wg sync.WaitGroup
			errs := make(chan error, keys)
			for i, k := range ks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					at := k.ack.Add(lag - 50*time.Millisecond + time.Duration(i)*step)
					time.Sleep(time.Until(at))
					path := "/v1/kv/" + k.name
					if i%2 == 1 {
						path += "?ttl=2s"
					}
					k.newSent = time.Now()
					resp, err := leader.DoRequest(http.MethodPut, path, "new", nil)
					k.newAck = time.Now()
					if err != nil || resp.Code != http.StatusNoContent {
						errs <- fmt.Errorf("overwrite PUT %s: %d %v %s", path, resp.Code, err, resp.Body)
						return
					}
					k.newRev, _, _ = tc.ETag(resp.Header)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Every key must hold the newer write from its acknowledgement on:
			// until 2.2 s after the last overwrite for those without a ttl (past
			// any old deadline + 1 s), until 2 s after it for those with one.
			// Their own TTLs are measured from when the overwrite was sent: the
			// 64 goroutines' clocks of the acknowledgements can be late by more
			// than an expiry takes through the log.
			var last time.Time
			for _, k := range ks {
				if k.newAck.After(last) {
					last = k.newAck
				}
			}
			for {
				now := time.Now()
				if now.After(last.Add(2200 * time.Millisecond)) {
					break
				}
				for i, k := range ks {
					if i%2 == 1 && now.After(k.newSent.Add(1900*time.Millisecond)) {
						continue
					}
					kr, err := leader.Revs("/v1/kv/" + k.name + "?consistency=serializable")
					if err != nil || kr.Code != http.StatusOK || kr.ModRevision != k.newRev {
						t.Fatalf("%s %v after its overwrite at %d (%v after the old write): %v %v; the newer write was removed",
							k.name, time.Since(k.newAck).Round(time.Millisecond), k.newRev, k.newAck.Sub(k.ack).Round(time.Millisecond), kr, err)
					}
				}
				time.Sleep(25 * time.Millisecond)
			}
			// What the watch saw: per key the old put, maybe its expiry (before
			// the overwrite), the overwrite, and for the odd keys their own
			// expiry, 2 s after it.
			byKey := map[string]*key{}
			for _, k := range ks {
				byKey[k.name] = k
			}
			seen := map[string][]timedEvent{}
			for {
				done := true
				for i, k := range ks {
					evs := seen[k.name]
					if len(evs) == 0 || evs[len(evs)-1].ID < k.newRev || (i%2 == 1 && evs[len(evs)-1].Type != "delete") {
						done = false
					}
				}
				if done {
					break
				}
				ev := w.next(t, tc.Timeout)
				seen[ev.Key] = append(seen[ev.Key], ev)
			}
			overwrote := 0
			for i, k := range ks {
				evs := seen[k.name]
				var kinds []string
				for _, ev := range evs {
					kinds = append(kinds, fmt.Sprintf("%s@%d", ev.Type, ev.ID))
				}
				switch {
				case len(evs) == 2 && evs[0].ID == k.rev && evs[1].ID == k.newRev && evs[1].Type == "put" && i%2 == 0:
					overwrote++
				case len(evs) == 3 && evs[0].ID == k.rev && evs[1].Type == "delete" && evs[1].Expired && evs[2].ID == k.newRev && i%2 == 0:
				case len(evs) == 3 && evs[0].ID == k.rev && evs[1].ID == k.newRev && evs[1].Type == "put" && evs[2].Type == "delete" && evs[2].Expired && i%2 == 1:
					overwrote++
					if evs[2].at.Before(k.newSent.Add(2 * time.Second)) {
						t.Errorf("%s: its own 2 s TTL expired %v after the overwrite was sent", k.name, evs[2].at.Sub(k.newSent).Round(time.Millisecond))
					}
				case len(evs) == 4 && evs[0].ID == k.rev && evs[1].Type == "delete" && evs[1].Expired && evs[2].ID == k.newRev && evs[3].Type == "delete" && evs[3].Expired && i%2 == 1:
					if evs[3].at.Before(k.newSent.Add(2 * time.Second)) {
						t.Errorf("%s: its own 2 s TTL expired %v after the overwrite was sent", k.name, evs[3].at.Sub(k.newSent).Round(time.Millisecond))
					}
				default:
					t.Errorf("%s (old write %d, overwrite %d %v after it): events %v", k.name, k.rev, k.newRev, k.newAck.Sub(k.ack).Round(time.Millisecond), kinds)
				}
			}
			t.Logf("the probe expired %v after its acknowledgement; of the %d overwrites sent from %v to %v after theirs, %d came before their key's expiry, %d after it",
				lag.Round(time.Millisecond), keys, (lag - 50*time.Millisecond).Round(time.Millisecond), (lag - 50*time.Millisecond + keys*step).Round(time.Millisecond), overwrote, keys-overwrote)
		})
	})

	// Moves leadership away from the member that runs key's 2 s TTL halfway
	// through it; the key must live 2 s from the moment the move began (the
	// new leader restarts the TTL in full: 1 s more than the write's own
	// deadline), and be gone within TTL + 1 s of the new leader's taking
	// over if leadership then stays put.
	leaderChange := func(t *testing.T, key string, move func(leader *tc.Node) (began time.Time, newLeader *tc.Node)) {
		leader, _ := stableLeader(t, c)
		other := c.Except(leader)[0]
		w := watchTimed(t, other, "/v1/watch/"+key)
		rev, ack := putTTL(t, leader, "/v1/kv/"+key, "v", "2s", nil)
		if ev := w.next(t, watchTimeout); ev.Type != "put" || ev.ID != rev {
			t.Fatalf("watch: %s at %d, want the put at %d", ev.Type, ev.ID, rev)
		}
		time.Sleep(time.Until(ack.Add(time.Second))) // halfway through the TTL
		if code, _, err := other.Do(http.MethodGet, "/v1/kv/"+key, ""); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s halfway through its TTL: %d %v, want 200", key, code, err)
		}
		began, newLeader := move(leader)
		_, term := stableLeader(t, c)
		tookOver := time.Now()
		notBefore := began.Add(2 * time.Second)
		gone := expectExpiry(t, other, "/v1/kv/"+key, "v", expiryBounds{notBefore, tookOver.Add(3 * time.Second)})
		ev := w.expectExpiredEvent(t, key, rev, notBefore)
		if !sameTerm(c, term) {
			t.Logf("leadership moved again while waiting; the upper bound may not have held for a reason")
		}
		t.Logf("write acknowledged at %s; leadership moved from %v at %s, %v took over by %s; gone %v after the ack (GET), %v (watch)",
			ack.Format("15:04:05.000"), leader, began.Format("15:04:05.000"), newLeader, tookOver.Format("15:04:05.000"),
			gone.Sub(ack).Round(time.Millisecond), ev.at.Sub(ack).Round(time.Millisecond))
	}

	t.Run("POST /v1/leader halfway through a TTL restarts it in full on the new leader", func(t *testing.T) {
		leaderChange(t, "moved/transfer", func(leader *tc.Node) (time.Time, *tc.Node) {
			to := c.Except(leader)[0]
			began := time.Now()
			code, body, err := leader.Do(http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, to.ID))
			expectStatus(t, fmt.Sprintf("POST /v1/leader {id %d}", to.ID), code, body, err, http.StatusOK)
			return began, to
		})
	})

	t.Run("a SIGKILL of the leader halfway through a TTL, and its restart, restart it in full", func(t *testing.T) {
		leaderChange(t, "moved/kill", func(leader *tc.Node) (time.Time, *tc.Node) {
			began := time.Now()
			leader.Kill()
			newLeader, err := c.FindLeader(tc.Timeout)
			if err != nil {
				t.Fatal(err)
			}
			leader.Restart()
			return began, newLeader
		})
	})

	t.Run("TTLs survive a restart of every member from their snapshots, then expire", func(t *testing.T) {
		rev, _ := putTTL(t, leader, "/v1/kv/restarted", "v", "4s", nil)
		st, err := leader.Status()
		if err != nil {
			t.Fatal(err)
		}
		index := st.Applied // the PUT's entry or later
		// More than --snap-count entries after it: every member restarts from a
		// snapshot that holds the key and its TTL.
		tc.PutMany(t, tc.KVs("after-restarted", 60, 10), c.Nodes...)
		tc.Eventually(t, tc.Timeout, func() error {
			for _, n := range c.Nodes {
				st, err := n.Status()
				if err != nil {
					return err
				}
				if st.SnapshotIndex < index {
					return fmt.Errorf("%v: snapshot index %d, want one at %d or later", n, st.SnapshotIndex, index)
				}
			}
			return nil
		})
		for _, n := range c.Nodes {
			if code := n.Stop(); code != 0 {
				t.Fatalf("%v exited with code %d on SIGTERM", n, code)
			}
		}
		started := time.Now()
		tc.StartAll(t, c.Nodes...)
		leader, _ := stableLeader(t, c)
		resp, err := c.Node(1).DoRequest(http.MethodGet, "/v1/kv/restarted", "", nil)
		ttl, _, has, _ := tc.TTLOf(resp.Header)
		if err != nil || resp.Code != http.StatusOK || !has || ttl != 4*time.Second {
			t.Fatalf("GET restarted %v after the start of all members: %d %q %v (X-TTL %q); want the key with its 4 s TTL",
				time.Since(started).Round(time.Millisecond), resp.Code, resp.Body, err, resp.Header.Get("X-TTL"))
		}
		w := watchTimed(t, c.Node(2), "/v1/watch/restarted")
		gone := expectExpiry(t, c.Node(3), "/v1/kv/restarted", "v", expiryBounds{notBefore: started.Add(4 * time.Second)})
		w.expectExpiredEvent(t, "restarted", rev, started.Add(4*time.Second))
		t.Logf("members started at %s, %v leads; the key was gone %v after the start", started.Format("15:04:05.000"), leader, gone.Sub(started).Round(time.Millisecond))
	})
}
