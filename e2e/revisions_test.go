package e2e

// Cross-process tests of revisions (issue #13): the store revision and each
// key's createRevision, modRevision and version as the headers, the listing
// and /v1/status show them, on every member, across restarts and snapshots;
// and the helpers the tests of conditional writes (cas_test.go) share.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"

	tc "raftexample/internal/testcluster"
)

// hdr builds request headers from name, value pairs; a name may repeat.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// tag is the strong entity tag of revision rev: "17".
func tag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// kvPath is the /v1 path of key.
func kvPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

// revModel is what the store must hold: its revision and each key's value
// and revisions, updated by the tests' writes exactly as the contract says.
type revModel struct {
	rev  uint64
	keys map[string]tc.RevItem
}

func newRevModel() *revModel { return &revModel{keys: map[string]tc.RevItem{}} }

func (m *revModel) put(key, val string) uint64 {
	m.rev++
	it, ok := m.keys[key]
	if !ok {
		it = tc.RevItem{Key: key, CreateRevision: m.rev}
	}
	it.Value, it.ModRevision = val, m.rev
	it.Version++
	m.keys[key] = it
	return m.rev
}

func (m *revModel) del(key string) {
	if _, ok := m.keys[key]; ok {
		m.rev++
		delete(m.keys, key)
	}
}

// sorted returns the model's keys as the listing gives them.
func (m *revModel) sorted() []tc.RevItem {
	var out []tc.RevItem
	for _, it := range m.keys {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// expectPut sends PUT path with val and headers h to n, requires 204 with
// ETag and X-Revision both want, and returns the answer.
func expectPut(t *testing.T, n *tc.Node, path, val string, h http.Header, want uint64) tc.Response {
	t.Helper()
	resp, err := n.DoRequest(http.MethodPut, path, val, h)
	expectStatus(t, fmt.Sprintf("PUT %s on %v", path, n), resp.Code, resp.Body, err, http.StatusNoContent)
	etag, ok, err := tc.ETag(resp.Header)
	if err != nil || !ok || etag != want {
		t.Fatalf("PUT %s on %v: ETag %q (%v), want %s", path, n, resp.Header.Get("ETag"), err, tag(want))
	}
	if rev, err := tc.HeaderUint(resp.Header, "X-Revision"); err != nil || rev != want {
		t.Fatalf("PUT %s on %v: X-Revision %d (%v), want %d", path, n, rev, err, want)
	}
	return resp
}

// expectDelete sends DELETE /v1/kv/key to n and requires 204 with
// X-Revision want and no ETag.
func expectDelete(t *testing.T, n *tc.Node, key string, want uint64) {
	t.Helper()
	resp, err := n.DoRequest(http.MethodDelete, kvPath(key), "", nil)
	expectStatus(t, fmt.Sprintf("DELETE %s on %v", kvPath(key), n), resp.Code, resp.Body, err, http.StatusNoContent)
	if rev, err := tc.HeaderUint(resp.Header, "X-Revision"); err != nil || rev != want {
		t.Fatalf("DELETE %s on %v: X-Revision %d (%v), want %d", kvPath(key), n, rev, err, want)
	}
	if e := resp.Header.Get("ETag"); e != "" {
		t.Fatalf("DELETE %s on %v: ETag %q, want none", kvPath(key), n, e)
	}
}

// checkKeyRevs compares GET path's answer on n with the model's key.
func checkKeyRevs(n *tc.Node, path, key string, m *revModel) error {
	got, err := n.Revs(path)
	if err != nil {
		return err
	}
	want := tc.KeyRevs{Code: http.StatusNotFound, Revision: m.rev}
	if it, ok := m.keys[key]; ok {
		want = tc.KeyRevs{Code: http.StatusOK, Value: it.Value, ModRevision: it.ModRevision,
			CreateRevision: it.CreateRevision, Version: it.Version, Revision: m.rev}
	}
	if got != want {
		return fmt.Errorf("GET %s on %v: %v, want %v", path, n, got, want)
	}
	return nil
}

// checkModel checks everything n says about the store against the model:
// its /v1/status revision, every key through both APIs and the listing with
// its X-Revision. serializable makes the reads local (?consistency=
// serializable), for a member known to have applied everything.
func checkModel(n *tc.Node, m *revModel, serializable bool, extraKeys ...string) error {
	q := ""
	if serializable {
		q = "consistency=serializable"
	}
	if rev, err := n.Revision(); err != nil || rev != m.rev {
		return fmt.Errorf("%v: /v1/status revision %d (%v), want %d", n, rev, err, m.rev)
	}
	keys := append([]string{}, extraKeys...)
	for k := range m.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		paths := []string{kvPath(k)}
		if !strings.HasPrefix(k, "v1/") && k != "health" {
			paths = append(paths, "/"+url.PathEscape(k))
		}
		for _, p := range paths {
			if q != "" {
				p += "?" + q
			}
			if err := checkKeyRevs(n, p, k, m); err != nil {
				return err
			}
		}
	}
	items, rev, err := n.ListRevs("", q)
	if err != nil {
		return err
	}
	if rev != m.rev {
		return fmt.Errorf("%v: the listing's X-Revision is %d, want %d", n, rev, m.rev)
	}
	if want := m.sorted(); fmt.Sprint(stripEncoding(items)) != fmt.Sprint(want) {
		return fmt.Errorf("%v: the listing is\n%+v\nwant\n%+v", n, items, want)
	}
	return nil
}

func stripEncoding(items []tc.RevItem) []tc.RevItem {
	out := make([]tc.RevItem, len(items))
	for i, it := range items {
		it.Encoding = ""
		out[i] = it
	}
	return out
}

// ---------------------------------------------------------------------------

func TestRevisionsCountChangesAgreeOnEveryMemberAndSurviveRestartsAndSnapshots(t *testing.T) {
	const snapCount = 20
	c := tc.New(t, 3, "--snap-count", strconv.Itoa(snapCount))
	c.Start()
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	m := newRevModel()

	t.Run("an empty store is at revision 0", func(t *testing.T) {
		for _, n := range c.Nodes {
			if err := checkModel(n, m, false, "color"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("each PUT moves the revision by one and the key's headers follow", func(t *testing.T) {
		expectPut(t, n1, "/v1/kv/color", "blue", nil, m.put("color", "blue"))
		if err := checkKeyRevs(n2, "/v1/kv/color", "color", m); err != nil {
			t.Fatal(err)
		}
		if m.rev != 1 || m.keys["color"].Version != 1 {
			t.Fatalf("model: %+v", m)
		}
		expectPut(t, n2, "/color", "green", nil, m.put("color", "green")) // the root API
		expectPut(t, n3, "/v1/kv/color", "red", nil, m.put("color", "red"))
		expectPut(t, n1, "/v1/kv/shape", "round", nil, m.put("shape", "round"))
		// color: created at 1, changed at 3, version 3; the store is at 4.
		for _, n := range c.Nodes {
			if err := checkModel(n, m, false); err != nil {
				t.Fatal(err)
			}
		}
		// HEAD answers the same headers as GET.
		resp, err := n3.DoRequest(http.MethodHead, "/v1/kv/color", "", nil)
		if err != nil || resp.Code != http.StatusOK || resp.Header.Get("ETag") != tag(3) ||
			resp.Header.Get("X-Revision") != "4" || resp.Header.Get("X-Create-Revision") != "1" || resp.Header.Get("X-Version") != "3" {
			t.Fatalf("HEAD /v1/kv/color: %d %v %v, want 200 ETag \"3\" X-Revision 4 X-Create-Revision 1 X-Version 3", resp.Code, resp.Header, err)
		}
	})

	t.Run("a key deleted and created again starts its version over", func(t *testing.T) {
		m.del("color")
		expectDelete(t, n2, "color", m.rev)
		if err := checkKeyRevs(n3, "/v1/kv/color", "color", m); err != nil { // 404 with X-Revision
			t.Fatal(err)
		}
		expectPut(t, n3, "/v1/kv/color", "blue", nil, m.put("color", "blue"))
		if it := m.keys["color"]; it.CreateRevision != 6 || it.Version != 1 {
			t.Fatalf("model: %+v", it)
		}
		if err := checkKeyRevs(n1, "/v1/kv/color", "color", m); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a DELETE of a missing key and a failed condition do not move the revision", func(t *testing.T) {
		before := m.rev
		expectDelete(t, n1, "never-there", m.rev)
		cur := m.keys["color"].ModRevision
		for _, r := range []struct {
			method, path string
			h            http.Header
		}{
			{http.MethodPut, "/v1/kv/color", hdr("If-Match", tag(cur-1))},
			{http.MethodPut, "/color", hdr("If-Match", tag(cur+1))},
			{http.MethodPut, "/v1/kv/color", hdr("If-None-Match", "*")},
			{http.MethodDelete, "/v1/kv/color", hdr("If-Match", tag(1))},
			{http.MethodPut, "/v1/kv/never-there", hdr("If-Match", "*")},
			{http.MethodDelete, "/v1/kv/never-there", hdr("If-Match", "*")},
		} {
			resp, err := n2.DoRequest(r.method, r.path, "changed", r.h)
			expectStatus(t, fmt.Sprintf("%s %s %v on %v", r.method, r.path, r.h, n2), resp.Code, resp.Body, err, http.StatusPreconditionFailed)
		}
		// The failed conditions are applied (and refused) on every member:
		// once all have applied as far as the leader, all are still at the
		// same revision, and the next write takes the very next one.
		convergedStatuses(t, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, true, "never-there"); err != nil {
				t.Fatal(err)
			}
		}
		if m.rev != before {
			t.Fatalf("model moved from %d to %d", before, m.rev)
		}
		expectPut(t, n1, "/v1/kv/shape", "square", nil, m.put("shape", "square"))
	})

	t.Run("the listing carries each key's revisions and the store revision", func(t *testing.T) {
		expectPut(t, n2, kvPath("bin-\xff"), "x", nil, m.put("bin-\xff", "x"))                      // a key that is not UTF-8: base64 in the listing
		expectPut(t, n3, "/v1/kv/binary-value", "\xfe\xff", nil, m.put("binary-value", "\xfe\xff")) // a value that is not
		items, rev, err := n1.ListRevs("", "")
		if err != nil {
			t.Fatal(err)
		}
		if rev != m.rev || fmt.Sprint(stripEncoding(items)) != fmt.Sprint(m.sorted()) {
			t.Fatalf("listing at X-Revision %d:\n%+v\nwant at %d:\n%+v", rev, items, m.rev, m.sorted())
		}
		for _, it := range items {
			if want := map[bool]string{true: "base64", false: ""}[it.Key == "bin-\xff" || it.Key == "binary-value"]; it.Encoding != want {
				t.Errorf("listing item %q: encoding %q, want %q", it.Key, it.Encoding, want)
			}
		}
		// Every documented field is there by its JSON name.
		resp, err := n1.DoRequest(http.MethodGet, "/v1/kv/?prefix=shape", "", nil)
		if err != nil || resp.Code != http.StatusOK {
			t.Fatalf("GET /v1/kv/?prefix=shape: %d %v", resp.Code, err)
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(resp.Body), &raw); err != nil {
			t.Fatalf("GET /v1/kv/?prefix=shape: %v in %s", err, resp.Body)
		}
		want := []map[string]any{{"key": "shape", "value": "square", "createRevision": float64(m.keys["shape"].CreateRevision),
			"modRevision": float64(m.keys["shape"].ModRevision), "version": float64(2)}}
		if fmt.Sprint(raw) != fmt.Sprint(want) {
			t.Fatalf("GET /v1/kv/?prefix=shape: %s, want the fields %v", resp.Body, want)
		}
	})

	t.Run("every member reports the same revisions", func(t *testing.T) {
		// Serializable reads show what each member itself applied.
		convergedStatuses(t, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, true, "never-there"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("revisions survive a restart of all members", func(t *testing.T) {
		// The last change is a deletion, so the store revision is above
		// every key's modRevision: a member that recomputed it from its keys
		// would get it wrong.
		m.del("shape")
		expectDelete(t, n1, "shape", m.rev)
		if sts, err := tc.Statuses(c.Nodes...); err != nil {
			t.Fatal(err)
		} else if sts[0].SnapshotIndex != 0 {
			t.Logf("note: a snapshot was taken already: %s", tc.Summary(sts))
		}
		tc.RestartAll(t, c.Nodes...)
		tc.WaitLeader(t, tc.Timeout, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, false, "shape"); err != nil {
				t.Fatal(err)
			}
		}
		expectPut(t, n2, "/v1/kv/after-restart", "1", nil, m.put("after-restart", "1"))
	})

	t.Run("revisions survive snapshots and a member that restarts from one", func(t *testing.T) {
		// Member 3 is away while the others take more than two snapshots'
		// worth of writes: the leader no longer has the entries it missed
		// and sends it a snapshot.
		if code := n3.Stop(); code != 0 {
			t.Fatalf("%v exited with %d on SIGTERM", n3, code)
		}
		tc.WaitLeader(t, tc.Timeout, n1, n2)
		for i := 0; i < 3*snapCount+5; i++ {
			key := fmt.Sprintf("snap-%d", i%25)
			n := []*tc.Node{n1, n2}[i%2]
			if i%7 == 6 {
				m.del(key)
				expectDelete(t, n, key, m.rev)
				continue
			}
			val := fmt.Sprintf("v%d", i)
			expectPut(t, n, kvPath(key), val, nil, m.put(key, val))
		}
		m.del("snap-0")
		expectDelete(t, n1, "snap-0", m.rev)
		n3.Restart()
		expectLogged(t, n3, "installed snapshot from leader")
		convergedStatuses(t, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, true); err != nil {
				t.Fatal(err)
			}
		}
		// Every member took a snapshot of its own by now, and starts from
		// it: the snapshots carry the revisions.
		sts, err := tc.Statuses(c.Nodes...)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			if st.SnapshotIndex == 0 {
				t.Fatalf("member %d has taken no snapshot: %s", st.ID, tc.Summary(sts))
			}
		}
		tc.RestartAll(t, c.Nodes...)
		tc.WaitLeader(t, tc.Timeout, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, false, "snap-0"); err != nil {
				t.Fatal(err)
			}
		}
		expectPut(t, n3, "/v1/kv/after-snapshot", "1", nil, m.put("after-snapshot", "1"))
		convergedStatuses(t, c.Nodes...)
		for _, n := range c.Nodes {
			if err := checkModel(n, m, true); err != nil {
				t.Fatal(err)
			}
		}
	})
}
