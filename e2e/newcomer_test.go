package e2e

// What a newcomer's walk through the README ran into (issue #15), each
// checked against the real binary: a member started on old data with another
// --cluster says so, a second process on a member's directory is told that
// another member uses it, /readyz without a leader answers at once, and a
// whole cluster stopped together with Ctrl-C (SIGINT) stops at once, without
// trying to hand leadership to members that are stopping too.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// clusterDisagrees starts the warning a member logs when --cluster names
// other URLs than the member list in its data.
const clusterDisagrees = "--cluster disagrees with the member list stored in the data directory"

// TestAMemberAloneOnItsDataAnswersPlainly runs member 1 of a three-member
// --cluster whose other members never start: it has data, and no leader.
func TestAMemberAloneOnItsDataAnswersPlainly(t *testing.T) {
	bin := tc.Build(t)
	dir := t.TempDir()
	ports := tc.FreePorts(t, 6)
	peer := func(p int) string { return fmt.Sprintf("http://127.0.0.1:%d", p) }
	cluster := strings.Join([]string{peer(ports[0]), peer(ports[1]), peer(ports[2])}, ",")
	args := func(cluster string, httpPort int) []string {
		return []string{"--id", "1", "--cluster", cluster, "--port", strconv.Itoa(httpPort), "--data-dir", filepath.Join(dir, "data")}
	}
	n := tc.NewNode(t, bin, dir, filepath.Join(dir, "node1.log"), ports[3], args(cluster, ports[3]))
	n.ID = 1
	n.Restart()

	t.Run("/readyz without a leader answers 503 before a 500 ms client gives up", func(t *testing.T) {
		for range 3 {
			code, body, err := doWithin(500*time.Millisecond, n, http.MethodGet, "/readyz", "")
			if err != nil {
				t.Fatalf("GET /readyz without a leader, with a 500 ms timeout: %v", err)
			}
			var answer struct {
				Ready  *bool  `json:"ready"`
				Reason string `json:"reason"`
			}
			if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &answer) != nil ||
				answer.Ready == nil || *answer.Ready || answer.Reason != "no leader" {
				t.Fatalf("GET /readyz without a leader: %d %q, want 503 {\"ready\": false, \"reason\": \"no leader\"}", code, body)
			}
		}
	})

	t.Run("a second process on the member's directory is told another member uses it", func(t *testing.T) {
		second := tc.NewNode(t, bin, dir, filepath.Join(dir, "second.log"), ports[4], args(cluster, ports[4]))
		second.Start()
		code, ok := second.Wait(tc.Timeout)
		if !ok || code != 1 {
			t.Fatalf("a second member 1 on %s: exit %d (exited: %v), want 1", n.DataDir, code, ok)
		}
		log := second.RunLog()
		want := "another member is using this directory: " + filepath.Join(dir, "data")
		if !strings.Contains(log, want) || strings.Contains(log, "TryLockFile") {
			t.Fatalf("the second process logged\n%s\nwant a line with %q", tc.Tail(log, 5), want)
		}
		if !n.Running() {
			t.Fatalf("%v stopped when a second process tried its directory", n)
		}
	})

	t.Run("a restart with another --cluster warns, naming both lists", func(t *testing.T) {
		if code := n.Stop(); code != 0 {
			t.Fatalf("%v exited %d on SIGTERM", n, code)
		}
		n.Restart() // the same --cluster: no warning
		expectLogged(t, n, "serving HTTP")
		if strings.Contains(n.RunLog(), clusterDisagrees) {
			t.Fatalf("a restart with the same --cluster warned:\n%s", tc.Tail(n.RunLog(), 10))
		}
		n.Stop()
		moved := strings.Join([]string{peer(ports[5]), peer(ports[1]), peer(ports[2])}, ",")
		n.Args = args(moved, ports[3])
		n.Restart()
		expectLogged(t, n, clusterDisagrees)
		var line string
		for l := range strings.SplitSeq(n.RunLog(), "\n") {
			if strings.Contains(l, clusterDisagrees) {
				line = l
			}
		}
		for _, want := range []string{"WARN", `"cluster": "1=` + peer(ports[5]) + ",", `"stored": "1=` + peer(ports[0]) + ","} {
			if !strings.Contains(line, want) {
				t.Errorf("the warning %q does not hold %q", line, want)
			}
		}
	})
}

// TestCtrlCStopsAWholeClusterAtOnceWithoutAHandOff sends SIGINT to every
// member at once, as Ctrl-C does to every member started from one terminal
// (scripts/cluster.sh, goreman): the leader must not try to hand over to
// followers that are stopping too (it used to wait 2 s for that, then warn).
// A SIGTERM of the leader alone still hands over:
// TestSIGTERMOnLeaderHandsOffLeadership.
func TestCtrlCStopsAWholeClusterAtOnceWithoutAHandOff(t *testing.T) {
	c := tc.StartCluster(t, 3)
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	start := time.Now()
	for _, n := range c.Nodes {
		n.Signal(syscall.SIGINT)
	}
	var wg sync.WaitGroup
	took := make([]time.Duration, len(c.Nodes))
	codes := make([]int, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Go(func() {
			codes[i], _ = n.Wait(20 * time.Second)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, n := range c.Nodes {
		log := n.RunLog()
		if codes[i] != 0 {
			t.Errorf("%v exited %d on SIGINT, want 0", n, codes[i])
		}
		for _, bad := range []string{"hand leadership over", "handed leadership over"} {
			if strings.Contains(log, bad) {
				t.Errorf("%v (leader: %v) logged %q on a SIGINT of the whole cluster:\n%s", n, n == leader, bad, tc.Tail(log, 8))
			}
		}
		// The hand-off it no longer tries gave up after 2 s.
		if took[i] >= 2*time.Second {
			t.Errorf("%v took %v to stop on SIGINT", n, took[i].Round(time.Millisecond))
		}
	}
	t.Logf("SIGINT to all three: stopped after %v (leader %v)", took, leader)
}
