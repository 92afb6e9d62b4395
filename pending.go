package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Re-proposing commands until they are applied. Raft may lose a proposal
// without a word: a follower forwards it to a leader that is handing over,
// or dies, and the entry never reaches a majority. A request that only
// waited would then wait out its timeout and answer "outcome unknown". So a
// member keeps the commands its requests await, and proposes them again, the
// same bytes under the same name and base, when its leader changes and when
// one has waited several heartbeats with a leader known; the state machine
// applies only the first copy that commits (see dedup.go).

const (
	// reproposeAfter is how long a command waits, with a leader known,
	// before it is proposed again; each time it waits twice as long, up to
	// maxReproposeWait. Committing takes a round trip and an fsync, well
	// under this, so a healthy cluster rarely sees a copy.
	reproposeAfter   = 5 * tickInterval
	maxReproposeWait = 4 * electionTimeout
)

// pendingCommands are the commands this member proposed that requests still
// await, by id. Requests add and withdraw them, the apply loop completes
// them, the re-proposer proposes them again. Safe for concurrent use.
type pendingCommands struct {
	self uint64 // this member: the origin of every command here
	mu   sync.Mutex
	byID map[uint64]*pendingCommand
	// clock is the proposal clock up to which every command applied here
	// was completed (see publish): a command still pending was not applied
	// at any tick up to it, unless marked unsure.
	clock atomic.Uint64
}

// pendingCommand is one command a request awaits. Its fields other than
// applied are guarded by pendingCommands.mu.
type pendingCommand struct {
	cmd     command
	data    []byte        // cmd, encoded: what every copy carries
	applied chan struct{} // closed once it is applied here, and result set
	result  outcome       // what it did; read once applied is closed
	handed  bool          // raft took a copy: it may commit, even if no further copy does
	next    time.Time     // when it is due to be proposed again
	wait    time.Duration // between the next two copies
	// unsure is set when a snapshot moved the clock over ticks at which it
	// may have been applied unseen: it must then keep its base for good.
	unsure bool
}

func newPendingCommands(self uint64) *pendingCommands {
	return &pendingCommands{self: self, byID: make(map[uint64]*pendingCommand)}
}

// add names c as this member's proposal id, gives it its base, and keeps it
// until it is applied or withdrawn. It returns the command's encoding, to
// propose.
func (p *pendingCommands) add(c command, id uint64) (*pendingCommand, []byte) {
	c.origin, c.id = p.self, id
	// Any tick this member has applied through will do as the base: the
	// command cannot have been applied at or before it (see dedup.go).
	c.base = p.clock.Load()
	data := encodeCommand(c)
	pc := &pendingCommand{cmd: c, data: data, applied: make(chan struct{}),
		next: time.Now().Add(reproposeAfter), wait: reproposeAfter}
	p.mu.Lock()
	p.byID[id] = pc
	p.mu.Unlock()
	return pc, data
}

// withdraw forgets pc: its request no longer waits. Copies of it may still
// commit, and are applied once.
func (p *pendingCommands) withdraw(pc *pendingCommand) {
	p.mu.Lock()
	delete(p.byID, pc.cmd.id)
	p.mu.Unlock()
}

// handedToRaft records that raft took a copy of pc.
func (p *pendingCommands) handedToRaft(pc *pendingCommand) {
	p.mu.Lock()
	pc.handed = true
	p.mu.Unlock()
}

// wasHanded reports whether raft took a copy of pc.
func (p *pendingCommands) wasHanded(pc *pendingCommand) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pc.handed
}

// complete reports the commands the apply loop just applied; those of this
// member's that are pending are done, with the outcome of their first copy
// (later copies are duplicates, which apply skips). Called by the apply
// loop only.
func (p *pendingCommands) complete(outcomes []proposalOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range outcomes {
		if o.name.origin != p.self {
			continue
		}
		if pc, ok := p.byID[o.name.id]; ok {
			pc.result = o.result
			close(pc.applied)
			delete(p.byID, o.name.id)
		}
	}
}

// restored reports that the state machine replaced its state with a
// snapshot, moving the proposal clock from before to after; appliedOutcome
// tells which names the snapshot's window holds, and what they did. Called
// by the apply loop only, before publish.
func (p *pendingCommands) restored(before, after uint64, appliedOutcome func(proposalName) (outcome, bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, pc := range p.byID {
		if result, ok := appliedOutcome(pc.cmd.name()); ok {
			pc.result = result
			close(pc.applied)
			delete(p.byID, id)
			continue
		}
		// The window covers the last proposalWindow ticks; a command applied
		// before them, and after both its base and what we had seen, is out
		// of sight.
		if after >= proposalWindow && after-proposalWindow > max(before, pc.cmd.base) {
			pc.unsure = true
		}
	}
}

// publish records that every command applied through tick clock has been
// completed. Called by the apply loop only.
func (p *pendingCommands) publish(clock uint64) { p.clock.Store(clock) }

// leaderChanged makes every pending command due at once: any copy of it may
// have been lost with the old leader.
func (p *pendingCommands) leaderChanged() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.byID {
		pc.next = now
	}
}

// due appends the commands to propose again now to pcs, and their
// encodings to datas, and sets when each is due next.
func (p *pendingCommands) due(now time.Time, pcs []*pendingCommand, datas [][]byte) ([]*pendingCommand, [][]byte) {
	clock := p.clock.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.byID {
		if pc.next.After(now) {
			continue
		}
		pc.next, pc.wait = now.Add(pc.wait), min(2*pc.wait, maxReproposeWait)
		if !pc.unsure && clock-pc.cmd.base >= proposalWindow {
			// Every copy with this base would now expire, and none was
			// applied (it is still pending at clock): a new base is safe.
			pc.cmd.base = clock
			pc.data = encodeCommand(pc.cmd)
		}
		// Counted as handed to raft before it is: a request giving up in the
		// meantime must not answer that nothing was done.
		pc.handed = true
		pcs, datas = append(pcs, pc), append(datas, pc.data)
	}
	return pcs, datas
}

// reproposer proposes pending commands again, when the leader changes and
// when they are due, until the node stops. It runs in its own goroutine.
func (s *service) reproposer() {
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	var due []*pendingCommand
	var datas [][]byte
	for {
		moved := s.node.leaderChanges()
		select {
		case <-ticker.C:
		case <-moved:
			s.pending.leaderChanged()
		case <-s.node.Done():
			return
		}
		if s.node.Leader() == 0 {
			continue // nowhere to send them; the next leader brings them due
		}
		due, datas = s.pending.due(time.Now(), due[:0], datas[:0])
		s.proposeAgain(datas)
		clear(due)
		clear(datas)
	}
}

// proposeAgain proposes copies of the commands encoded in datas, several to
// an entry. A copy raft refuses is proposed again when due.
func (s *service) proposeAgain(datas [][]byte) {
	metricProposalsReproposed.Add(float64(s.proposeInEntries(datas)))
}

// proposeInEntries proposes the commands encoded in datas, several to an
// entry, and returns how many may have reached raft. Nobody waits for them:
// their proposers find out from the state machine.
func (s *service) proposeInEntries(datas [][]byte) (proposed int) {
	for len(datas) > 0 {
		n, size := 0, 0
		for n < len(datas) && n < maxBatchCommands && size < maxBatchBytes {
			size += len(datas[n])
			n++
		}
		data := datas[0]
		if n > 1 {
			data = encodeBatch(datas[:n])
		}
		ctx, cancel := context.WithTimeout(context.Background(), electionTimeout)
		err := s.node.Propose(ctx, data)
		cancel()
		if err == nil || mayHaveReachedRaft(err) {
			proposed += n
		}
		datas = datas[n:]
	}
	return proposed
}
