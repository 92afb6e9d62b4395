package e2e

// Small checks and requests shared by the tests of this package.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// notProposed starts the reason of a 503 for a write that was certainly
// not applied: it was never proposed.
const notProposed = "no leader: nothing was done"

// expectStatus fails the test if a request got no answer (err) or another
// status than want.
func expectStatus(t *testing.T, what string, code int, body string, err error, want int) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if code != want {
		t.Fatalf("%s: status %d (%s), want %d", what, code, strings.TrimSpace(body), want)
	}
}

// expectLogged waits until n's current run has logged text.
func expectLogged(t *testing.T, n *tc.Node, text string) {
	t.Helper()
	tc.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(n.RunLog(), text) {
			return fmt.Errorf("%v's log (this run) has no %q", n, text)
		}
		return nil
	})
}

// doWithin is n.Do for a request that must be answered within timeout.
func doWithin(timeout time.Duration, n *tc.Node, method, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DoContext(ctx, method, path, body)
}

// listPrefix reads every pair whose key starts with prefix through n, with
// linearizable listings page by page (X-Next-Start).
func listPrefix(t *testing.T, n *tc.Node, prefix string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for start := ""; ; {
		resp, err := n.DoRequest(http.MethodGet, "/v1/kv/?prefix="+url.QueryEscape(prefix)+"&limit=10000&start="+url.QueryEscape(start), "", nil)
		if err != nil || resp.Code != http.StatusOK {
			t.Fatalf("listing through %v: %d %v %s", n, resp.Code, err, resp.Body)
		}
		var page []struct{ Key, Value string }
		if err := json.Unmarshal([]byte(resp.Body), &page); err != nil {
			t.Fatalf("listing through %v: %v", n, err)
		}
		for _, p := range page {
			got[p.Key] = p.Value
		}
		next := resp.Header.Get("X-Next-Start")
		if next == "" {
			return got
		}
		if start, err = url.QueryUnescape(next); err != nil {
			t.Fatal(err)
		}
	}
}
