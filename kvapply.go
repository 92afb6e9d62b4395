package main

import (
	"time"

	"go.uber.org/zap"
)

// Applying committed work to the kvstore: the state machine's transition
// function, and what it reports of each commit to the apply loop.

// appliedCommit is what applying a commit did, for the apply loop to report
// on: the outcome of each named command applied (not of those refused as
// duplicates or expired), and the changes made, in log order. Its slices are
// reused from one commit to the next.
type appliedCommit struct {
	outcomes []proposalOutcome
	changes  []change
	// restored is set when the commit carried a snapshot, which replaced
	// the state at revision restoredRevision before its entries applied.
	restored         bool
	restoredRevision uint64
	revision         uint64 // the store's revision after the commit
}

// proposalOutcome is what became of one named command.
type proposalOutcome struct {
	name   proposalName
	result outcome
}

// outcome is what a command did, and the state it left, as of its
// application: what its answer reports, even when other writes follow at
// once.
type outcome struct {
	failed      bool   // its condition did not hold: it changed nothing (a transaction: its failure branch ran)
	revision    uint64 // the store's revision just after it: its change's own, if it made one
	exists      bool   // whether its key existed just after it
	modRevision uint64 // its key's modRevision just after it (0 if absent)
	// unknown: it was applied, but what it did is not known, for the
	// window of a snapshot written before outcomes were kept says only
	// that. Revision 0 is no such sign: a write that changes nothing on a
	// store no write has changed yet leaves it at revision 0.
	unknown bool
	// For a transaction: what each operation of the branch that ran found
	// or did. Only the request that waits for it sees these; the
	// de-duplication window keeps the rest (see apply). (A pointer keeps
	// outcomes comparable.)
	results *[]txnResult
}

// txnResult is what one operation of a transaction found or did.
type txnResult struct {
	kind  byte // txnPut, txnDelete or txnGet
	key   string
	found bool    // a get: the key exists; a delete: it existed, and is gone
	value string  // a get: the key's value
	meta  keyMeta // a get: the key's; a put: the key's after it
}

// change is one change to the map, as watchers see it.
type change struct {
	revision uint64
	key      string
	value    string  // for a put
	meta     keyMeta // for a put: the key's revisions after it
	deleted  bool
	expired  bool // a delete because the key's time to live ran out
}

func (a *appliedCommit) reset() {
	clear(a.changes) // drop the values, which the map may no longer hold
	a.outcomes, a.changes = a.outcomes[:0], a.changes[:0]
	a.restored, a.restoredRevision, a.revision = false, 0, 0
}

// applyCommit applies one commit: the snapshot it carries, if any, replaces
// the map, then its entries' commands are applied; out (reset first) says
// what they did. An error means the state machine can no longer follow the
// log (a snapshot it cannot decode).
func (s *kvstore) applyCommit(c commit, out *appliedCommit) error {
	start := time.Now()
	out.reset()
	var restored *decodedKV
	if c.snapshot != nil {
		// Decoded before taking the lock: reads go on meanwhile.
		kv, err := decodeKVSnapshot(c.snapshot, c.snapshotSize)
		c.snapshot.Close()
		if err != nil {
			return err
		}
		restored = kv
	}
	// One commit is applied under one lock, so readers of the map, its
	// digest and its index never see half a batch.
	s.mu.Lock()
	if restored != nil {
		s.replaceLocked(restored)
		out.restored, out.restoredRevision = true, s.revision
	}
	for _, data := range c.entries {
		s.applyEntry(data, out)
	}
	s.index = c.index
	out.revision = s.revision
	keys := s.keys
	s.mu.Unlock()
	metricApplyDuration.Observe(time.Since(start).Seconds())
	metricProposalsApplied.Add(float64(len(out.outcomes)))
	metricAppliedIndex.Set(float64(c.index))
	metricKeys.Set(float64(keys))
	return nil
}

// applyEntry applies the commands of one committed entry, reporting to out.
// The caller holds s.mu.
func (s *kvstore) applyEntry(data []byte, out *appliedCommit) {
	cmds, err := splitEntry(data, s.split[:0])
	s.split = cmds[:0]
	if err != nil {
		// As for a command apply cannot decode: every replica skips it.
		s.lg.Error("skipping committed batch this version cannot decode", zap.Error(err))
		return
	}
	for _, c := range cmds {
		s.apply(c, out)
	}
}

// apply is the state machine's transition function: one committed command
// in, at most one change to the map out. It must be deterministic, since
// every replica applies the same entries and must reach the same map and
// revisions. A command is not applied when it does not decode, or is a copy
// of a command already applied, or too old to tell (see dedup.go); an
// applied one changes the map only if its condition holds, and then moves
// the revision. The caller holds s.mu.
func (s *kvstore) apply(data []byte, out *appliedCommit) {
	cmd, err := decodeCommand(data)
	if err != nil {
		// Every replica skips the same entry, so they stay identical. Input is
		// validated before proposing, so this means a newer version wrote it.
		s.lg.Error("skipping committed entry this version cannot decode", zap.Error(err))
		return
	}
	if cmd.origin != 0 {
		switch s.proposals.decide(cmd) {
		case duplicate:
			metricProposalsDeduplicated.WithLabelValues("duplicate").Inc()
			return
		case expired:
			metricProposalsDeduplicated.WithLabelValues("expired").Inc()
			return
		}
	}
	var result outcome
	if cmd.op == opTxn {
		result = s.applyTxn(cmd.txn, out)
	} else {
		result = s.change(cmd, out)
	}
	if cmd.origin != 0 {
		// The window keeps how it ended, not what a transaction read: that
		// could be many values, for as long as the window lasts.
		remembered := result
		remembered.results = nil
		s.proposals.record(remembered)
		out.outcomes = append(out.outcomes, proposalOutcome{name: cmd.name(), result: result})
	}
}

// change makes the change cmd asks for, if its condition holds, and reports
// it to out. The caller holds s.mu.
func (s *kvstore) change(cmd command, out *appliedCommit) outcome {
	old, had := s.lookupLocked(cmd.key)
	if !cmd.cond.holds(had, old.meta) {
		return outcome{failed: true, revision: s.revision, exists: had, modRevision: old.meta.modRevision}
	}
	if cmd.op == opDelete && !had {
		return outcome{revision: s.revision}
	}
	// Commands from before revisions move none: members that restored
	// different snapshots of that time would count them differently.
	revision := uint64(0)
	if !cmd.legacy {
		s.revision++
		revision = s.revision
	}
	if cmd.op == opDelete {
		s.removeLocked(cmd.key, old, revision, cmd.expiry, out)
		if cmd.expiry {
			metricKeysExpired.Inc()
		}
		return outcome{revision: s.revision}
	}
	v := s.writeLocked(cmd.key, old, had, cmd.value, cmd.ttl, revision, out)
	return outcome{revision: s.revision, exists: true, modRevision: v.meta.modRevision}
}

// applyTxn runs a transaction: its compares against the map as it is, then
// one branch's operations in order, each seeing the ones before it. All its
// writes take one revision, the next, which the store moves to only if the
// transaction changed anything. The caller holds s.mu.
func (s *kvstore) applyTxn(t *txnCommand, out *appliedCommit) outcome {
	succeeded := true
	for _, c := range t.compares {
		if v, found := s.lookupLocked(c.key); !c.holds(v, found) {
			succeeded = false
			break
		}
	}
	ops := t.success
	if !succeeded {
		ops = t.failure
	}
	revision := s.revision + 1
	changed := false
	results := make([]txnResult, len(ops))
	for i, op := range ops {
		old, had := s.lookupLocked(op.key)
		r := txnResult{kind: op.kind, key: op.key}
		switch op.kind {
		case txnGet:
			r.found, r.value, r.meta = had, old.value, old.meta
		case txnPut:
			r.meta = s.writeLocked(op.key, old, had, op.value, op.ttl, revision, out).meta
			changed = true
		case txnDelete:
			if had {
				s.removeLocked(op.key, old, revision, false, out)
				r.found, changed = true, true
			}
		}
		results[i] = r
	}
	if changed {
		s.revision = revision
	}
	return outcome{failed: !succeeded, revision: s.revision, results: &results}
}

// writeLocked sets key (which held old, if had) to value with the time to
// live ttl (0: none) at revision (0: a command from before revisions), and
// reports the change to out. The caller holds s.mu.
func (s *kvstore) writeLocked(key string, old storedValue, had bool, value string, ttl time.Duration, revision uint64, out *appliedCommit) storedValue {
	if had {
		s.digest -= pairDigest(key, old)
		s.bytes -= int64(len(key) + len(old.value))
	}
	v := storedValue{value: value}
	if revision != 0 {
		v.meta = keyMeta{createRevision: revision, modRevision: revision, version: 1, ttl: ttl}
		if had {
			// A key from before revisions keeps createRevision 0.
			v.meta.createRevision, v.meta.version = old.meta.createRevision, old.meta.version+1
		}
	}
	s.storeLocked(key, v, false)
	s.digest += pairDigest(key, v)
	s.bytes += int64(len(key) + len(v.value))
	if !had {
		s.keys++
	}
	if revision != 0 {
		out.changes = append(out.changes, change{revision: revision, key: key, value: v.value, meta: v.meta})
	}
	return v
}

// removeLocked deletes key, which holds old, at revision, and reports the
// change to out. The caller holds s.mu.
func (s *kvstore) removeLocked(key string, old storedValue, revision uint64, expired bool, out *appliedCommit) {
	s.digest -= pairDigest(key, old)
	s.bytes -= int64(len(key) + len(old.value))
	s.storeLocked(key, storedValue{}, true)
	s.keys--
	if revision != 0 {
		out.changes = append(out.changes, change{revision: revision, key: key, deleted: true, expired: expired})
	}
}
