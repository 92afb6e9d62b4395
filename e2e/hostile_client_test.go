package e2e

// Hostile and careless HTTP clients: peer URLs that crashed every member,
// membership changes that would cost the cluster its quorum, an old data
// directory holding such a change, HEAD requests, and listings too large to
// answer in one piece. Each group of cases ends with expectHealthy, each
// test with expectHealthyAfterRestart.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	tc "raftexample/internal/testcluster"
)

// rawTimeout bounds every connection these tests open themselves.
const rawTimeout = 15 * time.Second

// refusalTime is how long a refused membership request may take: the spec
// says such requests are answered at once, never after the 5 s
// --request-timeout that an unknown outcome costs.
const refusalTime = 2 * time.Second

// ---------------------------------------------------------------------------
// Requests

// clientRequest is one request to a member's HTTP API.
type clientRequest struct {
	method, path, body string
}

func (r clientRequest) String() string {
	if r.body == "" {
		return r.method + " " + r.path
	}
	return fmt.Sprintf("%s %s %q", r.method, r.path, r.body)
}

// send sends r to n and says how long the answer took.
func (r clientRequest) send(n *tc.Node) (tc.Response, time.Duration, error) {
	start := time.Now()
	resp, err := n.DoRequest(r.method, r.path, r.body, nil)
	return resp, time.Since(start), err
}

// addAtRoot is raftexample's POST /{id} with the peer URL as the body.
func addAtRoot(id uint64, peerURL string) clientRequest {
	return clientRequest{http.MethodPost, "/" + strconv.FormatUint(id, 10), peerURL}
}

// addAtV1 is POST /v1/members {"id": id, "peerURL": peerURL}.
func addAtV1(id uint64, peerURL string) clientRequest {
	return clientRequest{http.MethodPost, "/v1/members", fmt.Sprintf(`{"id":%d,"peerURL":%s}`, id, jsonString(peerURL))}
}

// removeAtRoot is raftexample's DELETE /{id}.
func removeAtRoot(id uint64) clientRequest {
	return clientRequest{http.MethodDelete, "/" + strconv.FormatUint(id, 10), ""}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// freePeerURL is a peer URL nobody listens on.
func freePeerURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d", tc.FreePorts(t, 1)[0])
}

// portOf is the port of a peer URL such as n.PeerURL.
func portOf(t *testing.T, peerURL string) string {
	t.Helper()
	u, err := url.Parse(peerURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// newIDs hands out member ids that were never used in this cluster, so that
// a request wrongly accepted by one case cannot turn the next case into a
// duplicate (ids of removed members are never reused).
func newIDs(first uint64) func() uint64 {
	next := first
	return func() uint64 { next++; return next - 1 }
}

// ---------------------------------------------------------------------------
// The member list

// memberList is GET /v1/members on n; n must be running.
func memberList(t *testing.T, n *tc.Node) []tc.Member {
	t.Helper()
	if !n.Running() {
		t.Fatal(whyNotRunning(n))
	}
	var ms []tc.Member
	tc.Eventually(t, 10*time.Second, func() error {
		_, err := n.GetJSON("/v1/members", &ms)
		return err
	})
	return ms
}

// whyNotRunning describes how n's last run ended: its exit code, the first
// lines it logged at error level or above (or that mention a panic), and
// its last lines.
func whyNotRunning(n *tc.Node) string {
	code, ok := n.Wait(5 * time.Second)
	if !ok {
		return fmt.Sprintf("%v is still running", n)
	}
	log := n.RunLog()
	why := tc.ErrorLines(log)
	if len(why) == 0 {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(strings.ToLower(line), "panic") {
				why = append(why, line)
				break
			}
		}
	}
	why = why[:min(len(why), 3)]
	return fmt.Sprintf("%v is not running (exit code %d)\n%s\nits last lines:\n%s", n, code, strings.Join(why, "\n"), tc.Tail(log, 12))
}

// membersDiff lists the members in after that were not in before, and the
// ids of those in before that are gone or changed.
func membersDiff(before, after []tc.Member) (added []tc.Member, gone []uint64) {
	for _, m := range after {
		if !slices.Contains(before, m) {
			added = append(added, m)
		}
	}
	for _, m := range before {
		if !slices.Contains(after, m) {
			gone = append(gone, m.ID)
		}
	}
	return added, gone
}

// expectMembersAsBefore fails the test if n's member list is not before. A
// member that slipped in is removed again, so that the cases after this one
// still run against the cluster they expect; a member that went missing
// cannot be brought back, so that ends the test.
func expectMembersAsBefore(t *testing.T, what string, n *tc.Node, before []tc.Member) {
	t.Helper()
	after := memberList(t, n)
	added, gone := membersDiff(before, after)
	if len(added) == 0 && len(gone) == 0 {
		return
	}
	t.Errorf("%s changed the member list from %v to %v", what, before, after)
	if len(gone) > 0 {
		t.Fatalf("members %v are gone for good (ids are never reused); stopping here", gone)
	}
	for _, m := range added {
		resp, took, err := removeAtRoot(m.ID).send(n)
		if err != nil || resp.Code != http.StatusNoContent {
			t.Fatalf("could not undo it: DELETE /%d: %d %q %v after %v; stopping here", m.ID, resp.Code, resp.Body, err, took)
		}
	}
}

// refusal is a request that must be answered with want at once and must
// leave the member list as it was.
type refusal struct {
	name string
	req  clientRequest
	want int
}

func expectRefused(t *testing.T, n *tc.Node, r refusal) {
	t.Helper()
	before := memberList(t, n)
	resp, took, err := r.req.send(n)
	switch {
	case err != nil:
		t.Errorf("%s: %v: no answer after %v: %v", r.name, r.req, took.Round(time.Millisecond), err)
	case resp.Code != r.want:
		t.Errorf("%s: %v: status %d (%s) after %v, want %d", r.name, r.req, resp.Code, strings.TrimSpace(resp.Body), took.Round(time.Millisecond), r.want)
	case took > refusalTime:
		t.Errorf("%s: %v: status %d took %v, want under %v", r.name, r.req, resp.Code, took.Round(time.Millisecond), refusalTime)
	}
	expectMembersAsBefore(t, r.name, n, before)
}

// waitAllActive waits until the leader has heard from every follower
// recently, so that a membership check based on activity sees them all.
func waitAllActive(t *testing.T, nodes ...*tc.Node) *tc.Node {
	t.Helper()
	leader, _ := tc.WaitLeader(t, tc.Timeout, nodes...)
	tc.Eventually(t, tc.Timeout, func() error {
		st, err := leader.Status()
		if err != nil {
			return err
		}
		if len(st.Followers) != len(nodes)-1 {
			return fmt.Errorf("leader %d reports %d followers, want %d", st.ID, len(st.Followers), len(nodes)-1)
		}
		for _, f := range st.Followers {
			if !f.RecentActive {
				return fmt.Errorf("leader %d has not heard from %d recently", st.ID, f.ID)
			}
		}
		return nil
	})
	return leader
}

// waitInactive waits until leader no longer counts follower id as recently
// active (after it was killed).
func waitInactive(t *testing.T, leader *tc.Node, id int) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		st, err := leader.Status()
		if err != nil {
			return err
		}
		for _, f := range st.Followers {
			if f.ID == uint64(id) && f.RecentActive {
				return fmt.Errorf("leader %d still counts %d as active", st.ID, id)
			}
		}
		return nil
	})
}

// expectAddedAs adds a member with a URL the server must normalise: the
// answer is a success and the member list shows the URL as want. The member
// (which never starts) is removed again.
func expectAddedAs(t *testing.T, n *tc.Node, req clientRequest, id uint64, want string) {
	t.Helper()
	before := memberList(t, n)
	var (
		resp tc.Response
		err  error
	)
	// A server may count a peer as active only once it has been connected
	// for a while; give a freshly started cluster that long.
	tc.Eventually(t, 10*time.Second, func() error {
		resp, _, err = req.send(n)
		if err == nil && resp.Code == http.StatusConflict {
			return fmt.Errorf("%v: %d %s", req, resp.Code, strings.TrimSpace(resp.Body))
		}
		return nil
	})
	if resp.Code != http.StatusNoContent && resp.Code != http.StatusCreated {
		t.Errorf("%v: status %d (%s) %v, want it added as %s", req, resp.Code, strings.TrimSpace(resp.Body), err, want)
	}
	if resp.Code == http.StatusCreated {
		var m tc.Member
		if err := json.Unmarshal([]byte(resp.Body), &m); err != nil || m != (tc.Member{ID: id, PeerURL: want}) {
			t.Errorf("%v answered %s, want {id %d, peerURL %s}", req, resp.Body, id, want)
		}
	}
	added, _ := membersDiff(before, memberList(t, n))
	if !slices.Equal(added, []tc.Member{{ID: id, PeerURL: want}}) {
		t.Errorf("%v added %v to the member list, want exactly {%d %s}", req, added, id, want)
	}
	for _, m := range added {
		if resp, took, err := removeAtRoot(m.ID).send(n); err != nil || resp.Code != http.StatusNoContent {
			t.Fatalf("removing member %d again: %d %q %v after %v", m.ID, resp.Code, resp.Body, err, took)
		}
	}
}

// ---------------------------------------------------------------------------
// 1. Peer URLs

func TestPeerURLWithATrailingSlashIsRefusedAndHarmless(t *testing.T) {
	c := tc.New(t, 3)
	c.Start()
	waitAllActive(t, c.Nodes...)
	n := c.Node(1)
	nextID := newIDs(6) // 4 and 5 are kept for the trailing slash below
	port := tc.FreePorts(t, 1)[0]
	member2Port := portOf(t, c.Node(2).PeerURL)

	// Not exactly http(s)://host:port with a port from 1 to 65535: each is
	// refused through both APIs.
	notPeerURLs := []struct{ name, url string }{
		{"a path", fmt.Sprintf("http://127.0.0.1:%d/raft", port)},
		{"a query", fmt.Sprintf("http://127.0.0.1:%d?x=1", port)},
		{"a fragment", fmt.Sprintf("http://127.0.0.1:%d#x", port)},
		{"user info", fmt.Sprintf("http://user:secret@127.0.0.1:%d", port)},
		{"a user name", fmt.Sprintf("http://user@127.0.0.1:%d", port)},
		{"port 0", "http://127.0.0.1:0"},
		{"port 65536", "http://127.0.0.1:65536"},
		{"port abc", "http://127.0.0.1:abc"},
		{"no port", "http://127.0.0.1"},
		{"an empty port", "http://127.0.0.1:"},
		{"unix scheme with host and port", fmt.Sprintf("unix://127.0.0.1:%d", port)},
		{"unix socket", "unix:///tmp/raftexample.sock"},
		{"https with no host", fmt.Sprintf("https://:%d", port)},
		{"no scheme", fmt.Sprintf("127.0.0.1:%d", port)},
		{"ftp scheme", fmt.Sprintf("ftp://127.0.0.1:%d", port)},
		{"two URLs", fmt.Sprintf("http://127.0.0.1:%d,http://127.0.0.1:%d", port, port+1)},
		{"empty", ""},
	}
	for _, u := range notPeerURLs {
		expectRefused(t, n, refusal{"URL with " + u.name + " at POST /{id}", addAtRoot(nextID(), u.url), http.StatusBadRequest})
		expectRefused(t, n, refusal{"URL with " + u.name + " at POST /v1/members", addAtV1(nextID(), u.url), http.StatusBadRequest})
	}
	expectHealthy(t, c.Nodes...)

	// Accepted URLs are normalised (lower-case scheme and host, no leading
	// zeros in the port) before they are proposed...
	id := nextID()
	expectAddedAs(t, n, addAtRoot(id, fmt.Sprintf("http://127.0.0.1:00%d", port)), id, fmt.Sprintf("http://127.0.0.1:%d", port))
	id = nextID()
	expectAddedAs(t, n, addAtV1(id, fmt.Sprintf("HTTP://LOCALHOST:0%d", port)), id, fmt.Sprintf("http://localhost:%d", port))
	// ...so these are another member's URL in disguise.
	alias := "HTTP://127.0.0.1:" + member2Port
	expectRefused(t, n, refusal{"upper-case alias of member 2 at POST /{id}", addAtRoot(nextID(), alias), http.StatusConflict})
	expectRefused(t, n, refusal{"upper-case alias of member 2 at POST /v1/members", addAtV1(nextID(), alias), http.StatusConflict})
	expectHealthy(t, c.Nodes...)

	// The URL that rafthttp refuses ("must not contain a path") and that the
	// code before the fix accepted: every member then panicked applying it,
	// and again on every restart, since the entry is committed.
	slash := fmt.Sprintf("http://127.0.0.1:%d/", port)
	expectRefused(t, n, refusal{"trailing slash at POST /{id}", addAtRoot(4, slash), http.StatusBadRequest})
	expectRefused(t, n, refusal{"trailing slash at POST /v1/members", addAtV1(5, slash), http.StatusBadRequest})
	expectHealthy(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}

// ---------------------------------------------------------------------------
// 2. Membership changes that would hurt

func TestMembershipRequestsThatWouldHurtTheClusterAreRefused(t *testing.T) {
	c := tc.New(t, 3)
	c.Start()
	waitAllActive(t, c.Nodes...)
	n := c.Node(1)
	nextID := newIDs(4)
	member2 := c.Node(2).PeerURL
	member2Port := portOf(t, member2)

	// Another member's URL, as is or in disguise: 409.
	for _, u := range []struct{ name, url string }{
		{"member 2's URL", member2},
		{"member 2's URL with an upper-case scheme", "HTTP://127.0.0.1:" + member2Port},
		{"member 2's URL with a leading zero in the port", "http://127.0.0.1:0" + member2Port},
	} {
		expectRefused(t, n, refusal{u.name + " at POST /{id}", addAtRoot(nextID(), u.url), http.StatusConflict})
		expectRefused(t, n, refusal{u.name + " at POST /v1/members", addAtV1(nextID(), u.url), http.StatusConflict})
	}

	// Ids outside 1..2^63-1 and malformed JSON: 400. Each URL is free, so
	// that nothing but the id or the body can be the reason.
	// (Different ids at each route: the code before the fix accepted them,
	// and a removed id would give a 409 for another reason.)
	const (
		twoTo64Minus1 = "18446744073709551615"
		twoTo64Minus2 = "18446744073709551614"
		twoTo63       = "9223372036854775808"
		twoTo63Plus1  = "9223372036854775809"
	)
	for _, r := range []refusal{
		{"id 2^64-1 at POST /{id}", clientRequest{"POST", "/" + twoTo64Minus1, freePeerURL(t)}, 400},
		{"id 2^63 at POST /{id}", clientRequest{"POST", "/" + twoTo63, freePeerURL(t)}, 400},
		{"id 2^64-2 at POST /v1/members", clientRequest{"POST", "/v1/members", `{"id":` + twoTo64Minus2 + `,"peerURL":"` + freePeerURL(t) + `"}`}, 400},
		{"id 2^63+1 at POST /v1/members", clientRequest{"POST", "/v1/members", `{"id":` + twoTo63Plus1 + `,"peerURL":"` + freePeerURL(t) + `"}`}, 400},
		{"id 2^64-1 at DELETE /{id}", clientRequest{"DELETE", "/" + twoTo64Minus1, ""}, 400},
		{"id 2^63 at DELETE /v1/members/{id}", clientRequest{"DELETE", "/v1/members/" + twoTo63, ""}, 400},
		{"id 0 at POST /{id}", clientRequest{"POST", "/0", freePeerURL(t)}, 400},
		{"id -5 at POST /{id}", clientRequest{"POST", "/-5", freePeerURL(t)}, 400},
		{"id 0 at POST /v1/members", addAtV1(0, freePeerURL(t)), 400},
		{"id -5 at POST /v1/members", clientRequest{"POST", "/v1/members", `{"id":-5,"peerURL":"` + freePeerURL(t) + `"}`}, 400},
		{"id as a string", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":"%d","peerURL":"%s"}`, nextID(), freePeerURL(t))}, 400},
		{"duplicate id field", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":2,"id":%d,"peerURL":"%s"}`, nextID(), freePeerURL(t))}, 400},
		{"duplicate peerURL field", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":%d,"peerURL":"%s","peerURL":"%s"}`, nextID(), member2, freePeerURL(t))}, 400},
		{"unknown field", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":%d,"peerURL":"%s","voter":false}`, nextID(), freePeerURL(t))}, 400},
		{"trailing data after the object", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":%d,"peerURL":"%s"} x`, nextID(), freePeerURL(t))}, 400},
		{"two objects", clientRequest{"POST", "/v1/members", fmt.Sprintf(`{"id":%d,"peerURL":"%s"}{"id":%d,"peerURL":"%s"}`, nextID(), freePeerURL(t), nextID(), freePeerURL(t))}, 400},
	} {
		expectRefused(t, n, r)
	}
	expectHealthy(t, c.Nodes...)

	// Two changes at the same moment: while one is pending the other is
	// refused at once. Once on one member, once on two.
	leader := waitAllActive(t, c.Nodes...)
	expectOneChangeAtATime(t, leader, leader, nextID, "both to the leader")
	followers := c.Except(leader)
	expectOneChangeAtATime(t, followers[0], followers[1], nextID, "to two followers")
	expectHealthy(t, c.Nodes...)

	// One member of three down: a fourth member that never starts would
	// leave 2 live members of 4 (no quorum), and removing a live member
	// would leave 1 of 2. Removing the dead one is fine.
	leader = waitAllActive(t, c.Nodes...)
	followers = c.Except(leader)
	dead, live := followers[0], followers[1]
	dead.Kill()
	waitInactive(t, leader, dead.ID)
	expectRefused(t, leader, refusal{"adding a 4th member with 1 of 3 down", addAtRoot(nextID(), freePeerURL(t)), http.StatusConflict})
	expectRefused(t, leader, refusal{"adding a 4th member with 1 of 3 down at POST /v1/members", addAtV1(nextID(), freePeerURL(t)), http.StatusConflict})
	expectRefused(t, leader, refusal{"removing a live member with 1 of 3 down", removeAtRoot(uint64(live.ID)), http.StatusConflict})
	expectRefused(t, live, refusal{"removing the leader with 1 of 3 down", removeAtRoot(uint64(leader.ID)), http.StatusConflict})
	resp, took, err := removeAtRoot(uint64(dead.ID)).send(leader)
	if err != nil || resp.Code != http.StatusNoContent {
		t.Fatalf("removing the dead member %d: %d %q %v after %v, want 204", dead.ID, resp.Code, resp.Body, err, took)
	}
	want := []tc.Member{{ID: uint64(leader.ID), PeerURL: leader.PeerURL}, {ID: uint64(live.ID), PeerURL: live.PeerURL}}
	slices.SortFunc(want, func(a, b tc.Member) int { return cmp.Compare(a.ID, b.ID) })
	tc.Eventually(t, tc.Timeout, func() error {
		if got := memberList(t, live); !slices.Equal(got, want) {
			return fmt.Errorf("members on %v: %v, want %v", live, got, want)
		}
		return nil
	})
	expectHealthy(t, leader, live)
	expectHealthyAfterRestart(t, leader, live)
}

// expectOneChangeAtATime asks a and b (possibly the same member) to add a
// member each, with both requests reaching the server at the same instant:
// each body's last byte is held back until both are sent. Each must succeed,
// or be refused with 409 at once while the other is pending. The members that
// were added (they never start) are removed again.
func expectOneChangeAtATime(t *testing.T, a, b *tc.Node, nextID func() uint64, what string) {
	t.Helper()
	before := memberList(t, a)
	reqs := []clientRequest{addAtRoot(nextID(), freePeerURL(t)), addAtRoot(nextID(), freePeerURL(t))}
	held := []*heldRequest{holdLastByte(t, a, reqs[0]), holdLastByte(t, b, reqs[1])}
	answers := make([]heldAnswer, len(held))
	var wg sync.WaitGroup
	for _, h := range held {
		h.release()
	}
	for i, h := range held {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = h.answer() }()
	}
	wg.Wait()
	wins := 0
	for i, ans := range answers {
		t.Logf("%s: %v: %v", what, reqs[i], ans)
		switch {
		case ans.err != nil:
			t.Errorf("%s: %v: no answer after %v: %v", what, reqs[i], ans.took, ans.err)
		case ans.code == http.StatusNoContent:
			wins++
		case ans.code != http.StatusConflict:
			t.Errorf("%s: %v: status %d (%s) after %v, want 204, or 409 while the other change is pending", what, reqs[i], ans.code, ans.body, ans.took)
		case ans.took > refusalTime:
			t.Errorf("%s: %v: 409 took %v, want under %v", what, reqs[i], ans.took, refusalTime)
		}
	}
	// Both may succeed: the first change can be applied before the second
	// reaches the leader, and then the second is legitimate. What must never
	// happen is the second waiting for its timeout (a 503 above) because raft
	// dropped it while the first was pending.
	// Whatever was added (also by a request that timed out and was applied
	// later) goes again, once the list has settled.
	var added []tc.Member
	tc.Eventually(t, tc.Timeout, func() error {
		added, _ = membersDiff(before, memberList(t, a))
		if len(added) != wins {
			return fmt.Errorf("%d members added, %d requests succeeded", len(added), wins)
		}
		return nil
	})
	for _, m := range added {
		if resp, took, err := removeAtRoot(m.ID).send(a); err != nil || resp.Code != http.StatusNoContent {
			t.Fatalf("removing member %d again: %d %q %v after %v", m.ID, resp.Code, resp.Body, err, took)
		}
	}
}

// heldRequest is a request written to its own connection except for the
// last byte of its body: the server waits in the handler until release.
type heldRequest struct {
	conn     net.Conn
	br       *bufio.Reader
	last     []byte
	released time.Time
}

type heldAnswer struct {
	code int
	body string
	took time.Duration // from release to the answer
	err  error
}

func (a heldAnswer) String() string {
	if a.err != nil {
		return fmt.Sprintf("no answer after %v: %v", a.took, a.err)
	}
	return fmt.Sprintf("%d %s after %v", a.code, a.body, a.took)
}

func holdLastByte(t *testing.T, n *tc.Node, r clientRequest) *heldRequest {
	t.Helper()
	if r.body == "" {
		t.Fatal("holdLastByte needs a body")
	}
	conn := dialClientPort(t, n)
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", r.method, r.path, len(r.body))
	if _, err := io.WriteString(conn, head+r.body[:len(r.body)-1]); err != nil {
		t.Fatalf("%v: writing %v: %v", n, r, err)
	}
	return &heldRequest{conn: conn, br: bufio.NewReader(conn), last: []byte(r.body[len(r.body)-1:])}
}

func (h *heldRequest) release() {
	h.released = time.Now()
	h.conn.Write(h.last) // an error shows in answer
}

func (h *heldRequest) answer() heldAnswer {
	defer h.conn.Close()
	resp, err := http.ReadResponse(h.br, nil)
	took := time.Since(h.released).Round(time.Millisecond)
	if err != nil {
		return heldAnswer{took: took, err: err}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return heldAnswer{code: resp.StatusCode, body: strings.TrimSpace(string(b)), took: took, err: err}
}

// dialClientPort opens a connection to n's HTTP API that gives up after
// rawTimeout; it is closed when the test ends.
func dialClientPort(t *testing.T, n *tc.Node) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.HTTPPort), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %v: %v", n, err)
	}
	conn.SetDeadline(time.Now().Add(rawTimeout))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ---------------------------------------------------------------------------
// 3. A bad URL already in the log

func TestAnEntryWithABadPeerURLAlreadyInTheLogIsCancelledOnReplay(t *testing.T) {
	c := tc.New(t, 1)
	c.Start()
	n := c.Node(1)
	n.MustPut("before", "old data")
	if code := n.Stop(); code != 0 {
		t.Fatalf("%v exited with %d on SIGTERM", n, code)
	}
	// What the version before the fix wrote after accepting POST /2 with
	// "http://127.0.0.1:1/": a committed conf change that rafthttp refuses.
	index := appendCommittedConfChange(t, n.WALDir(), &raftpb.ConfChange{
		Type:    raftpb.ConfChangeAddNode.Enum(),
		NodeId:  new(uint64(2)),
		Context: []byte("http://127.0.0.1:1/"),
	})
	want := []tc.Member{{ID: 1, PeerURL: n.PeerURL}}
	for run := 1; run <= 2; run++ {
		n.Start()
		expectServingAfterReplay(t, n, index, fmt.Sprintf("after-replay-%d", run), want)
		expectHealthy(t, n)
		if code := n.Stop(); code != 0 {
			t.Fatalf("%v exited with %d on SIGTERM after replay %d; its last lines:\n%s", n, code, run, tc.Tail(n.RunLog(), 20))
		}
	}
	n.Start()
	if err := n.WaitServing(tc.Timeout); err != nil {
		t.Fatal(err)
	}
	expectHealthyAfterRestart(t, n)
}

// appendCommittedConfChange appends cc to the WAL in dir as a committed
// entry of the current term, the way the server itself would have written
// it, and returns its index. The member must be stopped.
func appendCommittedConfChange(t *testing.T, dir string, cc *raftpb.ConfChange) uint64 {
	t.Helper()
	lg := zap.NewNop()
	snaps, err := wal.ValidSnapshotEntries(lg, dir)
	if err != nil {
		t.Fatalf("listing snapshot records in %s: %v", dir, err)
	}
	start := &walpb.Snapshot{}
	if len(snaps) > 0 {
		start = snaps[len(snaps)-1]
	}
	w, err := wal.Open(lg, dir, start)
	if err != nil {
		t.Fatalf("opening WAL %s: %v", dir, err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Fatalf("closing WAL: %v", err)
		}
	}()
	_, hs, ents, err := w.ReadAll()
	if err != nil {
		t.Fatalf("reading WAL %s: %v", dir, err)
	}
	last := start.GetIndex()
	if len(ents) > 0 {
		last = ents[len(ents)-1].GetIndex()
	}
	data, err := proto.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	term, index := hs.GetTerm(), last+1
	entry := &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Index: new(index), Term: new(term), Data: data}
	state := &raftpb.HardState{Term: new(term), Vote: new(hs.GetVote()), Commit: new(index)}
	if err := w.Save(state, []*raftpb.Entry{entry}); err != nil {
		t.Fatalf("appending to WAL %s: %v", dir, err)
	}
	t.Logf("appended a conf change at index %d, term %d (the log ended at %d)", index, term, last)
	return index
}

// expectServingAfterReplay checks that n, just started, replays its log
// past index without a panic, serves writes and reads, and has the members
// want.
func expectServingAfterReplay(t *testing.T, n *tc.Node, index uint64, key string, want []tc.Member) {
	t.Helper()
	if err := n.WaitServing(tc.Timeout); err != nil {
		t.Fatalf("%v: %v; its last lines:\n%s", n, err, tc.Tail(n.RunLog(), 20))
	}
	tc.Eventually(t, tc.Timeout, func() error {
		if !n.Running() {
			t.Fatalf("while replaying: %s", whyNotRunning(n))
		}
		code, body, err := n.Put(key, key)
		if err != nil || code != http.StatusNoContent {
			return fmt.Errorf("PUT %s on %v: %d %q %v", key, n, code, body, err)
		}
		return nil
	})
	for k, v := range map[string]string{key: key, "before": "old data"} {
		if code, body, err := n.Get(k); err != nil || code != http.StatusOK || body != v {
			t.Errorf("GET %s on %v: %d %q %v, want 200 %q", k, n, code, body, err, v)
		}
	}
	if st, err := n.Status(); err != nil || st.Applied <= index {
		t.Errorf("%v: applied index %d (%v), want past the bad entry at %d", n, st.Applied, err, index)
	}
	if got := memberList(t, n); !slices.Equal(got, want) {
		t.Errorf("%v: members %v after replay, want %v", n, got, want)
	}
	if !n.Running() || strings.Contains(n.RunLog(), "panic") {
		t.Fatalf("%v (running: %v) logged a panic; its last lines:\n%s", n, n.Running(), tc.Tail(n.RunLog(), 20))
	}
}

// ---------------------------------------------------------------------------
// 4. HEAD

func TestHeadWorksWhereverGetDoes(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 1)
	c.Start()
	n := c.Node(1)
	n.MustPut("head-a", "A")
	n.MustPut("head-b", "B")
	for _, path := range []string{
		"/head-a",
		"/no-such-key",
		"/v1/kv/head-a",
		"/v1/kv/no-such-key",
		"/v1/kv/?prefix=",
		"/v1/kv/?prefix=head-&limit=1", // with X-Next-Start
		"/v1/status",
		"/v1/members",
		"/health",
		"/readyz",
		"/metrics",
	} {
		get := exchange(t, n, http.MethodGet, path)
		head := exchange(t, n, http.MethodHead, path)
		if head.code != get.code {
			t.Errorf("HEAD %s: status %d, GET: %d", path, head.code, get.code)
		}
		for _, h := range []string{"Content-Type", "X-Next-Start", "Allow"} {
			if head.header.Get(h) != get.header.Get(h) {
				t.Errorf("HEAD %s: %s %q, GET: %q", path, h, head.header.Get(h), get.header.Get(h))
			}
		}
		if len(head.body) > 0 {
			t.Errorf("HEAD %s: a body of %d bytes: %.60q", path, len(head.body), head.body)
		}
		if len(get.body) == 0 {
			t.Errorf("GET %s: empty body, so the comparison says nothing", path)
		}
	}
	expectHealthy(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}

// exchanged is one answer read off the wire: for HEAD, body is whatever came
// after the headers before the server closed the connection.
type exchanged struct {
	code   int
	header http.Header
	body   []byte
}

// exchange sends method path on a connection of its own, with
// "Connection: close", and reads the answer to the end.
func exchange(t *testing.T, n *tc.Node, method, path string) exchanged {
	t.Helper()
	conn := dialClientPort(t, n)
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s on %v: %v", method, path, n, err)
	}
	defer resp.Body.Close()
	var body []byte
	if method == http.MethodHead {
		body, err = io.ReadAll(br) // ReadResponse reads no body for HEAD
	} else {
		body, err = io.ReadAll(resp.Body)
	}
	if err != nil {
		t.Fatalf("%s %s on %v: reading the answer: %v", method, path, n, err)
	}
	return exchanged{code: resp.StatusCode, header: resp.Header, body: body}
}

// ---------------------------------------------------------------------------
// 5. Listings

// maxListAnswer is more than any page may take: 4 MiB of keys and values,
// JSON-quoted, unescaped.
const maxListAnswer = 30 << 20

// listClient reads listings itself, to stop at maxListAnswer.
var listClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// listedItem is one item of a listing as the README documents it.
type listedItem struct {
	Key            string  `json:"key"`
	Value          string  `json:"value"`
	CreateRevision uint64  `json:"createRevision"`
	ModRevision    uint64  `json:"modRevision"`
	Version        uint64  `json:"version"`
	Encoding       *string `json:"encoding"`
}

// kv decodes the item: base64 when its encoding says so.
func (it listedItem) kv() (key, value string, err error) {
	if it.Encoding == nil {
		return it.Key, it.Value, nil
	}
	if *it.Encoding != "base64" {
		return "", "", fmt.Errorf("encoding %q, want base64", *it.Encoding)
	}
	k, err := base64.StdEncoding.DecodeString(it.Key)
	if err != nil {
		return "", "", fmt.Errorf("key %q: %v", it.Key, err)
	}
	v, err := base64.StdEncoding.DecodeString(it.Value)
	if err != nil {
		return "", "", fmt.Errorf("value %.40q: %v", it.Value, err)
	}
	return string(k), string(v), nil
}

type listPage struct {
	code  int
	raw   []byte
	items []listedItem
	next  string // X-Next-Start, as sent
}

// fetchList sends GET /v1/kv/?query and reads at most maxListAnswer bytes.
func fetchList(t *testing.T, n *tc.Node, query string) listPage {
	t.Helper()
	resp, err := listClient.Get(n.URL("/v1/kv/?" + query))
	if err != nil {
		t.Fatalf("GET /v1/kv/?%s on %v: %v", query, n, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxListAnswer+1))
	if err != nil {
		t.Fatalf("GET /v1/kv/?%s on %v: reading: %v", query, n, err)
	}
	if len(raw) > maxListAnswer {
		t.Fatalf("GET /v1/kv/?%s on %v: the answer is over %d bytes", query, n, maxListAnswer)
	}
	p := listPage{code: resp.StatusCode, raw: raw, next: resp.Header.Get("X-Next-Start")}
	if p.code == http.StatusOK {
		if !utf8.Valid(raw) {
			t.Errorf("GET /v1/kv/?%s: the JSON is not UTF-8", query)
		}
		if err := json.Unmarshal(raw, &p.items); err != nil {
			t.Fatalf("GET /v1/kv/?%s: %v in %.200q", query, err, raw)
		}
	}
	return p
}

// walkList follows X-Next-Start from the first page of query to the last
// and returns the decoded pairs in the order they came. Each page must hold
// 1 to maxItems items, and its X-Next-Start must name the first key of the
// next page.
func walkList(t *testing.T, n *tc.Node, query string, maxItems, maxPages int) []tc.KV {
	t.Helper()
	var out []tc.KV
	start, wantFirst := "", ""
	for pages := 1; ; pages++ {
		q := query
		if start != "" {
			q += "&start=" + start
		}
		p := fetchList(t, n, q)
		if p.code != http.StatusOK {
			t.Fatalf("GET /v1/kv/?%s: status %d: %s", q, p.code, p.raw)
		}
		if len(p.items) == 0 || len(p.items) > maxItems {
			t.Fatalf("GET /v1/kv/?%s: %d items, want 1 to %d", q, len(p.items), maxItems)
		}
		for i, it := range p.items {
			k, v, err := it.kv()
			if err != nil {
				t.Fatalf("GET /v1/kv/?%s: item %d: %v", q, i, err)
			}
			if i == 0 && wantFirst != "" && k != wantFirst {
				t.Errorf("GET /v1/kv/?%s: first key %q, but the page before said X-Next-Start %q", q, k, wantFirst)
			}
			out = append(out, tc.KV{Key: k, Val: v})
		}
		if p.next == "" {
			return out
		}
		if pages == maxPages {
			t.Fatalf("GET /v1/kv/?%s: still an X-Next-Start (%q) after %d pages", query, p.next, pages)
		}
		next, err := url.QueryUnescape(p.next)
		if err != nil {
			t.Fatalf("GET /v1/kv/?%s: X-Next-Start %q: %v", q, p.next, err)
		}
		start, wantFirst = p.next, next
	}
}

// expectKVs compares a walk with the pairs it should have visited.
func expectKVs(t *testing.T, what string, got, want []tc.KV) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d items, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: item %d is %.40q=%.40q, want %.40q=%.40q", what, i, got[i].Key, got[i].Val, want[i].Key, want[i].Val)
			return
		}
	}
}

func TestListingPagesThroughALargeKeySpaceAndStreamsUnescapedJSON(t *testing.T) {
	t.Parallel()
	const hugeValue = 5 << 20 // more than a page holds by itself
	c := tc.New(t, 1, "--max-value-bytes", strconv.Itoa(hugeValue))
	c.Start()
	n := c.Node(1)

	var keys []tc.KV
	for i := range 2500 {
		keys = append(keys, tc.KV{Key: fmt.Sprintf("p-%04d", i), Val: fmt.Sprintf("v%d", i)})
	}
	tc.PutMany(t, keys, n)

	t.Run("a page holds 1000 items by default", func(t *testing.T) {
		p := fetchList(t, n, "prefix=p-")
		if p.code != http.StatusOK || len(p.items) != 1000 {
			t.Fatalf("GET /v1/kv/?prefix=p-: status %d, %d items; want 200 and 1000", p.code, len(p.items))
		}
		for i, it := range p.items {
			if it.Key != keys[i].Key || it.Value != keys[i].Val {
				t.Fatalf("item %d: %s=%s, want %s=%s", i, it.Key, it.Value, keys[i].Key, keys[i].Val)
			}
		}
		if p.next != url.QueryEscape(keys[1000].Key) {
			t.Errorf("X-Next-Start %q, want %q", p.next, url.QueryEscape(keys[1000].Key))
		}
	})
	for _, limit := range []int{1000, 7} {
		t.Run(fmt.Sprintf("pages of %d visit every key once in order", limit), func(t *testing.T) {
			got := walkList(t, n, fmt.Sprintf("prefix=p-&limit=%d", limit), limit, len(keys)/limit+2)
			expectKVs(t, fmt.Sprintf("pages of %d", limit), got, keys)
		})
	}
	t.Run("limits", func(t *testing.T) {
		for _, lc := range []struct {
			limit string
			want  int
		}{{"10000", 200}, {"10001", 400}, {"-1", 400}, {"abc", 400}} {
			p := fetchList(t, n, "prefix=p-&limit="+lc.limit)
			if p.code != lc.want {
				t.Errorf("limit=%s: status %d, want %d", lc.limit, p.code, lc.want)
			}
			if p.code == http.StatusOK && (len(p.items) != len(keys) || p.next != "") {
				t.Errorf("limit=%s: %d items and X-Next-Start %q, want all %d and none", lc.limit, len(p.items), p.next, len(keys))
			}
		}
	})

	t.Run("JSON is not HTML-escaped", func(t *testing.T) {
		n.MustPut("esc-<>&", `<b>&amp;</b>`)
		p := fetchList(t, n, "prefix=esc-")
		var wrong []string
		for _, s := range []string{`esc-<>&`, `<b>&amp;</b>`} {
			if !bytes.Contains(p.raw, []byte(s)) {
				wrong = append(wrong, "lacks "+s)
			}
		}
		for _, esc := range []string{`\u003c`, `\u003e`, `\u0026`} {
			if bytes.Contains(p.raw, []byte(esc)) {
				wrong = append(wrong, "holds "+esc)
			}
		}
		if len(wrong) > 0 {
			t.Errorf("the answer %s %s", p.raw, strings.Join(wrong, ", "))
		}
	})

	t.Run("keys and values that are not UTF-8 come in base64", func(t *testing.T) {
		bin := []tc.KV{
			{Key: "bin-a", Val: "plain"},
			{Key: "bin-ok", Val: "\xff\xfe"},
			{Key: "bin-\xfe", Val: "x"},
			{Key: "bin-\xff", Val: "y"},
		}
		for _, kv := range bin {
			n.MustPut(kv.Key, kv.Val)
		}
		p := fetchList(t, n, "prefix=bin-")
		if len(p.items) != len(bin) {
			t.Fatalf("GET /v1/kv/?prefix=bin-: %d items, want %d: %s", len(p.items), len(bin), p.raw)
		}
		for i, it := range p.items {
			valid := utf8.ValidString(bin[i].Key) && utf8.ValidString(bin[i].Val)
			if valid != (it.Encoding == nil) {
				t.Errorf("item %d (%q): encoding %v, want base64 only if key or value is not UTF-8", i, bin[i].Key, it.Encoding)
			}
		}
		// And X-Next-Start carries such keys too.
		expectKVs(t, "pages of 1 over binary keys", walkList(t, n, "prefix=bin-&limit=1", 1, len(bin)+1), bin)
	})

	t.Run("a page stops at about 4 MiB", func(t *testing.T) {
		// 20 values of 1 MiB of '<': 20 MiB in one answer, or 120 MB as
		// \u003c.
		var big []tc.KV
		for i := range 20 {
			big = append(big, tc.KV{Key: fmt.Sprintf("big-%02d", i), Val: strings.Repeat("<", 1<<20)})
		}
		tc.PutMany(t, big, n)
		p := fetchList(t, n, "prefix=big-")
		if p.code != http.StatusOK {
			t.Fatalf("status %d: %.200s", p.code, p.raw)
		}
		if len(p.items) < 2 || len(p.items) > 5 || len(p.raw) > 6<<20 || p.next == "" {
			t.Errorf("first page: %d items in %d bytes, X-Next-Start %q; want 2 to 5 items (about 4 MiB) and an X-Next-Start",
				len(p.items), len(p.raw), p.next)
		}
		expectKVs(t, "pages of big values", walkList(t, n, "prefix=big-", 5, len(big)+1), big)

		// A value larger than a page still comes, alone.
		huge := []tc.KV{{Key: "huge-1", Val: strings.Repeat("h", hugeValue)}, {Key: "huge-2", Val: strings.Repeat("H", hugeValue)}}
		tc.PutMany(t, huge, n)
		expectKVs(t, "pages of huge values", walkList(t, n, "prefix=huge-", 1, len(huge)+1), huge)
	})

	expectHealthy(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}
