package e2e

import (
	"sync"
	"sync/atomic"
	"time"

	tc "raftexample/internal/testcluster"
)

// memoryWatch samples a member's resident memory every 20 ms: tests that
// feed a member something large watch that it stays bounded, and stop
// feeding it (over) before the machine runs out of memory.
type memoryWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// watchMemory starts sampling n; over is called once if it passes bound.
func watchMemory(n *tc.Node, bound int64, over func()) *memoryWatch {
	w := &memoryWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		fired := false
		for {
			if rss, err := n.RSS(); err == nil && rss > w.peak.Load() {
				w.peak.Store(rss)
				if rss > bound && !fired {
					fired = true
					over()
				}
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the sampling and returns the peak.
func (w *memoryWatch) Stop() int64 {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.peak.Load()
}
