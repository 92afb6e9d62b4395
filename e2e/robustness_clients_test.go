package e2e

// The robustness suite's clients, and checks 1 and 2 (see robustness_test.go).

import (
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strings"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

// Clients

func (r *scenario) client(id int, seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	do := func(n *tc.Node, method, path, body string) (int, string, error) {
		return doWithin(memberRequestTimeout+3*time.Second, n, method, path, body)
	}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		members := r.c.Members()
		n := members[rng.Intn(len(members))]
		key := scenarioKey(rng.Intn(scenarioKeys))
		switch p := rng.Intn(100); {
		case p < 35:
			val := fmt.Sprintf("c%d-%d", id, seq)
			r.mu.Lock()
			call := r.rec.Now()
			r.attempts[val], r.attKey[val] = call, key
			r.mu.Unlock()
			code, body, err := do(n, http.MethodPut, "/"+url.PathEscape(key), val)
			ok := err == nil && code == http.StatusNoContent
			if r.countWrite(opPut, ok, code, body, err) != outcomeFailed {
				r.rec.Put(id, key, val, call, ok)
			}
		case p < 45:
			call := r.rec.Now()
			code, body, err := do(n, http.MethodDelete, "/v1/kv/"+url.PathEscape(key), "")
			ok := err == nil && code == http.StatusNoContent
			if r.countWrite(opDelete, ok, code, body, err) != outcomeFailed {
				r.rec.Delete(id, key, call, ok)
			}
		case p < 80:
			call := r.rec.Now()
			code, body, err := do(n, http.MethodGet, "/"+url.PathEscape(key), "")
			switch {
			case err == nil && code == http.StatusOK:
				r.rec.Get(id, key, body, true, call)
				r.counts[opGet][outcomeOK].Add(1)
			case err == nil && code == http.StatusNotFound:
				r.rec.Get(id, key, "", false, call)
				r.counts[opGet][outcomeOK].Add(1)
			default:
				r.counts[opGet][outcomeFailed].Add(1)
			}
		default:
			code, body, err := do(n, http.MethodGet, "/"+url.PathEscape(key)+"?consistency=serializable", "")
			ret := r.rec.Now()
			if err == nil && (code == http.StatusOK || code == http.StatusNotFound) {
				r.mu.Lock()
				r.serial = append(r.serial, serialRead{key: key, value: body, found: code == http.StatusOK, ret: ret})
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

// countWrite files a write's outcome and returns it: failed when the
// server says nothing was done (or nobody listened), unknown otherwise. A
// failed write stays out of the history: recorded as unknown it could take
// effect at any later time, and a member down for a second (a power cut)
// leaves a failed write on every key, which would excuse any state, lost
// writes included, in checks 1 and 2.
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

// waitWrites waits until k more writes have been acknowledged.
func (r *scenario) waitWrites(k int64, timeout time.Duration) error {
	acked := func() int64 { return r.counts[opPut][outcomeOK].Load() + r.counts[opDelete][outcomeOK].Load() }
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
		code, _, err := doWithin(memberRequestTimeout+time.Second, n, http.MethodPut, "/rob-probe", fmt.Sprint(i))
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

// finalReads reads every key linearizably, as client scenarioClients.
func (r *scenario) finalReads() error {
	for i := 0; i < scenarioKeys; i++ {
		key := scenarioKey(i)
		try := 0
		err := tc.Poll(30*time.Second, func() error {
			members := r.c.Members()
			n := members[try%len(members)]
			try++
			call := r.rec.Now()
			code, body, err := doWithin(memberRequestTimeout+3*time.Second, n, http.MethodGet, "/"+url.PathEscape(key), "")
			switch {
			case err != nil:
				return err
			case code == http.StatusOK || code == http.StatusNotFound:
				r.rec.Get(scenarioClients, key, body, code == http.StatusOK, call)
				return nil
			}
			return fmt.Errorf("GET %s on %v: %d %s", key, n, code, body)
		})
		if err != nil {
			return fmt.Errorf("final read of %s: %v", key, err)
		}
	}
	return nil
}

// checkSerializable checks that every serializable read returned a value
// that a PUT on that key had tried to write before the read returned.
func (r *scenario) checkSerializable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []string
	for _, s := range r.serial {
		if !s.found {
			continue
		}
		call, ok := r.attempts[s.value]
		if !ok || r.attKey[s.value] != s.key || call > s.ret {
			bad = append(bad, fmt.Sprintf("%s=%q", s.key, s.value))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("serializable reads returned values never written: %v", bad)
	}
	return nil
}

// checkLastWrites is the explicit part of check 2. For each key, take the
// acknowledged write that returned last; if every other write on the key
// returned before it was called (so none may take effect after it), the
// final read (by client finalClient) must show what it left.
func checkLastWrites(history []lincheck.Op, finalClient int) error {
	final := map[string]lincheck.Op{}
	writes := map[string][]lincheck.Op{}
	for _, op := range history {
		switch {
		case op.Kind == lincheck.Get && op.Client == finalClient:
			final[op.Key] = op
		case op.Kind != lincheck.Get:
			writes[op.Key] = append(writes[op.Key], op)
		}
	}
	var errs []string
	checked := 0
	for key, ws := range writes {
		last := -1
		for i, w := range ws {
			if !w.Unknown() && (last < 0 || w.Return > ws[last].Return) {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		alone := true
		for i, w := range ws {
			if i != last && w.Return >= ws[last].Call {
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
		checked++
		w := ws[last]
		if wantFound := w.Kind == lincheck.Put; f.Found != wantFound || (wantFound && f.Value != w.Value) {
			errs = append(errs, fmt.Sprintf("%s: last acknowledged write %v, final read %v", key, w, f))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("acknowledged writes lost: %s", strings.Join(errs, "; "))
	}
	return nil
}
