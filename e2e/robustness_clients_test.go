package e2e

// The robustness suite's clients, and checks 1 and 2 (see robustness_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

// Clients

// answer is a member's answer to one request, or the error that stopped it.
type answer struct {
	tc.Response
	err error
}

// robustClient sends the clients' requests: one connection per request
// (members are killed all the time), and no request lasts longer than a
// member's own timeout plus a margin.
var robustClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// send sends a request with extra headers (may be nil) to n.
func send(n *tc.Node, method, path, body string, header http.Header) answer {
	ctx, cancel := context.WithTimeout(context.Background(), memberRequestTimeout+3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL(path), strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := robustClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{tc.Response{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}, err}
}

func (a answer) is(code int) bool { return a.err == nil && a.Code == code }

// etag parses a strong ETag "<rev>"; ok is false when there is none.
func etag(h http.Header) (rev uint64, ok bool, err error) {
	v := h.Get("ETag")
	if v == "" {
		return 0, false, nil
	}
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, false, fmt.Errorf("malformed ETag %q", v)
	}
	rev, err = strconv.ParseUint(v[1:len(v)-1], 10, 64)
	if err != nil || rev == 0 {
		return 0, false, fmt.Errorf("malformed ETag %q", v)
	}
	return rev, true, nil
}

// xRevision parses X-Revision; absent is an error.
func xRevision(h http.Header) (uint64, error) {
	v := h.Get("X-Revision")
	if v == "" {
		return 0, fmt.Errorf("no X-Revision")
	}
	return strconv.ParseUint(v, 10, 64)
}

// condHeader is the request header of a condition.
func condHeader(c lincheck.Cond) http.Header {
	switch c.Kind {
	case lincheck.IfMatch:
		return http.Header{"If-Match": {fmt.Sprintf("%q", strconv.FormatUint(c.Rev, 10))}}
	case lincheck.IfMatchAny:
		return http.Header{"If-Match": {"*"}}
	case lincheck.IfNoneMatch:
		return http.Header{"If-None-Match": {"*"}}
	}
	return nil
}

// oddity notes an answer the contract (spec of #13) does not allow; they
// fail check 1.
func (r *scenario) oddity(format string, args ...any) {
	r.mu.Lock()
	if len(r.oddities) < 20 {
		r.oddities = append(r.oddities, fmt.Sprintf(format, args...))
	}
	r.mu.Unlock()
}

func (r *scenario) client(id int, seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		members := r.c.Members()
		n := members[rng.Intn(len(members))]
		key := scenarioKey(rng.Intn(scenarioKeys))
		val := fmt.Sprintf("c%d-%d", id, seq) // unique in the run
		// Conditional writes go through the root API or /v1, at random.
		path := "/" + url.PathEscape(key)
		if rng.Intn(2) == 0 {
			path = "/v1/kv/" + url.PathEscape(key)
		}
		if rng.Intn(100) < moreTrafficPercent {
			r.moreTraffic(id, rng, n, seq) // TTLs and transactions, robustness_txn_test.go
			time.Sleep(time.Duration(rng.Intn(10)) * time.Millisecond)
			continue
		}
		switch p := rng.Intn(100); {
		case p < 25:
			r.write(id, n, opPut, lincheck.Put, key, val, "/"+url.PathEscape(key), lincheck.Cond{})
		case p < 35:
			// Compare-and-swap: read, then write if nobody wrote since
			// (create if absent).
			if rev, found, ok := r.read(id, n, key); ok {
				if found {
					r.write(id, n, opCasPut, lincheck.Put, key, val, path, lincheck.Cond{Kind: lincheck.IfMatch, Rev: rev})
				} else {
					r.write(id, n, opCreate, lincheck.Put, key, val, path, lincheck.Cond{Kind: lincheck.IfNoneMatch})
				}
			}
		case p < 40:
			r.write(id, n, opCreate, lincheck.Put, key, val, path, lincheck.Cond{Kind: lincheck.IfNoneMatch})
		case p < 42:
			r.write(id, n, opCasPut, lincheck.Put, key, val, path, lincheck.Cond{Kind: lincheck.IfMatchAny})
		case p < 47:
			r.write(id, n, opDelete, lincheck.Delete, key, "", "/v1/kv/"+url.PathEscape(key), lincheck.Cond{})
		case p < 52:
			// Delete what was read, if nobody wrote since; a made-up
			// revision now and then.
			if rev, found, ok := r.read(id, n, key); ok && found {
				if rng.Intn(4) == 0 {
					rev += uint64(rng.Intn(3)) + 1
				}
				r.write(id, n, opCasDelete, lincheck.Delete, key, "", "/v1/kv/"+url.PathEscape(key), lincheck.Cond{Kind: lincheck.IfMatch, Rev: rev})
			}
		case p < 80:
			r.read(id, n, key)
		default:
			a := send(n, http.MethodGet, "/"+url.PathEscape(key)+"?consistency=serializable", "", nil)
			ret := r.rec.Now()
			if a.is(http.StatusOK) || a.is(http.StatusNotFound) {
				r.mu.Lock()
				r.serial = append(r.serial, serialRead{key: key, value: a.Body, found: a.Code == http.StatusOK, ret: ret})
				r.mu.Unlock()
				r.counts[opSerialGet][outcomeOK].Add(1)
			} else {
				r.counts[opSerialGet][outcomeFailed].Add(1)
			}
		}
		// A short pause keeps the history small enough to check quickly.
		time.Sleep(time.Duration(rng.Intn(10)) * time.Millisecond)
	}
}

// read is a linearizable GET of key through n, recorded with the key's
// modRevision (ETag). ok is false if it failed.
func (r *scenario) read(id int, n *tc.Node, key string) (rev uint64, found, ok bool) {
	call := r.rec.Now()
	a := send(n, http.MethodGet, "/"+url.PathEscape(key), "", nil)
	switch {
	case a.is(http.StatusOK):
		rev, has, err := etag(a.Header)
		if err != nil || !has {
			r.oddity("GET %s on %v: 200 with ETag %q", key, n, a.Header.Get("ETag"))
		}
		r.rec.Add(lincheck.Op{Client: id, Kind: lincheck.Get, Key: key, Value: a.Body, Found: true, Revision: rev, Node: n.ID, Call: call, Return: r.rec.Now()})
		r.counts[opGet][outcomeOK].Add(1)
		return rev, true, rev != 0
	case a.is(http.StatusNotFound):
		r.rec.Get(id, key, "", false, call)
		r.counts[opGet][outcomeOK].Add(1)
		return 0, false, true
	}
	r.counts[opGet][outcomeFailed].Add(1)
	return 0, false, false
}

// write sends a PUT of val (kind lincheck.Put) or a DELETE of key to path
// through n under cond, and records it: acknowledged with its revision
// (ETag of a put, X-Revision of a delete), refused for its condition (412,
// with the key's ETag), or of unknown outcome. A write that surely did
// nothing otherwise is left out (see countWrite).
func (r *scenario) write(id int, n *tc.Node, op int, kind lincheck.Kind, key, val, path string, cond lincheck.Cond) {
	r.writeTTL(id, n, op, kind, key, val, path, cond, 0)
}

// writeTTL is write for a PUT whose path carries ?ttl=D (ttl 0: none).
func (r *scenario) writeTTL(id int, n *tc.Node, op int, kind lincheck.Kind, key, val, path string, cond lincheck.Cond, ttl time.Duration) {
	method := http.MethodPut
	if kind == lincheck.Delete {
		method = http.MethodDelete
	}
	r.mu.Lock()
	call := r.rec.Now()
	if kind == lincheck.Put {
		r.attempts[val], r.attKey[val] = call, key
		if ttl > 0 {
			r.ttls[val] = ttl
		}
	} else if _, ok := r.delAttempts[key]; !ok {
		r.delAttempts[key] = call
	}
	r.mu.Unlock()
	a := send(n, method, path, val, condHeader(cond))
	rec := lincheck.Op{Client: id, Kind: kind, Key: key, Value: val, Found: kind == lincheck.Put, Cond: cond, TTL: ttl, Node: n.ID, Call: call}
	ok := a.is(http.StatusNoContent)
	what := func() string { return fmt.Sprintf("%s %s%v on %v", method, path, cond, n) }
	switch {
	case ok && kind == lincheck.Put:
		rev, has, err := etag(a.Header)
		if x, xerr := xRevision(a.Header); err != nil || !has || xerr != nil || x != rev {
			r.oddity("%s: 204 with ETag %q and X-Revision %q", what(), a.Header.Get("ETag"), a.Header.Get("X-Revision"))
		}
		rec.Revision = rev
	case ok:
		x, err := xRevision(a.Header)
		if err != nil || x == 0 && cond.Kind != lincheck.Always { // 0 for a delete of a missing key in an empty store
			r.oddity("%s: 204 with X-Revision %q", what(), a.Header.Get("X-Revision"))
		}
		rec.Revision = x
	case a.is(http.StatusPreconditionFailed):
		rev, has, err := etag(a.Header)
		if err != nil || cond.Kind == lincheck.Always {
			r.oddity("%s: 412 with ETag %q", what(), a.Header.Get("ETag"))
		}
		if strings.HasPrefix(path, "/v1/") {
			var b struct{ ModRevision *uint64 }
			if json.Unmarshal([]byte(a.Body), &b) != nil || b.ModRevision == nil || *b.ModRevision != rev {
				r.oddity("%s: 412 with ETag %q and body %q", what(), a.Header.Get("ETag"), a.Body)
			}
		}
		rec.Refused, rec.Found, rec.Revision = true, has, rev
		r.counts[op][outcomeRefused].Add(1)
		if kind == lincheck.Put {
			r.mu.Lock()
			r.refusedVals[val] = true // so a watch or a read that shows it fails
			r.mu.Unlock()
		}
		r.rec.Finish(rec, true)
		return
	}
	if r.countWrite(op, ok, a.Code, a.Body, a.err) != outcomeFailed {
		r.rec.Finish(rec, ok)
	}
}

// countWrite files a write's outcome and returns it: failed when the
// server says nothing was done (or nobody listened), unknown otherwise. A
// failed write stays out of the history: recorded as unknown it could take
// effect at any later time, and a member down for a second (a power cut)
// leaves a failed write on every key, which would excuse any state, lost
// writes included, in checks 1 and 2. (A 412 is filed by write: a definite
// "not written", recorded as such.)
func (r *scenario) countWrite(kind int, ok bool, code int, body string, err error) int {
	outcome := outcomeUnknown
	switch {
	case ok:
		outcome = outcomeOK
	case err != nil && strings.Contains(err.Error(), "connection refused"),
		err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "nothing was done"):
		outcome = outcomeFailed
	}
	r.counts[kind][outcome].Add(1)
	return outcome
}

// acked is the number of acknowledged writes, conditional ones included
// (and transactions).
func (r *scenario) acked() int64 {
	var n int64
	for _, k := range []int{opPut, opDelete, opCasPut, opCreate, opCasDelete, opTTLPut, opKeepAlive, opTxn} {
		n += r.counts[k][outcomeOK].Load()
	}
	return n
}

// condCounts sums the outcomes of the conditional writes.
func (r *scenario) condCounts() (c [outcomes]int64) {
	for _, k := range []int{opCasPut, opCreate, opCasDelete, opKeepAlive} {
		for o := range c {
			c[o] += r.counts[k][o].Load()
		}
	}
	return c
}

// waitWrites waits until k more writes have been acknowledged.
func (r *scenario) waitWrites(k int64, timeout time.Duration) error {
	acked := r.acked
	want := acked() + k
	return tc.Poll(timeout, func() error {
		if got := acked(); got < want {
			return fmt.Errorf("%d of %d writes acknowledged", got, want)
		}
		return nil
	})
}

// probeWrites is check 5: a PUT through some member succeeds within
// writeRecovery of the last heal.
func (r *scenario) probeWrites() error {
	i := 0
	err := tc.Poll(time.Until(r.lastHeal.Add(writeRecovery+5*time.Second)), func() error {
		members := r.c.Members()
		n := members[i%len(members)]
		val := fmt.Sprintf("probe-%d", i)
		r.mu.Lock()
		r.attempts[val], r.attKey[val] = r.rec.Now(), "rob-probe"
		r.mu.Unlock()
		code, _, err := doWithin(memberRequestTimeout+time.Second, n, http.MethodPut, "/rob-probe", val)
		i++
		if err == nil && code == http.StatusNoContent {
			return nil
		}
		return fmt.Errorf("last try on %v: %d %v", n, code, err)
	})
	took := time.Since(r.lastHeal)
	if err != nil {
		return fmt.Errorf("no write accepted within %v of the last heal (%v)", took, err)
	}
	r.event("writes accepted %v after the last heal", took.Round(time.Millisecond))
	if took > writeRecovery {
		return fmt.Errorf("first write accepted %v after the last heal", took)
	}
	return nil
}

// finalReads reads every key linearizably, as client scenarioClients, and
// notes the highest store revision they show (finalRev).
func (r *scenario) finalReads() error {
	for _, key := range scenarioAllKeys() {
		try := 0
		err := tc.Poll(30*time.Second, func() error {
			members := r.c.Members()
			n := members[try%len(members)]
			try++
			call := r.rec.Now()
			a := send(n, http.MethodGet, "/"+url.PathEscape(key), "", nil)
			if a.err != nil {
				return a.err
			}
			if a.Code != http.StatusOK && a.Code != http.StatusNotFound {
				return fmt.Errorf("GET %s on %v: %d %s", key, n, a.Code, a.Body)
			}
			rev, _, err := etag(a.Header)
			x, xerr := xRevision(a.Header)
			if err != nil || xerr != nil || rev > x {
				r.oddity("final GET %s on %v: %d with ETag %q and X-Revision %q", key, n, a.Code, a.Header.Get("ETag"), a.Header.Get("X-Revision"))
			}
			r.rec.Add(lincheck.Op{Client: scenarioClients, Kind: lincheck.Get, Key: key, Value: a.Body, Found: a.Code == http.StatusOK, Revision: rev, Call: call, Return: r.rec.Now()})
			r.mu.Lock()
			r.finalRev = max(r.finalRev, x)
			r.mu.Unlock()
			return nil
		})
		if err != nil {
			return fmt.Errorf("final read of %s: %v", key, err)
		}
	}
	return nil
}

// checkSerializable checks that every serializable read returned a value
// that a PUT on that key had tried to write before the read returned, and
// was not refused for its condition. It also checks the revisions of the
// history across keys (lincheck.CheckRevisions) and reports the answers
// that broke the contract (oddities).
func (r *scenario) checkSerializable(history []lincheck.Op) error {
	if err := lincheck.CheckRevisions(history); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.oddities) > 0 {
		return fmt.Errorf("answers the contract does not allow: %s", strings.Join(r.oddities, "; "))
	}
	var bad []string
	for _, s := range r.serial {
		if !s.found {
			continue
		}
		call, ok := r.attempts[s.value]
		if !ok || r.attKey[s.value] != s.key || call > s.ret || r.refusedVals[s.value] {
			bad = append(bad, fmt.Sprintf("%s=%q", s.key, s.value))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("serializable reads returned values never written: %v", bad)
	}
	return nil
}

// checkLastWrites is the explicit part of check 2. For each key, take the
// acknowledged write that returned last (a put, a delete, or a write of
// the branch of a transaction that ran); if every other write on the key
// returned before it was called (so none may take effect after it), the
// final read (by client finalClient) must show what it left, and for a
// put, with the revision the put answered, unless it was a put with a TTL
// and the final read returned TTL after its call or later (the key may
// have expired). Writes refused for their condition (412) wrote nothing and
// do not count; a transaction of unknown outcome may write what either of
// its branches does.
func checkLastWrites(history []lincheck.Op, finalClient int) error {
	type write struct {
		op lincheck.Op
		e  lincheck.Effect
	}
	final := map[string]lincheck.Op{}
	writes := map[string][]write{}
	for _, op := range history {
		if op.Kind == lincheck.Get && op.Client == finalClient {
			final[op.Key] = op
			continue
		}
		for _, e := range op.Effects() {
			writes[e.Key] = append(writes[e.Key], write{op, e})
		}
	}
	var errs []string
	for key, ws := range writes {
		last := -1
		for i, w := range ws {
			if w.e.Sure && (last < 0 || w.op.Return > ws[last].op.Return) {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		alone := true
		for i, w := range ws {
			if i != last && w.op.Return >= ws[last].op.Call {
				alone = false
				break
			}
		}
		if !alone {
			continue
		}
		f, ok := final[key]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: no final read", key))
			continue
		}
		w := ws[last]
		if w.e.Put && w.e.TTL > 0 && !f.Found && f.Return >= w.op.Call+int64(w.e.TTL) {
			continue // expired
		}
		if wantFound := w.e.Put; f.Found != wantFound || (wantFound && f.Value != w.e.Value) ||
			(wantFound && w.op.Revision != 0 && f.Revision != 0 && f.Revision != w.op.Revision) {
			errs = append(errs, fmt.Sprintf("%s: last acknowledged write %v, final read %v", key, w.op, f))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("acknowledged writes lost: %s", strings.Join(errs, "; "))
	}
	return nil
}
