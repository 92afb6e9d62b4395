package e2e

// The robustness suite's status sampler, and checks 3 and 4 (see robustness_test.go).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	tc "raftexample/internal/testcluster"
)

// The sampler and checks 3 and 4

func (r *scenario) sample(stop <-chan struct{}) {
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
				st, err := sampleStatus(n)
				if err != nil {
					return
				}
				r.smu.Lock()
				defer r.smu.Unlock()
				r.samples++
				recordStatus(r.leaders, r.digests, st)
			}(n)
		}
		wg.Wait()
	}
}

// sampleStatus is n.Status within the sampler's short timeout.
func sampleStatus(n *tc.Node) (tc.Status, error) {
	var st tc.Status
	code, body, err := doWithin(500*time.Millisecond, n, http.MethodGet, "/v1/status", "")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status %d", code)
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// recordStatus notes who claims leadership in which term, and which
// digest each applied index had.
func recordStatus(leaders map[uint64]map[uint64]bool, digests map[uint64]map[string]uint64, st tc.Status) {
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

// checkLeaders is check 4.
func checkLeaders(leaders map[uint64]map[uint64]bool) error {
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

// checkDigests reports applied indexes seen with different digests.
func checkDigests(digests map[uint64]map[string]uint64) error {
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

func (r *scenario) digestConflicts() error {
	r.smu.Lock()
	defer r.smu.Unlock()
	return checkDigests(r.digests)
}
