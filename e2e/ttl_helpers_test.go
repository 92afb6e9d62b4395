package e2e

// Helpers of the TTL tests: a PUT with a ttl, the sound check of an expiry,
// and a leader that stays put.

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// putTTL sends PUT path?ttl=ttl with val and headers h to n and requires
// 204 with an ETag. It returns the revision and the time the answer came:
// the leader applied the write, and started its TTL, before that.
func putTTL(t *testing.T, n *tc.Node, path, val, ttl string, h http.Header) (uint64, time.Time) {
	t.Helper()
	if ttl != "" {
		path += "?ttl=" + ttl
	}
	resp, err := n.DoRequest(http.MethodPut, path, val, h)
	ack := time.Now()
	expectStatus(t, fmt.Sprintf("PUT %s on %v", path, n), resp.Code, resp.Body, err, http.StatusNoContent)
	rev, ok, err := tc.ETag(resp.Header)
	if err != nil || !ok {
		t.Fatalf("PUT %s on %v: ETag %q (%v)", path, n, resp.Header.Get("ETag"), err)
	}
	return rev, ack
}

// expiryBounds is when a key with a TTL may be seen gone: not before
// notBefore, and no later than by (the zero time: no upper bound).
type expiryBounds struct{ notBefore, by time.Time }

// expectExpiry polls GET path (of a key whose value is val) on n until it
// answers 404, failing the test if a 404 arrived before b.notBefore, if a
// GET sent after b.by still found the key, if the value changed, or if the
// key is not gone within tc.Timeout. It returns when the first 404 came.
// Answers other than 200 and 404 (a member restarting, an election) prove
// nothing either way and are retried.
func expectExpiry(t *testing.T, n *tc.Node, path, val string, b expiryBounds) time.Time {
	t.Helper()
	deadline := time.Now().Add(tc.Timeout)
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := n.DoRequestContext(ctx, http.MethodGet, path, "", nil)
		cancel()
		got := time.Now()
		switch {
		case err == nil && resp.Code == http.StatusNotFound:
			if got.Before(b.notBefore) {
				t.Fatalf("GET %s on %v: 404 at %s, %v before the key may expire (%s)", path, n,
					got.Format("15:04:05.000"), b.notBefore.Sub(got).Round(time.Millisecond), b.notBefore.Format("15:04:05.000"))
			}
			return got
		case err == nil && resp.Code == http.StatusOK:
			if resp.Body != val {
				t.Fatalf("GET %s on %v: %q, want %q until it expires", path, n, tc.Shorten(resp.Body, 40), val)
			}
			if !b.by.IsZero() && sent.After(b.by) {
				t.Fatalf("GET %s on %v sent at %s still found the key, %v after it must be gone (%s)", path, n,
					sent.Format("15:04:05.000"), sent.Sub(b.by).Round(time.Millisecond), b.by.Format("15:04:05.000"))
			}
		}
		if got.After(deadline) {
			t.Fatalf("GET %s on %v: not gone within %v (last answer %d %v)", path, n, tc.Timeout, resp.Code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ttlError is the reason a bad ttl is refused with.
func ttlError(ttl string) string {
	return fmt.Sprintf("ttl must be a Go duration from 1s to 24h0m0s, not %q", ttl)
}

// stableLeader returns the leader and the term every member agrees on.
func stableLeader(t *testing.T, c *tc.Cluster) (*tc.Node, uint64) {
	t.Helper()
	leader, sts := tc.WaitLeader(t, tc.Timeout, c.Members()...)
	return leader, sts[0].Term
}

// sameTerm reports whether every running member is still in term.
func sameTerm(c *tc.Cluster, term uint64) bool {
	for _, n := range c.Members() {
		st, err := n.Status()
		if err != nil || st.Term != term {
			return false
		}
	}
	return true
}
