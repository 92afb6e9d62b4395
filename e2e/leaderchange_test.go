package e2e

// A leader change costs latency, not errors: a write sent to a member that
// stays up answers 204, whether the leader hands over (SIGTERM) or dies
// (SIGKILL), because members propose pending writes again under the new
// leader and the state machine applies each once.

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

const loadConnections = 16

// writeLoad is loadConnections clients writing unique keys, each request to
// the next member in turn. It records every answer, and which members were
// down (being stopped, or not yet serving again) when a request failed.
type writeLoad struct {
	c    *tc.Cluster
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	down  map[int]bool   // members the test is stopping or has stopped
	acked map[string]int // key -> value of every 204
	// Failures by kind: a non-2xx answer, or no answer (a refused or broken
	// connection), each to a member that was up or down at the time.
	failures map[string][]string
	sent     atomic.Int64
}

func startWriteLoad(c *tc.Cluster) *writeLoad {
	w := &writeLoad{c: c, stop: make(chan struct{}), down: map[int]bool{}, acked: map[string]int{}, failures: map[string][]string{}}
	nodes := c.Members()
	for g := range loadConnections {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				n := nodes[(g+i)%len(nodes)]
				key := fmt.Sprintf("load-%d-%d", g, i)
				w.mu.Lock()
				wasDown := w.down[n.ID]
				w.mu.Unlock()
				w.sent.Add(1)
				code, body, err := n.Put(key, fmt.Sprint(i))
				w.mu.Lock()
				isDown := wasDown || w.down[n.ID]
				switch {
				case err == nil && code/100 == 2:
					w.acked[key] = i
				case err != nil:
					w.fail("no answer", n, isDown, err.Error())
				default:
					w.fail(fmt.Sprintf("%d", code), n, isDown, strings.TrimSpace(body))
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // a refused connection answers at once: do not spin
				}
			}
		}()
	}
	return w
}

// fail records a failure; w.mu is held.
func (w *writeLoad) fail(kind string, n *tc.Node, down bool, detail string) {
	where := "up"
	if down {
		where = "down"
	}
	k := fmt.Sprintf("%s from a member %s", kind, where)
	w.failures[k] = append(w.failures[k], fmt.Sprintf("%v: %s", n, tc.Shorten(detail, 120)))
}

func (w *writeLoad) setDown(n *tc.Node, down bool) {
	w.mu.Lock()
	w.down[n.ID] = down
	w.mu.Unlock()
}

// waitAcked waits until more writes are acknowledged than now by more.
func (w *writeLoad) waitAcked(t *testing.T, more int) {
	t.Helper()
	w.mu.Lock()
	target := len(w.acked) + more
	w.mu.Unlock()
	tc.Eventually(t, tc.Timeout, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.acked) < target {
			return fmt.Errorf("%d writes acknowledged, waiting for %d", len(w.acked), target)
		}
		return nil
	})
}

// finish stops the clients and returns a summary of the failures by kind.
func (w *writeLoad) finish() (acked map[string]int, failures map[string][]string, summary string) {
	close(w.stop)
	w.wg.Wait()
	var kinds []string
	for k, v := range w.failures {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, len(v)))
	}
	sort.Strings(kinds)
	return w.acked, w.failures, fmt.Sprintf("%d writes sent, %d acknowledged; failures: [%s]", w.sent.Load(), len(w.acked), strings.Join(kinds, ", "))
}

// expectAcknowledgedWritesReadable lists the keys the load wrote, linearizably,
// through each member, and checks that every acknowledged write is there.
func expectAcknowledgedWritesReadable(t *testing.T, c *tc.Cluster, acked map[string]int) {
	t.Helper()
	for _, n := range c.Members() {
		got := listPrefix(t, n, "load-")
		var lost []string
		for key, v := range acked {
			if got[key] != fmt.Sprint(v) {
				lost = append(lost, fmt.Sprintf("%s=%q", key, got[key]))
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%v lost %d of %d acknowledged writes: %s", n, len(lost), len(acked), strings.Join(lost[:min(len(lost), 10)], ", "))
		}
	}
}

func TestRollingRestartUnderLoadAnswersEveryWrite(t *testing.T) {
	c := tc.StartCluster(t, 3)
	w := startWriteLoad(c)
	w.waitAcked(t, 500)
	for _, n := range c.Members() {
		w.setDown(n, true)
		start := time.Now()
		if code := n.Stop(); code != 0 {
			t.Fatalf("%v exited with %d after SIGTERM", n, code)
		}
		n.Restart()
		tc.WaitLeader(t, tc.Timeout, c.Members()...)
		w.setDown(n, false)
		t.Logf("%v restarted in %v", n, time.Since(start).Round(time.Millisecond))
		w.waitAcked(t, 500)
	}
	acked, failures, summary := w.finish()
	t.Log(summary)
	for kind, fs := range failures {
		// A member that is stopping refuses new connections: those requests
		// were never answered, and the client sends the next one elsewhere.
		if kind == "no answer from a member down" {
			continue
		}
		t.Errorf("%s: %d, e.g. %s", kind, len(fs), strings.Join(fs[:min(len(fs), 5)], "; "))
	}
	expectAcknowledgedWritesReadable(t, c, acked)
}

func TestSIGKILLOfTheLeaderUnderLoadFailsOnlyRequestsToIt(t *testing.T) {
	c := tc.StartCluster(t, 3)
	w := startWriteLoad(c)
	w.waitAcked(t, 500)
	for range 2 {
		leader, _ := tc.WaitLeader(t, tc.Timeout, c.Members()...)
		w.setDown(leader, true)
		killed := time.Now()
		leader.Kill()
		tc.WaitLeader(t, tc.Timeout, c.Except(leader)...)
		t.Logf("killed leader %v; survivors agreed on a new one %v later", leader, time.Since(killed).Round(time.Millisecond))
		w.waitAcked(t, 500)
		leader.Restart()
		tc.WaitLeader(t, tc.Timeout, c.Members()...)
		w.setDown(leader, false)
		w.waitAcked(t, 500)
	}
	acked, failures, summary := w.finish()
	t.Log(summary)
	for kind, fs := range failures {
		if strings.HasSuffix(kind, "from a member down") {
			continue // sent to the killed member: lost with it, or refused
		}
		t.Errorf("%s: %d, e.g. %s", kind, len(fs), strings.Join(fs[:min(len(fs), 5)], "; "))
	}
	expectAcknowledgedWritesReadable(t, c, acked)
}

// A write to a follower right after the leader got SIGTERM answers 204: the
// follower's proposal, which the leader drops without a word as it hands
// over, is proposed again to the new leader (before, it waited out the
// request timeout and answered 503).
func TestWriteToAFollowerDuringAHandOffAnswers204(t *testing.T) {
	c := tc.StartCluster(t, 3)
	for round := range 5 {
		leader, _ := tc.WaitLeader(t, tc.Timeout, c.Members()...)
		follower := c.Except(leader)[0]
		leader.Signal(syscall.SIGTERM)
		start := time.Now()
		code, body, err := follower.Put(fmt.Sprintf("handoff-%d", round), "v")
		took := time.Since(start)
		expectStatus(t, "PUT to a follower during a hand-off", code, body, err, 204)
		if code, ok := leader.Wait(20 * time.Second); !ok || code != 0 {
			t.Fatalf("%v: exit %d (exited: %v) after SIGTERM", leader, code, ok)
		}
		leader.Restart()
		t.Logf("round %d: the write answered 204 in %v", round, took.Round(time.Millisecond))
	}
}
