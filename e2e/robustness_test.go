package e2e

// The robustness suite: a three-member cluster of real processes whose peer
// traffic goes through a fault-injecting proxy, eight clients doing reads,
// writes and deletes against random members, and a nemesis applying faults
// picked from a seed (process kills and pauses, partitions, slow and lossy
// links, catch-up by snapshot, member replacement, a learner added, promoted
// and a voter removed, a damaged WAL tail, power
// cuts of one, two or all members, and two faults at once). After every run
// the checks below must hold:
//
//  1. the history is linearizable (porcupine, internal/lincheck);
//  2. no acknowledged write is lost: the final read of every key agrees with
//     the history, and a key whose last acknowledged write had no write
//     after or concurrent with it reads what that write left;
//  3. every replica reaches the same state (same applied index, same
//     digest), and no two replicas ever reported the same applied index with
//     different digests;
//  4. at most one member claims leadership in any term;
//  5. the cluster accepts writes again within 10 s of the last fault healing;
//  6. two watchers of every key, on two members, resumed whenever their
//     streams end, see every change once, in order, without gaps, the same
//     on both, and every acknowledged write (robustness_watch_test.go).
//
// The clients' writes include conditional ones (If-Match, If-None-Match: *),
// recorded with the revisions the answers show, puts with a TTL (and
// keep-alives: re-puts If-Match with the same TTL), whose keys the checks
// let expire no sooner than TTL after the put, and transactions (POST
// /v1/txn) over a few keys of their own (robustness_txn_test.go). Serializable reads are left
// out of check 1 but may only return values some PUT tried to write. TestRobustness runs a fixed table covering every fault
// kind; TestRobustnessSoak runs random schedules for -robustness.soak.

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"raftexample/internal/faultproxy"
	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

var (
	seedFlag  = flag.Int64("robustness.seed", 0, "seed of the robustness runs (0: a random one per run); a failing run prints its seed")
	soakFlag  = flag.Duration("robustness.soak", 0, "run TestRobustnessSoak for this long (0: skip it)")
	kindsFlag = flag.String("robustness.kinds", "", "TestRobustnessSoak picks only the fault kinds this regexp matches")
	powerFlag = flag.Bool("robustness.powerfs", false, "run the members of every scenario on powerfs, not only of those that cut power")
)

const (
	scenarioClients      = 8
	scenarioKeys         = 8
	memberRequestTimeout = 2 * time.Second  // --request-timeout of the members
	writeRecovery        = 10 * time.Second // check 5
)

var (
	cutLink   = faultproxy.Fault{Cut: true}
	slowLink  = faultproxy.Fault{Delay: 100 * time.Millisecond, Jitter: 50 * time.Millisecond}
	lossyLink = faultproxy.Fault{DropRate: 0.3}
)

// faultKinds maps each fault kind to its function. A fault applies itself,
// holds, and heals itself before returning.
var faultKinds = map[string]func(r *scenario) error{
	"kill-leader":        func(r *scenario) error { return r.kill(true) },
	"kill-follower":      func(r *scenario) error { return r.kill(false) },
	"sigstop-leader":     (*scenario).sigstopLeader,
	"partition-leader":   func(r *scenario) error { return r.partition(true) },
	"partition-follower": func(r *scenario) error { return r.partition(false) },
	"one-way-partition":  (*scenario).oneWay,
	"delay":              (*scenario).delay,
	"drop":               (*scenario).drop,
	"snapshot-catchup":   (*scenario).snapshotCatchUp,
	"replace-member":     (*scenario).replaceMember,
	"wal-damage":         (*scenario).walDamage,
	"learner-promote":    (*scenario).learnerPromote, // robustness_learner_test.go
	// robustness_power_test.go
	"power-cut-one":                       (*scenario).powerCutOne,
	"power-cut-majority":                  (*scenario).powerCutMajority,
	"power-cut-all":                       (*scenario).powerCutAll,
	"power-cut-majority+isolate-survivor": (*scenario).powerCutMajorityIsolated,
	"partition-follower+power-cut-leader": (*scenario).partitionFollowerPowerCutLeader,
	"drop+power-cut-follower":             (*scenario).dropPowerCutFollower,
	"disk-eio":                            (*scenario).diskEIO,
	"disk-full":                           (*scenario).diskFull,
	"fsync-stall":                         (*scenario).fsyncStall,
}

func pickSeed() int64 {
	if *seedFlag != 0 {
		return *seedFlag
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
		{"replace-member+learner-promote", []string{"replace-member", "learner-promote"}},
		{"wal-damage", []string{"wal-damage"}},
		{"power-cut-one+power-cut-majority", []string{"power-cut-one", "power-cut-majority"}},
		{"power-cut-majority+isolate-survivor", []string{"power-cut-majority+isolate-survivor"}},
		{"power-cut-all+partition-follower+power-cut-leader", []string{"power-cut-all", "partition-follower+power-cut-leader"}},
		{"disk-eio+fsync-stall+disk-full+drop+power-cut-follower", []string{"disk-eio", "fsync-stall", "disk-full", "drop+power-cut-follower"}},
	}
	start, runs := time.Now(), 0
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			runs++
			res := runScenario(t, pickSeed(), tt.faults, 15*time.Second)
			if !res.ok() {
				t.Errorf("replay: go test -run '^TestRobustness$/^%s$' -v ./e2e -args -robustness.seed=%d", regexp.QuoteMeta(tt.name), res.seed)
			}
		})
	}
	t.Logf("TestRobustness: %d runs in %v", runs, time.Since(start).Round(time.Second))
}

// ---------------------------------------------------------------------------
// A run

type scenarioResult struct {
	seed        int64
	ops, faults int
	acked       int64           // acknowledged writes (PUT and DELETE)
	cuts        [4]int          // power cuts by how many members they hit
	refused     []string        // members that refused to start after a power cut, and why
	conds       [outcomes]int64 // conditional writes by outcome
	watch       watchStats
	checks      []checkOutcome
	artifacts   string
	cluster     *tc.Cluster // for callers that read the members' logs
}

type checkOutcome struct {
	name string
	err  error
}

func (res *scenarioResult) ok() bool {
	for _, c := range res.checks {
		if c.err != nil {
			return false
		}
	}
	return len(res.checks) > 0
}

// Outcome counters, per kind of client operation.
const (
	opPut = iota
	opGet
	opDelete
	opSerialGet // serializable get
	opCasPut    // PUT If-Match "<rev>" (after a GET) or If-Match *
	opCreate    // PUT If-None-Match *
	opCasDelete // DELETE If-Match "<rev>" (after a GET)
	opTTLPut    // PUT ?ttl=D
	opKeepAlive // PUT If-Match "<rev>" ?ttl=D, the TTL a GET showed (X-TTL)
	opTxn       // POST /v1/txn
	opKinds
)

var opKindNames = [opKinds]string{"put", "get", "delete", "serializable-get", "put-if-match", "put-if-none-match", "delete-if-match", "put-ttl", "keep-alive", "txn"}

const (
	outcomeOK = iota
	outcomeFailed
	outcomeUnknown
	outcomeRefused // 412: the condition did not hold, nothing was written
	outcomes
)

type serialRead struct {
	key, value string
	found      bool
	ret        int64
}

type scenario struct {
	t    *testing.T
	seed int64
	rng  *rand.Rand  // the nemesis's; used by the test goroutine only
	c    *tc.Cluster // behind the fault proxy
	rec  *lincheck.Recorder
	t0   time.Time

	evMu   sync.Mutex
	events []string

	counts [opKinds][outcomes]atomic.Int64

	mu       sync.Mutex
	attempts map[string]int64 // value -> call time of the PUT that tried it
	attKey   map[string]string
	// Values of conditional PUTs refused (412), keys a DELETE was tried on
	// (-> first call time), answers the contract forbids, the store's
	// revision after the traffic.
	refusedVals map[string]bool
	delAttempts map[string]int64
	ttls        map[string]time.Duration // value -> TTL of the PUT (or transaction's put) that tried it
	txns        txnStats
	oddities    []string
	finalRev    uint64
	serial      []serialRead
	stopped     map[int]bool // nodes under SIGSTOP
	cuts        [4]int       // power cuts by how many members they hit
	refused     []string     // members that refused to start after a power cut

	// The sampler's findings.
	smu      sync.Mutex
	leaders  map[uint64]map[uint64]bool // term -> ids in state leader
	digests  map[uint64]map[string]uint64
	samples  int
	lastHeal time.Time
}

func (r *scenario) event(format string, args ...any) {
	msg := fmt.Sprintf("t+%6.2fs  ", time.Since(r.t0).Seconds()) + fmt.Sprintf(format, args...)
	r.evMu.Lock()
	r.events = append(r.events, msg)
	r.evMu.Unlock()
	r.t.Log(msg)
}

func scenarioKey(i int) string { return fmt.Sprintf("rob-k%d", i) }

// runScenario runs one scenario and reports each check; a failed check
// fails t.
func runScenario(t *testing.T, seed int64, faults []string, traffic time.Duration) *scenarioResult {
	return runScenarioWith(t, scenarioOptions{seed: seed, faults: faults, traffic: traffic})
}

type scenarioOptions struct {
	seed    int64
	faults  []string
	traffic time.Duration
	flags   []string // more flags for every member
	// expectFailure: a failed check is logged and reported in the result,
	// and does not fail t (for negative controls).
	expectFailure bool
}

func runScenarioWith(t *testing.T, o scenarioOptions) *scenarioResult {
	seed, faults, traffic := o.seed, o.faults, o.traffic
	r := &scenario{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), rec: lincheck.NewRecorder(),
		attempts: map[string]int64{}, attKey: map[string]string{}, stopped: map[int]bool{},
		refusedVals: map[string]bool{}, delAttempts: map[string]int64{}, ttls: map[string]time.Duration{},
		leaders: map[uint64]map[uint64]bool{}, digests: map[uint64]map[string]uint64{},
	}
	res := &scenarioResult{seed: seed, faults: len(faults)}
	t.Logf("seed %d, faults %v, traffic %v", seed, faults, traffic)
	r.c = tc.NewProxied(t, 3, seed, append([]string{"--snap-count", "50", "--request-timeout", memberRequestTimeout.String(),
		"--watch-history", fmt.Sprint(scenarioWatchHistory)}, o.flags...)...)
	if needsPowerFS(faults) || *powerFlag {
		if err := r.c.UsePowerFS(); err != nil {
			t.Skipf("members cannot run on powerfs: %v", err)
		}
		t.Logf("every member's --data-dir is a powerfs mount")
	}
	res.cluster = r.c
	r.c.Start() // with new ports if one was taken
	tc.WaitLeader(t, 30*time.Second, r.c.Members()...)
	r.t0 = time.Now()
	r.event("cluster of 3 up")
	watch := r.startWatchers() // check 6, robustness_watch_test.go
	defer watch.stop()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.sample(stop) }()
	clientsStop := make(chan struct{})
	var cwg sync.WaitGroup
	for i := 0; i < scenarioClients; i++ {
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
		if err := faultKinds[f](r); err != nil {
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
		return converged(sts)
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
	for k := 0; k < opKinds; k++ {
		t.Logf("ops %-17s ok %5d  failed %5d  unknown %5d  412 %5d", opKindNames[k],
			r.counts[k][outcomeOK].Load(), r.counts[k][outcomeFailed].Load(), r.counts[k][outcomeUnknown].Load(), r.counts[k][outcomeRefused].Load())
	}
	r.logTxnStats(history)

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
			linErr = fmt.Errorf("history of %d ops is not linearizable (keys %q); visualization: %s", lin.Ops, lin.Keys, lin.HTML)
		case porcupine.Unknown:
			t.Logf("porcupine timed out on %d ops: verdict unknown", lin.Ops)
		}
	}
	t.Logf("porcupine: %v on %d ops in %v", lin.Verdict, lin.Ops, time.Since(start).Round(time.Millisecond))
	if linErr == nil {
		linErr = r.checkSerializable(history)
	}

	// Check 2: acknowledged writes survive.
	lostErr := finalErr
	if lostErr == nil {
		lostErr = checkLastWrites(history, scenarioClients)
	}

	// Check 6: watches.
	watchErr := watch.finish(history)

	// Check 4: one leader per term.
	r.smu.Lock()
	leaderErr := checkLeaders(r.leaders)
	samples, terms := r.samples, len(r.leaders)
	r.smu.Unlock()
	t.Logf("sampler: %d status samples, %d terms seen", samples, terms)

	if faultErr != nil && recoveryErr == nil {
		recoveryErr = faultErr
	}
	res.checks = []checkOutcome{
		{"1 linearizable (porcupine) and serializable reads return written values", linErr},
		{"2 no acknowledged write lost", lostErr},
		{"3 replicas converge (same applied index, same digest)", convErr},
		{"4 at most one leader per term", leaderErr},
		{"5 writes accepted within 10s of the last heal (and faults ran as planned)", recoveryErr},
		{"6 watches: in order, no gaps or duplicates, every acknowledged write delivered, the same on two members", watchErr},
	}
	fail := t.Errorf
	if o.expectFailure {
		fail = t.Logf
	}
	for _, c := range res.checks {
		if c.err != nil {
			fail("check %s: FAILED: %v", c.name, c.err)
		} else {
			t.Logf("check %s: ok", c.name)
		}
	}
	r.mu.Lock()
	res.cuts, res.refused = r.cuts, r.refused
	r.mu.Unlock()
	res.acked = r.acked()
	res.conds, res.watch = r.condCounts(), watch.stats
	if needsPowerFS(faults) {
		t.Logf("power cuts: %d of one member, %d of two, %d of three; %d acknowledged writes; %d members refused to start after one %v",
			res.cuts[1], res.cuts[2], res.cuts[3], res.acked, len(res.refused), res.refused)
	}
	if !res.ok() {
		r.saveLogs(artifacts)
		watch.saveHistory(artifacts, history)
		fail("seed %d; artifacts (history visualization, node logs) in %s", seed, artifacts)
	}
	return res
}
