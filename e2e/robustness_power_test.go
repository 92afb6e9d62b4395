package e2e

// Power cuts in the robustness suite (see robustness_test.go). In a
// scenario with a power-cut fault every member's --data-dir is its own
// power-loss filesystem (internal/powerfs): a cut SIGKILLs the members it
// hits, all at once, then Crashes their mounts, which throws away whatever
// they had not made durable under the strict POSIX rule (file data since
// its last fsync, names since their directory's last fsync), and starts
// them again. A SIGKILL alone proves nothing about fsyncs: the kernel keeps
// the page cache and every name.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// needsPowerFS reports whether a schedule cuts power or breaks a disk, so
// that its members must run on powerfs.
func needsPowerFS(faults []string) bool {
	for _, f := range faults {
		if strings.Contains(f, "power-cut") || strings.HasPrefix(f, "disk-") || strings.HasPrefix(f, "fsync-") {
			return true
		}
	}
	return false
}

// powerCutOne cuts the power of the leader or of a follower, as the seed
// says.
func (r *scenario) powerCutOne() error {
	leader := r.rng.Intn(2) == 0
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	return r.powerCut(r.role(n, leader), n)
}

// powerCutMajority cuts the power of two members of three at once. The one
// left cannot make progress alone, and the two must come back with all they
// acknowledged. The one left usually holds every committed entry and wins
// the next election, which hides a pair that came back empty (see
// powerCutMajorityIsolated).
func (r *scenario) powerCutMajority() error {
	what, pair, _, err := r.pickMajority()
	if err != nil {
		return err
	}
	return r.powerCut(what, pair...)
}

// powerCutMajorityIsolated cuts the power of two members and keeps the
// third apart until the two have elected a leader and caught up, so that
// they go on from what they kept alone. Two members that forgot their log
// and their votes would elect a leader with an empty log, in a term that
// already had one, and every acknowledged write would be lost.
func (r *scenario) powerCutMajorityIsolated() error {
	what, pair, rest, err := r.pickMajority()
	if err != nil {
		return err
	}
	r.c.Isolate(rest.ID)
	r.event("isolate node %d, the one that keeps its power", rest.ID)
	if err := r.powerCut(what, pair...); err != nil {
		return err
	}
	if err := r.holdThenHeal(time.Second, 2*time.Second); err != nil {
		return err
	}
	return r.caughtUp(rest)
}

// pickMajority picks two members of three: the leader and a follower, or
// both followers, as the seed says; rest is the third.
func (r *scenario) pickMajority() (what string, pair []*tc.Node, rest *tc.Node, err error) {
	l, err := r.leader()
	if err != nil {
		return "", nil, nil, err
	}
	fs := r.c.Except(l)
	r.rng.Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	if r.rng.Intn(2) == 0 {
		return fmt.Sprintf("leader %d and follower %d", l.ID, fs[0].ID), []*tc.Node{l, fs[0]}, fs[1], nil
	}
	return fmt.Sprintf("followers %d and %d", fs[0].ID, fs[1].ID), []*tc.Node{fs[0], fs[1]}, l, nil
}

func (r *scenario) powerCutAll() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	return r.powerCut(fmt.Sprintf("all members (leader %d)", l.ID), r.c.Members()...)
}

// partitionFollowerPowerCutLeader isolates a follower, then cuts the
// leader's power: the member left alone has no quorum until the leader is
// back, and the two elect a leader without the isolated one, which then
// catches up after the heal.
func (r *scenario) partitionFollowerPowerCutLeader() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	r.c.Isolate(f.ID)
	r.event("isolate follower %d", f.ID)
	if err := r.powerCut(r.role(l, true), l); err != nil {
		return err
	}
	return r.holdThenHeal(time.Second, 2*time.Second)
}

// dropPowerCutFollower makes every peer link lossy, then cuts a follower's
// power: it restarts and catches up over the lossy links.
func (r *scenario) dropPowerCutFollower() error {
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	r.allLinks(func(a, b uint64) { r.c.Net.Set(a, b, lossyLink) })
	r.event("drop 30%% of peer traffic")
	if err := r.powerCut(r.role(f, false), f); err != nil {
		return err
	}
	return r.holdThenHeal(time.Second, 2*time.Second)
}

// powerCut kills nodes at once, crashes their filesystems, holds, and
// starts them again. A node that refuses to start on what survived (with a
// one-line reason and a non-zero exit) is replaced by a fresh member, as
// walDamage does, unless too few are left to replace it: a majority that
// refuses is a failure, as the cluster cannot recover by itself.
func (r *scenario) powerCut(what string, nodes ...*tc.Node) error {
	for _, n := range nodes {
		if n.PowerFS() == nil {
			return fmt.Errorf("node %d is not on powerfs", n.ID)
		}
	}
	for _, n := range nodes {
		n.Signal(syscall.SIGKILL)
	}
	for _, n := range nodes {
		if _, ok := n.Wait(10 * time.Second); !ok {
			return fmt.Errorf("%v survived SIGKILL", n)
		}
	}
	r.event("power cut: SIGKILL %s", what)
	for _, n := range nodes {
		fs := n.PowerFS()
		if err := fs.Crash(); err != nil {
			return fmt.Errorf("power cut node %d: %v", n.ID, err)
		}
		r.event("power cut node %d: %v", n.ID, fs.LastCrash())
	}
	r.mu.Lock()
	r.cuts[len(nodes)]++
	r.mu.Unlock()
	d := r.pause(500*time.Millisecond, 2*time.Second)

	for _, n := range nodes {
		n.Start()
	}
	var up, refused []*tc.Node
	for _, n := range nodes {
		err := n.WaitServing(30 * time.Second)
		if err == nil {
			up = append(up, n)
			continue
		}
		code, line, err := refusedToStart(n, "a power cut", err)
		if err != nil {
			return err
		}
		r.event("REFUSED: node %d refused to start after the power cut (exit code %d): %s", n.ID, code, line)
		r.mu.Lock()
		r.refused = append(r.refused, fmt.Sprintf("node %d: %s", n.ID, line))
		r.mu.Unlock()
		refused = append(refused, n)
	}
	r.event("restarted %d of %d after %v without power", len(up), len(nodes), d.Round(time.Millisecond))
	members := len(r.c.Members())
	if len(refused) > 0 && members-len(refused) <= members/2 {
		return fmt.Errorf("%d of %d members refused to start after a power cut: too few are left to replace them", len(refused), members)
	}
	for _, n := range up {
		if err := r.caughtUp(n); err != nil {
			return err
		}
	}
	for _, n := range refused {
		if err := r.replace(n); err != nil {
			return err
		}
	}
	return nil
}

// The negative control: with --unsafe-no-fsync nothing a member writes is
// durable, so cutting the power of every member must make the robustness
// checks fail (lost writes, diverged replicas, or members that cannot come
// back). If they all passed, a power cut would prove nothing.
func TestRobustnessChecksFailAfterAPowerCutWithoutFsync(t *testing.T) {
	if testing.Short() {
		t.Skip("robustness runs take tens of seconds")
	}
	res := runScenarioWith(t, scenarioOptions{
		seed: pickSeed(), faults: []string{"power-cut-all"}, traffic: 10 * time.Second,
		flags: []string{"--unsafe-no-fsync"}, expectFailure: true,
	})
	var failed []string
	for _, c := range res.checks {
		if c.err != nil {
			failed = append(failed, c.name)
		}
	}
	t.Logf("checks that failed, as they must: %q", failed)
	for _, id := range []int{1, 2, 3} {
		t.Logf("node %d after the power cut: %q", id, restartNotes(res.cluster.Node(id).Log()))
	}
	if res.ok() {
		t.Errorf("every check passed although no member fsynced anything before a power cut of all of them (seed %d)", res.seed)
	}
}

// restartNotes picks from a member's log, in every run but the first, the
// lines that tell how it started again: raft's first term (0 for a member
// that starts afresh, as if new) and its warnings and errors.
func restartNotes(log string) []string {
	var notes []string
	for i, run := range strings.Split(log, "==== testcluster: run #") {
		if i < 2 {
			continue // before the first run, and the first run
		}
		term := false
		for _, l := range strings.Split(run, "\n") {
			switch {
			case !term && strings.Contains(l, "became follower at term"):
				term = true
				notes = append(notes, l[strings.Index(l, "became"):])
			case strings.Contains(l, "\tWARN\t") || strings.Contains(l, "\tERROR\t"):
				if len(l) > 300 {
					l = l[:300] + "..."
				}
				notes = append(notes, l)
			}
		}
	}
	return notes
}

// The harness's side of powerfs: a node on it runs outside its mount (see
// Node.UsePowerFS for the deadlock a working directory inside it risks),
// and a wipe of its data is itself durable, so that a later power cut does
// not bring a wiped WAL back.
func TestANodeOnPowerFSRunsOutsideItsMountAndItsWipeSurvivesACrash(t *testing.T) {
	c := tc.New(t, 1)
	n := c.Node(1)
	fs, err := n.UsePowerFS()
	if err != nil {
		t.Skipf("cannot run on powerfs: %v", err)
	}
	n.Restart()
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", n.PID()))
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(n.DataDir, cwd); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the server runs in %s, inside its mount %s", cwd, n.DataDir)
	}
	n.MustPut("k", "v")
	n.Kill()
	if err := n.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := fs.Crash(); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("after a wipe and a crash %s holds %d entries (%s), want none; %v", n.DataDir, len(left), left[0].Name(), fs.LastCrash())
	}
}
