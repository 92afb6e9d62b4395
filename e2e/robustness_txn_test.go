package e2e

// The robustness suite's clients for issue #14 (see robustness_test.go):
// puts with a TTL and keep-alives, and transactions (POST /v1/txn). The
// transactions work on keys of their own (rob-t0...), which they tie into
// one partition of the porcupine check; TTL puts go to those keys and now
// and then to the ordinary keys, where writes are frequent enough that
// keys seldom expire, and to keys of their own (rob-e0...), written with a
// TTL of 1-2 s about every two seconds, so that they do expire during a run
// (transactions read them now and then). The checks (lincheck) let a key with a TTL vanish no
// sooner than TTL after its put was called, and only while it still holds
// what that put wrote.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

const (
	// moreTrafficPercent of the clients' operations are of the kinds here.
	moreTrafficPercent = 25
	scenarioTxnKeys    = 4
	scenarioTTLKeys    = 4
)

func scenarioTxnKey(i int) string { return fmt.Sprintf("rob-t%d", i) }
func scenarioTTLKey(i int) string { return fmt.Sprintf("rob-e%d", i) }

// scenarioAllKeys are the keys the clients use.
func scenarioAllKeys() []string {
	var ks []string
	for i := 0; i < scenarioKeys; i++ {
		ks = append(ks, scenarioKey(i))
	}
	for i := 0; i < scenarioTxnKeys; i++ {
		ks = append(ks, scenarioTxnKey(i))
	}
	for i := 0; i < scenarioTTLKeys; i++ {
		ks = append(ks, scenarioTTLKey(i))
	}
	return ks
}

// txnStats count the transactions by outcome.
type txnStats struct {
	then, els, unknown, resultsUnknown, multiKeyWrites int
}

// randomTTL is a TTL between lo and hi seconds, in whole seconds or half
// ones (Go durations as the contract takes them).
func randomTTL(rng *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo*2+rng.Intn((hi-lo)*2+1)) * time.Second / 2
}

// moreTraffic is one operation of the kinds of issue #14 through n.
func (r *scenario) moreTraffic(id int, rng *rand.Rand, n *tc.Node, seq int) {
	val := fmt.Sprintf("c%d-%d", id, seq) // unique in the run
	tkey := scenarioTxnKey(rng.Intn(scenarioTxnKeys))
	ekey := scenarioTTLKey(rng.Intn(scenarioTTLKeys))
	switch p := rng.Intn(1000); {
	case p < 20:
		ttl := randomTTL(rng, 1, 2)
		r.writeTTL(id, n, opTTLPut, lincheck.Put, ekey, val, ttlPath(rng, ekey, ttl), lincheck.Cond{}, ttl)
	case p < 120:
		r.readTTL(id, n, ekey)
	default:
		r.moreTrafficOnTxnKeys(id, rng, n, val, tkey)
	}
}

// moreTrafficOnTxnKeys is one operation on the transactions' keys (or a
// put with a TTL on an ordinary key).
func (r *scenario) moreTrafficOnTxnKeys(id int, rng *rand.Rand, n *tc.Node, val, tkey string) {
	switch p := rng.Intn(100); {
	case p < 45:
		r.txn(id, rng, n, val)
	case p < 60:
		// A short TTL on a transaction key: it expires unless written
		// again soon.
		ttl := randomTTL(rng, 1, 3)
		r.writeTTL(id, n, opTTLPut, lincheck.Put, tkey, val, ttlPath(rng, tkey, ttl), lincheck.Cond{}, ttl)
	case p < 68:
		key := scenarioKey(rng.Intn(scenarioKeys))
		ttl := randomTTL(rng, 2, 5)
		r.writeTTL(id, n, opTTLPut, lincheck.Put, key, val, ttlPath(rng, key, ttl), lincheck.Cond{}, ttl)
	case p < 78:
		// Keep-alive: re-put what was read, with its TTL, if nobody
		// wrote since.
		if rev, found, ttl, ok := r.readTTL(id, n, tkey); ok && found && ttl > 0 {
			r.writeTTL(id, n, opKeepAlive, lincheck.Put, tkey, val, ttlPath(rng, tkey, ttl), lincheck.Cond{Kind: lincheck.IfMatch, Rev: rev}, ttl)
		}
	case p < 93:
		r.readTTL(id, n, tkey)
	case p < 97:
		r.write(id, n, opPut, lincheck.Put, tkey, val, "/v1/kv/"+url.PathEscape(tkey), lincheck.Cond{})
	default:
		r.write(id, n, opDelete, lincheck.Delete, tkey, "", "/v1/kv/"+url.PathEscape(tkey), lincheck.Cond{})
	}
}

// ttlPath is a PUT's path with ?ttl=, through the root API or /v1.
func ttlPath(rng *rand.Rand, key string, ttl time.Duration) string {
	if rng.Intn(2) == 0 {
		return "/" + url.PathEscape(key) + "?ttl=" + ttl.String()
	}
	return "/v1/kv/" + url.PathEscape(key) + "?ttl=" + ttl.String()
}

// readTTL is read (a linearizable GET, recorded) that also returns the
// key's TTL as the answer shows it (X-TTL), and checks the TTL headers: a
// value a PUT with a TTL wrote carries that TTL, any other none.
func (r *scenario) readTTL(id int, n *tc.Node, key string) (rev uint64, found bool, ttl time.Duration, ok bool) {
	call := r.rec.Now()
	a := send(n, http.MethodGet, "/v1/kv/"+url.PathEscape(key), "", nil)
	switch {
	case a.is(http.StatusOK):
		rev, has, err := etag(a.Header)
		if err != nil || !has {
			r.oddity("GET %s on %v: 200 with ETag %q", key, n, a.Header.Get("ETag"))
		}
		r.rec.Add(lincheck.Op{Client: id, Kind: lincheck.Get, Key: key, Value: a.Body, Found: true, Revision: rev, Node: n.ID, Call: call, Return: r.rec.Now()})
		r.counts[opGet][outcomeOK].Add(1)
		ttl = r.checkTTLHeaders(n, key, a.Body, a.Header)
		return rev, true, ttl, rev != 0
	case a.is(http.StatusNotFound):
		r.rec.Get(id, key, "", false, call)
		r.counts[opGet][outcomeOK].Add(1)
		return 0, false, 0, true
	}
	r.counts[opGet][outcomeFailed].Add(1)
	return 0, false, 0, false
}

// checkTTLHeaders checks a GET's X-TTL and X-TTL-Remaining against the
// TTL the value was written with, and returns the X-TTL.
func (r *scenario) checkTTLHeaders(n *tc.Node, key, value string, h http.Header) time.Duration {
	r.mu.Lock()
	want, tried := r.ttls[value], r.attKey[value] == key
	r.mu.Unlock()
	xttl, xrem := h.Get("X-TTL"), h.Get("X-TTL-Remaining")
	if !tried {
		return 0 // not a client's value (a probe); checks 1 and 6 look at it
	}
	if want == 0 {
		if xttl != "" || xrem != "" {
			r.oddity("GET %s on %v: %q, written without TTL, with X-TTL %q and X-TTL-Remaining %q", key, n, value, xttl, xrem)
		}
		return 0
	}
	got, err := time.ParseDuration(xttl)
	rem, rerr := strconv.ParseInt(xrem, 10, 64)
	if err != nil || got != want || rerr != nil || rem < 0 || time.Duration(rem)*time.Second > want+time.Second {
		r.oddity("GET %s on %v: %q, written with TTL %v, with X-TTL %q and X-TTL-Remaining %q", key, n, value, want, xttl, xrem)
	}
	return want
}

// Transactions

type txnCompareJSON struct {
	Key            string  `json:"key"`
	ModRevision    *uint64 `json:"modRevision,omitempty"`
	CreateRevision *uint64 `json:"createRevision,omitempty"`
	Version        *uint64 `json:"version,omitempty"`
	Value          *string `json:"value,omitempty"`
	Exists         *bool   `json:"exists,omitempty"`
}

type txnPutJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	TTL   string `json:"ttl,omitempty"`
}

type txnKeyJSON struct {
	Key string `json:"key"`
}

type txnOpJSON struct {
	Put    *txnPutJSON `json:"put,omitempty"`
	Delete *txnKeyJSON `json:"delete,omitempty"`
	Get    *txnKeyJSON `json:"get,omitempty"`
}

type txnRequestJSON struct {
	Compare []txnCompareJSON `json:"compare"`
	Success []txnOpJSON      `json:"success"`
	Failure []txnOpJSON      `json:"failure"`
}

type txnResultJSON struct {
	Put *struct {
		Key                  string `json:"key"`
		ModRevision, Version uint64
	} `json:"put"`
	Delete *struct {
		Key     string `json:"key"`
		Deleted bool   `json:"deleted"`
	} `json:"delete"`
	Get *struct {
		Key, Value, Encoding                 string
		Found                                bool
		CreateRevision, ModRevision, Version uint64
		TTL                                  string // as the listing's items (not in the contract's example)
	} `json:"get"`
}

type txnAnswerJSON struct {
	Succeeded      bool            `json:"succeeded"`
	Revision       uint64          `json:"revision"`
	Results        []txnResultJSON `json:"results"`
	ResultsUnknown json.RawMessage `json:"resultsUnknown"`
}

func txnRequest(t *lincheck.TxnInfo) txnRequestJSON {
	req := txnRequestJSON{Compare: []txnCompareJSON{}, Success: []txnOpJSON{}, Failure: []txnOpJSON{}}
	for _, c := range t.Compare {
		j := txnCompareJSON{Key: c.Key}
		num := c.Num
		switch c.Target {
		case lincheck.CmpModRevision:
			j.ModRevision = &num
		case lincheck.CmpCreateRevision:
			j.CreateRevision = &num
		case lincheck.CmpVersion:
			j.Version = &num
		case lincheck.CmpValue:
			v := c.Value
			j.Value = &v
		case lincheck.CmpExists:
			e := c.Exists
			j.Exists = &e
		}
		req.Compare = append(req.Compare, j)
	}
	conv := func(ops []lincheck.TxnOp) []txnOpJSON {
		out := []txnOpJSON{}
		for _, o := range ops {
			switch o.Kind {
			case lincheck.Put:
				p := &txnPutJSON{Key: o.Key, Value: o.Value}
				if o.TTL > 0 {
					p.TTL = o.TTL.String()
				}
				out = append(out, txnOpJSON{Put: p})
			case lincheck.Delete:
				out = append(out, txnOpJSON{Delete: &txnKeyJSON{o.Key}})
			default:
				out = append(out, txnOpJSON{Get: &txnKeyJSON{o.Key}})
			}
		}
		return out
	}
	req.Success, req.Failure = conv(t.Success), conv(t.Failure)
	return req
}

// parseTxnAnswer reads a 200's body into t (Succeeded, Results) and returns
// its revision, or says how it breaks the contract.
func parseTxnAnswer(body string, t *lincheck.TxnInfo) (uint64, error) {
	rev, _, err := parseTxnAnswerTTLs(body, t)
	return rev, err
}

// parseTxnAnswerTTLs is parseTxnAnswer that also returns the ttl each found
// get showed ("" for none), in order.
func parseTxnAnswerTTLs(body string, t *lincheck.TxnInfo) (rev uint64, ttls []string, err error) {
	rev, err = parseTxnAnswerInto(body, t, &ttls)
	if err != nil {
		t.Succeeded, t.Results = false, nil
	}
	return rev, ttls, err
}

func parseTxnAnswerInto(body string, t *lincheck.TxnInfo, ttlsOut *[]string) (uint64, error) {
	var ttls []string
	defer func() { *ttlsOut = ttls }()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	var a txnAnswerJSON
	if err := dec.Decode(&a); err != nil {
		return 0, fmt.Errorf("body %q: %v", body, err)
	}
	t.Succeeded = a.Succeeded
	if a.Results == nil {
		if len(a.ResultsUnknown) == 0 || string(a.ResultsUnknown) == "null" {
			return 0, fmt.Errorf("results null without resultsUnknown")
		}
		return a.Revision, nil // t.Results stays nil: unknown
	}
	branch := t.Failure
	if a.Succeeded {
		branch = t.Success
	}
	if len(a.Results) != len(branch) {
		return 0, fmt.Errorf("%d results for a branch of %d operations", len(a.Results), len(branch))
	}
	t.Results = make([]lincheck.TxnResult, len(branch))
	for i, res := range a.Results {
		op, out := branch[i], &t.Results[i]
		out.Kind, out.Key = op.Kind, op.Key
		switch {
		case op.Kind == lincheck.Put && res.Put != nil && res.Delete == nil && res.Get == nil && res.Put.Key == op.Key:
			out.ModRevision, out.Version = res.Put.ModRevision, res.Put.Version
		case op.Kind == lincheck.Delete && res.Delete != nil && res.Put == nil && res.Get == nil && res.Delete.Key == op.Key:
			out.Found = res.Delete.Deleted
		case op.Kind == lincheck.Get && res.Get != nil && res.Put == nil && res.Delete == nil:
			g := res.Get
			key, value := g.Key, g.Value
			if g.Encoding == "base64" {
				k, err1 := base64.StdEncoding.DecodeString(key)
				v, err2 := base64.StdEncoding.DecodeString(value)
				if err1 != nil || err2 != nil {
					return 0, fmt.Errorf("result %d: bad base64", i)
				}
				key, value = string(k), string(v)
			} else if g.Encoding != "" {
				return 0, fmt.Errorf("result %d: encoding %q", i, g.Encoding)
			}
			if key != op.Key || (!g.Found && (value != "" || g.ModRevision != 0)) || (g.Found && (g.ModRevision == 0 || g.CreateRevision == 0 || g.Version == 0)) {
				return 0, fmt.Errorf("result %d: %+v for %v", i, *g, op)
			}
			out.Found, out.Value, out.ModRevision, out.CreateRevision, out.Version = g.Found, value, g.ModRevision, g.CreateRevision, g.Version
			if g.TTL != "" {
				if _, err := time.ParseDuration(g.TTL); err != nil || !g.Found {
					return 0, fmt.Errorf("result %d: ttl %q", i, g.TTL)
				}
			}
			if g.Found {
				ttls = append(ttls, g.TTL)
			}
		default:
			return 0, fmt.Errorf("result %d is not that of %v", i, op)
		}
	}
	if a.Revision == 0 && t.SurelyWrote() {
		return 0, fmt.Errorf("revision 0 for a transaction that wrote") // 0 only for a read of the empty store
	}
	return a.Revision, nil
}

// randomTxn makes up a transaction over two or three transaction keys:
// compares on what a GET of one of them just showed (so that many succeed)
// or made up, a success branch of puts (some with a TTL), deletes and
// gets, a failure branch of gets and now and then a put.
func (r *scenario) randomTxn(id int, rng *rand.Rand, n *tc.Node, val string) *lincheck.TxnInfo {
	perm := rng.Perm(scenarioTxnKeys)
	keys := make([]string, 2+rng.Intn(2))
	for i := range keys {
		keys[i] = scenarioTxnKey(perm[i])
	}
	t := &lincheck.TxnInfo{}
	if rng.Intn(3) > 0 {
		if rev, found, _, ok := r.readTTL(id, n, keys[0]); ok {
			switch c := rng.Intn(4); {
			case !found && c < 2:
				t.Compare = append(t.Compare, lincheck.Compare{Key: keys[0], Target: lincheck.CmpExists, Exists: false})
			case !found:
				t.Compare = append(t.Compare, lincheck.Compare{Key: keys[0], Target: lincheck.CmpModRevision, Num: 0})
			case c < 3:
				t.Compare = append(t.Compare, lincheck.Compare{Key: keys[0], Target: lincheck.CmpModRevision, Num: rev})
			default:
				t.Compare = append(t.Compare, lincheck.Compare{Key: keys[0], Target: lincheck.CmpExists, Exists: true})
			}
		}
	}
	for _, k := range keys[1:] {
		switch rng.Intn(8) {
		case 0:
			t.Compare = append(t.Compare, lincheck.Compare{Key: k, Target: lincheck.CmpVersion, Num: uint64(rng.Intn(3))})
		case 1:
			t.Compare = append(t.Compare, lincheck.Compare{Key: k, Target: lincheck.CmpExists, Exists: rng.Intn(2) == 0})
		case 2:
			t.Compare = append(t.Compare, lincheck.Compare{Key: k, Target: lincheck.CmpCreateRevision, Num: uint64(rng.Intn(3))})
		case 3:
			t.Compare = append(t.Compare, lincheck.Compare{Key: k, Target: lincheck.CmpValue, Value: "none"})
		}
	}
	for i, k := range keys {
		v := fmt.Sprintf("%s-t%d", val, i)
		switch p := rng.Intn(10); {
		case p < 5:
			op := lincheck.TxnOp{Kind: lincheck.Put, Key: k, Value: v}
			if rng.Intn(4) == 0 {
				op.TTL = randomTTL(rng, 1, 3)
			}
			t.Success = append(t.Success, op)
			if rng.Intn(3) == 0 {
				t.Success = append(t.Success, lincheck.TxnOp{Kind: lincheck.Get, Key: k}) // sees the put
			}
		case p < 7:
			t.Success = append(t.Success, lincheck.TxnOp{Kind: lincheck.Delete, Key: k})
		default:
			t.Success = append(t.Success, lincheck.TxnOp{Kind: lincheck.Get, Key: k})
		}
		if rng.Intn(2) == 0 {
			t.Failure = append(t.Failure, lincheck.TxnOp{Kind: lincheck.Get, Key: k})
		}
	}
	if rng.Intn(4) == 0 {
		k := keys[rng.Intn(len(keys))]
		t.Failure = append(t.Failure, lincheck.TxnOp{Kind: lincheck.Put, Key: k, Value: val + "-f"})
	}
	if rng.Intn(6) == 0 {
		// Whether a key that expires is still there.
		e := scenarioTTLKey(rng.Intn(scenarioTTLKeys))
		t.Success = append(t.Success, lincheck.TxnOp{Kind: lincheck.Get, Key: e})
		if rng.Intn(2) == 0 {
			t.Compare = append(t.Compare, lincheck.Compare{Key: e, Target: lincheck.CmpExists, Exists: rng.Intn(2) == 0})
		}
	}
	rng.Shuffle(len(t.Compare), func(i, j int) { t.Compare[i], t.Compare[j] = t.Compare[j], t.Compare[i] })
	return t
}

// txn sends a made-up transaction through n and records it: acknowledged
// with its branch, revision and results, or of unknown outcome. One that
// surely did nothing is left out (see countWrite).
func (r *scenario) txn(id int, rng *rand.Rand, n *tc.Node, val string) {
	t := r.randomTxn(id, rng, n, val)
	body, err := json.Marshal(txnRequest(t))
	if err != nil {
		r.oddity("txn request: %v", err)
		return
	}
	r.mu.Lock()
	call := r.rec.Now()
	for _, branch := range [][]lincheck.TxnOp{t.Success, t.Failure} {
		for _, o := range branch {
			switch o.Kind {
			case lincheck.Put:
				r.attempts[o.Value], r.attKey[o.Value] = call, o.Key
				if o.TTL > 0 {
					r.ttls[o.Value] = o.TTL
				}
			case lincheck.Delete:
				if _, ok := r.delAttempts[o.Key]; !ok {
					r.delAttempts[o.Key] = call
				}
			}
		}
	}
	r.mu.Unlock()
	a := send(n, http.MethodPost, "/v1/txn", string(body), http.Header{"Content-Type": {"application/json"}})
	rec := lincheck.Op{Client: id, Kind: lincheck.Txn, Txn: t, Node: n.ID, Call: call}
	switch {
	case a.is(http.StatusOK):
		rev, ttls, err := parseTxnAnswerTTLs(a.Body, t)
		if err != nil {
			// Fails check 1; recorded as of unknown outcome.
			r.oddity("POST /v1/txn %s on %v: 200 %v", body, n, err)
			r.counts[opTxn][outcomeUnknown].Add(1)
			r.rec.Finish(rec, false)
			return
		}
		rec.Revision = rev
		r.checkTxnTTLs(n, t, ttls)
		r.mu.Lock()
		// The values of the branch that did not run were never written:
		// a watch or a read that shows one fails.
		other := t.Failure
		if !t.Succeeded {
			other = t.Success
		}
		for _, o := range other {
			if o.Kind == lincheck.Put {
				r.refusedVals[o.Value] = true
			}
		}
		if t.Succeeded {
			r.txns.then++
		} else {
			r.txns.els++
		}
		if t.Results == nil {
			r.txns.resultsUnknown++
		}
		if writes := len(rec.Effects()); writes > 1 {
			r.txns.multiKeyWrites++
		}
		r.mu.Unlock()
	case a.err == nil && (a.Code == http.StatusBadRequest || a.Code == http.StatusRequestEntityTooLarge):
		r.oddity("POST /v1/txn %s on %v: %d %s", body, n, a.Code, strings.TrimSpace(a.Body))
		r.counts[opTxn][outcomeFailed].Add(1)
		return
	}
	ok := a.is(http.StatusOK)
	if r.countWrite(opTxn, ok, a.Code, a.Body, a.err) != outcomeFailed {
		if !ok {
			r.mu.Lock()
			r.txns.unknown++
			r.mu.Unlock()
		}
		r.rec.Finish(rec, ok)
	}
}

// checkTxnTTLs checks the ttl of every found get of t's results against
// the TTL its value was written with, as checkTTLHeaders does for a GET.
func (r *scenario) checkTxnTTLs(n *tc.Node, t *lincheck.TxnInfo, ttls []string) {
	k := 0
	for _, res := range t.Results {
		if res.Kind != lincheck.Get || !res.Found {
			continue
		}
		got := ttls[k]
		k++
		r.mu.Lock()
		want, tried := r.ttls[res.Value], r.attKey[res.Value] == res.Key
		r.mu.Unlock()
		if tried && ((want == 0) != (got == "") || (want != 0 && got != want.String())) {
			r.oddity("txn on %v: get %s=%q, written with TTL %v, shows ttl %q", n, res.Key, res.Value, want, got)
		}
	}
}

// logTxnStats logs what the transactions and TTL puts did.
func (r *scenario) logTxnStats(history []lincheck.Op) {
	ttlPuts, txnTTLPuts := 0, 0
	for _, op := range history {
		if op.Kind == lincheck.Put && op.TTL > 0 {
			ttlPuts++
		}
		if op.Kind == lincheck.Txn {
			for _, o := range append(append([]lincheck.TxnOp(nil), op.Txn.Success...), op.Txn.Failure...) {
				if o.Kind == lincheck.Put && o.TTL > 0 {
					txnTTLPuts++
				}
			}
		}
	}
	r.mu.Lock()
	s := r.txns
	r.mu.Unlock()
	r.t.Logf("transactions: %d ran their success branch, %d their failure branch, %d of unknown outcome, %d with results unknown, %d wrote several keys; %d puts with a TTL, %d more in transactions",
		s.then, s.els, s.unknown, s.resultsUnknown, s.multiKeyWrites, ttlPuts, txnTTLPuts)
}
