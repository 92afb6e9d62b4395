//go:build linux

package e2e

// Bounded resources: thousands of idle connections, request bodies that
// trickle in, answers read a byte a second, and more connections than a
// member has descriptors. None of it may stop the member from serving
// others, make it exit, or make a snapshot fail.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	tc "raftexample/internal/testcluster"
)

// snapCount is small, so that the writes of a test take several snapshots.
const snapCount = 200

// memoryBound is the most a member may hold resident while thousands of
// idle or slow clients are connected: well above what the connections
// themselves need (tens of KiB each), well below what buffering a whole
// listing per slow reader costs.
const memoryBound = 400 << 20

func TestIdleAndSlowConnectionsDoNotStopAMember(t *testing.T) {
	const (
		idle        = 3000 // half send nothing, half one request and then nothing
		slowBodies  = 300
		slowReaders = 300
	)
	raiseOpenFileLimit(t, idle+slowBodies+slowReaders+1000)
	c := tc.New(t, 3, "--snap-count", strconv.Itoa(snapCount))
	c.Start()
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	n := c.Node(1)

	// What the slow readers list: 1000 values of 2 KiB of '<', 2 MiB in
	// one page (12 MiB if each '<' were escaped as \u003c).
	var listed []tc.KV
	for i := range 1000 {
		listed = append(listed, tc.KV{Key: fmt.Sprintf("slow-%04d", i), Val: strings.Repeat("<", 2048)})
	}
	tc.PutMany(t, listed, n)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Past the bound the load is dropped at once, before the machine runs
	// out of memory; the test fails below.
	mem := watchMemory(n, memoryBound, cancel)
	defer mem.Stop()
	load := newConnLoad(ctx, n)
	defer load.close()
	load.open(t, idle/2, 0, nil)
	load.open(t, idle/2, 0, sendOnce("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	load.open(t, slowBodies, 0, load.trickleBody)
	load.open(t, slowReaders, 4096, load.readSlowly("/v1/kv/?prefix=slow-"))
	tc.Eventually(t, tc.Timeout, func() error {
		if ctx.Err() != nil {
			t.Fatalf("%v went over %d MiB resident (%.1f MiB) with %v", n, memoryBound>>20, float64(mem.peak.Load())/(1<<20), load)
		}
		if got := load.answered.Load() + load.unanswered.Load(); got < slowReaders {
			return fmt.Errorf("%d of %d slow readers got the first byte of their answer or were dropped", got, slowReaders)
		}
		return nil
	})
	t.Logf("holding %v", load)

	// While they are held: other clients are served, and writes that take
	// several snapshots succeed.
	expectServes(t, n, "others-while-held")
	expectSnapshotsTaken(t, n, 3)
	expectServes(t, n, "others-after-snapshots")
	if ctx.Err() != nil {
		t.Errorf("%v went over %d MiB resident while the connections were held", n, memoryBound>>20)
	}
	expectNoDescriptorShortage(t, n)
	t.Logf("after the checks: %v", load)

	load.close()
	peak := mem.Stop()
	t.Logf("%v: peak resident memory %d MiB", n, peak>>20)
	if peak > memoryBound {
		t.Errorf("%v: peak resident memory %d MiB, want at most %d MiB", n, peak>>20, memoryBound>>20)
	}
	expectHealthy(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}

func TestConnectionsBeyondTheCapDoNotStopAMember(t *testing.T) {
	// This process and the members share one descriptor limit (20000 here,
	// and the hard limit cannot be raised), so to hold more connections
	// than a member has descriptors, that member's limit is lowered once it
	// has started: to twice the default cap of 4096 client connections.
	const memberLimit = 8192
	c := tc.New(t, 3, "--snap-count", strconv.Itoa(snapCount))
	c.Start()
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	n := c.Except(leader)[0]
	others := c.Except(n)
	limitMemberFiles(t, n, memberLimit)
	// More than n can accept, and more than its accept queue holds.
	conns := memberLimit + 4000
	if got, _ := raiseOpenFileLimit(t, uint64(conns)+1000); got < uint64(conns)+1000 {
		t.Fatalf("this process may open only %d descriptors; it needs %d", got, conns+1000)
	}
	before, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := newConnLoad(ctx, n)
	defer load.close()
	// Each sends one request and then keeps the connection: beyond the cap,
	// connections wait (or are refused) rather than cost descriptors.
	start := time.Now()
	load.open(t, conns, 0, sendOnce("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	t.Logf("opened in %v: %v", time.Since(start).Round(time.Millisecond), load)
	if got := load.opened.Load(); got < 4096 {
		t.Fatalf("only %d connections could be opened; the test needs many more", got)
	}

	// Writes through the other members that n applies and snapshots while
	// its client port is flooded.
	target := before.Applied + 4*snapCount
	expectEntriesApplied(t, others[0], target)
	expectReplicatedTo(t, n, target, others...)
	if !n.Running() {
		t.Fatalf("while %d connections were held: %s", load.opened.Load(), whyNotRunning(n))
	}
	// Informational: whether n answers anyone while the flood lasts (it
	// need not until the idle connections are evicted or time out).
	if code, _, err := doWithin(2*time.Second, n, http.MethodGet, "/health", ""); err != nil {
		t.Logf("GET /health on %v while flooded: %v", n, err)
	} else {
		t.Logf("GET /health on %v while flooded: %d", n, code)
	}
	expectNoDescriptorShortage(t, n)

	load.close()
	if !n.Running() {
		t.Fatal(whyNotRunning(n))
	}
	// It applied and snapshotted what the others wrote.
	tc.Eventually(t, tc.Timeout, func() error {
		st, err := n.Status()
		if err != nil {
			return err
		}
		if st.SnapshotIndex < before.SnapshotIndex+3*snapCount {
			return fmt.Errorf("%v: snapshot index %d, want at least %d", n, st.SnapshotIndex, before.SnapshotIndex+3*snapCount)
		}
		return nil
	})
	expectNoDescriptorShortage(t, n)
	expectHealthy(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}

// ---------------------------------------------------------------------------
// Checks

// expectServes checks that a PUT and a GET through n work; a 503 while
// leadership moves is retried, for a few seconds.
func expectServes(t *testing.T, n *tc.Node, key string) {
	t.Helper()
	start := time.Now()
	tc.Eventually(t, 10*time.Second, func() error {
		if code, body, err := n.Put(key, key); err != nil || code != 204 {
			return fmt.Errorf("PUT %s on %v: %d %q %v", key, n, code, body, err)
		}
		if code, body, err := n.Get(key); err != nil || code != 200 || body != key {
			return fmt.Errorf("GET %s on %v: %d %q %v", key, n, code, body, err)
		}
		return nil
	})
	t.Logf("PUT and GET %s on %v took %v", key, n, time.Since(start).Round(time.Millisecond))
}

// expectSnapshotsTaken writes through n until it has applied k snapshots'
// worth of entries beyond its current snapshot, and waits until it has taken
// at least k snapshots.
func expectSnapshotsTaken(t *testing.T, n *tc.Node, k uint64) {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	expectEntriesApplied(t, n, st.Applied+(k+1)*snapCount)
	tc.Eventually(t, tc.Timeout, func() error {
		now, err := n.Status()
		if err != nil {
			return err
		}
		if now.SnapshotIndex < st.SnapshotIndex+k*snapCount {
			return fmt.Errorf("%v: snapshot index %d, was %d; want %d snapshots of %d entries", n, now.SnapshotIndex, st.SnapshotIndex, k, snapCount)
		}
		return nil
	})
}

// expectEntriesApplied writes small values through n (batches of PUTs
// from a few writers may share entries) until n has applied index.
func expectEntriesApplied(t *testing.T, n *tc.Node, index uint64) {
	t.Helper()
	for round := 0; ; round++ {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Applied >= index {
			return
		}
		if round == 50 {
			t.Fatalf("%v: applied index %d after %d rounds of writes, want %d", n, st.Applied, round, index)
		}
		var kvs []tc.KV
		for i := range 100 {
			kvs = append(kvs, tc.KV{Key: fmt.Sprintf("fill-%d-%d-%d", n.ID, round, i), Val: "x"})
		}
		tc.PutMany(t, kvs, n)
	}
}

// expectReplicatedTo waits until the leader (one of others) reports that
// n's log matches its own through index: n has written those entries, and
// applies them next, without anyone asking n over HTTP.
func expectReplicatedTo(t *testing.T, n *tc.Node, index uint64, others ...*tc.Node) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		if !n.Running() {
			t.Fatal(whyNotRunning(n))
		}
		for _, o := range others {
			st, err := o.Status()
			if err != nil || st.State != "leader" {
				continue
			}
			for _, f := range st.Followers {
				if f.ID == uint64(n.ID) && f.Match >= index {
					return nil
				}
				if f.ID == uint64(n.ID) {
					return fmt.Errorf("leader %d: %v matches through %d, want %d", st.ID, n, f.Match, index)
				}
			}
		}
		return fmt.Errorf("none of %v leads", others)
	})
}

// expectNoDescriptorShortage fails if n's log says it ran out of file
// descriptors at any point (accepting a connection, creating a snapshot).
func expectNoDescriptorShortage(t *testing.T, n *tc.Node) {
	t.Helper()
	if log := n.RunLog(); strings.Contains(log, "too many open files") {
		var lines []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "too many open files") {
				lines = append(lines, l)
			}
		}
		t.Errorf("%v ran out of descriptors (%d log lines), e.g.:\n%s", n, len(lines), tc.Tail(strings.Join(lines, "\n"), 5))
	}
}

// ---------------------------------------------------------------------------
// Descriptors and memory

// raiseOpenFileLimit raises this process's descriptor limit towards want:
// the soft limit up to the hard one, and beyond that only where the hard
// limit may be raised (as root). It returns the limit it got and a func
// that restores the previous one, which runs at the end of the test too.
// Members started after it inherit the new limit.
func raiseOpenFileLimit(t *testing.T, want uint64) (got uint64, restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= want {
		return old.Cur, func() {}
	}
	lim := syscall.Rlimit{Cur: want, Max: max(old.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		lim = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raising the descriptor limit from %d: %v", old.Cur, err)
		}
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restoring the descriptor limit: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	return lim.Cur, restore
}

// limitMemberFiles lowers the descriptor limit of n's running process
// (prlimit(2); lowering needs no privilege).
func limitMemberFiles(t *testing.T, n *tc.Node, limit uint64) {
	t.Helper()
	lim := syscall.Rlimit{Cur: limit, Max: limit}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(n.PID()), syscall.RLIMIT_NOFILE,
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if errno != 0 {
		t.Fatalf("lowering the descriptor limit of %v to %d: %v", n, limit, errno)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", n.PID()))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			t.Logf("%v: %s", n, strings.Join(strings.Fields(line), " "))
		}
	}
}

// ---------------------------------------------------------------------------
// Connections held open

// connLoad holds connections to one member's HTTP port, and the goroutines
// that drive the slow ones, until close or until its context ends.
type connLoad struct {
	ctx    context.Context
	cancel context.CancelFunc
	n      *tc.Node

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup

	opened     atomic.Int64 // connections established
	dialFailed atomic.Int64
	dropped    atomic.Int64 // closed or reset by the server while held
	answered   atomic.Int64 // slow readers that got the first byte of their answer
	unanswered atomic.Int64 // slow readers dropped before that
}

func newConnLoad(ctx context.Context, n *tc.Node) *connLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &connLoad{ctx: ctx, cancel: cancel, n: n}
	// Closing every connection when the context ends wakes all goroutines
	// blocked on them.
	go func() {
		<-ctx.Done()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			c.Close()
		}
	}()
	return l
}

func (l *connLoad) String() string {
	return fmt.Sprintf("%d connections open to %v (%d dials failed, %d dropped by the server, %d slow readers answered)",
		l.opened.Load(), l.n, l.dialFailed.Load(), l.dropped.Load(), l.answered.Load())
}

// open establishes count connections, 500 at a time, with a receive buffer
// of rcvbuf bytes if it is not 0, and runs setup on each. A dial that does
// not complete within a second counts as refused by the server.
func (l *connLoad) open(t *testing.T, count, rcvbuf int, setup func(net.Conn) error) {
	t.Helper()
	d := net.Dialer{Timeout: time.Second}
	if rcvbuf > 0 {
		// Set before connecting, so the window offered stays small and the
		// server's writes block early.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", l.n.HTTPPort)
	sem := make(chan struct{}, 500)
	var wg sync.WaitGroup
	var setupErr atomic.Value
	for range count {
		if l.ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := d.DialContext(l.ctx, "tcp", addr)
			if err != nil {
				l.dialFailed.Add(1)
				return
			}
			if !l.keep(conn) {
				return
			}
			l.opened.Add(1)
			if setup != nil {
				if err := setup(conn); err != nil && l.ctx.Err() == nil {
					setupErr.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := setupErr.Load().(error); ok {
		t.Logf("setting up a connection to %v: %v", l.n, err)
	}
}

// keep records conn for close; it closes conn at once if the load ended.
func (l *connLoad) keep(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		conn.Close()
		return false
	}
	l.conns = append(l.conns, conn)
	return true
}

// close drops every connection and waits for the goroutines driving them.
func (l *connLoad) close() {
	l.cancel()
	l.wg.Wait()
}

// sendOnce writes req on the connection and nothing more; the answer is
// never read.
func sendOnce(req string) func(net.Conn) error {
	return func(c net.Conn) error {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := io.WriteString(c, req)
		return err
	}
}

// trickleBody announces a PUT of 1,000,000 bytes and then sends one byte
// every two seconds.
func (l *connLoad) trickleBody(c net.Conn) error {
	head := fmt.Sprintf("PUT /trickle-%p HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n", c)
	if err := sendOnce(head)(c); err != nil {
		return err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-l.ctx.Done():
				return
			case <-tick.C:
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte{'x'}); err != nil {
				if l.ctx.Err() == nil {
					l.dropped.Add(1)
				}
				return
			}
		}
	}()
	return nil
}

// readSlowly sends GET path and then reads its answer one byte a second.
func (l *connLoad) readSlowly(path string) func(net.Conn) error {
	return func(c net.Conn) error {
		if err := sendOnce("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")(c); err != nil {
			return err
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			buf := make([]byte, 1)
			first := true
			for {
				c.SetReadDeadline(time.Now().Add(tc.Timeout))
				if _, err := c.Read(buf); err != nil {
					if l.ctx.Err() == nil {
						l.dropped.Add(1)
						if first {
							l.unanswered.Add(1)
						}
					}
					return
				}
				if first {
					first = false
					l.answered.Add(1)
				}
				select {
				case <-l.ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}()
		return nil
	}
}
