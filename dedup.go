package main

import (
	"cmp"
	"fmt"
	"slices"
)

// A command proposed more than once is applied once (Raft thesis, 6.3).
//
// A member proposes a pending command again when its leader changes, or when
// the command waited several heartbeats with a leader known (see
// reproposer): raft may have dropped the first copy without a word (a leader
// handing over drops what followers forward to it), or the copy may sit in
// the new leader's log and commit after all. So every copy carries the same
// name (origin member, id) and the same base: the proposal clock its origin
// had applied when it first proposed it. The state machine decides each named
// command it meets, in log order, at the next tick of the proposal clock:
//
//   - expired if the clock is more than proposalWindow ticks past its base;
//   - a duplicate if a command of that name was applied within the last
//     proposalWindow ticks;
//   - applied otherwise, and its name remembered for proposalWindow ticks.
//
// No command is applied twice. The first copy to be applied was applied at a
// tick past its base, since its origin had applied base ticks before it first
// proposed it, and this one was not among them. A later copy is decided at a
// tick at most proposalWindow past the base, where the first copy is still
// remembered, or further, where it expires. A re-proposal therefore never
// outlives the window: it arrives inside it, or is refused. Everything here
// is a function of the log alone, so every replica decides the same way, and
// the window is part of the state that snapshots carry.
//
// The window's size bounds memory (a name and a tick per slot), and it is
// what a pending command may wait, counted in commands applied by others,
// before its copies expire. A member re-proposes within a few heartbeats,
// long before that under any load this server takes; if the window ever does
// pass a command that was never applied, its origin knows it can never be,
// and proposes it afresh with a new base (see pendingCommands.due).
const proposalWindow = 1 << 16

// decision is what the state machine did with a named command.
type decision int

const (
	applied decision = iota
	duplicate
	expired
)

// appliedProposals is the state machine's memory of the named commands it
// applied: the proposal clock, and the names applied in the last
// proposalWindow ticks. It belongs to the kvstore and is changed only under
// its lock, by apply.
type appliedProposals struct {
	clock uint64 // named commands decided so far
	// byName is when each remembered name was applied, and order the same
	// names oldest first (from head on), so that each is forgotten once the
	// clock is a window past it.
	byName map[proposalName]uint64
	order  []appliedName
	head   int
}

// appliedName is a remembered name, the tick it was applied at and what it
// did: a request that learns of its command's application only from a
// snapshot (see pendingCommands.restored) still gets its answer.
type appliedName struct {
	name   proposalName
	at     uint64
	result outcome
}

func newAppliedProposals() *appliedProposals {
	return &appliedProposals{byName: make(map[proposalName]uint64)}
}

// decide ticks the clock for command c and decides it.
func (a *appliedProposals) decide(c command) decision {
	a.clock++
	now := a.clock
	a.forget(now)
	if now > c.base && now-c.base > proposalWindow {
		return expired
	}
	name := c.name()
	if _, ok := a.byName[name]; ok {
		return duplicate
	}
	a.byName[name] = now
	a.order = append(a.order, appliedName{name: name, at: now})
	return applied
}

// record sets what the command decide last applied did.
func (a *appliedProposals) record(result outcome) { a.order[len(a.order)-1].result = result }

// forget drops the names applied a whole window before now.
func (a *appliedProposals) forget(now uint64) {
	for a.head < len(a.order) && now-a.order[a.head].at >= proposalWindow {
		delete(a.byName, a.order[a.head].name)
		a.head++
	}
	if a.head > len(a.order)/2 && a.head > 1024 {
		// Compact, so that the slice stays within twice what it remembers.
		a.order = append(a.order[:0], a.order[a.head:]...)
		a.head = 0
	}
}

// outcome reports whether a command named name was applied in the last
// proposalWindow ticks, and what it did.
func (a *appliedProposals) outcome(name proposalName) (outcome, bool) {
	at, ok := a.byName[name]
	if !ok {
		return outcome{}, false
	}
	names := a.remembered()
	i, _ := slices.BinarySearchFunc(names, at, func(n appliedName, at uint64) int { return cmp.Compare(n.at, at) })
	return names[i].result, true
}

// remembered lists the names in the window, oldest first: what a snapshot
// holds of the window, besides the clock. The slice is shared; the caller
// must not change it, and may read it only until the next decide.
func (a *appliedProposals) remembered() []appliedName { return a.order[a.head:] }

// restoreAppliedProposals rebuilds the window a snapshot recorded: names
// oldest first, each applied within a window of the clock, none twice.
func restoreAppliedProposals(clock uint64, names []appliedName) (*appliedProposals, error) {
	a := newAppliedProposals()
	a.clock = clock
	var last uint64
	for _, n := range names {
		if n.at <= last || n.at > clock || clock-n.at >= proposalWindow || n.name == (proposalName{}) {
			return nil, fmt.Errorf("proposal %d/%d applied at tick %d does not fit a window ending at tick %d", n.name.origin, n.name.id, n.at, clock)
		}
		if _, dup := a.byName[n.name]; dup {
			return nil, fmt.Errorf("proposal %d/%d is remembered twice", n.name.origin, n.name.id)
		}
		last = n.at
		a.byName[n.name] = n.at
	}
	a.order = names
	return a, nil
}
