//go:build linux

package e2e

// Disk faults under one member of a loaded cluster, injected by a FUSE
// filesystem (internal/powerfs) mounted at that member's --data-dir: fsyncs
// that fail with EIO, writes that fail with ENOSPC, fsyncs that stall, and a
// power cut after a failed fsync. A member whose disk fails stops at once with
// a one-line reason and a non-zero exit code, having acknowledged nothing it
// could not persist; the others go on; once the disk works it starts again
// cleanly and catches up. A slow disk costs latency, never a write.

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"raftexample/internal/powerfs"
	tc "raftexample/internal/testcluster"
)

// Flags of the clusters below. Small WAL segments, so that members cut
// segments (and preallocate the next) while a test runs. Without
// --snap-count the tests of a failing disk never reach a snapshot: the WAL
// is all a member writes, so the write or fsync that fails first, and must
// stop it, is the WAL's, and a member that went on after it would not be
// stopped by a snapshot's failing a moment later. The others take snapshots
// often, so that those are written under the fault, and a member that comes
// back may have to catch up from one.
var (
	walOnlyFlags  = []string{"--wal-segment-bytes", "65536"}
	snapshotFlags = []string{"--wal-segment-bytes", "65536", "--snap-count", "100"}
)

// mountPowerFS puts n's data directory on a power-loss filesystem
// (Node.UsePowerFS), or skips the test where FUSE mounts cannot be made.
func mountPowerFS(t *testing.T, n *tc.Node) *powerfs.FS {
	t.Helper()
	if err := powerfs.Available(); err != nil {
		t.Skipf("FUSE mounts unavailable: %v", err)
	}
	fs, err := n.UsePowerFS()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// startWithPowerFS prepares a 3-member cluster with flags and node 3's data
// directory on powerfs, starts it, and makes node 3 the leader or a follower.
func startWithPowerFS(t *testing.T, leader bool, flags []string) (*tc.Cluster, *tc.Node, *powerfs.FS) {
	t.Helper()
	c := tc.New(t, 3, flags...)
	n3 := c.Node(3)
	fs := mountPowerFS(t, n3)
	c.Start()
	c.Node(1).MustPut(tc.ReadyKey, tc.ReadyKey)
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	placeLeader(t, c, n3, leader)
	return c, n3, fs
}

// placeLeader moves leadership to n (leader) or away from it (!leader), if
// it is not there yet.
func placeLeader(t *testing.T, c *tc.Cluster, n *tc.Node, leader bool) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		sts, err := tc.Statuses(c.Nodes...)
		if err != nil {
			return err
		}
		id, err := tc.Agreement(sts)
		if err != nil {
			return err
		}
		if (id == uint64(n.ID)) == leader {
			return nil
		}
		to := n
		if !leader {
			to = c.Except(n)[0]
		}
		code, body, err := doWithin(5*time.Second, n, http.MethodPost, "/v1/leader", fmt.Sprintf(`{"id": %d}`, to.ID))
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("moving leadership to %v: %d %s %v", to, code, strings.TrimSpace(body), err)
		}
		return fmt.Errorf("leadership moved to %v; checking", to)
	})
}

// diskLoad is a few clients writing unique keys, spread round-robin over
// the members, each client writing through its own member: a client that
// sent each request to the next member in turn would spend nearly all its
// time waiting on a member whose disk stalls, and would make the others look
// stalled too. It records every 2xx, with the member that gave it and when.
type diskLoad struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu    sync.Mutex
	acked []diskAck
	sent  int
}

type diskAck struct {
	kv  tc.KV
	via int // node id
	at  time.Time
}

const (
	diskLoadClients = 6                // two per member
	diskLoadTimeout = 10 * time.Second // per request: longer than any stall
	diskLoadPrefix  = "disk-"
)

func startDiskLoad(t *testing.T, nodes ...*tc.Node) *diskLoad {
	l := &diskLoad{stop: make(chan struct{})}
	pad := strings.Repeat("x", 100)
	for g := range diskLoadClients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				n := nodes[g%len(nodes)]
				kv := tc.KV{Key: fmt.Sprintf("%s%d-%d", diskLoadPrefix, g, i), Val: fmt.Sprintf("%d-%d-%s", g, i, pad)}
				code, _, err := doWithin(diskLoadTimeout, n, http.MethodPut, "/"+url.PathEscape(kv.Key), kv.Val)
				l.mu.Lock()
				l.sent++
				if err == nil && code/100 == 2 {
					l.acked = append(l.acked, diskAck{kv: kv, via: n.ID, at: time.Now()})
				}
				l.mu.Unlock()
				if err != nil || code/100 != 2 {
					time.Sleep(20 * time.Millisecond) // a stopped member refuses at once: do not spin
				}
			}
		}()
	}
	t.Cleanup(l.finishNow)
	return l
}

func (l *diskLoad) finishNow() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// finish stops the clients and returns every acknowledged write.
func (l *diskLoad) finish() []diskAck {
	l.finishNow()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]diskAck(nil), l.acked...)
}

// count is how many writes were acknowledged after since through a member
// other than not (nil: any member).
func (l *diskLoad) count(since time.Time, not *tc.Node) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := 0
	for _, a := range l.acked {
		if a.at.After(since) && (not == nil || a.via != not.ID) {
			k++
		}
	}
	return k
}

// waitAcked waits until k writes were acknowledged after since through
// members other than not (nil: any member).
func (l *diskLoad) waitAcked(t *testing.T, k int, since time.Time, not *tc.Node) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		if got := l.count(since, not); got < k {
			return fmt.Errorf("%d writes acknowledged since %s (not counting %v), waiting for %d", got, since.Format("15:04:05.000"), not, k)
		}
		return nil
	})
}

// waitAckedThrough waits until k writes were acknowledged after since
// through n itself.
func (l *diskLoad) waitAckedThrough(t *testing.T, k int, since time.Time, n *tc.Node) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		l.mu.Lock()
		got := 0
		for _, a := range l.acked {
			if a.at.After(since) && a.via == n.ID {
				got++
			}
		}
		l.mu.Unlock()
		if got < k {
			return fmt.Errorf("%d writes acknowledged through %v since %s, waiting for %d", got, n, since.Format("15:04:05.000"), k)
		}
		return nil
	})
}

// longestGap is the longest time between from and to without an
// acknowledged write through a member other than not (nil: any member).
func longestGap(acked []diskAck, from, to time.Time, not *tc.Node) time.Duration {
	var times []time.Time
	for _, a := range acked {
		if !a.at.Before(from) && !a.at.After(to) && (not == nil || a.via != not.ID) {
			times = append(times, a.at)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	gap, prev := time.Duration(0), from
	for _, at := range append(times, to) {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

// expectAckedReadable lists the load's keys linearizably through each node
// and checks that every acknowledged write is there with its value.
func expectAckedReadable(t *testing.T, acked []diskAck, nodes ...*tc.Node) {
	t.Helper()
	for _, n := range nodes {
		got := listPrefix(t, n, diskLoadPrefix)
		var lost []string
		for _, a := range acked {
			if got[a.kv.Key] != a.kv.Val {
				lost = append(lost, fmt.Sprintf("%s (acknowledged by node %d at %s)", a.kv.Key, a.via, a.at.Format("15:04:05.000")))
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%v lost %d of %d acknowledged writes: %s", n, len(lost), len(acked), strings.Join(lost[:min(len(lost), 10)], ", "))
		}
	}
}

// expectStoppedOnDiskFault waits for n to exit after a disk fault injected
// at faultAt, checks that it exited non-zero with a one-line reason naming
// the disk failure and errText, logs what it printed, and returns when it
// exited.
func expectStoppedOnDiskFault(t *testing.T, n *tc.Node, faultAt time.Time, errText string) time.Time {
	t.Helper()
	code, ok := n.Wait(tc.Timeout)
	if !ok {
		t.Fatalf("%v still runs %v after the disk fault; its log:\n%s", n, tc.Timeout, tc.Tail(n.RunLog(), 20))
	}
	exitAt := time.Now()
	log := n.RunLog()
	reason := logLine(log, "disk failure")
	t.Logf("%v exited with code %d, %v after the fault; it printed:\n%s\n%s", n, code, exitAt.Sub(faultAt).Round(time.Millisecond),
		reason, logLine(log, `"exit-code"`))
	if code == 0 || code == -1 {
		t.Fatalf("%v exited with code %d after a disk fault, want a non-zero exit of its own", n, code)
	}
	if !strings.Contains(reason, "disk failure: ") || !strings.Contains(reason, errText) ||
		!strings.Contains(reason, "start the member again") {
		t.Fatalf("%v's reason %q does not name the disk failure (%q); its log:\n%s", n, reason, errText, tc.Tail(log, 20))
	}
	if strings.Contains(log, "panic") {
		t.Fatalf("%v panicked on the disk fault:\n%s", n, tc.Tail(log, 30))
	}
	if bad := tc.ErrorLines(log); len(bad) != 1 {
		t.Errorf("%v logged %d error lines, want the one reason:\n%s", n, len(bad), strings.Join(bad, "\n"))
	}
	return exitAt
}

// expectCleanStart checks that n's current run logged nothing at error
// level and no panic.
func expectCleanStart(t *testing.T, n *tc.Node) {
	t.Helper()
	if bad := tc.ErrorLines(n.RunLog()); len(bad) > 0 {
		t.Fatalf("%v logged errors when it started again:\n%s", n, strings.Join(bad, "\n"))
	}
}

// stopsOnDiskFault is the common course of the tests of a disk that fails:
// under load, inject fails node 3's disk (the leader or a follower); node 3
// stops with a reason naming errText, the others keep taking writes (and
// elect a new leader); clear repairs the disk, node 3 starts again, takes
// writes, and all converge with every acknowledged write.
func stopsOnDiskFault(t *testing.T, leader bool, inject, clear func(*powerfs.FS), errText string) {
	c, n3, fs := startWithPowerFS(t, leader, walOnlyFlags)
	others := c.Except(n3)
	load := startDiskLoad(t, c.Nodes...)
	load.waitAcked(t, 30, time.Time{}, nil)

	faultAt := time.Now()
	inject(fs)
	exitAt := expectStoppedOnDiskFault(t, n3, faultAt, errText)
	if reason := logLine(n3.RunLog(), "disk failure"); !strings.Contains(reason, "disk failure: writing the WAL in ") {
		t.Fatalf("%v stopped on %q, want the WAL's write, the only one it makes", n3, reason)
	}
	if leader {
		newLeader, _ := tc.WaitLeader(t, tc.Timeout, others...)
		t.Logf("%v leads after %v", newLeader, time.Since(exitAt).Round(time.Millisecond))
	}
	load.waitAcked(t, 30, exitAt, n3) // the others go on

	clear(fs)
	restartAt := time.Now()
	n3.Restart()
	expectCleanStart(t, n3)
	load.waitAckedThrough(t, 10, restartAt, n3)
	acked := load.finish()
	t.Logf("%d writes acknowledged, %d after node 3 stopped; back %v after its restart", len(acked), load.count(exitAt, nil),
		time.Since(restartAt).Round(time.Millisecond))
	expectConverged(t, c.Nodes...)
	expectAckedReadable(t, acked, c.Nodes...)
}

func failSyncs(fs *powerfs.FS)   { fs.FailSyncs(syscall.EIO) }
func clearSyncs(fs *powerfs.FS)  { fs.FailSyncs(0) }
func failWrites(fs *powerfs.FS)  { fs.FailWrites(syscall.ENOSPC) }
func clearWrites(fs *powerfs.FS) { fs.FailWrites(0) }

func TestAFollowerWhoseFsyncFailsStopsAndRejoinsOnceTheDiskWorks(t *testing.T) {
	stopsOnDiskFault(t, false, failSyncs, clearSyncs, "input/output error")
}

func TestALeaderWhoseFsyncFailsStopsAndTheOthersElectANewLeader(t *testing.T) {
	stopsOnDiskFault(t, true, failSyncs, clearSyncs, "input/output error")
}

func TestAFollowerOutOfDiskSpaceStopsAndRejoinsOnceThereIsRoom(t *testing.T) {
	stopsOnDiskFault(t, false, failWrites, clearWrites, "no space left on device")
}

func TestALeaderOutOfDiskSpaceStopsAndTheOthersElectANewLeader(t *testing.T) {
	stopsOnDiskFault(t, true, failWrites, clearWrites, "no space left on device")
}

// stallHold is how long a test keeps node 3's fsyncs stalled, and how long
// each stalled fsync waits: one that began just before the stall was cleared
// still waits its full time.
const stallHold = 3 * time.Second

// stallReport is what a test saw while node 3's fsyncs stalled.
type stallReport struct {
	stallAt, clearAt time.Time
	newLeader        uint64    // a leader other than node 3 that the others agreed on during the stall, or 0
	newLeaderAt      time.Time // when the test first saw it
}

// stallSyncs stalls node 3's fsyncs for stallHold (the fault is held for a
// fixed time), watching meanwhile whether the other members agree on a new
// leader, then clears the stall.
func stallSyncs(t *testing.T, fs *powerfs.FS, n3 *tc.Node, others []*tc.Node) stallReport {
	t.Helper()
	r := stallReport{stallAt: time.Now()}
	fs.StallSyncs(stallHold)
	for time.Since(r.stallAt) < stallHold {
		if r.newLeader == 0 {
			if sts, err := tc.Statuses(others...); err == nil {
				if id, err := tc.Agreement(sts); err == nil && id != uint64(n3.ID) {
					r.newLeader, r.newLeaderAt = id, time.Now()
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // a polling interval, within the fixed hold
	}
	r.clearAt = time.Now()
	fs.StallSyncs(0)
	return r
}

// afterStall checks what must hold after a stall of node 3's fsyncs: every
// member still runs and none logged a disk failure, node 3 takes writes
// again, all converge and every acknowledged write is there. It logs how
// long writes were held up.
func afterStall(t *testing.T, c *tc.Cluster, n3 *tc.Node, load *diskLoad, r stallReport) {
	t.Helper()
	expectAllRunning := func() {
		t.Helper()
		for _, n := range c.Nodes {
			if !n.Running() {
				code, _ := n.Wait(0)
				t.Fatalf("%v exited with code %d on a stall of node 3's fsyncs; its log:\n%s", n, code, tc.Tail(n.RunLog(), 20))
			}
			if line := logLine(n.Log(), "disk failure"); line != "" {
				t.Fatalf("%v logged a disk failure for a slow disk: %s", n, line)
			}
		}
	}
	expectAllRunning()
	load.waitAckedThrough(t, 5, r.clearAt, n3)
	backAt := time.Now()
	acked := load.finish()
	expectAllRunning()
	perNode := map[int]int{}
	for _, a := range acked {
		if a.at.After(r.stallAt) && a.at.Before(r.clearAt) {
			perNode[a.via]++
		}
	}
	t.Logf("during the %v stall: writes acknowledged through node 1: %d, node 2: %d, node 3: %d; "+
		"longest time without an acknowledged write: %v (through nodes 1 and 2: %v); "+
		"node 3 acknowledged writes again %v after the stall was cleared",
		stallHold, perNode[1], perNode[2], perNode[3],
		longestGap(acked, r.stallAt, backAt, nil).Round(time.Millisecond),
		longestGap(acked, r.stallAt, r.clearAt, n3).Round(time.Millisecond),
		backAt.Sub(r.clearAt).Round(time.Millisecond))
	expectConverged(t, c.Nodes...)
	expectAckedReadable(t, acked, c.Nodes...)
}

// A follower whose fsyncs stall holds nothing up: the leader and the other
// follower are a quorum, and writes through them go on being acknowledged
// meanwhile; the slow follower stays up and catches up.
func TestAFollowerWithStalledFsyncsHoldsUpNoWriteThroughTheOthers(t *testing.T) {
	c, n3, fs := startWithPowerFS(t, false, snapshotFlags)
	others := c.Except(n3)
	load := startDiskLoad(t, c.Nodes...)
	load.waitAcked(t, 30, time.Time{}, nil)

	r := stallSyncs(t, fs, n3, others)
	if during := load.count(r.stallAt, n3) - load.count(r.clearAt, n3); during < 10 {
		t.Errorf("%d writes acknowledged through nodes 1 and 2 during the %v stall of node 3's fsyncs, want at least 10", during, stallHold)
	}
	afterStall(t, c, n3, load, r)
}

// A leader whose fsyncs stall holds up writes (it cannot append to its own
// log, and while its Ready loop waits on the disk it sends no heartbeats,
// so the others may elect a new leader), but loses none: nothing exits, and
// all converge once the disk is fast again.
func TestALeaderWithStalledFsyncsLosesNoWriteAndNothingExits(t *testing.T) {
	c, n3, fs := startWithPowerFS(t, true, snapshotFlags)
	others := c.Except(n3)
	load := startDiskLoad(t, c.Nodes...)
	load.waitAcked(t, 30, time.Time{}, nil)

	r := stallSyncs(t, fs, n3, others)
	if r.newLeader != 0 {
		t.Logf("nodes 1 and 2 agreed on node %d as leader %v into the stall", r.newLeader, r.newLeaderAt.Sub(r.stallAt).Round(time.Millisecond))
	} else {
		t.Logf("nodes 1 and 2 elected no new leader during the stall")
	}
	afterStall(t, c, n3, load, r)
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	t.Logf("after the stall %v leads", leader)
}

// A member stopped by a failed fsync that then loses power loses only what
// it could not make durable, which it never acknowledged: it starts again
// cleanly on what survived. The test makes that matter: with one member
// down, every write is acknowledged on node 3's word; node 3's fsync fails,
// the only other member that holds those writes dies for good, and node 3's
// disk loses power. Node 3 and the member that was down are then a quorum
// that must still hold every acknowledged write.
func TestAMemberStoppedByAFailedFsyncLosesNoAcknowledgedWriteInAPowerCut(t *testing.T) {
	for _, role := range []string{"follower", "leader"} {
		t.Run(role, func(t *testing.T) {
			c, n3, fs := startWithPowerFS(t, role == "leader", snapshotFlags)
			leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
			// down is a follower other than node 3, stopped first; partner
			// is the member left to make a quorum with node 3.
			down, partner := c.Except(n3)[0], c.Except(n3)[1]
			if down == leader {
				down, partner = partner, down
			}
			if code := down.Stop(); code != 0 {
				t.Fatalf("%v exited with code %d on SIGTERM, want 0", down, code)
			}
			downAt := time.Now()
			load := startDiskLoad(t, c.Nodes...)
			load.waitAcked(t, 50, downAt, nil) // each one durable on node 3

			// A failing disk is slow before it gives up: each fsync
			// waits a while, then fails. Anything node 3 sent before its
			// fsync returned (an acknowledgement of the entries it was
			// syncing) has time to reach the partner, and be counted.
			faultAt := time.Now()
			fs.StallSyncs(300 * time.Millisecond)
			fs.FailSyncs(syscall.EIO)
			exitAt := expectStoppedOnDiskFault(t, n3, faultAt, "input/output error")
			fs.StallSyncs(0)
			// The partner alone commits nothing more; once it has applied
			// all it committed, it has answered those writes' clients.
			tc.Eventually(t, tc.Timeout, func() error {
				st, err := partner.Status()
				if err == nil && st.Applied < st.Commit {
					err = fmt.Errorf("%v applied %d of %d committed entries", partner, st.Applied, st.Commit)
				}
				return err
			})
			partner.Kill()
			if err := fs.Crash(); err != nil {
				t.Fatal(err)
			}
			t.Logf("the power cut discarded: %v", fs.LastCrash())
			fs.FailSyncs(0)

			restartAt := time.Now()
			down.Start()
			n3.Start()
			for _, n := range []*tc.Node{down, n3} {
				if err := n.WaitServing(tc.Timeout); err != nil {
					t.Fatalf("%v did not start again after the power cut: %v; it printed:\n%s", n, err, tc.Tail(n.RunLog(), 20))
				}
			}
			expectCleanStart(t, n3)
			newLeader, _ := tc.WaitLeader(t, tc.Timeout, down, n3)
			load.waitAckedThrough(t, 10, restartAt, n3)
			acked := load.finish()
			t.Logf("%d writes acknowledged, %d of them between %v's stop and the fault; after the power cut %v leads %v and node 3",
				len(acked), load.count(downAt, nil)-load.count(exitAt, nil), down, newLeader, down)
			expectAckedReadable(t, acked, down, n3)

			partner.Restart()
			expectConverged(t, c.Nodes...)
			expectAckedReadable(t, acked, c.Nodes...)
		})
	}
}
