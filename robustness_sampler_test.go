package main

// The robustness suite's status sampler, and checks 3 and 4 (see robustness_test.go).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	tc "raftexample/internal/testcluster"
)

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
