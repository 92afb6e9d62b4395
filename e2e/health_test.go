package e2e

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

var healthSeq atomic.Int64

// expectHealthy checks that a cluster came through whatever a test did to it:
// every node still runs, a write through each node is readable
// (linearizably) on every node, and all nodes reach the same applied index
// with the same digest. It is the check each hostile case ends with.
func expectHealthy(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	for _, n := range nodes {
		if !n.Running() {
			code, _ := n.Wait(time.Second)
			t.Fatalf("%v is not running (exit code %d); its last lines:\n%s", n, code, tc.Tail(n.RunLog(), 30))
		}
	}
	seq := healthSeq.Add(1)
	for _, n := range nodes {
		key := fmt.Sprintf("health-%d-%d", seq, n.ID)
		n.MustPut(key, key)
		tc.ExpectValue(t, key, key, nodes...)
	}
	expectConverged(t, nodes...)
}

// expectConverged waits until all nodes agree on the leader and report the
// same applied index and digest.
func expectConverged(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		sts, err := tc.Statuses(nodes...)
		if err != nil {
			return err
		}
		if _, err := tc.Agreement(sts); err != nil {
			return err
		}
		return converged(sts)
	})
}

// expectHealthyAfterRestart stops every node with SIGTERM (each must exit
// 0), starts them all again and checks expectHealthy: whatever a test did
// must not have left anything on disk that breaks a restart.
func expectHealthyAfterRestart(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	tc.RestartAll(t, nodes...)
	expectHealthy(t, nodes...)
	for _, n := range nodes {
		if strings.Contains(n.RunLog(), "panic") {
			t.Fatalf("%v logged a panic after restart:\n%s", n, tc.Tail(n.RunLog(), 30))
		}
	}
}

// converged checks one set of statuses: all at the same applied index with
// the same digest (check 3 of the robustness suite).
func converged(sts []tc.Status) error {
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
