package e2e

// Disk faults in the robustness suite (see robustness_test.go), on the
// members' power-loss filesystems (see robustness_power_test.go): a failed
// fsync, a full disk, and an fsync that stalls. A member whose write or
// fsync fails must stop at once with a one-line reason and a non-zero exit;
// it comes back once the disk works, with whatever it had made durable.

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"raftexample/internal/powerfs"
	tc "raftexample/internal/testcluster"
)

// diskFailureReason starts the member's one-line reason for stopping on a
// failed write or fsync.
const diskFailureReason = "disk failure:"

// diskEIO makes every fsync of the leader or of a follower fail with EIO.
// Nothing it did not sync is durable, so after it stops its filesystem
// crashes too (a failed fsync may have lost anything not synced before), and
// it starts again on what survived.
func (r *scenario) diskEIO() error {
	return r.diskFailure("every fsync fails with EIO", func(fs *powerfs.FS) { fs.FailSyncs(syscall.EIO) },
		func(fs *powerfs.FS) { fs.FailSyncs(0) }, true)
}

// diskFull makes every write of the leader or of a follower fail with
// ENOSPC; once it has stopped, the disk gets room again and it restarts.
func (r *scenario) diskFull() error {
	return r.diskFailure("the disk is full (ENOSPC)", func(fs *powerfs.FS) { fs.FailWrites(syscall.ENOSPC) },
		func(fs *powerfs.FS) { fs.FailWrites(0) }, false)
}

func (r *scenario) diskFailure(what string, fail, heal func(*powerfs.FS), crash bool) error {
	leader := r.rng.Intn(2) == 0
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	fs := n.PowerFS()
	if fs == nil {
		return fmt.Errorf("node %d is not on powerfs", n.ID)
	}
	fail(fs)
	r.event("disk of %s: %s", r.role(n, leader), what)
	// The member writes its WAL with every batch of client writes, and the
	// clients never stop, so it meets the fault at once.
	code, ok := n.Wait(20 * time.Second)
	heal(fs)
	if !ok {
		return fmt.Errorf("node %d did not stop within 20s of a failing disk", n.ID)
	}
	line := firstErrorLine(n.RunLog())
	if code == 0 || !strings.Contains(line, diskFailureReason) {
		return fmt.Errorf("node %d stopped with exit code %d and no disk failure reported; log:\n%s", n.ID, code, tc.Tail(n.RunLog(), 20))
	}
	r.event("node %d stopped (exit code %d): %s", n.ID, code, tc.Shorten(line, 200))
	if crash {
		if err := fs.Crash(); err != nil {
			return err
		}
		r.event("power cut node %d after the failed fsync: %v", n.ID, fs.LastCrash())
	}
	d := r.pause(500*time.Millisecond, 2*time.Second)
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return err
	}
	r.event("restarted node %d after %v with a working disk", n.ID, d.Round(time.Millisecond))
	return r.caughtUp(n)
}

// fsyncStall makes every fsync of the leader or of a follower wait 2-3 s: the
// member must not stop, a stalled leader may lose its leadership, and no
// acknowledged write is lost.
func (r *scenario) fsyncStall() error {
	leader := r.rng.Intn(2) == 0
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	fs := n.PowerFS()
	if fs == nil {
		return fmt.Errorf("node %d is not on powerfs", n.ID)
	}
	d := 2*time.Second + time.Duration(r.rng.Int63n(int64(time.Second)))
	fs.StallSyncs(d)
	r.event("disk of %s: every fsync stalls %v", r.role(n, leader), d.Round(time.Millisecond))
	held := r.pause(3*time.Second, 4*time.Second)
	fs.StallSyncs(0)
	r.event("fsyncs are fast again after %v", held.Round(time.Millisecond))
	if !n.Running() {
		code, _ := n.Wait(0)
		return fmt.Errorf("node %d stopped (exit code %d) on a slow disk: %s", n.ID, code, firstErrorLine(n.RunLog()))
	}
	return r.caughtUp(n)
}
