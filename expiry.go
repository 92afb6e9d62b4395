package main

import (
	"container/heap"
	"sync"
	"time"
)

// Keys that expire. A key's time to live is replicated state (keyMeta.ttl),
// but when it runs out is not: clocks differ between members and jump. The
// leader decides, on its own monotonic clock, and says so through the log:
// it proposes an expiry, a delete conditional on the modRevision of the
// write that set the TTL, so a newer write is never removed. Every member
// applies the expiry like any delete; watchers see it marked expired.
//
// Never early: the leader counts a key's TTL from when it applied the key's
// write, and waits expiryGrace more. A write is acknowledged once the member
// that took it has applied it: the leader answers just after its own apply,
// a follower once it hears of the commit, normally within a millisecond of
// the leader, so the grace covers every acknowledgement but one from a
// member that is itself late (and a client that counts from when it sent the
// request is safe even then: the leader applies a write after it was sent,
// and expiries only ever come later than that). A member that becomes leader cannot know how long the previous leader had
// counted, so it restarts every TTL in full: a leader change may delay an
// expiry by up to one TTL, never advance it. A restarted member counts from
// when it replayed each key's write, and restarts again if it comes to lead.

// expirer is a member's deadlines for the keys with a time to live: fed by
// the apply loop (observe, reset), consulted by readers (remaining), and
// driven by the expiry goroutine (service.expireKeys), which alone calls
// lead and due. It proposes nothing itself.
type expirer struct {
	mu    sync.Mutex
	byKey map[string]*ttlDeadline
	queue deadlineQueue
	term  uint64 // the term this member led when it last restarted the deadlines; 0 when not leading
	// wake tells the expiry goroutine that a deadline may now come sooner.
	wake chan struct{}
}

// ttlDeadline is when one key's time to live runs out, on this member's
// clock, for the write (modRevision) that set it.
type ttlDeadline struct {
	key         string
	modRevision uint64
	ttl         time.Duration
	deadline    time.Time
	index       int // in the queue
}

// expiryRetry is how long the leader waits for an expiry it proposed to
// apply before proposing it again (raft may have dropped it).
const expiryRetry = time.Second

// expiryGrace is how long past a key's TTL the leader waits before it
// proposes the key's expiry (see above).
const expiryGrace = 250 * time.Millisecond

// expiryCheck bounds how long the expiry goroutine sleeps, so that it
// notices a new term of its own leadership soon.
const expiryCheck = 100 * time.Millisecond

func newExpirer() *expirer {
	return &expirer{byKey: make(map[string]*ttlDeadline), wake: make(chan struct{}, 1)}
}

// observe takes note of a commit's changes, applied at now: a put with a
// TTL sets its key's deadline, any other change clears it.
func (e *expirer) observe(changes []change, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sooner := false
	for _, c := range changes {
		if c.deleted || c.meta.ttl == 0 {
			e.removeLocked(c.key)
			continue
		}
		e.setLocked(c.key, c.meta.modRevision, c.meta.ttl, now.Add(c.meta.ttl+expiryGrace))
		sooner = true
	}
	metricTTLKeys.Set(float64(len(e.byKey)))
	if sooner {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// ttlKey is a key with a time to live, as the store holds it.
type ttlKey struct {
	key         string
	modRevision uint64
	ttl         time.Duration
}

// reset replaces every deadline after the state was replaced by a
// snapshot: keys' TTLs restart in full at now.
func (e *expirer) reset(keys []ttlKey, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.byKey)
	e.queue = e.queue[:0]
	for _, k := range keys {
		e.setLocked(k.key, k.modRevision, k.ttl, now.Add(k.ttl+expiryGrace))
	}
	metricTTLKeys.Set(float64(len(e.byKey)))
}

func (e *expirer) setLocked(key string, modRevision uint64, ttl time.Duration, deadline time.Time) {
	if d, ok := e.byKey[key]; ok {
		d.modRevision, d.ttl, d.deadline = modRevision, ttl, deadline
		heap.Fix(&e.queue, d.index)
		return
	}
	d := &ttlDeadline{key: key, modRevision: modRevision, ttl: ttl, deadline: deadline}
	e.byKey[key] = d
	heap.Push(&e.queue, d)
}

func (e *expirer) removeLocked(key string) {
	if d, ok := e.byKey[key]; ok {
		heap.Remove(&e.queue, d.index)
		delete(e.byKey, key)
	}
}

// remaining is how long the write at modRevision has left to live on this
// member's clock (its grace not counted); false if this member has no
// deadline for it.
func (e *expirer) remaining(key string, modRevision uint64, now time.Time) (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.byKey[key]
	if !ok || d.modRevision != modRevision {
		return 0, false
	}
	return max(d.deadline.Sub(now)-expiryGrace, 0), true
}

// lead records whether this member leads, and in which term, as of now.
// Leading in a term it did not lead before, it restarts every TTL in full.
func (e *expirer) lead(leading bool, term uint64, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !leading {
		e.term = 0
		return
	}
	if e.term == term {
		return
	}
	e.term = term
	for _, d := range e.queue {
		d.deadline = now.Add(d.ttl + expiryGrace)
	}
	heap.Init(&e.queue)
}

// due returns, on the leader, the expiries of the keys whose deadline has
// passed at now, encoded as commands, and gives each expiryRetry more
// before it comes due again. It also says how long until the next deadline
// (at most expiryCheck).
func (e *expirer) due(now time.Time) (expiries [][]byte, next time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.term != 0 && len(e.queue) > 0 && !e.queue[0].deadline.After(now) {
		d := e.queue[0]
		expiries = append(expiries, encodeCommand(command{
			op: opDelete, expiry: true, key: d.key,
			cond: condition{kind: condModRevision, modRevision: d.modRevision},
		}))
		d.deadline = now.Add(expiryRetry)
		heap.Fix(&e.queue, 0)
	}
	next = expiryCheck
	if e.term != 0 && len(e.queue) > 0 {
		next = min(next, e.queue[0].deadline.Sub(now))
	}
	return expiries, next
}

// expireKeys proposes the expiry of every key whose time to live ran out,
// while this member leads, until the node stops. It runs in its own
// goroutine.
func (s *service) expireKeys() {
	timer := time.NewTimer(expiryCheck)
	defer timer.Stop()
	for {
		moved := s.node.leaderChanges()
		st := s.node.Status()
		s.expiry.lead(st.State == "leader", st.Term, time.Now())
		expiries, next := s.expiry.due(time.Now())
		s.proposeInEntries(expiries)
		timer.Reset(next)
		select {
		case <-timer.C:
		case <-s.expiry.wake:
		case <-moved:
		case <-s.node.Done():
			return
		}
	}
}

// deadlineQueue is a min-heap of deadlines (container/heap).
type deadlineQueue []*ttlDeadline

func (q deadlineQueue) Len() int           { return len(q) }
func (q deadlineQueue) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q deadlineQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *deadlineQueue) Push(x any) {
	d := x.(*ttlDeadline)
	d.index = len(*q)
	*q = append(*q, d)
}
func (q *deadlineQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return d
}
