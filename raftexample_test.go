package main

// In-process scenarios: real raftNodes with real rafthttp transports on free
// loopback ports and real WAL and snapshot directories under t.TempDir(), all
// inside the test binary. Helpers carry an "ip" prefix so they cannot clash
// with the server's names or with the cross-process helpers ("proc").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ---------------------------------------------------------------------------
// Helpers

// ipLogBuffer collects the server log of one test; it is printed only if the
// test fails. Writes after the test ended are harmless.
type ipLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *ipLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *ipLogBuffer) Sync() error { return nil }

func (b *ipLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ipLogger(t testing.TB) (*zap.Logger, *ipLogBuffer) {
	b := &ipLogBuffer{}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), b, zapcore.InfoLevel)
	t.Cleanup(func() {
		if t.Failed() {
			s := b.String()
			if len(s) > 30000 {
				s = "...\n" + s[len(s)-30000:]
			}
			t.Logf("server log:\n%s", s)
		}
	})
	return zap.New(core), b
}

// ipFreePeerURLs returns n peer URLs on distinct loopback ports that were free
// a moment ago. All listeners are held open together so the ports differ.
func ipFreePeerURLs(t testing.TB, n int) []string {
	t.Helper()
	urls := make([]string, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		lns = append(lns, ln)
		urls[i] = "http://" + ln.Addr().String()
	}
	return urls
}

// ipEventually polls cond until it returns nil, failing the test after timeout.
func ipEventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not achieved within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ipWithin runs f and reports whether it returned within timeout.
func ipWithin(timeout time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ipServerGoroutines returns the stacks of goroutines still running code of
// the server's node, store or wait registry.
func ipServerGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// Package main is built under its import path in a test binary, so
	// take the package's name in stack traces from one of its functions.
	name := runtime.FuncForPC(reflect.ValueOf(newKVStore).Pointer()).Name()
	pkg := name[:strings.LastIndex(name, ".")+1]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, typ := range []string{"(*raftNode)", "(*kvstore)", "(*service)", "(*peers)", "(*snapshots)", "(*readIndex)"} {
			if strings.Contains(g, pkg+typ) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// ipCluster is a set of in-process nodes sharing a data directory. The first
// `initial` peer URLs form the bootstrap cluster; the rest are for joiners.
type ipCluster struct {
	t         testing.TB
	lg        *zap.Logger
	logs      *ipLogBuffer // what lg wrote
	dir       string
	urls      []string
	initial   int
	snapCount uint64
	nodes     map[uint64]*ipNode
}

// ipNode is one running (or stopped) in-process node.
type ipNode struct {
	id       uint64
	cfg      raftConfig
	rn       *raftNode
	svc      *service // nil when a custom consumer takes the commits
	store    *kvstore
	consumed <-chan struct{} // closed when the commit consumer returned
}

func newIPCluster(t testing.TB, initial, total int, snapCount uint64) *ipCluster {
	t.Helper()
	lg, logs := ipLogger(t)
	return &ipCluster{
		t:         t,
		lg:        lg,
		logs:      logs,
		dir:       t.TempDir(), // before any node, so it is removed after they stop
		urls:      ipFreePeerURLs(t, total),
		initial:   initial,
		snapCount: snapCount,
		nodes:     make(map[uint64]*ipNode),
	}
}

func (c *ipCluster) config(id uint64, join bool) raftConfig {
	urls := c.urls[:c.initial]
	if join {
		urls = c.urls[:max(c.initial, int(id))]
	}
	name := "raftexample-" + strconv.FormatUint(id, 10)
	return raftConfig{
		id:        id,
		peerURLs:  urls,
		join:      join,
		waldir:    filepath.Join(c.dir, name),
		snapdir:   filepath.Join(c.dir, name+"-snap"),
		snapCount: c.snapCount,
	}
}

// start starts node id with a custom consumer of its commits, which runs in
// its own goroutine until the commit channel is closed, and must answer the
// freeze requests among them. The raft node reports to no service.
func (c *ipCluster) start(id uint64, join bool, consume func(rn *raftNode, commitC <-chan commit)) *ipNode {
	c.t.Helper()
	commitC := make(chan commit, 64)
	consumed := make(chan struct{})
	n := &ipNode{id: id, cfg: c.config(id, join), consumed: consumed}
	rn, err := newRaftNode(c.lg, n.cfg, commitC, ipNoService{})
	if err == nil {
		err = rn.start()
	}
	if err != nil {
		c.t.Fatalf("starting node %d: %v", id, err)
	}
	n.rn = rn
	c.nodes[id] = n
	t := c.t
	t.Cleanup(func() { n.stop(t) })
	go func() {
		defer close(consumed)
		consume(rn, commitC)
	}()
	return n
}

// ipNoService stands in for the service of a raft node whose commits a test
// consumes itself.
type ipNoService struct{}

func (ipNoService) membershipChangeApplied(uint64, error) {}
func (ipNoService) proposalsInDoubt()                     {}
func (ipNoService) leadMembershipChange(context.Context, *raftpb.ConfChange) error {
	return errNoLeader
}

// startKV starts node id as main does: a replica, with the state machine and
// the service.
func (c *ipCluster) startKV(id uint64, join bool) *ipNode {
	c.t.Helper()
	n := &ipNode{id: id, cfg: c.config(id, join)}
	r, err := startReplica(c.lg, n.cfg, defaultHistory)
	if err != nil {
		c.t.Fatalf("starting node %d: %v", id, err)
	}
	n.rn, n.svc, n.store, n.consumed = r.node, r.service, r.store, r.applyDone
	c.nodes[id] = n
	t := c.t
	t.Cleanup(func() {
		n.stop(t)
		if r.applyErr != nil {
			t.Errorf("node %d: apply loop: %v", id, r.applyErr)
		}
	})
	return n
}

// stop stops the node, failing the test if that or the end of its commit
// consumer takes too long. It may be called more than once.
func (n *ipNode) stop(t testing.TB) {
	t.Helper()
	if !ipWithin(20*time.Second, n.rn.Stop) {
		t.Errorf("node %d: Stop did not return within 20s; server goroutines:\n%s", n.id, strings.Join(ipServerGoroutines(), "\n\n"))
		return
	}
	select {
	case <-n.consumed:
	case <-time.After(10 * time.Second):
		t.Errorf("node %d: commit consumer still running 10s after Stop (commit channel not closed?)", n.id)
	}
}

// waitLeader waits until every given node knows the same leader.
func (c *ipCluster) waitLeader(nodes ...*ipNode) uint64 {
	c.t.Helper()
	var lead uint64
	ipEventually(c.t, 30*time.Second, "a leader known to every node", func() error {
		lead = 0
		for _, n := range nodes {
			l := n.rn.node.Status().Lead
			if l == raft.None {
				return fmt.Errorf("node %d knows no leader", n.id)
			}
			if lead != raft.None && l != lead {
				return fmt.Errorf("nodes disagree on the leader: %d and %d", lead, l)
			}
			lead = l
		}
		return nil
	})
	return lead
}

// ipPut writes key=value through s, retrying while there is no leader.
func ipPut(t testing.TB, s *service, key, value string) {
	t.Helper()
	ipEventually(t, 30*time.Second, "PUT "+key, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.put(ctx, key, value)
	})
}

// ipExpectValue polls until s holds key=value.
func ipExpectValue(t testing.TB, id uint64, s *kvstore, key, value string) {
	t.Helper()
	ipEventually(t, 30*time.Second, fmt.Sprintf("node %d holds %s", id, key), func() error {
		v, ok := s.value(key)
		if !ok {
			return errors.New("key missing")
		}
		if v != value {
			return fmt.Errorf("value %q, want %q", v, value)
		}
		return nil
	})
}

// bytesImage stands in for a frozen kvstore where the state machine is not
// one: its bytes are the snapshot's kvstore part.
type bytesImage []byte

func (b bytesImage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}
func (bytesImage) Release() {}

func ipSnapFiles(t *testing.T, snapdir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(snapdir, "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// ---------------------------------------------------------------------------
// a. Proposals made from the commit consumer

// Each node's commit consumer proposes one new entry, synchronously (bounded
// by a timeout), for every committed entry it receives. The Ready loop must
// keep going although its consumer is busy proposing, so every node sees 100
// entries, in the same order everywhere.
func TestProposalsMadeOnCommitDoNotStallCluster(t *testing.T) {
	const want = 100
	c := newIPCluster(t, 3, 3, 10000)

	type tally struct {
		mu         sync.Mutex
		seen       []string
		timeouts   int
		otherError error
	}
	tallies := make([]*tally, 3)
	giveUp := time.Now().Add(90 * time.Second)
	for i := range tallies {
		tl := &tally{}
		tallies[i] = tl
		id := uint64(i + 1)
		c.start(id, false, func(rn *raftNode, commitC <-chan commit) {
			proposed := 0
			for cm := range commitC {
				if cm.freeze != nil {
					cm.freeze <- bytesImage(nil)
					continue
				}
				tl.mu.Lock()
				for _, e := range cm.entries {
					cmd, _ := decodeCommand(e)
					tl.seen = append(tl.seen, cmd.key)
				}
				n := len(tl.seen)
				tl.mu.Unlock()
				for range cm.entries {
					if n >= want {
						break
					}
					proposed++
					// A command, as a forwarded proposal must be: the leader
					// refuses entries that would not apply.
					data := encodeCommand(command{op: opPut, key: fmt.Sprintf("node%d-%d", id, proposed)})
					for time.Now().Before(giveUp) {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						err := rn.Propose(ctx, data)
						cancel()
						if err == nil || errors.Is(err, raft.ErrStopped) {
							break
						}
						tl.mu.Lock()
						switch {
						case errors.Is(err, context.DeadlineExceeded):
							tl.timeouts++
						case !errors.Is(err, raft.ErrProposalDropped): // dropped: no leader for a moment; retry
							tl.otherError = err
						}
						tl.mu.Unlock()
						if errors.Is(err, raft.ErrProposalDropped) {
							time.Sleep(10 * time.Millisecond)
							continue
						}
						break
					}
				}
			}
		})
	}
	c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])
	ipEventually(t, 10*time.Second, "seed proposal accepted", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.nodes[1].rn.Propose(ctx, encodeCommand(command{op: opPut, key: "seed"}))
	})

	ipEventually(t, 60*time.Second, fmt.Sprintf("every node sees %d committed entries", want), func() error {
		for i, tl := range tallies {
			tl.mu.Lock()
			n := len(tl.seen)
			tl.mu.Unlock()
			if n < want {
				return fmt.Errorf("node %d has seen %d", i+1, n)
			}
		}
		return nil
	})
	var first []string
	for i, tl := range tallies {
		tl.mu.Lock()
		seen := append([]string(nil), tl.seen[:want]...)
		timeouts, other := tl.timeouts, tl.otherError
		tl.mu.Unlock()
		if timeouts > 0 || other != nil {
			t.Errorf("node %d: %d proposals timed out, other proposal error: %v", i+1, timeouts, other)
		}
		if seen[0] != "seed" {
			t.Errorf("node %d: first committed entry is %q, want the seed", i+1, seen[0])
		}
		if first == nil {
			first = seen
			continue
		}
		for k := range first {
			if seen[k] != first[k] {
				t.Fatalf("node %d committed %q at position %d where node 1 committed %q", i+1, seen[k], k, first[k])
			}
		}
	}
}

// ---------------------------------------------------------------------------
// b. Stopping a restarted node before its replayed state was consumed

// A node restarted on existing data and stopped at once, before anything read
// its commit channel, must stop cleanly: Stop returns, Err is nil (a stop, not
// a failure) and the commit channel is closed.
func TestStopRightAfterRestartEndsCleanly(t *testing.T) {
	cases := []struct {
		name          string
		firstSnap     uint64 // snapCount of the first run
		secondSnap    uint64 // snapCount of the restart
		readOneCommit bool   // receive (but never apply) one replayed commit before stopping
	}{
		// The replayed entries are published on the first Ready, if the loop
		// gets there before Stop.
		{name: "WAL only, commits never read", firstSnap: 10000, secondSnap: 10000},
		// The snapshot loaded from disk is published first thing, so the loop
		// is always waiting on the commit channel when Stop comes.
		{name: "snapshot on disk, commits never read", firstSnap: 5, secondSnap: 10000},
		// The replayed entries exceed snapCount, so the loop asks for the
		// state to snapshot, and the request is never taken.
		{name: "WAL only, replayed commit never applied", firstSnap: 10000, secondSnap: 5, readOneCommit: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newIPCluster(t, 1, 1, tc.firstSnap)
			n := c.startKV(1, false)
			for i := range 20 {
				ipPut(t, n.svc, fmt.Sprintf("k%d", i), "v")
			}
			n.stop(t)
			if err := n.rn.Err(); err != nil {
				t.Fatalf("first run: Err() = %v after Stop, want nil", err)
			}
			if tc.firstSnap < 20 && len(ipSnapFiles(t, n.cfg.snapdir)) == 0 {
				t.Fatalf("first run left no snapshot file in %s", n.cfg.snapdir)
			}

			cfg := n.cfg
			cfg.snapCount = tc.secondSnap
			commitC := make(chan commit) // unbuffered: nothing is taken unless read
			rn, err := newRaftNode(c.lg, cfg, commitC, ipNoService{})
			if err == nil {
				err = rn.start()
			}
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			t.Cleanup(func() { ipWithin(20*time.Second, rn.Stop) })
			if tc.readOneCommit {
				select {
				case <-commitC: // and nothing after it is ever read
				case <-time.After(20 * time.Second):
					t.Fatal("restarted node published no replayed commit within 20s")
				}
			}
			if !ipWithin(10*time.Second, rn.Stop) {
				t.Fatalf("Stop did not return within 10s; server goroutines:\n%s", strings.Join(ipServerGoroutines(), "\n\n"))
			}
			if err := rn.Err(); err != nil {
				t.Errorf("Err() = %v after Stop, want nil: a requested stop is not a failure", err)
			}
			select {
			case _, ok := <-commitC:
				if ok {
					t.Error("commit channel delivered a commit after Stop returned")
				}
			case <-time.After(5 * time.Second):
				t.Error("commit channel not closed after Stop returned")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// c. Stopping while proposals are in flight

// Many concurrent Puts on a 3-node cluster, then every node is stopped while
// they are in flight. Every Put must return, with success or one of the
// "not acknowledged" errors, and nothing of the server may keep running.
func TestStopWithPutsInFlightReleasesEveryCaller(t *testing.T) {
	c := newIPCluster(t, 3, 3, 50) // small snapCount: snapshots happen during the run too
	for id := uint64(1); id <= 3; id++ {
		c.startKV(id, false)
	}
	c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])

	const writers = 30
	var succeeded atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	for w := range writers {
		n := c.nodes[uint64(w%3+1)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-n.rn.Done():
					return
				default:
				}
				// Far longer than the test waits: a Put must end because the
				// node stopped, not because its context expired.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				key := fmt.Sprintf("w%d-%d", w, i)
				err := n.svc.put(ctx, key, "v")
				cancel()
				switch {
				case err == nil:
					succeeded.Add(1)
					if v, ok := n.store.value(key); !ok || v != "v" {
						mu.Lock()
						unexpected = append(unexpected, fmt.Errorf("put %s acknowledged but Lookup gives %q, %v", key, v, ok))
						mu.Unlock()
					}
				case errors.Is(err, errStopped), errors.Is(err, errNoLeader), errors.Is(err, errOutcomeUnknown):
				default:
					mu.Lock()
					unexpected = append(unexpected, fmt.Errorf("put %s: %w", key, err))
					mu.Unlock()
				}
			}
		}()
	}
	ipEventually(t, 30*time.Second, "100 acknowledged puts", func() error {
		if n := succeeded.Load(); n < 100 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})

	var stops sync.WaitGroup
	for _, n := range c.nodes {
		stops.Add(1)
		go func() {
			defer stops.Done()
			n.stop(t)
		}()
	}
	if !ipWithin(30*time.Second, stops.Wait) {
		t.Fatal("stopping the nodes took more than 30s")
	}
	if !ipWithin(10*time.Second, wg.Wait) {
		t.Fatalf("some Put calls had not returned 10s after every node stopped; server goroutines:\n%s", strings.Join(ipServerGoroutines(), "\n\n"))
	}
	mu.Lock()
	for _, err := range unexpected {
		t.Error(err)
	}
	mu.Unlock()
	ipEventually(t, 10*time.Second, "no server goroutine left", func() error {
		if gs := ipServerGoroutines(); len(gs) > 0 {
			return fmt.Errorf("%d left:\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// d. The HTTP API on a one-node cluster

func ipDo(t *testing.T, method, url string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, got
}

func ipExpectStatus(t *testing.T, method, url string, body []byte, want int) []byte {
	t.Helper()
	code, _, got := ipDo(t, method, url, body)
	if code != want {
		t.Fatalf("%s %s: status %d (%q), want %d", method, url, code, got, want)
	}
	return got
}

func TestHTTPAPIStoresValuesAndRejectsBadRequests(t *testing.T) {
	const maxValue = 1024
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	srv := httptest.NewServer(&httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: maxValue})
	t.Cleanup(srv.Close)
	ipEventually(t, 30*time.Second, "a PUT is answered 204", func() error {
		if code, _, body := ipDo(t, http.MethodPut, srv.URL+"/ready", []byte("yes")); code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})

	t.Run("PUT then GET returns the value byte for byte", func(t *testing.T) {
		value := []byte("\x00\x01binary\xff\xfe\r\n\tvalue \x00")
		ipExpectStatus(t, http.MethodPut, srv.URL+"/bin", value, http.StatusNoContent)
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/bin", nil, http.StatusOK); !bytes.Equal(got, value) {
			t.Fatalf("GET /bin = %q, want %q", got, value)
		}
		ipExpectStatus(t, http.MethodPut, srv.URL+"/bin", []byte("second"), http.StatusNoContent)
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/bin", nil, http.StatusOK); string(got) != "second" {
			t.Fatalf("GET /bin after overwrite = %q, want %q", got, "second")
		}
	})
	t.Run("empty value is stored and read back", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPut, srv.URL+"/empty", nil, http.StatusNoContent)
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/empty", nil, http.StatusOK); len(got) != 0 {
			t.Fatalf("GET /empty = %q, want empty", got)
		}
	})
	t.Run("GET of a missing key is 404", func(t *testing.T) {
		ipExpectStatus(t, http.MethodGet, srv.URL+"/never-written", nil, http.StatusNotFound)
	})
	t.Run("PATCH is 405 with an Allow header", func(t *testing.T) {
		code, hdr, _ := ipDo(t, http.MethodPatch, srv.URL+"/bin", []byte("x"))
		if code != http.StatusMethodNotAllowed {
			t.Fatalf("PATCH: status %d, want 405", code)
		}
		allow := hdr.Get("Allow")
		for _, m := range []string{"GET", "PUT"} {
			if !strings.Contains(allow, m) {
				t.Errorf("Allow header %q lacks %s", allow, m)
			}
		}
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/bin", nil, http.StatusOK); string(got) == "x" {
			t.Error("PATCH changed the value")
		}
	})
	t.Run("PUT with an empty key is 400", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPut, srv.URL+"/", []byte("v"), http.StatusBadRequest)
		if _, ok := n.store.value(""); ok {
			t.Error("the empty key was stored")
		}
	})
	t.Run("PUT with a key over 4096 bytes is 400", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPut, srv.URL+"/"+strings.Repeat("k", maxKeyBytes+1), []byte("v"), http.StatusBadRequest)
		ipExpectStatus(t, http.MethodPut, srv.URL+"/"+strings.Repeat("k", maxKeyBytes), []byte("v"), http.StatusNoContent)
	})
	t.Run("value over max-value-bytes is 413 and not stored", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPut, srv.URL+"/big", bytes.Repeat([]byte("b"), maxValue+1), http.StatusRequestEntityTooLarge)
		ipExpectStatus(t, http.MethodGet, srv.URL+"/big", nil, http.StatusNotFound)
		ipExpectStatus(t, http.MethodPut, srv.URL+"/big", bytes.Repeat([]byte("b"), maxValue), http.StatusNoContent)
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/big", nil, http.StatusOK); len(got) != maxValue {
			t.Fatalf("GET /big returned %d bytes, want %d", len(got), maxValue)
		}
	})
	t.Run("query string is not part of the key", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPut, srv.URL+"/q?x=1", []byte("with-query"), http.StatusNoContent)
		if got := ipExpectStatus(t, http.MethodGet, srv.URL+"/q", nil, http.StatusOK); string(got) != "with-query" {
			t.Fatalf("GET /q = %q, want %q", got, "with-query")
		}
		if _, ok := n.store.value("q?x=1"); ok {
			t.Error(`the key "q?x=1" was stored`)
		}
	})
	t.Run("membership requests map refusals to status codes", func(t *testing.T) {
		ipExpectStatus(t, http.MethodPost, srv.URL+"/0", []byte(c.urls[0]), http.StatusBadRequest)
		ipExpectStatus(t, http.MethodPost, srv.URL+"/abc", []byte(c.urls[0]), http.StatusBadRequest)
		ipExpectStatus(t, http.MethodPost, srv.URL+"/5", []byte("ftp://127.0.0.1:1"), http.StatusBadRequest)
		ipExpectStatus(t, http.MethodPost, srv.URL+"/1", []byte(c.urls[0]), http.StatusConflict) // already a member
		ipExpectStatus(t, http.MethodDelete, srv.URL+"/1", nil, http.StatusConflict)             // the last member
		ipExpectStatus(t, http.MethodDelete, srv.URL+"/9", nil, http.StatusNotFound)
		if ms := n.rn.Members(); len(ms) != 1 || ms[0].ID != 1 {
			t.Fatalf("members after refused requests: %+v, want only member 1", ms)
		}
	})
}

// ---------------------------------------------------------------------------
// e. A member added at runtime

func TestAddedMemberCommitsProposals(t *testing.T) {
	for _, tc := range []struct {
		name      string
		snapCount uint64
		preWrites int
	}{
		{name: "catches up from the log", snapCount: 10000, preWrites: 5},
		// The leader has compacted its log, so node 4 must get a snapshot,
		// and that snapshot must already list node 4 as a member.
		{name: "catches up from a snapshot", snapCount: 5, preWrites: 30},
		// Here the latest snapshot predates node 4 and nothing is written
		// until node 4 has caught up, so snap-count alone would never take
		// a newer one: the leader must take one for node 4.
		{name: "catches up from a snapshot taken for it", snapCount: 20, preWrites: 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newIPCluster(t, 3, 4, tc.snapCount)
			for id := uint64(1); id <= 3; id++ {
				c.startKV(id, false)
			}
			c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])
			for i := range tc.preWrites {
				ipPut(t, c.nodes[uint64(i%3+1)].svc, fmt.Sprintf("pre%d", i), strconv.Itoa(i))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.nodes[1].svc.AddMember(ctx, 4, c.urls[3]); err != nil {
				t.Fatalf("AddMember(4) = %v", err)
			}
			if ms := c.nodes[1].rn.Members(); len(ms) != 4 || ms[3].ID != 4 || ms[3].PeerURL != c.urls[3] {
				t.Fatalf("members on node 1 after AddMember: %+v", ms)
			}
			n4 := c.startKV(4, true)

			// Before any new write: node 4 catches up with what is there.
			for i := range tc.preWrites {
				ipExpectValue(t, 4, n4.store, fmt.Sprintf("pre%d", i), strconv.Itoa(i))
			}
			ipPut(t, n4.svc, "from-node-4", "hello")
			for id := uint64(1); id <= 4; id++ {
				ipExpectValue(t, id, c.nodes[id].store, "from-node-4", "hello")
			}
			ipEventually(t, 10*time.Second, "node 4 lists four members", func() error {
				if ms := n4.rn.Members(); len(ms) != 4 {
					return fmt.Errorf("members %+v", ms)
				}
				return nil
			})
		})
	}
}

// ---------------------------------------------------------------------------
// f. Snapshots wait for the state machine

// The commit consumer applies slowly, while the node takes snapshots. The
// state a snapshot at index i holds must be the state machine's once it
// applied exactly the entries up to i: the consumer answers each freeze
// request with the index it has applied, and every snapshot's data file
// must hold its own index.
func TestSnapshotHoldsTheStateAtExactlyItsIndex(t *testing.T) {
	const proposals = 50
	c := newIPCluster(t, 1, 1, 5)
	var applied, snapshots atomic.Int64
	n := c.start(1, false, func(rn *raftNode, commitC <-chan commit) {
		for cm := range commitC {
			if cm.freeze != nil {
				snapshots.Add(1)
				cm.freeze <- bytesImage(strconv.FormatInt(applied.Load(), 10))
				continue
			}
			time.Sleep(3 * time.Millisecond) // a slow state machine
			applied.Store(int64(cm.index))
		}
	})
	c.waitLeader(n)
	for i := range proposals {
		ipEventually(t, 10*time.Second, "proposal accepted", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return n.rn.Propose(ctx, []byte(fmt.Sprintf("entry-%d", i)))
		})
	}
	ipEventually(t, 30*time.Second, "all proposals applied", func() error {
		if got := applied.Load(); got < proposals+2 { // after the bootstrap conf change and the leader's empty entry
			return fmt.Errorf("applied through %d", got)
		}
		return nil
	})
	if snapshots.Load() == 0 {
		t.Fatal("no snapshot was taken: the test proves nothing")
	}
	// The snapshot is written in the background after the freeze request.
	var files []string
	ipEventually(t, 10*time.Second, "a snapshot data file", func() error {
		files, _ = filepath.Glob(filepath.Join(n.cfg.snapdir, "*.snap.db"))
		if len(files) == 0 {
			return fmt.Errorf("%d freeze requests but %s holds no data file", snapshots.Load(), n.cfg.snapdir)
		}
		return nil
	})
	for _, f := range files {
		index, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(f), ".snap.db"), 16, 64)
		data, rerr := os.ReadFile(f)
		if err != nil || rerr != nil {
			t.Fatalf("%s: %v %v", f, err, rerr)
		}
		if string(data) != strconv.FormatUint(index, 10) {
			t.Errorf("the snapshot at index %d holds the state applied through %s", index, data)
		}
	}
}

// ---------------------------------------------------------------------------
// g. Restart from snapshot and WAL

func TestRestartRestoresStateFromSnapshotAndWAL(t *testing.T) {
	const keys = 100
	c := newIPCluster(t, 1, 1, 10)
	n := c.startKV(1, false)
	for i := range keys {
		ipPut(t, n.svc, fmt.Sprintf("key-%03d", i), fmt.Sprintf("value-%d", i))
	}
	n.stop(t)
	if err := n.rn.Err(); err != nil {
		t.Fatalf("Err() = %v after Stop", err)
	}
	if len(ipSnapFiles(t, n.cfg.snapdir)) == 0 {
		t.Fatalf("no snapshot file in %s after %d puts with snapCount 10", n.cfg.snapdir, keys)
	}

	restarted := c.startKV(1, false) // same directories, fresh kvstore
	for i := range keys {
		ipExpectValue(t, 1, restarted.store, fmt.Sprintf("key-%03d", i), fmt.Sprintf("value-%d", i))
	}
	ipPut(t, restarted.svc, "after-restart", "ok")
	ipExpectValue(t, 1, restarted.store, "after-restart", "ok")
}

// ---------------------------------------------------------------------------
// h. A follower restarted while the rest of the cluster keeps going

// Node 3 is stopped, the others take more writes (enough for them to snapshot
// and compact past node 3's log), and node 3 restarted on its directories
// catches up and takes writes again. Its peers talk to it from the moment its
// transport starts.
func TestRestartedFollowerCatchesUpWithRunningCluster(t *testing.T) {
	c := newIPCluster(t, 3, 3, 5)
	for id := uint64(1); id <= 3; id++ {
		c.startKV(id, false)
	}
	c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])
	for i := range 10 {
		ipPut(t, c.nodes[uint64(i%3+1)].svc, fmt.Sprintf("before-%d", i), "b")
	}
	ipExpectValue(t, 3, c.nodes[3].store, "before-9", "b")
	c.nodes[3].stop(t)
	if err := c.nodes[3].rn.Err(); err != nil {
		t.Fatalf("node 3: Err() = %v after Stop", err)
	}
	for i := range 30 {
		ipPut(t, c.nodes[uint64(i%2+1)].svc, fmt.Sprintf("while-down-%d", i), "w")
	}

	n3 := c.startKV(3, false)
	for i := range 30 {
		ipExpectValue(t, 3, n3.store, fmt.Sprintf("while-down-%d", i), "w")
	}
	for i := range 10 {
		ipExpectValue(t, 3, n3.store, fmt.Sprintf("before-%d", i), "b")
	}
	ipPut(t, n3.svc, "after-restart", "a")
	for id := uint64(1); id <= 3; id++ {
		ipExpectValue(t, id, c.nodes[id].store, "after-restart", "a")
	}
}
