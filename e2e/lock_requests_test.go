package e2e

// The lock test's requests: acquire and keep-alive, read back, the guarded
// resource write and the release, each recorded in the run's history.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	tc "raftexample/internal/testcluster"
)

var lockPath = "/v1/kv/" + lockKey

// putLock sends an acquire (renew false) or a keep-alive under If-Match:
// "cond", with the TTL, and records it.
func (l *lockRun) putLock(n *tc.Node, client int, val string, renew bool, cond uint64) (lockWrite, answer) {
	hdr := http.Header{"If-None-Match": {"*"}}
	if renew {
		hdr = http.Header{"If-Match": {fmt.Sprintf(`"%d"`, cond)}}
	}
	w := lockWrite{Client: client, Renew: renew, Cond: cond, Value: val, Call: l.now()}
	a := l.send(n, http.MethodPut, lockPath+"?ttl="+lockTTL.String(), val, hdr)
	w.Return = l.now()
	what := fmt.Sprintf("PUT %s %v=%q on %v", lockPath, hdr, val, n)
	w.Outcome = l.outcome(a, http.StatusNoContent, what)
	switch w.Outcome {
	case lockOK:
		rev, has, err := etag(a.Header)
		if x, xerr := xRevision(a.Header); err != nil || !has || xerr != nil || x != rev {
			l.oddity("%s: 204 with ETag %q and X-Revision %q", what, a.Header.Get("ETag"), a.Header.Get("X-Revision"))
		}
		w.Rev = rev
	case lockRefused:
		if _, err := xRevision(a.Header); err != nil {
			l.oddity("%s: 412 without X-Revision", what)
		}
	}
	l.mu.Lock()
	l.h.Writes = append(l.h.Writes, w)
	l.mu.Unlock()
	return w, a
}

// readLock reads the lock linearizably, trying the members in turn, until
// an answer or the deadline (ok false).
func (l *lockRun) readLock(pref int, deadline time.Duration) (found bool, val string, rev uint64, ok bool) {
	for try := pref; l.now() < deadline; try++ {
		n := l.member(try)
		a := l.send(n, http.MethodGet, lockPath, "", nil)
		switch {
		case a.is(http.StatusOK):
			rev, has, err := etag(a.Header)
			if err != nil || !has {
				l.oddity("GET %s on %v: 200 with ETag %q", lockPath, n, a.Header.Get("ETag"))
			}
			return true, a.Body, rev, l.now() < deadline
		case a.is(http.StatusNotFound):
			return false, "", 0, l.now() < deadline
		}
		l.sleep(50 * time.Millisecond)
		if l.stopping() {
			return false, "", 0, false
		}
	}
	return false, "", 0, false
}

// writeResource writes the resource with the holder's token: a txn that
// puts it only if the lock's modRevision is still the token. call is when
// the holder decided to send it (within its belief).
func (l *lockRun) writeResource(n *tc.Node, client int, token uint64, val string, call time.Duration) lockResourceWrite {
	body, _ := json.Marshal(map[string]any{
		"compare": []any{map[string]any{"key": lockKey, "modRevision": token}},
		"success": []any{map[string]any{"put": map[string]any{"key": lockResourceKey, "value": val}}},
		"failure": []any{map[string]any{"get": map[string]any{"key": lockKey}}},
	})
	w := lockResourceWrite{Client: client, Token: token, Value: val, Call: call}
	a := l.send(n, http.MethodPost, "/v1/txn", string(body), nil)
	w.Return = l.now()
	what := fmt.Sprintf("POST /v1/txn (resource %q if modRevision %d) on %v", val, token, n)
	w.Outcome = l.outcome(a, http.StatusOK, what)
	if w.Outcome == lockRefused { // a txn answers a failed compare with 200
		l.oddity("%s: 412", what)
		w.Outcome = lockFailed
	}
	if w.Outcome == lockOK {
		var res struct {
			Succeeded *bool
			Revision  uint64
			Results   []json.RawMessage
		}
		if err := json.Unmarshal([]byte(a.Body), &res); err != nil || res.Succeeded == nil || res.Revision == 0 {
			l.oddity("%s: 200 %s", what, a.Body)
			w.Outcome = lockUnknown
		} else if *res.Succeeded {
			w.Rev = res.Revision
		} else {
			w.Outcome = lockRefused
		}
	}
	l.mu.Lock()
	l.h.Resource = append(l.h.Resource, w)
	l.mu.Unlock()
	return w
}

// release deletes the lock under If-Match: "token".
func (l *lockRun) release(n *tc.Node, client int, token uint64) {
	rl := lockRelease{Client: client, Cond: token, Call: l.now()}
	a := l.send(n, http.MethodDelete, lockPath, "", http.Header{"If-Match": {fmt.Sprintf(`"%d"`, token)}})
	rl.Return = l.now()
	what := fmt.Sprintf("DELETE %s If-Match %d on %v", lockPath, token, n)
	rl.Outcome = l.outcome(a, http.StatusNoContent, what)
	if rl.Outcome == lockOK {
		x, err := xRevision(a.Header)
		if err != nil || x == 0 {
			l.oddity("%s: 204 with X-Revision %q", what, a.Header.Get("X-Revision"))
		}
		rl.Rev = x
	}
	l.mu.Lock()
	l.h.Releases = append(l.h.Releases, rl)
	l.mu.Unlock()
}

func (l *lockRun) addHold(hd lockHold) {
	l.mu.Lock()
	l.h.Holds = append(l.h.Holds, hd)
	l.mu.Unlock()
}
