package e2e

// Cross-process tests of conditional writes (issue #13): If-Match and
// If-None-Match checked when the command is applied (412), 304 on GET, 400
// for malformed conditions.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// ---------------------------------------------------------------------------

// conditionalPut sends PUT path with val and the condition headers h, and
// returns the status and the answer's ETag revision (0 if none).
func conditionalPut(n *tc.Node, path, val string, h http.Header) (int, uint64, error) {
	resp, err := n.DoRequest(http.MethodPut, path, val, h)
	if err != nil {
		return 0, 0, err
	}
	etag, _, err := tc.ETag(resp.Header)
	if err != nil {
		return resp.Code, 0, err
	}
	if resp.Code != http.StatusNoContent && resp.Code != http.StatusPreconditionFailed {
		return resp.Code, etag, fmt.Errorf("PUT %s on %v: status %d: %s", path, n, resp.Code, strings.TrimSpace(resp.Body))
	}
	return resp.Code, etag, nil
}

func TestConditionalWritesAreCheckedWhenApplied(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	t.Run("of 20 concurrent If-None-Match: * creators exactly one gets 204", func(t *testing.T) {
		const creators = 20
		type result struct {
			code int
			etag uint64
			err  error
		}
		results := make([]result, creators)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range creators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				n := c.Nodes[i%len(c.Nodes)]
				code, etag, err := conditionalPut(n, "/v1/kv/once", fmt.Sprintf("creator-%d", i), hdr("If-None-Match", "*"))
				results[i] = result{code, etag, err}
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("creator %d: %v", i, r.err)
			}
			if r.code == http.StatusNoContent {
				if winner >= 0 {
					t.Fatalf("creators %d and %d both got 204", winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("no creator got 204: %+v", results)
		}
		// The 412s carry the winner's revision, the only one the key had.
		for i, r := range results {
			if i != winner && r.etag != results[winner].etag {
				t.Errorf("creator %d: 412 with ETag %d, want the winner's %d", i, r.etag, results[winner].etag)
			}
		}
		convergedStatuses(t, c.Nodes...)
		for _, n := range c.Nodes {
			k, err := n.Revs("/v1/kv/once?consistency=serializable")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.KeyRevs{Code: 200, Value: fmt.Sprintf("creator-%d", winner), ModRevision: results[winner].etag,
				CreateRevision: results[winner].etag, Version: 1, Revision: k.Revision}
			if k != want {
				t.Fatalf("%v: %v, want %v", n, k, want)
			}
		}
		t.Logf("creator %d won, at revision %d", winner, results[winner].etag)
	})

	t.Run("8 clients adding 1 fifty times through GET and If-Match retries end at exactly 400", func(t *testing.T) {
		const clients, adds = 8, 50
		resp := expectPutAny(t, n1, "/v1/kv/counter", "0")
		base, _, _ := tc.ETag(resp.Header)
		var (
			mu        sync.Mutex
			tags      = map[uint64]int{} // the revision of each successful add -> client
			conflicts int
			wg        sync.WaitGroup
		)
		started := time.Now()
		for cl := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := c.Nodes[cl%len(c.Nodes)]
				for done := 0; done < adds; {
					k, err := n.Revs("/v1/kv/counter")
					if err != nil || k.Code != http.StatusOK {
						t.Errorf("client %d: GET counter: %v %v", cl, k, err)
						return
					}
					v, err := strconv.Atoi(k.Value)
					if err != nil {
						t.Errorf("client %d: counter value %q", cl, k.Value)
						return
					}
					code, etag, err := conditionalPut(n, "/v1/kv/counter", strconv.Itoa(v+1), hdr("If-Match", tag(k.ModRevision)))
					if err != nil {
						t.Errorf("client %d: %v", cl, err)
						return
					}
					mu.Lock()
					switch {
					case code == http.StatusNoContent:
						done++
						if other, dup := tags[etag]; dup {
							t.Errorf("clients %d and %d both added at revision %d", other, cl, etag)
						}
						tags[etag] = cl
					case etag == k.ModRevision:
						t.Errorf("client %d: 412 with ETag %d, the revision it asked for", cl, etag)
					default:
						conflicts++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		k, err := n2.Revs("/v1/kv/counter")
		if err != nil {
			t.Fatal(err)
		}
		// One write made the key, each of the 400 adds one version, and the
		// conflicts none: the store moved by exactly 400 revisions.
		want := tc.KeyRevs{Code: 200, Value: strconv.Itoa(clients * adds), ModRevision: base + clients*adds,
			CreateRevision: base, Version: 1 + clients*adds, Revision: base + clients*adds}
		if k != want {
			t.Fatalf("counter: %v, want %v", k, want)
		}
		for r := base + 1; r <= base+clients*adds; r++ {
			if _, ok := tags[r]; !ok {
				t.Fatalf("no add answered revision %d", r)
			}
		}
		t.Logf("%d adds by %d clients in %v, %d conflicts (412) retried", clients*adds, clients, time.Since(started).Round(time.Millisecond), conflicts)
	})

	t.Run("If-Match: * needs the key to exist", func(t *testing.T) {
		code, etag, err := conditionalPut(n2, "/v1/kv/star", "1", hdr("If-Match", "*"))
		if err != nil || code != http.StatusPreconditionFailed || etag != 0 {
			t.Fatalf("PUT If-Match: * on a missing key: %d ETag %d %v, want 412 without ETag", code, etag, err)
		}
		expectPutAny(t, n2, "/v1/kv/star", "1")
		code, _, err = conditionalPut(n3, "/v1/kv/star", "2", hdr("If-Match", "*"))
		if err != nil || code != http.StatusNoContent {
			t.Fatalf("PUT If-Match: * on an existing key: %d %v, want 204", code, err)
		}
		resp, err := n1.DoRequest(http.MethodDelete, "/v1/kv/star", "", hdr("If-Match", "*"))
		expectStatus(t, "DELETE If-Match: * of an existing key", resp.Code, resp.Body, err, http.StatusNoContent)
		resp, err = n1.DoRequest(http.MethodDelete, "/v1/kv/star", "", hdr("If-Match", "*"))
		expectStatus(t, "DELETE If-Match: * of a missing key", resp.Code, resp.Body, err, http.StatusPreconditionFailed)
	})

	t.Run("a failed condition answers 412 with the current ETag, JSON under /v1 and one line of text at the root", func(t *testing.T) {
		cur, _, _ := tc.ETag(expectPutAny(t, n1, "/v1/kv/cas", "first").Header)
		stale := tag(cur - 1)
		check := func(what string, resp tc.Response, err error, wantMod uint64, jsonBody bool) {
			t.Helper()
			expectStatus(t, what, resp.Code, resp.Body, err, http.StatusPreconditionFailed)
			etag, ok, err := tc.ETag(resp.Header)
			if err != nil || ok != (wantMod != 0) || etag != wantMod {
				t.Errorf("%s: ETag %q (%v), want %d (none if 0)", what, resp.Header.Get("ETag"), err, wantMod)
			}
			if _, err := tc.HeaderUint(resp.Header, "X-Revision"); err != nil {
				t.Errorf("%s: %v", what, err)
			}
			if jsonBody {
				var body map[string]any
				if err := json.Unmarshal([]byte(resp.Body), &body); err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Errorf("%s: body %q (Content-Type %q), want JSON", what, resp.Body, resp.Header.Get("Content-Type"))
					return
				}
				msg, _ := body["error"].(string)
				mod, _ := body["modRevision"].(float64)
				if len(body) != 2 || msg == "" || mod != float64(wantMod) {
					t.Errorf(`%s: body %s, want {"error": "...", "modRevision": %d}`, what, resp.Body, wantMod)
				}
				return
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || strings.Count(resp.Body, "\n") != 1 ||
				!strings.HasSuffix(resp.Body, "\n") || len(resp.Body) < 5 {
				t.Errorf("%s: body %q (Content-Type %q), want one line of plain text", what, resp.Body, resp.Header.Get("Content-Type"))
			}
		}
		resp, err := n2.DoRequest(http.MethodPut, "/v1/kv/cas", "second", hdr("If-Match", stale))
		check("PUT /v1/kv/cas If-Match: stale", resp, err, cur, true)
		resp, err = n3.DoRequest(http.MethodPut, "/cas", "second", hdr("If-Match", stale))
		check("PUT /cas If-Match: stale", resp, err, cur, false)
		resp, err = n3.DoRequest(http.MethodPut, "/cas", "second", hdr("If-None-Match", "*"))
		check("PUT /cas If-None-Match: * of an existing key", resp, err, cur, false)
		resp, err = n1.DoRequest(http.MethodDelete, "/v1/kv/cas", "", hdr("If-Match", stale))
		check("DELETE /v1/kv/cas If-Match: stale", resp, err, cur, true)
		resp, err = n1.DoRequest(http.MethodPut, "/v1/kv/cas-absent", "x", hdr("If-Match", tag(cur)))
		check("PUT /v1/kv/cas-absent If-Match", resp, err, 0, true)
		resp, err = n1.DoRequest(http.MethodPut, "/cas-absent", "x", hdr("If-Match", tag(cur)))
		check("PUT /cas-absent If-Match", resp, err, 0, false)
		if k, err := n2.Revs("/v1/kv/cas"); err != nil || k.Value != "first" || k.ModRevision != cur {
			t.Fatalf("after the failed conditions: %v %v, want first at %d", k, err, cur)
		}

		// With the current tag the write and then the delete go through.
		code, next, err := conditionalPut(n2, "/cas", "second", hdr("If-Match", tag(cur)))
		if err != nil || code != http.StatusNoContent || next <= cur {
			t.Fatalf("PUT /cas If-Match: current: %d ETag %d %v, want 204 and a newer ETag than %d", code, next, err, cur)
		}
		resp, err = n3.DoRequest(http.MethodDelete, "/v1/kv/cas", "", hdr("If-Match", tag(next)))
		expectStatus(t, "DELETE If-Match: current", resp.Code, resp.Body, err, http.StatusNoContent)
		if k, err := n1.Revs("/v1/kv/cas"); err != nil || k.Code != http.StatusNotFound {
			t.Fatalf("after the conditional delete: %v %v, want 404", k, err)
		}
	})

	t.Run("GET with If-None-Match of the current revision answers 304", func(t *testing.T) {
		cur, _, _ := tc.ETag(expectPutAny(t, n1, "/v1/kv/cached", "v1").Header)
		for _, path := range []string{"/v1/kv/cached", "/cached", "/v1/kv/cached?consistency=serializable"} {
			for _, h := range []http.Header{hdr("If-None-Match", tag(cur)), hdr("If-None-Match", "*")} {
				n := n1 // serializable: the member that applied the write
				if !strings.Contains(path, "serializable") {
					n = n3
				}
				resp, err := n.DoRequest(http.MethodGet, path, "", h)
				expectStatus(t, fmt.Sprintf("GET %s %v", path, h), resp.Code, resp.Body, err, http.StatusNotModified)
				rev, err := tc.HeaderUint(resp.Header, "X-Revision")
				if resp.Body != "" || resp.Header.Get("ETag") != tag(cur) || err != nil || rev < cur {
					t.Errorf("GET %s %v: 304 with body %q, ETag %q, X-Revision %d (%v); want no body, ETag %s and X-Revision",
						path, h, resp.Body, resp.Header.Get("ETag"), rev, err, tag(cur))
				}
			}
		}
		resp, err := n2.DoRequest(http.MethodGet, "/v1/kv/cached", "", hdr("If-None-Match", tag(cur-1)))
		if err != nil || resp.Code != http.StatusOK || resp.Body != "v1" {
			t.Fatalf("GET with a stale If-None-Match: %d %q %v, want 200 v1", resp.Code, resp.Body, err)
		}
		resp, err = n2.DoRequest(http.MethodGet, "/v1/kv/not-cached", "", hdr("If-None-Match", "*"))
		expectStatus(t, "GET If-None-Match: * of a missing key", resp.Code, resp.Body, err, http.StatusNotFound)
		// Once the key changes, the old tag gets the new value.
		expectPutAny(t, n2, "/cached", "v2")
		resp, err = n3.DoRequest(http.MethodGet, "/cached", "", hdr("If-None-Match", tag(cur)))
		if err != nil || resp.Code != http.StatusOK || resp.Body != "v2" {
			t.Fatalf("GET with the tag of before the write: %d %q %v, want 200 v2", resp.Code, resp.Body, err)
		}
	})

	t.Run("a malformed condition header answers 400 and proposes nothing", func(t *testing.T) {
		cur, _, _ := tc.ETag(expectPutAny(t, n1, "/v1/kv/strict", "kept").Header)
		leader, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
		var before tc.Status
		for _, st := range sts {
			if st.ID == uint64(leader.ID) {
				before = st
			}
		}
		rev0, err := leader.Revision()
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			method, path string
			h            http.Header
		}{
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", strconv.FormatUint(cur, 10))}, // not quoted
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", "W/"+tag(cur))},               // weak
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `"1", "2"`)},                  // a list
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", tag(cur)+","+tag(cur))},
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", tag(cur), "If-Match", tag(cur))}, // a list in two lines
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `*, "1"`)},
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `""`)},
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `"abc"`)},
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `"-1"`)},
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", `"18446744073709551616"`)}, // 2^64
			{http.MethodPut, "/v1/kv/strict", hdr("If-Match", tag(cur), "If-None-Match", "*")},
			{http.MethodPut, "/v1/kv/strict", hdr("If-None-Match", tag(cur))}, // PUT takes If-None-Match: * only
			{http.MethodPut, "/v1/kv/strict", hdr("If-None-Match", "W/"+tag(cur))},
			{http.MethodDelete, "/v1/kv/strict", hdr("If-None-Match", "*")},
			{http.MethodDelete, "/v1/kv/strict", hdr("If-Match", strconv.FormatUint(cur, 10))},
			{http.MethodDelete, "/v1/kv/strict", hdr("If-Match", `"1", "2"`)},
			{http.MethodPut, "/strict", hdr("If-Match", strconv.FormatUint(cur, 10))},
			{http.MethodPut, "/strict", hdr("If-Match", tag(cur), "If-None-Match", "*")},
		}
		for _, cs := range cases {
			for _, n := range []*tc.Node{leader, c.Except(leader)[0]} {
				what := fmt.Sprintf("%s %s %v on %v", cs.method, cs.path, cs.h, n)
				resp, err := n.DoRequest(cs.method, cs.path, "changed", cs.h)
				expectStatus(t, what, resp.Code, resp.Body, err, http.StatusBadRequest)
				isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
				if isJSON != strings.HasPrefix(cs.path, "/v1/") {
					t.Errorf("%s: 400 with Content-Type %q: %q", what, resp.Header.Get("Content-Type"), resp.Body)
				}
			}
		}
		// Nothing reached the log: the next write is the leader's very next
		// entry and revision, and the key was never touched.
		expectPut(t, n2, "/v1/kv/after-malformed", "1", nil, rev0+1)
		if k, err := n3.Revs("/v1/kv/strict"); err != nil || k.Value != "kept" || k.ModRevision != cur || k.Version != 1 {
			t.Fatalf("after the malformed conditions: %v %v, want kept at %d, version 1", k, err, cur)
		}
		after, err := leader.Status()
		if err != nil {
			t.Fatal(err)
		}
		if after.Term != before.Term {
			t.Logf("the term changed (%d to %d); not comparing commit indexes", before.Term, after.Term)
		} else if after.Commit != before.Commit+1 {
			t.Fatalf("the leader's commit index went from %d to %d over the malformed requests and one write, want +1", before.Commit, after.Commit)
		}
	})
}

// expectPutAny sends PUT path with val to n, requires 204 with an ETag and
// the same X-Revision, and returns the answer.
func expectPutAny(t *testing.T, n *tc.Node, path, val string) tc.Response {
	t.Helper()
	resp, err := n.DoRequest(http.MethodPut, path, val, nil)
	expectStatus(t, fmt.Sprintf("PUT %s on %v", path, n), resp.Code, resp.Body, err, http.StatusNoContent)
	etag, ok, err := tc.ETag(resp.Header)
	rev, err2 := tc.HeaderUint(resp.Header, "X-Revision")
	if err != nil || err2 != nil || !ok || etag != rev || etag == 0 {
		t.Fatalf("PUT %s on %v: ETag %q X-Revision %q, want the same revision in both", path, n, resp.Header.Get("ETag"), resp.Header.Get("X-Revision"))
	}
	return resp
}
