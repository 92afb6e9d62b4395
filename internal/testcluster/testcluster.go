// Package testcluster starts the real raftexample binary as separate
// processes and talks to them over HTTP. It is meant for cross-process
// integration tests: every node gets its own data directory, its own free
// ports and its own log file; everything is killed when the test ends.
package testcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Building the binary

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Build compiles the server (the module's main package, "raftexample") once
// per test binary, from whichever package's directory the calling test runs
// in, and returns the path of the executable. Set TESTCLUSTER_RACE=1 to
// build the server with the race detector.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "testcluster-bin-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "raftexample")
		args := []string{"build", "-o", buildBin}
		if os.Getenv("TESTCLUSTER_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "raftexample")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the server: %v", buildErr)
	}
	return buildBin
}

// RemoveBuild deletes the binary made by Build. Call it from TestMain after
// m.Run.
func RemoveBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// ---------------------------------------------------------------------------
// Ports

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{} // never hand out the same port twice in one run
)

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 and on
// all interfaces a moment ago, and never hands out a port twice in one test
// binary. Another process may still grab one before the server binds it;
// Cluster.Start retries in that case. It fails the test if it cannot find
// enough.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freePorts(n)
	if err != nil {
		t.Fatalf("picking %d free ports: %v", n, err)
	}
	return ports
}

func freePorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("could not find enough free ports")
		}
		// ":0" binds all interfaces, so the port is free for the HTTP API
		// (all interfaces) and for the peer URL (127.0.0.1) alike.
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		if portsUsed[p] {
			continue
		}
		portsUsed[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ---------------------------------------------------------------------------
// Polling

// Eventually calls f until it returns nil, failing the test if that has not
// happened within timeout. It never sleeps for more than a short interval
// between attempts.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	if err := Poll(timeout, f); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// Poll is Eventually without the test: it returns the last error of f if f
// did not succeed within timeout. If f returns an error made by GiveUp, Poll
// returns the error it wraps at once.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop stopPolling
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Node: one server process

// Node is one server process. Its Args are kept, so Restart runs the very
// same command line again.
type Node struct {
	ID       int      // raft id (0 if unknown)
	PeerURL  string   // this node's entry in --cluster
	HTTPPort int      // --port
	DataDir  string   // --data-dir; also the working directory, unless WorkDir is set
	WorkDir  string   // the process's working directory, if not DataDir (UsePowerFS)
	Args     []string // command line arguments, reused by Restart
	LogPath  string   // stdout and stderr of every run, appended
	Env      []string // NAME=value variables of every run (see environ in env.go)

	t         testing.TB
	bin       string
	client    *http.Client
	clientTLS *tls.Config // set by UseTLS

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	exitCode int
	logStart int64 // offset in LogPath where the current run's output starts
	runs     int
}

// NewNode prepares (but does not start) a process of bin with args, working
// directory dir, serving HTTP on httpPort. Its output goes to logPath. When
// the test ends, the tails of the logs of all its nodes are printed if it
// failed, and all its processes are killed. Create dir and logPath's
// directory (e.g. with t.TempDir) before the test's first NewNode, so that
// they are removed only after the processes are gone.
func NewNode(t testing.TB, bin, dir, logPath string, httpPort int, args []string) *Node {
	n := &Node{
		HTTPPort: httpPort,
		DataDir:  dir,
		Args:     args,
		LogPath:  logPath,
		t:        t,
		bin:      bin,
		client: &http.Client{
			Timeout: 15 * time.Second,
			// No connection reuse: nodes are killed and restarted all the time.
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	track(t, n)
	return n
}

// nodesOf maps each test to its nodes, so that one cleanup per test can
// first print the logs of all its nodes and then kill them all.
var (
	nodesMu sync.Mutex
	nodesOf = map[testing.TB][]*Node{}
)

func track(t testing.TB, n *Node) {
	nodesMu.Lock()
	defer nodesMu.Unlock()
	first := len(nodesOf[t]) == 0
	nodesOf[t] = append(nodesOf[t], n)
	if !first {
		return
	}
	t.Cleanup(func() {
		nodesMu.Lock()
		all := nodesOf[t]
		delete(nodesOf, t)
		nodesMu.Unlock()
		if t.Failed() {
			for _, n := range all {
				t.Logf("---- last lines of %s (%v, HTTP port %d) ----\n%s", n.LogPath, n, n.HTTPPort, Tail(n.Log(), 40))
			}
		}
		for _, n := range all {
			n.signal(syscall.SIGKILL)
		}
		for _, n := range all {
			n.Wait(10 * time.Second)
		}
	})
}

func (n *Node) String() string {
	if n.ID != 0 {
		return fmt.Sprintf("node %d", n.ID)
	}
	return fmt.Sprintf("node on port %d", n.HTTPPort)
}

// Start launches the process and returns without waiting for it to serve.
func (n *Node) Start() {
	n.t.Helper()
	if err := n.TryStart(); err != nil {
		n.t.Fatal(err)
	}
}

// TryStart is Start for goroutines other than the test's own: it returns an
// error instead of failing the test.
func (n *Node) TryStart() error {
	if n.Running() {
		return fmt.Errorf("%v: Start while running", n)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy of the descriptor
	n.mu.Lock()
	n.runs++
	fmt.Fprintf(f, "==== testcluster: run #%d: %s %s\n", n.runs, filepath.Base(n.bin), strings.Join(n.Args, " "))
	off, _ := f.Seek(0, io.SeekEnd)
	n.logStart = off
	cmd := exec.Command(n.bin, n.Args...)
	cmd.Dir = n.DataDir
	if n.WorkDir != "" {
		cmd.Dir = n.WorkDir
	}
	cmd.Env = n.environ()
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("%v: start: %v", n, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.exitCode = cmd, done, 0
	n.mu.Unlock()
	go func() {
		cmd.Wait()
		n.mu.Lock()
		n.exitCode = cmd.ProcessState.ExitCode() // -1 if killed by a signal
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// Restart starts the node again with the same flags and waits until it
// serves HTTP.
func (n *Node) Restart() {
	n.t.Helper()
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		n.t.Fatalf("%v: restart: %v", n, err)
	}
}

// Running reports whether the current process has not exited yet.
func (n *Node) Running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// PID is the process id of the current (or last) run, 0 if never started.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// RSS is the resident memory (VmRSS) of the current run's process, in bytes.
func (n *Node) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.PID()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line")
}

func (n *Node) signal(sig os.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(sig)
	}
}

// Signal sends sig to the running process.
func (n *Node) Signal(sig os.Signal) { n.signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit code
// (-1 if it died of a signal). ok is false if it was still running.
func (n *Node) Wait(timeout time.Duration) (code int, ok bool) {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return 0, false
	}
	select {
	case <-done:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.exitCode, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Stop sends SIGTERM and returns the exit code. If the process does not exit
// within 20 s the test fails and the process is killed.
func (n *Node) Stop() int {
	n.t.Helper()
	return n.StopWith(syscall.SIGTERM)
}

// StopWith is Stop with another signal (e.g. SIGINT).
func (n *Node) StopWith(sig os.Signal) int {
	n.t.Helper()
	n.signal(sig)
	code, ok := n.Wait(20 * time.Second)
	if !ok {
		n.signal(syscall.SIGKILL)
		n.Wait(10 * time.Second)
		n.t.Fatalf("%v did not exit within 20s of %v", n, sig)
	}
	return code
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	n.t.Helper()
	if err := n.TryKill(); err != nil {
		n.t.Fatal(err)
	}
}

// TryKill is Kill for goroutines other than the test's own: it returns an
// error instead of failing the test.
func (n *Node) TryKill() error {
	n.signal(syscall.SIGKILL)
	if _, ok := n.Wait(10 * time.Second); !ok {
		return fmt.Errorf("%v survived SIGKILL", n)
	}
	return nil
}

// Wipe deletes everything in the data directory of a node that is not
// running. The directory itself stays, as it may be a mount point
// (UsePowerFS), and is fsynced, so that on a power-loss filesystem no
// later Crash brings the deleted files back.
func (n *Node) Wipe() error {
	if n.Running() {
		return fmt.Errorf("%v: wiping the data of a running node", n)
	}
	entries, err := os.ReadDir(n.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(n.DataDir, e.Name())); err != nil {
			return err
		}
	}
	d, err := os.Open(n.DataDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WaitServing waits until the current run logged "serving HTTP" or its HTTP
// port accepts connections. It fails early if the process exits; the error
// wraps ErrPortInUse if the log says a port was taken.
func (n *Node) WaitServing(timeout time.Duration) error {
	return Poll(timeout, func() error {
		if strings.Contains(n.RunLog(), "serving HTTP") {
			return nil
		}
		if !n.Running() {
			code, _ := n.Wait(0)
			err := fmt.Errorf("%v exited with code %d before serving", n, code)
			if strings.Contains(n.RunLog(), "address already in use") {
				err = fmt.Errorf("%w: %v", ErrPortInUse, err)
			}
			return GiveUp(err)
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.HTTPPort), time.Second)
		if err != nil {
			return fmt.Errorf("%v not serving yet: %v", n, err)
		}
		c.Close()
		return nil
	})
}

// ErrPortInUse is reported by WaitServing when the server could not bind.
var ErrPortInUse = errors.New("port already in use")

// GiveUp wraps err so that Poll (and Eventually) stop at once and report err:
// for conditions that can no longer come true, such as a process that exited.
func GiveUp(err error) error { return stopPolling{err} }

// stopPolling makes Poll give up at once and return the wrapped error.
type stopPolling struct{ err error }

func (s stopPolling) Error() string { return s.err.Error() }

// ---------------------------------------------------------------------------
// Logs

// Log returns everything the node printed in all its runs (with a
// "==== testcluster: run #N" line before each run).
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// RunLog returns what the current (or last) run printed.
func (n *Node) RunLog() string {
	n.mu.Lock()
	off := n.logStart
	n.mu.Unlock()
	b, _ := os.ReadFile(n.LogPath)
	if int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WALDir is where the server keeps node n's WAL segments.
func (n *Node) WALDir() string {
	return filepath.Join(n.DataDir, fmt.Sprintf("raftexample-%d", n.ID))
}

// SnapDir is where the server keeps node n's snapshot files.
func (n *Node) SnapDir() string {
	return filepath.Join(n.DataDir, fmt.Sprintf("raftexample-%d-snap", n.ID))
}
