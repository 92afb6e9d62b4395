package e2e

// Random schedules of the robustness suite (see robustness_test.go), and
// the artifacts of a failed run.

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestRobustnessSoak runs random schedules back to back for -robustness.soak.
func TestRobustnessSoak(t *testing.T) {
	if *soakFlag <= 0 {
		t.Skip("soak runs only with -robustness.soak=DURATION")
	}
	match, err := regexp.Compile(*kindsFlag)
	if err != nil {
		t.Fatalf("-robustness.kinds: %v", err)
	}
	names := faultNames(match)
	if len(names) == 0 {
		t.Fatalf("-robustness.kinds=%q matches no fault kind", *kindsFlag)
	}
	deadline := time.Now().Add(*soakFlag)
	var (
		runs, failures, ops, faults int
		acked                       int64
		conds                       [outcomes]int64
		watch                       watchStats
		cuts                        [4]int
		refused                     []string
		failed                      []string
	)
	for i := 1; time.Now().Before(deadline); i++ {
		seed := pickSeed()
		if i > 1 && *seedFlag != 0 {
			seed = time.Now().UnixNano() // the given seed replays the first run
		}
		rng := rand.New(rand.NewSource(seed))
		var kinds []string
		for k := 1 + rng.Intn(3); len(kinds) < k; {
			kinds = append(kinds, names[rng.Intn(len(names))])
		}
		var res *scenarioResult
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			res = runScenario(t, seed, kinds, time.Duration(15+rng.Intn(11))*time.Second)
		})
		runs++
		if res != nil {
			ops += res.ops
			faults += res.faults
			acked += res.acked
			for o, n := range res.conds {
				conds[o] += n
			}
			watch.add(res.watch)
			for k, c := range res.cuts {
				cuts[k] += c
			}
			refused = append(refused, res.refused...)
		}
		if res == nil || !res.ok() {
			failures++
			failed = append(failed, fmt.Sprintf("run%d seed %d %v", i, seed, kinds))
		}
	}
	t.Logf("soak summary: %d runs, %d ops, %d acknowledged writes, %d faults injected, %d failures", runs, ops, acked, faults, failures)
	t.Logf("soak summary: conditional writes %d acknowledged, %d refused (412), %d unknown, %d failed; %v",
		conds[outcomeOK], conds[outcomeRefused], conds[outcomeUnknown], conds[outcomeFailed], watch)
	t.Logf("soak power cuts: %d of one member, %d of two, %d of three; %d members refused to start after one %v", cuts[1], cuts[2], cuts[3], len(refused), refused)
	for _, f := range failed {
		t.Logf("failed: %s (replay: go test -run '^TestRobustnessSoak$' -v ./e2e -args -robustness.soak=1s -robustness.seed=%s)", f, strings.Fields(f)[2])
	}
}

// faultNames lists the fault kinds that match, sorted.
func faultNames(match *regexp.Regexp) []string {
	var names []string
	for n := range faultKinds {
		if match.MatchString(n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// saveLogs copies every node's log into dir.
func (r *scenario) saveLogs(dir string) {
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
