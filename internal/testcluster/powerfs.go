//go:build linux

package testcluster

// Members on power-loss filesystems: each node's --data-dir is the mount
// point of its own powerfs, so a test can kill it, Crash its mount (losing
// what the server never made durable) and start it again.

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"raftexample/internal/powerfs"
)

var (
	powerMu sync.Mutex
	powerOf = map[*Node]*powerfs.FS{}
)

// UsePowerFS mounts a power-loss filesystem (internal/powerfs) at
// n.DataDir, backed by a directory beside it, and returns it. Call it
// before n first starts: what the data directory holds at the mount counts
// as durable. It returns powerfs.Available's reason if FUSE mounts cannot
// be made here.
//
// The mount is undone when the test ends, after n is killed: the cleanup
// that kills every node of the test was registered with the test's first
// node, so it runs after this one (cleanups run last-registered first), too
// late for an unmount, which fails while the process has files open.
func (n *Node) UsePowerFS() (*powerfs.FS, error) {
	if err := powerfs.Available(); err != nil {
		return nil, err
	}
	if n.PowerFS() != nil {
		return nil, fmt.Errorf("%v: UsePowerFS twice", n)
	}
	n.mu.Lock()
	runs := n.runs
	n.mu.Unlock()
	if runs > 0 {
		return nil, fmt.Errorf("%v: UsePowerFS after the node started", n)
	}
	backing := n.DataDir + ".backing"
	for _, d := range []string{backing, n.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	fs, err := powerfs.Mount(backing, n.DataDir)
	if err != nil {
		return nil, err
	}
	powerMu.Lock()
	powerOf[n] = fs
	powerMu.Unlock()
	// Not in the mount: the child changes into its working directory
	// between vfork and exec, while the parent's thread is stuck in vfork
	// holding its P. A FUSE request then waits for this process's server
	// goroutines, which a garbage collection that waits for that P stops
	// for good (a deadlock seen once in a dozen runs). --data-dir is
	// absolute, so the server does not care where it runs.
	n.WorkDir = filepath.Dir(n.DataDir)
	n.t.Cleanup(func() {
		n.signal(syscall.SIGKILL)
		n.Wait(10 * time.Second)
		if err := fs.Unmount(); err != nil {
			n.t.Errorf("%v: %v", n, err)
		}
		powerMu.Lock()
		delete(powerOf, n)
		powerMu.Unlock()
	})
	return fs, nil
}

// PowerFS returns the filesystem UsePowerFS mounted for n, or nil.
func (n *Node) PowerFS() *powerfs.FS {
	powerMu.Lock()
	defer powerMu.Unlock()
	return powerOf[n]
}

// UsePowerFS puts the data directory of every node of c on its own
// power-loss filesystem (Node.UsePowerFS): the nodes made so far, and those
// made later (NewJoiner, AddMember) before they start. Call it before
// Start.
func (c *Cluster) UsePowerFS() error {
	for _, n := range c.Members() {
		if _, err := n.UsePowerFS(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.prepare = append(c.prepare, func(n *Node) error {
		_, err := n.UsePowerFS()
		return err
	})
	c.mu.Unlock()
	return nil
}
