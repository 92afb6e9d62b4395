package e2e

// A linearizability check of the real cluster under crashes: concurrent
// clients read, write and delete a few keys through every node while a
// nemesis SIGKILLs and restarts nodes; porcupine then checks that the
// recorded history has a legal sequential order.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

// opInput is one operation a client sends.
type opInput struct {
	Kind  lincheck.Kind
	Key   string
	Value string // for put
}

// historyRecorder collects the history of all clients (in its
// lincheck.Recorder, whose clock gives the timestamps) and counts outcomes.
type historyRecorder struct {
	*lincheck.Recorder

	mu         sync.Mutex
	counts     map[string]int // "put ok", "get failed", ...
	unexpected []string       // answers the API does not allow
}

func newHistoryRecorder() *historyRecorder {
	return &historyRecorder{Recorder: lincheck.NewRecorder(), counts: map[string]int{}}
}

// opResult is how one request ended.
type opResult struct {
	code int
	body string
	err  error
	node int
}

func (res opResult) String() string {
	if res.err != nil {
		return fmt.Sprintf("node %d: %v", res.node, res.err)
	}
	return fmt.Sprintf("node %d: %d %s", res.node, res.code, strings.TrimSpace(tc.Shorten(res.body, 80)))
}

// reason is the one-line message of an error answer: plain text at the
// root, {"error": ...} under /v1.
func (res opResult) reason() string {
	var v1 struct {
		Error string `json:"error"`
	}
	if strings.HasPrefix(res.body, "{") && json.Unmarshal([]byte(res.body), &v1) == nil {
		return v1.Error
	}
	return strings.TrimSpace(res.body)
}

// transportErrorKind classifies a failed request for the summary.
func transportErrorKind(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset or closed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return "other"
}

// record files one finished operation under the recording rules: an
// acknowledged write or a successful read goes in with its real interval; a
// write that was not acknowledged may still take effect, so it goes in as
// never returning, unless it certainly did not: the server said it was never
// proposed, or the connection was refused; a failed read changes nothing and
// is left out.
func (r *historyRecorder) record(client int, in opInput, call, ret int64, res opResult) {
	op := lincheck.Op{Client: client, Kind: in.Kind, Key: in.Key, Value: in.Value, Call: call, Return: ret}
	outcome := ""
	keep := true
	switch {
	case in.Kind == lincheck.Get && res.err == nil && res.code == http.StatusOK:
		op.Value, op.Found = res.body, true
		outcome = "ok"
	case in.Kind == lincheck.Get && res.err == nil && res.code == http.StatusNotFound:
		op.Value, op.Found = "", false
		outcome = "ok (absent)"
	case in.Kind == lincheck.Get:
		keep = false
		outcome = "failed (dropped)"
	case res.err == nil && res.code == http.StatusNoContent:
		outcome = "ok"
	case res.err == nil && res.code == http.StatusServiceUnavailable && strings.HasPrefix(res.reason(), notProposed):
		keep = false
		outcome = "not applied (dropped)"
	case errors.Is(res.err, syscall.ECONNREFUSED):
		// The node was down: the request never left this process. Left
		// out like a read, or the checker would have to place hundreds of
		// writes that cannot have happened.
		keep = false
		outcome = "not sent (dropped)"
	default:
		op.Return = lincheck.Infinity
		outcome = "unknown (open-ended)"
	}
	if res.err == nil {
		wantCodes := map[int]bool{http.StatusNoContent: true, http.StatusServiceUnavailable: true}
		if in.Kind == lincheck.Get {
			wantCodes = map[int]bool{http.StatusOK: true, http.StatusNotFound: true, http.StatusServiceUnavailable: true}
		}
		if !wantCodes[res.code] {
			r.mu.Lock()
			r.unexpected = append(r.unexpected, fmt.Sprintf("%s %s: %v", in.Kind, in.Key, res))
			r.mu.Unlock()
		}
	}
	if keep {
		r.Add(op)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[in.Kind.String()+" "+outcome]++
	if res.err != nil {
		r.counts[fmt.Sprintf("%s transport error: %s", in.Kind, transportErrorKind(res.err))]++
	} else if res.code == http.StatusServiceUnavailable {
		reason, _, _ := strings.Cut(res.reason(), ":")
		r.counts[fmt.Sprintf("%s 503 %q", in.Kind, reason)]++
	}
}

func (r *historyRecorder) okOps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.counts {
		if strings.HasSuffix(k, " ok") || strings.HasSuffix(k, " ok (absent)") {
			n += v
		}
	}
	return n
}

func (r *historyRecorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-60s %6d", k, r.counts[k])
	}
	return b.String()
}

// opTimeout bounds one operation: longer than the members' --request-timeout.
const opTimeout = 5 * time.Second

// doOp runs one operation against node n.
func doOp(ctx context.Context, n *tc.Node, in opInput, viaV1 bool) opResult {
	path := "/" + url.PathEscape(in.Key)
	if viaV1 || in.Kind == lincheck.Delete {
		path = "/v1/kv/" + url.PathEscape(in.Key)
	}
	method, body := http.MethodGet, ""
	switch in.Kind {
	case lincheck.Put:
		method, body = http.MethodPut, in.Value
	case lincheck.Delete:
		method = http.MethodDelete
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res := opResult{node: n.ID}
	res.code, res.body, res.err = n.DoContext(ctx, method, path, body)
	return res
}

func TestHistoryIsLinearizableUnderKillsAndRestarts(t *testing.T) {
	const (
		workload       = 30 * time.Second // how long the clients and the nemesis run
		hardDeadlineIn = 2 * time.Minute  // the whole test ends by then, whatever happens
		clients        = 8
		keyCount       = 5 // few keys, so that operations conflict
		serverTimeout  = "2s"
		snapCount      = "1000" // snapshots, compaction and snapshot catch-up happen during the run
		checkTimeout   = 60 * time.Second
		minOKOps       = 300
		minKills       = 2
	)
	hardDeadline := time.Now().Add(hardDeadlineIn)
	// Nothing below waits past the hard deadline: requests carry this
	// context, and the check's timeout is cut to what is left.
	ctx, cancel := context.WithDeadline(context.Background(), hardDeadline.Add(-5*time.Second))
	defer cancel()

	c := tc.StartCluster(t, 3, "--request-timeout", serverTimeout, "--snap-count", snapCount)
	keys := make([]string, keyCount)
	for i := range keys {
		keys[i] = fmt.Sprintf("lin-%d", i)
	}

	rec := newHistoryRecorder()
	workCtx, stopWork := context.WithTimeout(ctx, workload)
	defer stopWork()

	// Clients.
	var running sync.WaitGroup
	for id := 0; id < clients; id++ {
		running.Add(1)
		go func() {
			defer running.Done()
			rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
			for seq := 0; workCtx.Err() == nil; seq++ {
				in := opInput{Key: keys[rng.IntN(len(keys))]}
				switch p := rng.IntN(100); {
				case p < 45:
					in.Kind, in.Value = lincheck.Put, fmt.Sprintf("c%d-%d", id, seq) // unique in the run
				case p < 90:
					in.Kind = lincheck.Get
				default:
					in.Kind = lincheck.Delete
				}
				n := c.Nodes[rng.IntN(len(c.Nodes))]
				call := rec.Now()
				// In-flight requests run to their end even after the
				// workload stops (only the hard deadline cuts them), so
				// that their outcome is known.
				res := doOp(ctx, n, in, rng.IntN(2) == 0)
				rec.record(id, in, call, rec.Now(), res)
			}
		}()
	}

	// Nemesis: one node down at a time, often the leader.
	var (
		nemesisLog  []string
		kills       int
		leaderKills int
		nemesisErr  error
	)
	nemesisDone := make(chan struct{})
	go func() {
		defer close(nemesisDone)
		rng := rand.New(rand.NewPCG(99, uint64(time.Now().UnixNano())))
		pause := func(lo, hi time.Duration) bool {
			select {
			case <-workCtx.Done():
				return false
			case <-time.After(lo + time.Duration(rng.Int64N(int64(hi-lo)))):
				return true
			}
		}
		logf := func(format string, args ...any) {
			nemesisLog = append(nemesisLog, fmt.Sprintf("%6.2fs ", time.Duration(rec.Now()).Seconds())+fmt.Sprintf(format, args...))
		}
		for pause(1500*time.Millisecond, 3500*time.Millisecond) {
			victim, what := c.Nodes[rng.IntN(len(c.Nodes))], "a random node"
			if rng.IntN(2) == 0 {
				if l, err := c.FindLeader(3 * time.Second); err == nil {
					victim, what = l, "the leader"
					leaderKills++
				} else {
					logf("no leader found (%v)", err)
				}
			}
			if err := victim.TryKill(); err != nil {
				nemesisErr = err
				return
			}
			kills++
			logf("killed %v (%s)", victim, what)
			pause(200*time.Millisecond, 1500*time.Millisecond)
			// Restart even when the workload is over: the final reads
			// want every node back.
			if err := victim.TryStart(); err != nil {
				nemesisErr = err
				return
			}
			if err := victim.WaitServing(20 * time.Second); err != nil {
				nemesisErr = err
				return
			}
			logf("restarted %v", victim)
		}
	}()

	running.Wait()
	<-nemesisDone
	t.Logf("nemesis:\n  %s", strings.Join(nemesisLog, "\n  "))
	if nemesisErr != nil {
		t.Errorf("nemesis: %v", nemesisErr) // the history is still worth checking
	}

	// Every node must still be up: a node that died by itself after a
	// restart (e.g. while replaying its WAL) is a bug even if the history is
	// fine.
	var live []*tc.Node
	for _, n := range c.Nodes {
		if n.Running() {
			live = append(live, n)
			continue
		}
		code, _ := n.Wait(0)
		t.Errorf("%v exited by itself with code %d; its last run logged:\n%s", n, code, tc.Tail(n.RunLog(), 60))
	}

	// Final reads through every node once the cluster is whole again: they
	// see the outcome of everything acknowledged (and maybe of writes that
	// were not).
	finalDeadline := time.Now().Add(20 * time.Second)
	for _, n := range live {
		for _, k := range keys {
			err := tc.Poll(time.Until(finalDeadline), func() error {
				in := opInput{Kind: lincheck.Get, Key: k}
				call := rec.Now()
				res := doOp(ctx, n, in, false)
				rec.record(clients, in, call, rec.Now(), res)
				if res.err != nil || (res.code != http.StatusOK && res.code != http.StatusNotFound) {
					return fmt.Errorf("final GET %s: %v", k, res)
				}
				return nil
			})
			if err != nil {
				t.Errorf("%v", err)
			}
		}
	}

	for _, n := range c.Nodes {
		if bad := tc.ErrorLines(n.Log()); len(bad) > 0 {
			t.Logf("%v logged %d lines at error level, e.g.:\n  %s", n, len(bad), strings.Join(bad[:min(5, len(bad))], "\n  "))
		}
	}

	history := rec.History()
	t.Logf("operations (%d in the history; %d kills, %d of the leader):%s", len(history), kills, leaderKills, rec.summary())
	if len(rec.unexpected) > 0 {
		t.Errorf("%d answers with a status the API does not allow, e.g.:\n  %s",
			len(rec.unexpected), strings.Join(rec.unexpected[:min(10, len(rec.unexpected))], "\n  "))
	}
	if got := rec.okOps(); got < minOKOps {
		t.Errorf("only %d operations succeeded, want at least %d: the run did too little to prove anything", got, minOKOps)
	}
	if kills < minKills {
		t.Errorf("only %d kills, want at least %d", kills, minKills)
	}

	timeout := min(checkTimeout, time.Until(hardDeadline)-5*time.Second)
	if timeout <= 0 {
		t.Fatalf("no time left to check the history before the hard deadline")
	}
	checkStart := time.Now()
	result, err := lincheck.Check(history, timeout, os.TempDir(),
		"raftexample-porcupine-"+time.Now().Format("20060102-150405.000"))
	t.Logf("porcupine: %s in %v", result.Verdict, time.Since(checkStart).Round(time.Millisecond))
	switch {
	case err != nil:
		t.Errorf("history is not linearizable; writing the visualization failed: %v", err)
	case result.Verdict == porcupine.Ok:
	case result.Verdict == porcupine.Unknown:
		t.Logf("porcupine could not decide within %v; no violation found so far", timeout)
	default:
		t.Errorf("history is not linearizable; see %s (open in a browser)", result.HTML)
	}
}
