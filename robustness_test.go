package main

// The robustness suite: a three-member cluster of real processes whose peer
// traffic goes through a fault-injecting proxy, eight clients doing reads,
// writes and deletes against random members, and a nemesis applying faults
// picked from a seed (process kills and pauses, partitions, slow and lossy
// links, catch-up by snapshot, member replacement, a damaged WAL tail). After
// every run the checks below must hold:
//
//  1. the history is linearizable (porcupine, internal/lincheck);
//  2. no acknowledged write is lost: the final read of every key agrees with
//     the history, and a key whose last acknowledged write had no write
//     after or concurrent with it reads what that write left;
//  3. every replica reaches the same state (same applied index, same
//     digest), and no two replicas ever reported the same applied index with
//     different digests;
//  4. at most one member claims leadership in any term;
//  5. the cluster accepts writes again within 10 s of the last fault healing.
//
// Serializable reads are left out of check 1 but may only return values some
// PUT tried to write. TestRobustness runs a fixed table covering every fault
// kind; TestRobustnessSoak runs random schedules for -robustness.soak.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"raftexample/internal/faultproxy"
	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

var (
	robSeedFlag = flag.Int64("robustness.seed", 0, "seed of the robustness runs (0: a random one per run); a failing run prints its seed")
	robSoakFlag = flag.Duration("robustness.soak", 0, "run TestRobustnessSoak for this long (0: skip it)")
)

const (
	robClients        = 8
	robKeys           = 8
	robRequestTimeout = 2 * time.Second
	robWriteRecovery  = 10 * time.Second // check 5
)

var (
	faultproxyCut   = faultproxy.Fault{Cut: true}
	faultproxyDelay = faultproxy.Fault{Delay: 100 * time.Millisecond, Jitter: 50 * time.Millisecond}
	faultproxyDrop  = faultproxy.Fault{DropRate: 0.3}
)

// robFaults maps each fault kind to its function. A fault applies itself,
// holds, and heals itself before returning.
var robFaults = map[string]func(r *robRun) error{
	"kill-leader":        func(r *robRun) error { return r.kill(true) },
	"kill-follower":      func(r *robRun) error { return r.kill(false) },
	"sigstop-leader":     (*robRun).sigstopLeader,
	"partition-leader":   func(r *robRun) error { return r.partition(true) },
	"partition-follower": func(r *robRun) error { return r.partition(false) },
	"one-way-partition":  (*robRun).oneWay,
	"delay":              (*robRun).delay,
	"drop":               (*robRun).drop,
	"snapshot-catchup":   (*robRun).snapshotCatchUp,
	"replace-member":     (*robRun).replaceMember,
	"wal-damage":         (*robRun).walDamage,
}

func robFaultNames() []string {
	var names []string
	for n := range robFaults {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func robSeed() int64 {
	if *robSeedFlag != 0 {
		return *robSeedFlag
	}
	return time.Now().UnixNano()
}

// TestRobustness is the CI set: every fault kind at least once.
func TestRobustness(t *testing.T) {
	if testing.Short() {
		t.Skip("robustness runs take minutes")
	}
	table := []struct {
		name   string
		faults []string
	}{
		{"kill-leader+partition-follower", []string{"kill-leader", "partition-follower"}},
		{"sigstop-leader+drop", []string{"sigstop-leader", "drop"}},
		{"partition-leader+delay", []string{"partition-leader", "delay"}},
		{"one-way-partition+kill-follower", []string{"one-way-partition", "kill-follower"}},
		{"snapshot-catchup", []string{"snapshot-catchup"}},
		{"replace-member", []string{"replace-member"}},
		{"wal-damage", []string{"wal-damage"}},
	}
	start, runs := time.Now(), 0
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			runs++
			res := robRunScenario(t, robSeed(), tt.faults, 15*time.Second)
			if !res.ok() {
				t.Errorf("replay: go test -run '^TestRobustness$/^%s$' -v . -args -robustness.seed=%d", regexp.QuoteMeta(tt.name), res.seed)
			}
		})
	}
	t.Logf("TestRobustness: %d runs in %v", runs, time.Since(start).Round(time.Second))
}

// TestRobustnessSoak runs random schedules back to back for -robustness.soak.
func TestRobustnessSoak(t *testing.T) {
	if *robSoakFlag <= 0 {
		t.Skip("soak runs only with -robustness.soak=DURATION")
	}
	names := robFaultNames()
	deadline := time.Now().Add(*robSoakFlag)
	var (
		runs, failures, ops, faults int
		failed                      []string
	)
	for i := 1; time.Now().Before(deadline); i++ {
		seed := robSeed()
		if i > 1 && *robSeedFlag != 0 {
			seed = time.Now().UnixNano() // the given seed replays the first run
		}
		rng := rand.New(rand.NewSource(seed))
		var kinds []string
		for k := 1 + rng.Intn(3); len(kinds) < k; {
			kinds = append(kinds, names[rng.Intn(len(names))])
		}
		var res *robResult
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			res = robRunScenario(t, seed, kinds, time.Duration(15+rng.Intn(11))*time.Second)
		})
		runs++
		if res != nil {
			ops += res.ops
			faults += res.faults
		}
		if res == nil || !res.ok() {
			failures++
			failed = append(failed, fmt.Sprintf("run%d seed %d %v", i, seed, kinds))
		}
	}
	t.Logf("soak summary: %d runs, %d ops, %d faults injected, %d failures", runs, ops, faults, failures)
	for _, f := range failed {
		t.Logf("failed: %s (replay: go test -run '^TestRobustnessSoak$' -v . -args -robustness.soak=1s -robustness.seed=%s)", f, strings.Fields(f)[2])
	}
}

// ---------------------------------------------------------------------------
// A run

type robResult struct {
	seed          int64
	ops, faults   int
	checks        []robCheck
	artifacts     string
	faultsSkipped bool
}

type robCheck struct {
	name string
	err  error
}

func (res *robResult) ok() bool {
	for _, c := range res.checks {
		if c.err != nil {
			return false
		}
	}
	return len(res.checks) > 0
}

// Outcome counters, per kind of client operation.
const (
	robPut = iota
	robGet
	robDelete
	robSGet // serializable get
	robKinds
)

var robKindNames = [robKinds]string{"put", "get", "delete", "serializable-get"}

const (
	robOK = iota
	robFailed
	robUnknown
)

type robSerialRead struct {
	key, value string
	found      bool
	ret        int64
}

type robRun struct {
	t    *testing.T
	seed int64
	rng  *rand.Rand // the nemesis's; used by the test goroutine only
	c    *tc.ProxiedCluster
	rec  *lincheck.Recorder
	t0   time.Time

	evMu   sync.Mutex
	events []string

	counts [robKinds][3]atomic.Int64

	mu       sync.Mutex
	attempts map[string]int64 // value -> call time of the PUT that tried it
	attKey   map[string]string
	serial   []robSerialRead
	stopped  map[int]bool // nodes under SIGSTOP

	// The sampler's findings.
	smu      sync.Mutex
	leaders  map[uint64]map[uint64]bool // term -> ids in state leader
	digests  map[uint64]map[string]uint64
	samples  int
	lastHeal time.Time
}

func (r *robRun) event(format string, args ...any) {
	msg := fmt.Sprintf("t+%6.2fs  ", time.Since(r.t0).Seconds()) + fmt.Sprintf(format, args...)
	r.evMu.Lock()
	r.events = append(r.events, msg)
	r.evMu.Unlock()
	r.t.Log(msg)
}

func robKey(i int) string { return fmt.Sprintf("rob-k%d", i) }

// robRunScenario runs one scenario and reports each check; a failed check
// fails t.
func robRunScenario(t *testing.T, seed int64, faults []string, traffic time.Duration) *robResult {
	r := &robRun{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), rec: lincheck.NewRecorder(),
		attempts: map[string]int64{}, attKey: map[string]string{}, stopped: map[int]bool{},
		leaders: map[uint64]map[uint64]bool{}, digests: map[uint64]map[string]uint64{},
	}
	res := &robResult{seed: seed, faults: len(faults)}
	t.Logf("seed %d, faults %v, traffic %v", seed, faults, traffic)
	for attempt := 1; ; attempt++ {
		r.c = tc.NewProxied(t, 3, seed, "--snap-count", "50", "--request-timeout", robRequestTimeout.String())
		err := r.c.Start()
		if err == nil {
			break
		}
		if !errors.Is(err, tc.ErrPortInUse) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; retrying with new ports", err)
		r.c.Close()
	}
	if _, err := r.c.Leader(30 * time.Second); err != nil {
		t.Fatalf("no leader after start: %v", err)
	}
	r.t0 = time.Now()
	r.event("cluster of 3 up")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.sample(stop) }()
	clientsStop := make(chan struct{})
	var cwg sync.WaitGroup
	for i := 0; i < robClients; i++ {
		cwg.Add(1)
		go func(i int) { defer cwg.Done(); r.client(i, seed+int64(i)+1, clientsStop) }(i)
	}
	stopClients := sync.OnceFunc(func() { close(clientsStop); cwg.Wait() })
	defer func() {
		stopClients()
		close(stop)
		wg.Wait()
	}()
	defer r.healAll() // also when a fault fails the test

	// Faults, each once writes flow.
	var faultErr error
	for _, f := range faults {
		if err := r.waitWrites(200, 20*time.Second); err != nil {
			faultErr = fmt.Errorf("before %s: %v", f, err)
			break
		}
		r.event("fault %s: begin", f)
		if err := robFaults[f](r); err != nil {
			faultErr = fmt.Errorf("fault %s: %v", f, err)
			r.event("fault %s: FAILED: %v", f, err)
			break
		}
		r.event("fault %s: healed", f)
	}
	r.healAll()
	r.lastHeal = time.Now()
	r.event("all faults healed")

	// Check 5: writes are accepted again soon.
	recoveryErr := r.probeWrites()

	// More traffic, to the end of the run (at least 2 s after the heal).
	end := r.t0.Add(traffic)
	if min := r.lastHeal.Add(2 * time.Second); end.Before(min) {
		end = min
	}
	time.Sleep(time.Until(end))
	stopClients()
	r.event("traffic stopped")

	// The final linearizable read of every key, part of the history.
	finalErr := r.finalReads()

	// Check 3: convergence.
	var sts []tc.Status
	convErr := tc.Poll(30*time.Second, func() error {
		var err error
		if sts, err = tc.Statuses(r.c.Members()...); err != nil {
			return err
		}
		return robConverged(sts)
	})
	if convErr == nil {
		convErr = r.digestConflicts()
	}
	if convErr == nil {
		r.event("converged: %s", tc.Summary(sts))
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close

	history := r.rec.History()
	res.ops = len(history)
	for k := 0; k < robKinds; k++ {
		t.Logf("ops %-16s ok %5d  failed %5d  unknown %5d", robKindNames[k],
			r.counts[k][robOK].Load(), r.counts[k][robFailed].Load(), r.counts[k][robUnknown].Load())
	}

	artifacts := os.Getenv("RAFTEXAMPLE_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "raftexample-robustness-"+time.Now().Format("20060102-150405"))
	}
	artifacts = filepath.Join(artifacts, fmt.Sprintf("%s-seed%d", strings.ReplaceAll(t.Name(), "/", "_"), seed))
	res.artifacts = artifacts

	// Check 1: linearizability.
	start := time.Now()
	lin, err := lincheck.Check(history, time.Minute, artifacts, "history")
	linErr := err
	if linErr == nil {
		switch lin.Verdict {
		case porcupine.Illegal:
			linErr = fmt.Errorf("history of %d ops is not linearizable; visualization: %s", lin.Ops, lin.HTML)
		case porcupine.Unknown:
			t.Logf("porcupine timed out on %d ops: verdict unknown", lin.Ops)
		}
	}
	t.Logf("porcupine: %v on %d ops in %v", lin.Verdict, lin.Ops, time.Since(start).Round(time.Millisecond))
	if linErr == nil {
		linErr = r.checkSerializable()
	}

	// Check 2: acknowledged writes survive.
	lostErr := finalErr
	if lostErr == nil {
		lostErr = robCheckLastWrites(history, robClients)
	}

	// Check 4: one leader per term.
	r.smu.Lock()
	leaderErr := robCheckLeaders(r.leaders)
	samples, terms := r.samples, len(r.leaders)
	r.smu.Unlock()
	t.Logf("sampler: %d status samples, %d terms seen", samples, terms)

	if faultErr != nil && recoveryErr == nil {
		recoveryErr = faultErr
	}
	res.checks = []robCheck{
		{"1 linearizable (porcupine) and serializable reads return written values", linErr},
		{"2 no acknowledged write lost", lostErr},
		{"3 replicas converge (same applied index, same digest)", convErr},
		{"4 at most one leader per term", leaderErr},
		{"5 writes accepted within 10s of the last heal (and faults ran as planned)", recoveryErr},
	}
	for _, c := range res.checks {
		if c.err != nil {
			t.Errorf("check %s: FAILED: %v", c.name, c.err)
		} else {
			t.Logf("check %s: ok", c.name)
		}
	}
	if !res.ok() {
		r.saveLogs(artifacts)
		t.Errorf("seed %d; artifacts (history visualization, node logs) in %s", seed, artifacts)
	}
	return res
}

// saveLogs copies every node's log into dir.
func (r *robRun) saveLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Log(err)
		return
	}
	for id := 1; r.c.Node(id) != nil; id++ {
		n := r.c.Node(id)
		b, _ := os.ReadFile(n.LogPath)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.log", id)), b, 0o644)
	}
}

// ---------------------------------------------------------------------------
// Clients

func (r *robRun) client(id int, seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	hc := &http.Client{Timeout: robRequestTimeout + 3*time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		members := r.c.Members()
		n := members[rng.Intn(len(members))]
		key := robKey(rng.Intn(robKeys))
		base := fmt.Sprintf("http://127.0.0.1:%d", n.HTTPPort)
		switch p := rng.Intn(100); {
		case p < 35:
			val := fmt.Sprintf("c%d-%d", id, seq)
			r.mu.Lock()
			call := r.rec.Now()
			r.attempts[val], r.attKey[val] = call, key
			r.mu.Unlock()
			code, body, err := robDo(hc, http.MethodPut, base+"/"+url.PathEscape(key), val)
			ok := err == nil && code == http.StatusNoContent
			r.rec.Put(id, key, val, call, ok)
			r.countWrite(robPut, ok, code, body, err)
		case p < 45:
			call := r.rec.Now()
			code, body, err := robDo(hc, http.MethodDelete, base+"/v1/kv/"+url.PathEscape(key), "")
			ok := err == nil && code == http.StatusNoContent
			r.rec.Delete(id, key, call, ok)
			r.countWrite(robDelete, ok, code, body, err)
		case p < 80:
			call := r.rec.Now()
			code, body, err := robDo(hc, http.MethodGet, base+"/"+url.PathEscape(key), "")
			switch {
			case err == nil && code == http.StatusOK:
				r.rec.Get(id, key, body, true, call)
				r.counts[robGet][robOK].Add(1)
			case err == nil && code == http.StatusNotFound:
				r.rec.Get(id, key, "", false, call)
				r.counts[robGet][robOK].Add(1)
			default:
				r.counts[robGet][robFailed].Add(1)
			}
		default:
			code, body, err := robDo(hc, http.MethodGet, base+"/"+url.PathEscape(key)+"?consistency=serializable", "")
			ret := r.rec.Now()
			if err == nil && (code == http.StatusOK || code == http.StatusNotFound) {
				r.mu.Lock()
				r.serial = append(r.serial, robSerialRead{key: key, value: body, found: code == http.StatusOK, ret: ret})
				r.mu.Unlock()
				r.counts[robSGet][robOK].Add(1)
			} else {
				r.counts[robSGet][robFailed].Add(1)
			}
		}
		// A short pause keeps the history small enough to check quickly.
		time.Sleep(time.Duration(rng.Intn(10)) * time.Millisecond)
	}
}

// countWrite files a write's outcome: failed when the server says nothing
// was done (or nobody listened), unknown otherwise.
func (r *robRun) countWrite(kind int, ok bool, code int, body string, err error) {
	switch {
	case ok:
		r.counts[kind][robOK].Add(1)
	case err != nil && strings.Contains(err.Error(), "connection refused"),
		err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "nothing was done"):
		r.counts[kind][robFailed].Add(1)
	default:
		r.counts[kind][robUnknown].Add(1)
	}
}

func robDo(hc *http.Client, method, u, body string) (int, string, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitWrites waits until k more writes have been acknowledged.
func (r *robRun) waitWrites(k int64, timeout time.Duration) error {
	acked := func() int64 { return r.counts[robPut][robOK].Load() + r.counts[robDelete][robOK].Load() }
	want := acked() + k
	return tc.Poll(timeout, func() error {
		if got := acked(); got < want {
			return fmt.Errorf("%d of %d writes acknowledged", got, want)
		}
		return nil
	})
}

// probeWrites is check 5: a PUT through some member succeeds within
// robWriteRecovery of the last heal.
func (r *robRun) probeWrites() error {
	hc := &http.Client{Timeout: robRequestTimeout + time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; ; i++ {
		members := r.c.Members()
		n := members[i%len(members)]
		code, _, err := robDo(hc, http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/rob-probe", n.HTTPPort), fmt.Sprint(i))
		took := time.Since(r.lastHeal)
		if err == nil && code == http.StatusNoContent {
			r.event("writes accepted %v after the last heal", took.Round(time.Millisecond))
			if took > robWriteRecovery {
				return fmt.Errorf("first write accepted %v after the last heal", took)
			}
			return nil
		}
		if took > robWriteRecovery+5*time.Second {
			return fmt.Errorf("no write accepted within %v of the last heal (last try on %v: %d %v)", took, n, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finalReads reads every key linearizably, as client robClients.
func (r *robRun) finalReads() error {
	hc := &http.Client{Timeout: robRequestTimeout + 3*time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < robKeys; i++ {
		key := robKey(i)
		try := 0
		err := tc.Poll(30*time.Second, func() error {
			members := r.c.Members()
			n := members[try%len(members)]
			try++
			call := r.rec.Now()
			code, body, err := robDo(hc, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/%s", n.HTTPPort, key), "")
			switch {
			case err != nil:
				return err
			case code == http.StatusOK || code == http.StatusNotFound:
				r.rec.Get(robClients, key, body, code == http.StatusOK, call)
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
func (r *robRun) checkSerializable() error {
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

// robCheckLastWrites is the explicit part of check 2. For each key, take the
// acknowledged write that returned last; if every other write on the key
// returned before it was called (so none may take effect after it), the
// final read (by client finalClient) must show what it left.
func robCheckLastWrites(history []lincheck.Op, finalClient int) error {
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

// ---------------------------------------------------------------------------
// The sampler and checks 3 and 4

func (r *robRun) sample(stop <-chan struct{}) {
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var wg sync.WaitGroup
		for _, n := range r.c.Members() {
			wg.Add(1)
			go func(n *tc.Node) {
				defer wg.Done()
				st, err := robStatus(hc, n)
				if err != nil {
					return
				}
				r.smu.Lock()
				defer r.smu.Unlock()
				r.samples++
				robRecordStatus(r.leaders, r.digests, st)
			}(n)
		}
		wg.Wait()
	}
}

func robStatus(hc *http.Client, n *tc.Node) (tc.Status, error) {
	var st tc.Status
	code, body, err := robDo(hc, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/status", n.HTTPPort), "")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status %d", code)
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// robRecordStatus notes who claims leadership in which term, and which
// digest each applied index had.
func robRecordStatus(leaders map[uint64]map[uint64]bool, digests map[uint64]map[string]uint64, st tc.Status) {
	if st.State == "leader" {
		if leaders[st.Term] == nil {
			leaders[st.Term] = map[uint64]bool{}
		}
		leaders[st.Term][st.ID] = true
	}
	if st.Digest != "" {
		if digests[st.Applied] == nil {
			digests[st.Applied] = map[string]uint64{}
		}
		digests[st.Applied][st.Digest] = st.ID
	}
}

// robCheckLeaders is check 4.
func robCheckLeaders(leaders map[uint64]map[uint64]bool) error {
	var bad []string
	for term, ids := range leaders {
		if len(ids) > 1 {
			var l []uint64
			for id := range ids {
				l = append(l, id)
			}
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			bad = append(bad, fmt.Sprintf("term %d: leaders %v", term, l))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("more than one leader in a term: %s", strings.Join(bad, "; "))
	}
	return nil
}

// robCheckDigests reports applied indexes seen with different digests.
func robCheckDigests(digests map[uint64]map[string]uint64) error {
	var bad []string
	for applied, ds := range digests {
		if len(ds) > 1 {
			var l []string
			for d, id := range ds {
				l = append(l, fmt.Sprintf("%s (node %d)", d, id))
			}
			sort.Strings(l)
			bad = append(bad, fmt.Sprintf("applied %d: digests %v", applied, l))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("replicas diverged: %s", strings.Join(bad, "; "))
	}
	return nil
}

func (r *robRun) digestConflicts() error {
	r.smu.Lock()
	defer r.smu.Unlock()
	return robCheckDigests(r.digests)
}

// robConverged is check 3 on one set of statuses: all at the same applied
// index with the same digest.
func robConverged(sts []tc.Status) error {
	if len(sts) == 0 {
		return errors.New("no statuses")
	}
	for _, st := range sts[1:] {
		if st.Applied != sts[0].Applied || st.Digest != sts[0].Digest {
			return fmt.Errorf("replicas differ: %s", tc.Summary(sts))
		}
	}
	if sts[0].Digest == "" {
		return fmt.Errorf("no digest: %s", tc.Summary(sts))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Faults

// pause holds a fault for between lo and hi.
func (r *robRun) pause(lo, hi time.Duration) time.Duration {
	d := lo + time.Duration(r.rng.Int63n(int64(hi-lo)+1))
	time.Sleep(d)
	return d
}

// leader polls the members that answer until one of them leads and a
// majority of the members name it as leader in its term.
func (r *robRun) leader() (*tc.Node, error) {
	var leader *tc.Node
	err := tc.Poll(20*time.Second, func() error {
		nodes := r.c.Members()
		var sts []tc.Status
		var leaders []*tc.Node
		for _, n := range nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				continue
			}
			sts = append(sts, st)
			if st.State == "leader" {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("%d leaders among the members that answer: %s", len(leaders), tc.Summary(sts))
		}
		var lt uint64
		for _, st := range sts {
			if st.ID == uint64(leaders[0].ID) {
				lt = st.Term
			}
		}
		votes := 0
		for _, st := range sts {
			if st.Leader == uint64(leaders[0].ID) && st.Term == lt {
				votes++
			}
		}
		if 2*votes <= len(nodes) {
			return fmt.Errorf("only %d of %d members follow leader %d: %s", votes, len(nodes), leaders[0].ID, tc.Summary(sts))
		}
		leader = leaders[0]
		return nil
	})
	return leader, err
}

// pick returns the leader, or a follower chosen by the seed.
func (r *robRun) pick(leader bool) (*tc.Node, error) {
	l, err := r.leader()
	if err != nil || leader {
		return l, err
	}
	var fs []*tc.Node
	for _, n := range r.c.Members() {
		if n != l {
			fs = append(fs, n)
		}
	}
	return fs[r.rng.Intn(len(fs))], nil
}

func (r *robRun) role(n *tc.Node, leader bool) string {
	if leader {
		return fmt.Sprintf("leader %d", n.ID)
	}
	return fmt.Sprintf("follower %d", n.ID)
}

// healAll removes every network fault, resumes stopped nodes and restarts
// members that are down.
func (r *robRun) healAll() {
	r.c.Net.Heal()
	r.mu.Lock()
	stopped := r.stopped
	r.stopped = map[int]bool{}
	r.mu.Unlock()
	for id := range stopped {
		r.c.Node(id).Signal(syscall.SIGCONT)
	}
	for _, n := range r.c.Members() {
		if !n.Running() {
			r.event("restarting node %d, which was down", n.ID)
			n.Start()
		}
	}
}

func (r *robRun) kill(leader bool) error {
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	n.Signal(syscall.SIGKILL)
	if _, ok := n.Wait(10 * time.Second); !ok {
		return fmt.Errorf("%v survived SIGKILL", n)
	}
	r.event("SIGKILL %s", r.role(n, leader))
	d := r.pause(500*time.Millisecond, 2*time.Second)
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return err
	}
	r.event("restarted node %d after %v", n.ID, d.Round(time.Millisecond))
	return nil
}

func (r *robRun) sigstopLeader() error {
	n, err := r.leader()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.stopped[n.ID] = true
	r.mu.Unlock()
	n.Signal(syscall.SIGSTOP)
	r.event("SIGSTOP leader %d", n.ID)
	d := r.pause(2*time.Second, 3*time.Second)
	n.Signal(syscall.SIGCONT)
	r.mu.Lock()
	delete(r.stopped, n.ID)
	r.mu.Unlock()
	r.event("SIGCONT node %d after %v", n.ID, d.Round(time.Millisecond))
	return nil
}

func (r *robRun) partition(leader bool) error {
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	r.c.Isolate(n.ID)
	r.event("isolate %s", r.role(n, leader))
	d := r.pause(2*time.Second, 3*time.Second)
	r.c.Net.Heal()
	r.event("heal after %v", d.Round(time.Millisecond))
	return nil
}

func (r *robRun) oneWay() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	from, to := l, f
	if r.rng.Intn(2) == 0 {
		from, to = f, l
	}
	r.c.Net.Set(uint64(from.ID), uint64(to.ID), faultproxyCut)
	r.event("cut traffic %d -> %d only (leader %d)", from.ID, to.ID, l.ID)
	d := r.pause(2*time.Second, 3*time.Second)
	r.c.Net.Heal()
	r.event("heal after %v", d.Round(time.Millisecond))
	return nil
}

func (r *robRun) allLinks(f func(from, to uint64)) {
	ids := r.c.IDs()
	for _, a := range ids {
		for _, b := range ids {
			if a != b {
				f(a, b)
			}
		}
	}
}

func (r *robRun) delay() error {
	r.allLinks(func(a, b uint64) { r.c.Net.Set(a, b, faultproxyDelay) })
	r.event("delay all peer traffic 100ms +/- 50ms")
	d := r.pause(3*time.Second, 4*time.Second)
	r.c.Net.Heal()
	r.event("heal after %v", d.Round(time.Millisecond))
	return nil
}

func (r *robRun) drop() error {
	r.allLinks(func(a, b uint64) { r.c.Net.Set(a, b, faultproxyDrop) })
	r.event("drop 30%% of peer traffic")
	d := r.pause(3*time.Second, 4*time.Second)
	r.c.Net.Heal()
	r.event("heal after %v", d.Round(time.Millisecond))
	return nil
}

// snapshotCatchUp cuts a follower off until the leader has compacted its
// log past the follower, heals, and expects it to catch up by snapshot.
func (r *robRun) snapshotCatchUp() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	logOffset := len(f.Log())
	r.c.Isolate(f.ID)
	fst, err := f.Status()
	if err != nil {
		return err
	}
	// The server keeps --snap-count (50) entries behind a snapshot.
	target := fst.Applied + 50 + 20
	r.event("isolate follower %d at applied %d until leader %d's snapshot index passes %d", f.ID, fst.Applied, l.ID, target)
	var lst tc.Status
	if err := tc.Poll(60*time.Second, func() error {
		var err error
		if lst, err = l.Status(); err != nil {
			return err
		}
		if lst.SnapshotIndex <= target {
			return fmt.Errorf("leader %d's snapshot index %d, want > %d", l.ID, lst.SnapshotIndex, target)
		}
		return nil
	}); err != nil {
		return err
	}
	r.c.Net.Heal()
	r.event("heal: leader %d at snapshot index %d, commit %d", l.ID, lst.SnapshotIndex, lst.Commit)
	return tc.Poll(30*time.Second, func() error {
		st, err := f.Status()
		if err != nil {
			return err
		}
		if st.Applied < lst.Commit {
			return fmt.Errorf("follower %d applied %d, want >= %d", f.ID, st.Applied, lst.Commit)
		}
		if log := f.Log(); !strings.Contains(log[min(logOffset, len(log)):], "installed snapshot from leader") {
			return fmt.Errorf("follower %d caught up (applied %d) but its log shows no snapshot installed", f.ID, st.Applied)
		}
		r.event("follower %d caught up by snapshot (applied %d)", f.ID, st.Applied)
		return nil
	})
}

// replaceMember removes a follower, wipes its data, and adds it back under
// a new id.
func (r *robRun) replaceMember() error {
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	return r.replace(f)
}

func (r *robRun) replace(old *tc.Node) error {
	if err := tc.Poll(30*time.Second, func() error {
		l, err := r.leader()
		if err != nil {
			return err
		}
		return r.c.RemoveMember(l, old.ID)
	}); err != nil {
		return err
	}
	r.event("removed member %d", old.ID)
	if old.Running() {
		if _, ok := old.Wait(20 * time.Second); !ok {
			r.event("removed member %d did not exit by itself; killing it", old.ID)
			old.Signal(syscall.SIGKILL)
			old.Wait(10 * time.Second)
		}
	}
	if err := r.c.Wipe(old); err != nil {
		return err
	}
	l, err := r.leader()
	if err != nil {
		return err
	}
	n, err := r.c.AddMember(l)
	if err != nil {
		return fmt.Errorf("adding a member: %v", err)
	}
	r.event("wiped node %d's data; added it back as member %d", old.ID, n.ID)
	return r.caughtUp(n)
}

// caughtUp waits until n has applied what the leader had committed. It
// gives up at once if n exits.
func (r *robRun) caughtUp(n *tc.Node) error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	lst, err := l.Status()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !n.Running() {
			return fmt.Errorf("%v exited", n)
		}
		st, err := n.Status()
		if err == nil && st.Applied >= lst.Commit {
			r.event("node %d caught up (applied %d)", n.ID, st.Applied)
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%v applied %d, want >= %d", n, st.Applied, lst.Commit)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// walDamage kills a node mid-writes, damages the tail of its newest WAL
// file, and restarts it: it must repair and rejoin, or refuse to start with
// an error (then it is replaced by a fresh member).
func (r *robRun) walDamage() error {
	n, err := r.pick(r.rng.Intn(2) == 0)
	if err != nil {
		return err
	}
	n.Signal(syscall.SIGKILL)
	if _, ok := n.Wait(10 * time.Second); !ok {
		return fmt.Errorf("%v survived SIGKILL", n)
	}
	r.event("SIGKILL node %d", n.ID)
	what, err := robDamageWAL(n.WALDir(), r.rng)
	if err != nil {
		return err
	}
	r.event("damaged node %d's WAL: %s", n.ID, what)
	n.Start()
	err = n.WaitServing(30 * time.Second)
	if err == nil {
		err = r.caughtUp(n)
	}
	if err == nil {
		r.event("node %d repaired its WAL and rejoined", n.ID)
		return nil
	}
	if n.Running() {
		return err
	}
	code, _ := n.Wait(5 * time.Second)
	line := robErrorLine(n.RunLog())
	if code == 0 || line == "" {
		return fmt.Errorf("node %d exited with code %d after WAL damage without a clear error (%v); log:\n%s", n.ID, code, err, tc.Tail(n.RunLog(), 20))
	}
	r.event("node %d refused to start (exit code %d): %s", n.ID, code, line)
	return r.replace(n)
}

// robErrorLine returns the first line of log that reports an error or panic.
func robErrorLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\"level\":\"error\"") || strings.Contains(l, "\"level\":\"fatal\"") ||
			strings.Contains(l, "\tERROR\t") || strings.Contains(l, "\tFATAL\t") || strings.Contains(l, "\tPANIC\t") || strings.HasPrefix(l, "panic:") ||
			strings.Contains(l, "\"level\":\"panic\"") {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			return l
		}
	}
	return ""
}

// robDamageWAL damages the newest WAL file in dir: the file is preallocated
// and zero past its data, so the data ends at the last non-zero byte. Either
// a few bytes before that end are cut off, or the page holding it is zeroed.
func robDamageWAL(dir string, rng *rand.Rand) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("no WAL files in %s (%v)", dir, err)
	}
	sort.Strings(files)
	path := files[len(files)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	last := len(b) - 1
	for last >= 0 && b[last] == 0 {
		last--
	}
	if last < 0 {
		return filepath.Base(path) + " is all zeros; left alone", nil
	}
	if rng.Intn(2) == 0 {
		cut := 1 + rng.Intn(16)
		size := max(last+1-cut, 0)
		if err := os.Truncate(path, int64(size)); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: data ended at %d; truncated to %d bytes (%d bytes of data cut)", filepath.Base(path), last+1, size, cut), nil
	}
	page := last &^ 4095
	end := min(page+4096, len(b))
	for i := page; i < end; i++ {
		b[i] = 0
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: data ended at %d; zeroed bytes [%d, %d)", filepath.Base(path), last+1, page, end), nil
}
