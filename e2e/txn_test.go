package e2e

// Cross-process tests of transactions (issue #14, POST /v1/txn): compares
// of every kind, the branch that ran, every write under one revision in the
// order given, gets that see the transaction's own writes, a put with a ttl,
// transactions through a follower and concurrent ones, and every request the
// contract refuses (400, 413) with nothing proposed.

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

func TestTransactionsApplyOneBranchAtomicallyUnderOneRevision(t *testing.T) {
	c := tc.StartCluster(t, 3)
	leader, _ := stableLeader(t, c)
	follower := c.Except(leader)[0]

	t.Run("the contract's example: every compare holds, the success branch runs", func(t *testing.T) {
		for _, n := range []*tc.Node{leader, follower} {
			p := fmt.Sprintf("ex%d/", n.ID)
			revA := expectPutAnyRev(t, leader, p+"a", "0")
			revC := expectPutAnyRev(t, leader, p+"c", "x")
			revD := expectPutAnyRev(t, leader, p+"d", "d")
			expectPutAnyRev(t, leader, p+"e", "e1")
			expectPutAnyRev(t, leader, p+"e", "e2")
			rev0 := expectPutAnyRev(t, leader, p+"b", "gone")
			expectDelete(t, leader, p+"b", rev0+1)
			caughtUp(t, n)
			req := tc.TxnRequest{
				Compare: []tc.TxnCompare{tc.ModRev(p+"a", revA), tc.Exists(p+"b", false), tc.Value(p+"c", "x"), tc.CreateRev(p+"d", revD), tc.Version(p+"e", 2)},
				// The contract's example says 10s; 10m keeps the key from expiring
				// (and moving the revision) during the subtests that follow.
				Success: []tc.TxnOp{tc.TxnPut(p+"a", "1", "10m"), tc.TxnDelete(p + "b"), tc.TxnGet(p + "c")},
				Failure: []tc.TxnOp{tc.TxnGet(p + "a")},
			}
			r := rev0 + 2
			expectTxn(t, n, req, true, r, resPut(p+"a", r, 2), resDel(p+"b", false), resGet(p+"c", "x", revC, revC, 1))
			for _, m := range c.Nodes {
				resp, err := m.DoRequest(http.MethodGet, "/v1/kv/"+p+"a", "", nil)
				k, err2 := tc.RevsOf(resp)
				ttl, _, has, err3 := tc.TTLOf(resp.Header)
				want := tc.KeyRevs{Code: 200, Value: "1", ModRevision: r, CreateRevision: revA, Version: 2, Revision: r}
				if err != nil || err2 != nil || err3 != nil || k != want || !has || ttl != 10*time.Minute {
					t.Fatalf("GET %sa on %v after the transaction: %v (%v %v %v), X-TTL %q; want %v with X-TTL 10m", p, m, k, err, err2, err3, resp.Header.Get("X-TTL"), want)
				}
			}
			// The same request again: a's modRevision moved, so the failure
			// branch runs, and changes nothing.
			got := resGet(p+"a", "1", revA, r, 2)
			got.Get.TTL = (10 * time.Minute).String() // the server's extension: a get tells the key's ttl
			expectTxn(t, n, req, false, r, got)
			if rev, err := n.Revision(); err != nil || rev != r {
				t.Fatalf("after a transaction that changed nothing: revision %d (%v), want %d", rev, err, r)
			}
		}
	})

	t.Run("its writes share one revision and a watch sees them under it in the order given", func(t *testing.T) {
		expectPutAny(t, leader, "/v1/kv/one/c", "c")
		expectPutAny(t, leader, "/v1/kv/one/b", "old")
		w := watchTimed(t, follower, "/v1/watch/?prefix=one/")
		rev0, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		r := rev0 + 1
		expectTxn(t, follower, tc.TxnRequest{Success: []tc.TxnOp{
			tc.TxnPut("one/d", "d", ""), tc.TxnPut("one/b", "b", ""), tc.TxnDelete("one/c"), tc.TxnDelete("one/missing"), tc.TxnPut("one/a", "a", ""),
		}}, true, r, resPut("one/d", r, 1), resPut("one/b", r, 2), resDel("one/c", true), resDel("one/missing", false), resPut("one/a", r, 1))
		for i, want := range []change{{"put", "one/d", "d", r}, {"put", "one/b", "b", r}, {"delete", "one/c", "", r}, {"put", "one/a", "a", r}} {
			ev := w.next(t, watchTimeout)
			if ev.ID != want.rev || ev.Revision != want.rev || ev.Type != want.typ || ev.Key != want.key || ev.Value != want.val {
				t.Fatalf("event %d: %d %s %q=%q (revision %d), want %v", i+1, ev.ID, ev.Type, ev.Key, ev.Value, ev.Revision, want)
			}
			if ev.Type == "delete" && strings.Contains(ev.Data, "expired") {
				t.Fatalf("the transaction's delete says %s: \"expired\" must be absent for deletes that are not expiries", ev.Data)
			}
		}
		for _, key := range []string{"one/a", "one/b", "one/d"} {
			if k := revOf(t, leader, key); k.ModRevision != r || k.Revision != r {
				t.Fatalf("%s: %v, want modRevision and store revision %d", key, k, r)
			}
		}
		for _, n := range c.Nodes {
			if rev, err := n.Revision(); err != nil || rev != r {
				t.Fatalf("%v: revision %d (%v), want %d: the transaction must move it by one", n, rev, err, r)
			}
		}
		// The next write takes the next revision: nothing else was spent.
		w2 := putChange(t, leader, "one/after", "x")
		if w2.rev != r+1 {
			t.Fatalf("the write after the transaction got revision %d, want %d", w2.rev, r+1)
		}
		if ev := w.next(t, watchTimeout); ev.ID != r+1 || ev.Key != "one/after" {
			t.Fatalf("after the transaction's events: %d %s %q, want the put of one/after at %d", ev.ID, ev.Type, ev.Key, r+1)
		}
	})

	t.Run("a failed compare runs the failure branch and nothing of the success one", func(t *testing.T) {
		rev := expectPutAnyRev(t, leader, "fail/a", "a")
		r := rev + 1
		expectTxn(t, follower, tc.TxnRequest{
			Compare: []tc.TxnCompare{tc.Exists("fail/a", true), tc.ModRev("fail/a", rev+100)},
			Success: []tc.TxnOp{tc.TxnPut("fail/success", "s", ""), tc.TxnDelete("fail/a")},
			Failure: []tc.TxnOp{tc.TxnPut("fail/failure", "f", ""), tc.TxnGet("fail/a"), tc.TxnGet("fail/success")},
		}, false, r, resPut("fail/failure", r, 1), resGet("fail/a", "a", rev, rev, 1), resMissing("fail/success"))
		if k := revOf(t, leader, "fail/success"); k.Code != http.StatusNotFound {
			t.Fatalf("fail/success after the failed compare: %v, want 404", k)
		}
		if k := revOf(t, leader, "fail/a"); k.Code != http.StatusOK || k.ModRevision != rev {
			t.Fatalf("fail/a after the failed compare: %v, want it untouched at %d", k, rev)
		}
		// No failure branch: nothing runs, nothing changes.
		expectTxn(t, leader, tc.TxnRequest{
			Compare: []tc.TxnCompare{tc.Exists("fail/a", false)},
			Success: []tc.TxnOp{tc.TxnDelete("fail/a")},
		}, false, r)
	})

	t.Run("compares of each kind, on an existing key and on a missing one", func(t *testing.T) {
		create := expectPutAnyRev(t, leader, "cmp/k", "v1")
		mod := expectPutAnyRev(t, leader, "cmp/k", "v2")
		rev, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range []struct {
			cmp  tc.TxnCompare
			want bool
		}{
			{tc.ModRev("cmp/k", mod), true},
			{tc.ModRev("cmp/k", create), false},
			{tc.ModRev("cmp/k", 0), false},
			{tc.CreateRev("cmp/k", create), true},
			{tc.CreateRev("cmp/k", mod), false},
			{tc.Version("cmp/k", 2), true},
			{tc.Version("cmp/k", 1), false},
			{tc.Version("cmp/k", 0), false},
			{tc.Value("cmp/k", "v2"), true},
			{tc.Value("cmp/k", "v1"), false},
			{tc.Value("cmp/k", ""), false},
			{tc.Exists("cmp/k", true), true},
			{tc.Exists("cmp/k", false), false},
			// A missing key: revisions and version 0, no value, not there.
			{tc.ModRev("cmp/missing", 0), true},
			{tc.ModRev("cmp/missing", mod), false},
			{tc.CreateRev("cmp/missing", 0), true},
			{tc.CreateRev("cmp/missing", 1), false},
			{tc.Version("cmp/missing", 0), true},
			{tc.Version("cmp/missing", 1), false},
			{tc.Value("cmp/missing", ""), false},
			{tc.Value("cmp/missing", "v2"), false},
			{tc.Exists("cmp/missing", false), true},
			{tc.Exists("cmp/missing", true), false},
		} {
			b, _ := json.Marshal(cs.cmp)
			t.Run(string(b), func(t *testing.T) {
				n := c.Nodes[len(b)%len(c.Nodes)]
				req := tc.TxnRequest{Compare: []tc.TxnCompare{cs.cmp}, Success: []tc.TxnOp{tc.TxnGet("cmp/k")}, Failure: []tc.TxnOp{tc.TxnGet("cmp/missing")}}
				if cs.want {
					expectTxn(t, n, req, true, rev, resGet("cmp/k", "v2", create, mod, 2))
				} else {
					expectTxn(t, n, req, false, rev, resMissing("cmp/missing"))
				}
			})
		}
		// All compares must hold: one that does not among those that do.
		expectTxn(t, follower, tc.TxnRequest{
			Compare: []tc.TxnCompare{tc.ModRev("cmp/k", mod), tc.Exists("cmp/missing", false), tc.Value("cmp/k", "v1"), tc.Version("cmp/k", 2)},
			Success: []tc.TxnOp{tc.TxnGet("cmp/k")},
		}, false, rev)
	})

	t.Run("a get sees the writes before it in the same transaction", func(t *testing.T) {
		old := expectPutAnyRev(t, leader, "see/h", "h")
		// A value that is not UTF-8 (a transaction cannot write one: its
		// strings are JSON) comes back in base64, key and value.
		bin := expectPutAnyRev(t, leader, "see/bin", "\xff\x00")
		r := bin + 1
		expectTxn(t, follower, tc.TxnRequest{Success: []tc.TxnOp{
			tc.TxnGet("see/g"), tc.TxnPut("see/g", "1", ""), tc.TxnGet("see/g"),
			tc.TxnGet("see/h"), tc.TxnDelete("see/h"), tc.TxnGet("see/h"),
			tc.TxnGet("see/bin"),
		}}, true, r,
			resMissing("see/g"), resPut("see/g", r, 1), resGet("see/g", "1", r, r, 1),
			resGet("see/h", "h", old, old, 1), resDel("see/h", true), resMissing("see/h"),
			tc.TxnResult{Get: &tc.TxnGetResult{Key: "see/bin", Found: true, Value: "\xff\x00", CreateRevision: bin, ModRevision: bin, Version: 1, Encoding: "base64"}})
	})

	t.Run("a put with a ttl in a transaction expires", func(t *testing.T) {
		w := watchTimed(t, follower, "/v1/watch/txn-ttl")
		rev, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		tr := expectTxn(t, follower, tc.TxnRequest{Success: []tc.TxnOp{tc.TxnPut("txn-ttl", "v", "1s")}}, true, rev+1, resPut("txn-ttl", rev+1, 1))
		ack := time.Now()
		resp, err := leader.DoRequest(http.MethodGet, "/v1/kv/txn-ttl", "", nil)
		if ttl, _, has, err2 := tc.TTLOf(resp.Header); err != nil || err2 != nil || resp.Code != http.StatusOK || !has || ttl != time.Second {
			t.Fatalf("GET txn-ttl: %d %v %v, X-TTL %q; want 200 with X-TTL 1s", resp.Code, err, err2, resp.Header.Get("X-TTL"))
		}
		expectExpiry(t, leader, "/v1/kv/txn-ttl", "v", expiryBounds{ack.Add(time.Second - 50*time.Millisecond), ack.Add(2 * time.Second)})
		if ev := w.next(t, watchTimeout); ev.Type != "put" || ev.ID != tr.Revision {
			t.Fatalf("watch: %s at %d, want the put at %d", ev.Type, ev.ID, tr.Revision)
		}
		w.expectExpiredEvent(t, "txn-ttl", tr.Revision, ack.Add(time.Second-50*time.Millisecond))
	})

	t.Run("of 12 concurrent create-if-missing transactions through every member exactly one succeeds", func(t *testing.T) {
		const clients = 12
		results := make([]tc.TxnResponse, clients)
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], _, errs[i] = c.Nodes[i%len(c.Nodes)].Txn(tc.TxnRequest{
					Compare: []tc.TxnCompare{tc.Exists("race/lock", false)},
					Success: []tc.TxnOp{tc.TxnPut("race/lock", fmt.Sprint(i), ""), tc.TxnPut(fmt.Sprintf("race/won-%d", i), "1", "")},
					Failure: []tc.TxnOp{tc.TxnGet("race/lock")},
				})
			}()
		}
		wg.Wait()
		winner := -1
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("client %d: %v", i, errs[i])
			}
			if r.Succeeded {
				if winner >= 0 {
					t.Fatalf("clients %d and %d both succeeded", winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("no client succeeded")
		}
		wantRev := results[winner].Revision
		for i, r := range results {
			if i == winner {
				continue
			}
			if len(r.Results) != 1 || r.Results[0].Get == nil || r.Results[0].Get.Value != fmt.Sprint(winner) || r.Results[0].Get.ModRevision != wantRev {
				t.Errorf("client %d: failure results %v, want the winner's value %d at %d", i, r.Results, winner, wantRev)
			}
		}
		items, _, err := follower.ListRevs("race/", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 || items[1].Key != fmt.Sprintf("race/won-%d", winner) || items[1].ModRevision != wantRev || items[0].ModRevision != wantRev {
			t.Fatalf("listing race/: %+v, want race/lock and race/won-%d at %d", items, winner, wantRev)
		}
	})

	t.Run("every malformed transaction answers 400 and proposes nothing; too large a one 413", func(t *testing.T) {
		expectPutAny(t, leader, "/v1/kv/bad/a", "kept")
		leader, term := stableLeader(t, c)
		follower := c.Except(leader)[0]
		before, err := leader.Status()
		if err != nil {
			t.Fatal(err)
		}
		rev0, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		get := `{"get": {"key": "bad/a"}}`
		put := func(key string) string { return fmt.Sprintf(`{"put": {"key": %q, "value": "changed"}}`, key) }
		del := func(key string) string { return fmt.Sprintf(`{"delete": {"key": %q}}`, key) }
		ops := func(n int, op string) string { return strings.TrimSuffix(strings.Repeat(op+",", n), ",") }
		long := strings.Repeat("k", 4097)
		cmps := func(n int) string {
			return strings.TrimSuffix(strings.Repeat(`{"key": "bad/a", "exists": true},`, n), ",")
		}
		bad := []struct{ why, body string }{
			{"empty body", ``},
			{"not JSON", `not json`},
			{"JSON null", `null`},
			{"an array", `[]`},
			{"truncated", `{"success": [` + get},
			{"anything after the object", `{"success": [` + get + `]} {}`},
			{"an unknown field", `{"success": [` + get + `], "else": []}`},
			{"a field given twice", `{"success": [` + get + `], "success": [` + get + `]}`},
			{"an unknown field in a compare", `{"compare": [{"key": "bad/a", "exists": true, "lease": 1}], "success": [` + get + `]}`},
			{"an unknown field in an operation", `{"success": [{"get": {"key": "bad/a", "rev": 1}}]}`},
			{"an unknown kind of operation", `{"success": [{"range": {"key": "bad/a"}}]}`},
			{"a compare without a field", `{"compare": [{"key": "bad/a"}], "success": [` + get + `]}`},
			{"a compare with two fields", `{"compare": [{"key": "bad/a", "modRevision": 1, "version": 1}], "success": [` + get + `]}`},
			{"a compare with value and exists", `{"compare": [{"key": "bad/a", "value": "kept", "exists": true}], "success": [` + get + `]}`},
			{"a compare without a key", `{"compare": [{"exists": true}], "success": [` + get + `]}`},
			{"a compare with a negative revision", `{"compare": [{"key": "bad/a", "modRevision": -1}], "success": [` + get + `]}`},
			{"a compare with a fractional version", `{"compare": [{"key": "bad/a", "version": 1.5}], "success": [` + get + `]}`},
			{"a compare with a revision as a string", `{"compare": [{"key": "bad/a", "createRevision": "1"}], "success": [` + get + `]}`},
			{"a compare with exists not a bool", `{"compare": [{"key": "bad/a", "exists": 1}], "success": [` + get + `]}`},
			{"a compare with a key over 4096 bytes", `{"compare": [{"key": "` + long + `", "exists": true}], "success": [` + get + `]}`},
			{"an operation without a kind", `{"success": [{}]}`},
			{"an operation with two kinds", `{"success": [{"get": {"key": "bad/a"}, "delete": {"key": "bad/a"}}]}`},
			{"a put with an empty key", `{"success": [` + put("") + `]}`},
			{"a put without a key", `{"success": [{"put": {"value": "changed"}}]}`},
			{"a get with an empty key", `{"success": [{"get": {"key": ""}}]}`},
			{"a delete with a key over 4096 bytes", `{"success": [` + del(long) + `]}`},
			{"a put with a key over 4096 bytes", `{"success": [` + put(long) + `]}`},
			{"a failure get with a key over 4096 bytes", `{"success": [` + get + `], "failure": [{"get": {"key": "` + long + `"}}]}`},
			{"a put with ttl 500ms", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": "500ms"}}]}`},
			{"a put with ttl 25h", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": "25h"}}]}`},
			{"a put with ttl abc", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": "abc"}}]}`},
			{"a put with ttl -1s", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": "-1s"}}]}`},
			{"a put with ttl 0s", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": "0s"}}]}`},
			{"a put with a number as ttl", `{"success": [{"put": {"key": "bad/a", "value": "changed", "ttl": 10}}]}`},
			{"129 operations", `{"success": [` + ops(129, get) + `]}`},
			{"64 compares and 65 operations", `{"compare": [` + cmps(64) + `], "success": [` + ops(65, get) + `]}`},
			{"1 compare, 64 and 64 operations", `{"compare": [` + cmps(1) + `], "success": [` + ops(64, get) + `], "failure": [` + ops(64, get) + `]}`},
			{"129 compares", `{"compare": [` + cmps(129) + `], "success": [` + get + `]}`},
			{"no operation at all", `{}`},
			{"compares and no operation", `{"compare": [` + cmps(1) + `]}`},
			{"empty branches", `{"compare": [` + cmps(1) + `], "success": [], "failure": []}`},
			{"a key put twice", `{"success": [` + put("bad/a") + `, ` + put("bad/a") + `]}`},
			{"a key put and deleted", `{"success": [` + put("bad/b") + `, ` + get + `, ` + del("bad/b") + `]}`},
			{"a key deleted twice", `{"success": [` + del("bad/a") + `, ` + del("bad/a") + `]}`},
			{"a key written twice in the failure branch", `{"success": [` + get + `], "failure": [` + del("bad/a") + `, ` + put("bad/a") + `]}`},
		}
		for i, b := range bad {
			n := []*tc.Node{leader, follower}[i%2]
			resp, err := n.PostTxn(b.body)
			expectStatus(t, fmt.Sprintf("%s: POST /v1/txn %s on %v", b.why, tc.Shorten(b.body, 80), n), resp.Code, resp.Body, err, http.StatusBadRequest)
			var e map[string]any
			err = json.Unmarshal([]byte(resp.Body), &e)
			msg, _ := e["error"].(string)
			if err != nil || len(e) != 1 || msg == "" || strings.Count(strings.TrimSpace(resp.Body), "\n") != 0 {
				t.Errorf("%s: 400 with body %q, want one line {\"error\": \"why\"}", b.why, resp.Body)
			}
			if strings.Contains(b.why, "ttl") && !strings.Contains(msg, "ttl") {
				t.Errorf("%s: 400 %q, want the ttl's reason", b.why, resp.Body)
			}
		}
		// Larger than the largest single PUT (--max-value-bytes, 1 MiB here,
		// plus one key of 4096 bytes): 413.
		big := strings.Repeat("v", 1<<20)
		tooLarge := []struct{ why, body string }{
			{"a put of a value 16 KiB over --max-value-bytes", fmt.Sprintf(`{"success": [{"put": {"key": "bad/a", "value": "%s%s"}}]}`, big, strings.Repeat("v", 16<<10))},
			{"two puts of 600 KiB", fmt.Sprintf(`{"success": [{"put": {"key": "bad/a", "value": %q}}, {"put": {"key": "bad/b", "value": %q}}]}`, big[:600<<10], big[:600<<10])},
			{"a compare with a 2 MiB value", fmt.Sprintf(`{"compare": [{"key": "bad/a", "value": "%s%s"}], "success": [%s]}`, big, big, get)},
		}
		for i, b := range tooLarge {
			n := []*tc.Node{leader, follower}[i%2]
			resp, err := n.PostTxn(b.body)
			expectStatus(t, fmt.Sprintf("%s: POST /v1/txn on %v", b.why, n), resp.Code, resp.Body, err, http.StatusRequestEntityTooLarge)
		}
		// Nothing reached the log: the store revision did not move, and the
		// next write is the leader's next entry and revision.
		if rev, err := leader.Revision(); err != nil || rev != rev0 {
			t.Fatalf("after the refused transactions the revision is %d (%v), want %d", rev, err, rev0)
		}
		if k := revOf(t, follower, "bad/a"); k.Value != "kept" || k.Version != 1 {
			t.Fatalf("bad/a after the refused transactions: %v, want kept at version 1", k)
		}
		expectPut(t, follower, "/v1/kv/bad/after", "1", nil, rev0+1)
		after, err := leader.Status()
		if err != nil {
			t.Fatal(err)
		}
		if after.Term != term || before.Term != term {
			t.Logf("the term changed (%d to %d); not comparing commit indexes", before.Term, after.Term)
		} else if after.Commit != before.Commit+1 {
			t.Fatalf("the leader's commit index went from %d to %d over the refused transactions and one write, want +1", before.Commit, after.Commit)
		}

		// A value a little over --max-value-bytes, in a transaction within the
		// size of the largest PUT: the contract does not say; tell.
		resp, err := leader.PostTxn(fmt.Sprintf(`{"compare": [{"key": "bad/a", "exists": false}], "success": [{"put": {"key": "bad/a", "value": "%sv"}}]}`, big))
		if err == nil {
			t.Logf("a transaction putting a value of --max-value-bytes + 1 (whose compare fails, so nothing is written) answers %d %s", resp.Code, tc.Shorten(resp.Body, 200))
		}
		// The edges that are allowed.
		r := rev0 + 1
		expectTxn(t, follower, tc.TxnRequest{Success: []tc.TxnOp{tc.TxnPut("bad/max", big, "")}}, true, r+1, resPut("bad/max", r+1, 1))
		r++
		var edge tc.TxnRequest
		for range 64 {
			edge.Compare = append(edge.Compare, tc.Exists("bad/a", true))
		}
		for range 63 {
			edge.Success = append(edge.Success, tc.TxnGet("bad/a"))
		}
		edge.Failure = []tc.TxnOp{tc.TxnGet("bad/a")}
		tr, _, err := leader.Txn(edge)
		if err != nil || !tr.Succeeded || len(tr.Results) != 63 || tr.Revision != r {
			t.Fatalf("128 compares and operations in all: %v, succeeded %v, %d results, revision %d; want 200, true, 63, %d", err, tr.Succeeded, len(tr.Results), tr.Revision, r)
		}
		long4096 := strings.Repeat("k", 4096)
		expectTxn(t, follower, tc.TxnRequest{
			Compare: []tc.TxnCompare{tc.Exists(long4096, false)},
			Success: []tc.TxnOp{tc.TxnPut(long4096, "1", ""), tc.TxnGet(long4096)},
			Failure: []tc.TxnOp{tc.TxnPut(long4096, "2", "")}, // one write per branch
		}, true, r+1, resPut(long4096, r+1, 1), resGet(long4096, "1", r+1, r+1, 1))
	})
}
