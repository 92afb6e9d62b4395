package e2e

// The robustness suite's faults (see robustness_test.go). Each applies
// itself, holds, and heals itself before returning.

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	tc "raftexample/internal/testcluster"
)

// Faults

// pause holds a fault for between lo and hi.
func (r *scenario) pause(lo, hi time.Duration) time.Duration {
	d := lo + time.Duration(r.rng.Int63n(int64(hi-lo)+1))
	time.Sleep(d)
	return d
}

// leader polls the members that answer until one of them leads and a
// majority of the members name it as leader in its term.
func (r *scenario) leader() (*tc.Node, error) {
	var leader *tc.Node
	err := tc.Poll(20*time.Second, func() error {
		nodes := r.c.Members()
		var sts []tc.Status
		var leaders []*tc.Node
		for _, n := range nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				continue
			}
			sts = append(sts, st)
			if st.State == "leader" {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("%d leaders among the members that answer: %s", len(leaders), tc.Summary(sts))
		}
		var lt uint64
		for _, st := range sts {
			if st.ID == uint64(leaders[0].ID) {
				lt = st.Term
			}
		}
		votes := 0
		for _, st := range sts {
			if st.Leader == uint64(leaders[0].ID) && st.Term == lt {
				votes++
			}
		}
		if 2*votes <= len(nodes) {
			return fmt.Errorf("only %d of %d members follow leader %d: %s", votes, len(nodes), leaders[0].ID, tc.Summary(sts))
		}
		leader = leaders[0]
		return nil
	})
	return leader, err
}

// pick returns the leader, or a follower chosen by the seed.
func (r *scenario) pick(leader bool) (*tc.Node, error) {
	l, err := r.leader()
	if err != nil || leader {
		return l, err
	}
	var fs []*tc.Node
	for _, n := range r.c.Members() {
		if n != l {
			fs = append(fs, n)
		}
	}
	return fs[r.rng.Intn(len(fs))], nil
}

func (r *scenario) role(n *tc.Node, leader bool) string {
	if leader {
		return fmt.Sprintf("leader %d", n.ID)
	}
	return fmt.Sprintf("follower %d", n.ID)
}

// healAll removes every network fault, resumes stopped nodes and restarts
// members that are down.
func (r *scenario) healAll() {
	r.c.Net.Heal()
	r.mu.Lock()
	stopped := r.stopped
	r.stopped = map[int]bool{}
	r.mu.Unlock()
	for id := range stopped {
		r.c.Node(id).Signal(syscall.SIGCONT)
	}
	for _, n := range r.c.Members() {
		if fs := n.PowerFS(); fs != nil { // disks work again
			fs.FailSyncs(0)
			fs.FailWrites(0)
			fs.StallSyncs(0)
		}
	}
	for _, n := range r.c.Members() {
		if !n.Running() {
			r.event("restarting node %d, which was down", n.ID)
			n.Start()
		}
	}
}

func (r *scenario) kill(leader bool) error {
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	if err := n.TryKill(); err != nil {
		return err
	}
	r.event("SIGKILL %s", r.role(n, leader))
	d := r.pause(500*time.Millisecond, 2*time.Second)
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return err
	}
	r.event("restarted node %d after %v", n.ID, d.Round(time.Millisecond))
	return nil
}

func (r *scenario) sigstopLeader() error {
	n, err := r.leader()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.stopped[n.ID] = true
	r.mu.Unlock()
	n.Signal(syscall.SIGSTOP)
	r.event("SIGSTOP leader %d", n.ID)
	d := r.pause(2*time.Second, 3*time.Second)
	n.Signal(syscall.SIGCONT)
	r.mu.Lock()
	delete(r.stopped, n.ID)
	r.mu.Unlock()
	r.event("SIGCONT node %d after %v", n.ID, d.Round(time.Millisecond))
	return nil
}

func (r *scenario) partition(leader bool) error {
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	r.c.Isolate(n.ID)
	r.event("isolate %s", r.role(n, leader))
	return r.holdThenHeal(2*time.Second, 3*time.Second)
}

func (r *scenario) oneWay() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	from, to := l, f
	if r.rng.Intn(2) == 0 {
		from, to = f, l
	}
	r.c.Net.Set(uint64(from.ID), uint64(to.ID), cutLink)
	r.event("cut traffic %d -> %d only (leader %d)", from.ID, to.ID, l.ID)
	return r.holdThenHeal(2*time.Second, 3*time.Second)
}

// holdThenHeal keeps the network faults in force for between lo and hi,
// then removes them all.
func (r *scenario) holdThenHeal(lo, hi time.Duration) error {
	d := r.pause(lo, hi)
	r.c.Net.Heal()
	r.event("heal after %v", d.Round(time.Millisecond))
	return nil
}

func (r *scenario) allLinks(f func(from, to uint64)) {
	ids := r.c.IDs()
	for _, a := range ids {
		for _, b := range ids {
			if a != b {
				f(a, b)
			}
		}
	}
}

func (r *scenario) delay() error {
	r.allLinks(func(a, b uint64) { r.c.Net.Set(a, b, slowLink) })
	r.event("delay all peer traffic 100ms +/- 50ms")
	return r.holdThenHeal(3*time.Second, 4*time.Second)
}

func (r *scenario) drop() error {
	r.allLinks(func(a, b uint64) { r.c.Net.Set(a, b, lossyLink) })
	r.event("drop 30%% of peer traffic")
	return r.holdThenHeal(3*time.Second, 4*time.Second)
}

// snapshotCatchUp cuts a follower off until the leader has compacted its
// log past the follower, heals, and expects it to catch up by snapshot.
func (r *scenario) snapshotCatchUp() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	logOffset := len(f.Log())
	r.c.Isolate(f.ID)
	fst, err := f.Status()
	if err != nil {
		return err
	}
	// The server keeps --snap-count (50) entries behind a snapshot.
	target := fst.Applied + 50 + 20
	r.event("isolate follower %d at applied %d until leader %d's snapshot index passes %d", f.ID, fst.Applied, l.ID, target)
	var lst tc.Status
	if err := tc.Poll(60*time.Second, func() error {
		var err error
		if lst, err = l.Status(); err != nil {
			return err
		}
		if lst.SnapshotIndex <= target {
			return fmt.Errorf("leader %d's snapshot index %d, want > %d", l.ID, lst.SnapshotIndex, target)
		}
		return nil
	}); err != nil {
		return err
	}
	r.c.Net.Heal()
	r.event("heal: leader %d at snapshot index %d, commit %d", l.ID, lst.SnapshotIndex, lst.Commit)
	return tc.Poll(30*time.Second, func() error {
		st, err := f.Status()
		if err != nil {
			return err
		}
		if st.Applied < lst.Commit {
			return fmt.Errorf("follower %d applied %d, want >= %d", f.ID, st.Applied, lst.Commit)
		}
		if log := f.Log(); !strings.Contains(log[min(logOffset, len(log)):], "installed snapshot from leader") {
			return fmt.Errorf("follower %d caught up (applied %d) but its log shows no snapshot installed", f.ID, st.Applied)
		}
		r.event("follower %d caught up by snapshot (applied %d)", f.ID, st.Applied)
		return nil
	})
}

// replaceMember removes a follower, wipes its data, and adds it back under
// a new id.
func (r *scenario) replaceMember() error {
	f, err := r.pick(false)
	if err != nil {
		return err
	}
	return r.replace(f)
}

func (r *scenario) replace(old *tc.Node) error {
	if err := tc.Poll(30*time.Second, func() error {
		l, err := r.leader()
		if err != nil {
			return err
		}
		return r.c.RemoveMember(l, old.ID)
	}); err != nil {
		return err
	}
	r.event("removed member %d", old.ID)
	if old.Running() {
		if _, ok := old.Wait(20 * time.Second); !ok {
			r.event("removed member %d did not exit by itself; killing it", old.ID)
			old.TryKill()
		}
	}
	if err := old.Wipe(); err != nil {
		return err
	}
	l, err := r.leader()
	if err != nil {
		return err
	}
	n, err := r.c.AddMember(l)
	if err != nil {
		return fmt.Errorf("adding a member: %v", err)
	}
	r.event("wiped node %d's data; added it back as member %d", old.ID, n.ID)
	return r.caughtUp(n)
}

// caughtUp waits until n has applied what the leader had committed. It
// gives up at once if n exits.
func (r *scenario) caughtUp(n *tc.Node) error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	lst, err := l.Status()
	if err != nil {
		return err
	}
	return tc.Poll(30*time.Second, func() error {
		if !n.Running() {
			return tc.GiveUp(fmt.Errorf("%v exited", n))
		}
		st, err := n.Status()
		if err != nil {
			return err
		}
		if st.Applied < lst.Commit {
			return fmt.Errorf("%v applied %d, want >= %d", n, st.Applied, lst.Commit)
		}
		r.event("node %d caught up (applied %d)", n.ID, st.Applied)
		return nil
	})
}

// walDamage kills a node mid-writes, damages the tail of its newest WAL
// file, and restarts it: it must repair and rejoin, or refuse to start with
// an error (then it is replaced by a fresh member).
func (r *scenario) walDamage() error {
	n, err := r.pick(r.rng.Intn(2) == 0)
	if err != nil {
		return err
	}
	if err := n.TryKill(); err != nil {
		return err
	}
	r.event("SIGKILL node %d", n.ID)
	what, err := damageWAL(n.WALDir(), r.rng)
	if err != nil {
		return err
	}
	r.event("damaged node %d's WAL: %s", n.ID, what)
	n.Start()
	err = n.WaitServing(30 * time.Second)
	if err == nil {
		err = r.caughtUp(n)
	}
	if err == nil {
		r.event("node %d repaired its WAL and rejoined", n.ID)
		return nil
	}
	code, line, err := refusedToStart(n, "WAL damage", err)
	if err != nil {
		return err
	}
	r.event("node %d refused to start (exit code %d): %s", n.ID, code, line)
	return r.replace(n)
}

// refusedToStart explains why n, which did not come up after what (startErr),
// is not serving: it must have exited non-zero with a one-line reason. A
// node still running, or one that exited without a reason, is an error.
func refusedToStart(n *tc.Node, what string, startErr error) (code int, line string, err error) {
	if n.Running() {
		return 0, "", startErr
	}
	code, _ = n.Wait(5 * time.Second)
	line = firstErrorLine(n.RunLog())
	if code == 0 || line == "" {
		return code, "", fmt.Errorf("node %d exited with code %d after %s without a clear reason (%v); log:\n%s", n.ID, code, what, startErr, tc.Tail(n.RunLog(), 20))
	}
	return code, line, nil
}

// firstErrorLine returns the first line of log that reports an error or panic.
func firstErrorLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\"level\":\"error\"") || strings.Contains(l, "\"level\":\"fatal\"") ||
			strings.Contains(l, "\tERROR\t") || strings.Contains(l, "\tFATAL\t") || strings.Contains(l, "\tPANIC\t") || strings.HasPrefix(l, "panic:") ||
			strings.Contains(l, "\"level\":\"panic\"") {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			return l
		}
	}
	return ""
}

// damageWAL damages the newest WAL file in dir: the file is preallocated
// and zero past its data, so the data ends at the last non-zero byte. Either
// a few bytes before that end are cut off, or the page holding it is zeroed.
func damageWAL(dir string, rng *rand.Rand) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("no WAL files in %s (%v)", dir, err)
	}
	sort.Strings(files)
	path := files[len(files)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	last := len(b) - 1
	for last >= 0 && b[last] == 0 {
		last--
	}
	if last < 0 {
		return filepath.Base(path) + " is all zeros; left alone", nil
	}
	if rng.Intn(2) == 0 {
		cut := 1 + rng.Intn(16)
		size := max(last+1-cut, 0)
		if err := os.Truncate(path, int64(size)); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: data ended at %d; truncated to %d bytes (%d bytes of data cut)", filepath.Base(path), last+1, size, cut), nil
	}
	page := last &^ 4095
	end := min(page+4096, len(b))
	for i := page; i < end; i++ {
		b[i] = 0
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: data ended at %d; zeroed bytes [%d, %d)", filepath.Base(path), last+1, page, end), nil
}
