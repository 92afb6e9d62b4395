package e2e

// Regression tests for the defects of raftexample v3.7.1, against the real
// binary: stale reads on followers, acknowledged writes lost with the leader,
// requests hanging without a quorum, and the HTTP API's input handling.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// expectRead reads key through n with a linearizable GET until the node
// can answer: a 503 or a connection error (the cluster is electing, the node
// is starting) is retried until tc.Timeout. Any answer that contradicts what
// is expected (present with want, or absent) fails the test at once, since a
// linearizable read must never be stale.
func expectRead(t *testing.T, n *tc.Node, key string, present bool, want string) {
	t.Helper()
	var wrong string
	err := tc.Poll(tc.Timeout, func() error {
		code, body, err := n.Get(key)
		switch {
		case err != nil:
			return fmt.Errorf("GET %s on %v: %v", key, n, err)
		case code == http.StatusServiceUnavailable:
			return fmt.Errorf("GET %s on %v: 503 %s", key, n, strings.TrimSpace(body))
		case present && code == http.StatusOK && body == want, !present && code == http.StatusNotFound:
			return nil
		}
		wrong = fmt.Sprintf("GET %s on %v: status %d, body %q", key, n, code, tc.Shorten(body, 80))
		return nil
	})
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if wrong != "" {
		if present {
			t.Fatalf("%s; want 200 %q", wrong, want)
		}
		t.Fatalf("%s; want 404 (the key must not exist)", wrong)
	}
}

// putUntilAcked PUTs key=val through n until it answers 204. 503s and
// connection errors are retried (a PUT of the same value twice is
// harmless); any other answer fails the test.
func putUntilAcked(t *testing.T, n *tc.Node, key, val string) {
	t.Helper()
	var wrong string
	err := tc.Poll(tc.Timeout, func() error {
		code, body, err := n.Put(key, val)
		switch {
		case err != nil:
			return fmt.Errorf("PUT %s on %v: %v", key, n, err)
		case code == http.StatusServiceUnavailable:
			return fmt.Errorf("PUT %s on %v: 503 %s", key, n, strings.TrimSpace(body))
		case code == http.StatusNoContent:
			return nil
		}
		wrong = fmt.Sprintf("PUT %s on %v: status %d, body %q; want 204 or 503", key, n, code, strings.TrimSpace(body))
		return nil
	})
	if err != nil {
		t.Fatalf("not acknowledged within %v: %v", tc.Timeout, err)
	}
	if wrong != "" {
		t.Fatal(wrong)
	}
}

// ---------------------------------------------------------------------------

func TestReadOnAnotherNodeSeesPrecedingWrite(t *testing.T) {
	c := tc.StartCluster(t, 3) // returns once a PUT succeeded: there is a leader
	const rounds = 500
	const key = "read-your-write"
	start := time.Now()
	for i := 0; i < rounds; i++ {
		// Every node writes in turn and each of the other two reads, so
		// leader-to-follower, follower-to-leader and follower-to-follower
		// all occur. Both APIs, as they share the keyspace.
		a := c.Nodes[i%3]
		b := c.Nodes[(i+1+(i/3)%2)%3]
		val := fmt.Sprintf("value-%d", i)
		path := "/" + key
		if i%2 == 1 {
			path = "/v1/kv/" + key
		}
		code, body, err := a.Do(http.MethodPut, path, val)
		if err != nil || code != http.StatusNoContent {
			t.Fatalf("round %d: PUT %s=%s on %v: status %d %q, err %v; want 204", i, path, val, a, code, strings.TrimSpace(body), err)
		}
		code, body, err = b.Do(http.MethodGet, path, "")
		if err != nil || code != http.StatusOK || body != val {
			t.Fatalf("round %d: GET %s on %v right after PUT %s on %v: status %d %q, err %v; want 200 %q (a stale read)",
				i, path, b, val, a, code, tc.Shorten(body, 80), err, val)
		}
	}
	t.Logf("%d write-then-read-elsewhere rounds in %v", rounds, time.Since(start).Round(time.Millisecond))
}

func TestAcknowledgedWriteSurvivesLeaderKill(t *testing.T) {
	c := tc.StartCluster(t, 3)
	leader, err := c.FindLeader(tc.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	followers := c.Except(leader)
	t.Logf("leader is %v", leader)

	// A write the leader acknowledged just before it died: raftexample
	// v3.7.1 answered before committing and could lose it.
	code, body, err := leader.Put("acked-before-kill", "from the old leader")
	expectStatus(t, "PUT on the leader", code, body, err, http.StatusNoContent)
	leader.Kill()
	for _, f := range followers {
		expectRead(t, f, "acked-before-kill", true, "from the old leader")
	}

	// A write through a follower while (or after) a new leader is elected.
	putUntilAcked(t, followers[0], "acked-after-kill", "through a follower")
	for _, f := range followers {
		expectRead(t, f, "acked-after-kill", true, "through a follower")
	}
	newLeader, err := c.FindLeader(tc.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new leader is %v", newLeader)

	// The old leader comes back from its own WAL and must not serve its
	// stale state to a linearizable read.
	leader.Restart()
	expectRead(t, leader, "acked-after-kill", true, "through a follower")
	expectRead(t, leader, "acked-before-kill", true, "from the old leader")
}

// Without a quorum a write waits for a leader (a leader change costs latency,
// not errors), but no longer than its request timeout, and then says whether
// anything may have been done.
func TestNoQuorumAnswers503WithinTheRequestTimeout(t *testing.T) {
	const requestTimeout = 2 * time.Second
	const limit = requestTimeout + time.Second
	c := tc.StartCluster(t, 3, "--request-timeout", requestTimeout.String())
	before := tc.KVs("before", 3, 20)
	tc.PutMany(t, before, c.Nodes...)
	tc.ExpectValues(t, before, c.Nodes...)

	// The survivor is the leader: the hardest case, as it still believes it
	// leads until CheckQuorum makes it step down.
	survivor, err := c.FindLeader(tc.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	gone := c.Except(survivor)
	for _, n := range gone {
		n.Kill()
	}
	t.Logf("killed %v and %v; %v is alone", gone[0], gone[1], survivor)

	type outagePut struct {
		key, val string
		code     int
		reason   string
	}
	var puts []outagePut
	timed := func(what string, f func() (int, string, error)) (int, string) {
		t.Helper()
		start := time.Now()
		code, body, err := f()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s on %v: %v (after %v)", what, survivor, err, took.Round(time.Millisecond))
		}
		t.Logf("%s: %d %s (%v)", what, code, strings.TrimSpace(body), took.Round(time.Millisecond))
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s on %v without a quorum: status %d %q, want 503", what, survivor, code, strings.TrimSpace(body))
		} else if strings.TrimSpace(body) == "" || strings.Count(strings.TrimSpace(body), "\n") > 0 {
			t.Errorf("%s: 503 body %q, want one line with the reason", what, body)
		}
		if took > limit {
			t.Errorf("%s on %v without a quorum took %v, want an answer within %v", what, survivor, took.Round(time.Millisecond), limit)
		}
		return code, body
	}
	for i := 0; i < 4; i++ {
		p := outagePut{key: fmt.Sprintf("outage-%d", i), val: fmt.Sprintf("written without a quorum %d", i)}
		p.code, p.reason = timed("PUT "+p.key, func() (int, string, error) { return survivor.Put(p.key, p.val) })
		puts = append(puts, p)
		timed("GET "+before[i%len(before)].Key, func() (int, string, error) { return survivor.Get(before[i%len(before)].Key) })
	}

	// A serializable read is local: it still answers, with the old value.
	for _, kv := range before {
		code, body, err := survivor.GetSerializable(kv.Key)
		if err != nil || code != http.StatusOK || body != kv.Val {
			t.Errorf("serializable GET %s on the lone %v: status %d %q, err %v; want 200 %q", kv.Key, survivor, code, body, err, kv.Val)
		}
	}

	// Quorum back: nothing acknowledged is contradicted.
	for _, n := range gone {
		n.Restart()
	}
	for _, n := range c.Nodes {
		for _, kv := range before {
			expectRead(t, n, kv.Key, true, kv.Val)
		}
	}
	for _, p := range puts {
		switch {
		case p.code == http.StatusNoContent:
			// Acknowledged (already reported as an error above): it must be there.
			for _, n := range c.Nodes {
				expectRead(t, n, p.key, true, p.val)
			}
		case strings.HasPrefix(p.reason, notProposed):
			for _, n := range c.Nodes {
				expectRead(t, n, p.key, false, "")
			}
		default:
			// Outcome unknown: either is fine, but all nodes must agree,
			// and a read must not flip back once the value was seen.
			code, body, err := c.Node(1).Get(p.key)
			t.Logf("PUT %s had an unknown outcome (%s); now: %d %q %v", p.key, strings.TrimSpace(p.reason), code, body, err)
			if err == nil && code == http.StatusOK {
				for _, n := range c.Nodes {
					expectRead(t, n, p.key, true, p.val)
				}
			}
		}
	}
}

func TestDeleteThroughV1AndSharedKeyspace(t *testing.T) {
	c := tc.StartCluster(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	do := func(n *tc.Node, method, path, body string, want int) string {
		t.Helper()
		code, resp, err := n.Do(method, path, body)
		expectStatus(t, fmt.Sprintf("%s %s on %v", method, path, n), code, resp, err, want)
		return resp
	}

	do(n1, http.MethodPut, "/shared", "written at the root", http.StatusNoContent)
	if got := do(n2, http.MethodGet, "/v1/kv/shared", "", http.StatusOK); got != "written at the root" {
		t.Fatalf("GET /v1/kv/shared after PUT /shared: %q, want %q", got, "written at the root")
	}
	do(n3, http.MethodPut, "/v1/kv/shared", "written under v1", http.StatusNoContent)
	if got := do(n1, http.MethodGet, "/shared", "", http.StatusOK); got != "written under v1" {
		t.Fatalf("GET /shared after PUT /v1/kv/shared: %q, want %q", got, "written under v1")
	}

	do(n2, http.MethodDelete, "/v1/kv/shared", "", http.StatusNoContent)
	do(n3, http.MethodGet, "/shared", "", http.StatusNotFound)
	do(n1, http.MethodGet, "/v1/kv/shared", "", http.StatusNotFound)
	// Deleting what is not there is no error, so a retried DELETE is harmless.
	do(n1, http.MethodDelete, "/v1/kv/shared", "", http.StatusNoContent)
	do(n2, http.MethodDelete, "/v1/kv/never-written", "", http.StatusNoContent)
	do(n3, http.MethodGet, "/never-written", "", http.StatusNotFound)

	// At the root, DELETE removes members: a key-like path is refused with a
	// pointer to the right endpoint, and the key is left alone.
	do(n1, http.MethodPut, "/notanumber", "still here", http.StatusNoContent)
	body := do(n2, http.MethodDelete, "/notanumber", "", http.StatusBadRequest)
	if !strings.Contains(body, "/v1/kv") {
		t.Errorf("DELETE /notanumber: body %q does not point at /v1/kv", body)
	}
	if strings.Count(strings.TrimRight(body, "\n"), "\n") != 0 {
		t.Errorf("DELETE /notanumber: body %q is not one line", body)
	}
	if got := do(n3, http.MethodGet, "/notanumber", "", http.StatusOK); got != "still here" {
		t.Errorf("GET /notanumber after the refused DELETE: %q, want %q", got, "still here")
	}
}

// listKVs lists through n and decodes the items (listedItem) to raw bytes.
func listKVs(t *testing.T, n *tc.Node, query string) []tc.KV {
	t.Helper()
	resp, err := n.DoRequest(http.MethodGet, "/v1/kv/?"+query, "", nil)
	if err != nil {
		t.Fatalf("GET /v1/kv/?%s on %v: %v", query, n, err)
	}
	if resp.Code != http.StatusOK {
		t.Fatalf("GET /v1/kv/?%s on %v: status %d %s", query, n, resp.Code, strings.TrimSpace(resp.Body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET /v1/kv/?%s: Content-Type %q, want application/json", query, ct)
	}
	var items []listedItem
	dec := json.NewDecoder(strings.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&items); err != nil {
		t.Fatalf("GET /v1/kv/?%s: %v in %q", query, err, resp.Body)
	}
	if items == nil {
		t.Fatalf("GET /v1/kv/?%s: %q is not a JSON array", query, resp.Body)
	}
	kvs := make([]tc.KV, len(items))
	for i, it := range items {
		k, v, err := it.kv()
		if err != nil {
			t.Fatalf("GET /v1/kv/?%s: item %d %+v: %v", query, i, it, err)
		}
		kvs[i] = tc.KV{Key: k, Val: v}
	}
	return kvs
}

func TestListByPrefixIsSortedAndLimited(t *testing.T) {
	c := tc.StartCluster(t, 3)
	binary := "\xff\xfe\x00not utf-8\x80"
	badKey := "p/\xc3\x28" // an invalid two-byte sequence
	kv := func(k, v string) tc.KV { return tc.KV{Key: k, Val: v} }
	written := []tc.KV{
		kv("p/c", "three"), kv("p/a", "one"), kv("p/e", "five"), kv("p/b", "two"),
		kv("p/d", binary), kv(badKey, "valid value, invalid key"),
		kv("q/a", "other prefix"), kv("p", "exactly the prefix without the slash"), kv("o/z", "before"),
	}
	for i, kv := range written {
		c.Nodes[i%3].MustPut(kv.Key, kv.Val)
	}
	want := []tc.KV{}
	for _, kv := range written {
		if strings.HasPrefix(kv.Key, "p/") {
			want = append(want, kv)
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Key < want[j].Key })

	// Listing through a node is linearizable: it sees all of the above.
	expectKVs(t, "prefix p/, no limit", listKVs(t, c.Node(2), "prefix="+url.QueryEscape("p/")), want)
	expectKVs(t, "prefix p/, limit 0", listKVs(t, c.Node(3), "prefix="+url.QueryEscape("p/")+"&limit=0"), want)
	expectKVs(t, "prefix p/, limit 3", listKVs(t, c.Node(1), "prefix="+url.QueryEscape("p/")+"&limit=3"), want[:3])
	expectKVs(t, "prefix p/, limit 100", listKVs(t, c.Node(2), "prefix="+url.QueryEscape("p/")+"&limit=100"), want)
	expectKVs(t, "prefix zzz", listKVs(t, c.Node(1), "prefix=zzz"), []tc.KV{})

	all := listKVs(t, c.Node(3), "")
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Key < all[j].Key }) {
		t.Errorf("listing without prefix is not sorted by key: %q", all)
	}
	if len(all) < len(written) {
		t.Errorf("listing without prefix has %d items, want at least the %d written: %q", len(all), len(written), all)
	}

	// The raw JSON: items that are not UTF-8 are base64 with an encoding.
	resp, err := c.Node(1).DoRequest(http.MethodGet, "/v1/kv/?prefix="+url.QueryEscape("p/"), "", nil)
	if err != nil || resp.Code != http.StatusOK {
		t.Fatalf("GET /v1/kv/?prefix=p/: %v %v", resp.Code, err)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &raw); err != nil {
		t.Fatalf("listing %q: %v", resp.Body, err)
	}
	for _, it := range raw {
		switch it["key"] {
		case base64.StdEncoding.EncodeToString([]byte("p/d")):
			if it["encoding"] != "base64" || it["value"] != base64.StdEncoding.EncodeToString([]byte(binary)) {
				t.Errorf("item with a non-UTF-8 value: %v; want key and value in base64 and \"encoding\":\"base64\"", it)
			}
		case base64.StdEncoding.EncodeToString([]byte(badKey)):
			if it["encoding"] != "base64" || it["value"] != base64.StdEncoding.EncodeToString([]byte("valid value, invalid key")) {
				t.Errorf("item with a non-UTF-8 key: %v; want key and value in base64 and \"encoding\":\"base64\"", it)
			}
		default:
			if _, ok := it["encoding"]; ok {
				t.Errorf("UTF-8 item %v carries an encoding", it)
			}
		}
	}

	for _, bad := range []string{"limit=-1", "limit=abc", "consistency=bogus"} {
		resp, err := c.Node(2).DoRequest(http.MethodGet, "/v1/kv/?prefix=p&"+bad, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != http.StatusBadRequest {
			t.Errorf("GET /v1/kv/?%s: status %d, want 400", bad, resp.Code)
		}
		expectJSONError(t, "GET /v1/kv/?"+bad, resp)
	}
}

// expectJSONError checks a /v1 error: one line of JSON {"error": "..."}.
func expectJSONError(t *testing.T, what string, resp tc.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if strings.Count(strings.TrimRight(resp.Body, "\n"), "\n") != 0 {
		t.Errorf("%s: error body %q is not one line", what, resp.Body)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &e); err != nil {
		t.Errorf("%s: error body %q is not JSON: %v", what, resp.Body, err)
		return
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" || len(e) != 1 {
		t.Errorf("%s: error body %q, want {\"error\": \"why\"}", what, resp.Body)
	}
}

// expectPlainError checks a root error: one line of plain text.
func expectPlainError(t *testing.T, what string, resp tc.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s: Content-Type %q, want text/plain", what, ct)
	}
	line := strings.TrimRight(resp.Body, "\n")
	if line == "" || strings.Contains(line, "\n") || strings.HasPrefix(line, "{") {
		t.Errorf("%s: error body %q, want one line of plain text", what, resp.Body)
	}
}

func TestInputOutsideLimitsIsRejectedWithOneLineErrors(t *testing.T) {
	const maxValue = 1024
	c := tc.StartCluster(t, 3, "--max-value-bytes", fmt.Sprint(maxValue))
	longKey := strings.Repeat("k", 4097)
	atMostKey := strings.Repeat("k", 4096)
	tooBig := strings.Repeat("v", maxValue+1)
	justFits := strings.Repeat("w", maxValue)

	type check struct {
		method, path, body string
		want               int
	}
	var checks []check
	for _, api := range []string{"/", "/v1/kv/"} {
		checks = append(checks,
			check{http.MethodPut, api, "value", http.StatusBadRequest},      // empty key
			check{http.MethodGet, api + longKey, "", http.StatusBadRequest}, // key over 4096 bytes
			check{http.MethodPut, api + longKey, "value", http.StatusBadRequest},
			check{http.MethodPut, api + "too-big", tooBig, http.StatusRequestEntityTooLarge},
			check{http.MethodGet, api + "k?consistency=bogus", "", http.StatusBadRequest},
		)
	}
	checks = append(checks,
		check{http.MethodDelete, "/v1/kv/" + longKey, "", http.StatusBadRequest},
		check{http.MethodDelete, "/v1/kv/", "", http.StatusBadRequest}, // empty key
		check{http.MethodGet, "/", "", http.StatusBadRequest},          // empty key at the root
	)
	for i, ch := range checks {
		n := c.Nodes[i%3]
		what := fmt.Sprintf("%s %s (%d-byte body) on %v", ch.method, tc.Shorten(ch.path, 40), len(ch.body), n)
		resp, err := n.DoRequest(ch.method, ch.path, ch.body, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.Code != ch.want {
			t.Errorf("%s: status %d %q, want %d", what, resp.Code, tc.Shorten(resp.Body, 100), ch.want)
			continue
		}
		if strings.HasPrefix(ch.path, "/v1/") {
			expectJSONError(t, what, resp)
		} else {
			expectPlainError(t, what, resp)
		}
	}

	// Nothing refused was stored; the largest allowed key and value are.
	expectRead(t, c.Node(1), "too-big", false, "")
	c.Node(2).MustPut(atMostKey, "a 4096-byte key")
	expectRead(t, c.Node(3), atMostKey, true, "a 4096-byte key")
	c.Node(3).MustPut("just-fits", justFits)
	expectRead(t, c.Node(1), "just-fits", true, justFits)
}

func TestValuesRoundTripByteForByteIncludingEmpty(t *testing.T) {
	c := tc.StartCluster(t, 3)
	var all bytes.Buffer
	for i := 0; i < 2; i++ {
		for b := 0; b < 256; b++ {
			all.WriteByte(byte(b))
		}
	}
	values := map[string]string{
		"empty":        "",
		"all-bytes":    all.String(),
		"newlines":     "\r\n\n line \r\n",
		"nul":          "\x00",
		"invalid-utf8": "\xc3\x28\xff",
		"spaces":       "  padded  ",
	}
	for _, api := range []string{"/", "/v1/kv/"} {
		for name, val := range values {
			key := "rt-" + name + "-" + strings.Trim(api, "/")
			writer, reader := c.Node(1), c.Node(2)
			if api != "/" {
				writer, reader = c.Node(3), c.Node(1)
			}
			code, body, err := writer.Do(http.MethodPut, api+key, val)
			expectStatus(t, "PUT "+api+key, code, body, err, http.StatusNoContent)
			// Read back through the other API, on another node.
			other := "/v1/kv/"
			if api != "/" {
				other = "/"
			}
			resp, err := reader.DoRequest(http.MethodGet, other+key, "", nil)
			if err != nil {
				t.Fatalf("GET %s%s: %v", other, key, err)
			}
			if resp.Code != http.StatusOK || resp.Body != val {
				t.Errorf("GET %s%s on %v: status %d, %d bytes %q; want 200 with the %d bytes %q written",
					other, key, reader, resp.Code, len(resp.Body), tc.Shorten(resp.Body, 40), len(val), tc.Shorten(val, 40))
			}
			// Serializable reads return the same bytes once the node has applied the write.
			if code, got, err := reader.GetSerializable(key); err != nil || code != http.StatusOK || got != val {
				t.Errorf("serializable GET %s on %v after a linearizable one saw it: status %d %q err %v", key, reader, code, tc.Shorten(got, 40), err)
			}
		}
	}
}
