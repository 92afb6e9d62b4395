package main

import (
	"container/heap"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// kvstore is the replicated state machine: a map from key to value, changed
// only by applying committed commands (applyCommit), in log order, from one
// goroutine (service.run). It knows nothing of proposals, waiters or raft:
// the same commits in the same order give the same map on every replica.
// Reads (Lookup, List, State) may come from any goroutine.
type kvstore struct {
	lg *zap.Logger

	mu sync.RWMutex
	kv map[string]string
	// While a snapshot is written out, kv is frozen: the writer reads it
	// without the lock, and changes collect in pending until it is done (see
	// freeze). pending is nil otherwise.
	pending map[string]pendingValue
	frozen  *frozenKV
	split   [][]byte // reused by applyEntry
	keys    int      // the number of keys, counting pending changes
	bytes   int64    // the size of all keys and values, counting pending changes
	digest  uint64   // sum of pairDigest over all pairs, kept current by apply
	index   uint64   // the log index the map reflects
	// proposals remembers the named commands applied lately, so that a
	// command proposed twice is applied once (see dedup.go).
	proposals *appliedProposals
}

// pendingValue is a change made while the map is frozen: a new value, or the
// key's deletion.
type pendingValue struct {
	value   string
	deleted bool
}

func newKVStore(lg *zap.Logger) *kvstore {
	return &kvstore{lg: lg, kv: make(map[string]string), proposals: newAppliedProposals()}
}

// Lookup reads key from the map as it is now.
func (s *kvstore) Lookup(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lookupLocked(key)
}

// lookupLocked reads key, seeing changes made while the map is frozen. The
// caller holds s.mu.
func (s *kvstore) lookupLocked(key string) (string, bool) {
	if p, ok := s.pending[key]; ok {
		return p.value, !p.deleted
	}
	v, ok := s.kv[key]
	return v, ok
}

// storeLocked sets key to value, or deletes it, in pending while the map is
// frozen and in the map itself otherwise. The caller holds s.mu for writing.
func (s *kvstore) storeLocked(key, value string, deleted bool) {
	switch {
	case s.pending != nil:
		s.pending[key] = pendingValue{value: value, deleted: deleted}
	case deleted:
		delete(s.kv, key)
	default:
		s.kv[key] = value
	}
}

// kvPair is one key and its value.
type kvPair struct {
	Key   string
	Value string
}

// listPage is one page of a listing: pairs sorted by key, and where the next
// page starts ("" when this is the last).
type listPage struct {
	Pairs []kvPair
	Next  string
}

// List returns a page of the pairs whose key starts with prefix and is at
// least start, sorted by key: at most limit pairs (limit > 0), ending early
// once they hold maxBytes of keys and values (but never empty while any pair
// matches).
//
// The page is chosen under the read lock in one pass over the map, keeping
// only the limit+1 smallest keys, so a listing costs memory for one page
// however large the key space, and the values it returns are shared with the
// map, not copied.
func (s *kvstore) List(prefix, start string, limit int, maxBytes int64) listPage {
	smallest := &pairHeap{}
	offer := func(k, v string) {
		if k < start || !strings.HasPrefix(k, prefix) {
			return
		}
		if smallest.Len() <= limit {
			heap.Push(smallest, kvPair{k, v})
		} else if k < (*smallest)[0].Key {
			(*smallest)[0] = kvPair{k, v}
			heap.Fix(smallest, 0)
		}
	}
	s.mu.RLock()
	for k, v := range s.kv {
		if _, changed := s.pending[k]; !changed {
			offer(k, v)
		}
	}
	for k, p := range s.pending {
		if !p.deleted {
			offer(k, p.value)
		}
	}
	s.mu.RUnlock()
	pairs := []kvPair(*smallest)
	slices.SortFunc(pairs, func(a, b kvPair) int { return strings.Compare(a.Key, b.Key) })
	var size int64
	for i, p := range pairs {
		if size += int64(len(p.Key) + len(p.Value)); i == limit || (i > 0 && size > maxBytes) {
			return listPage{Pairs: pairs[:i], Next: p.Key}
		}
	}
	return listPage{Pairs: pairs}
}

// pairHeap is a max-heap of pairs by key (container/heap).
type pairHeap []kvPair

func (h pairHeap) Len() int           { return len(h) }
func (h pairHeap) Less(i, j int) bool { return h[i].Key > h[j].Key }
func (h pairHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)        { *h = append(*h, x.(kvPair)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// applyCommit applies one commit: the snapshot it carries, if any, replaces
// the map, then its entries' commands are applied. It returns the names of
// the named commands it applied (not those it refused as duplicates or
// expired), appended to names. An error means the state machine can no
// longer follow the log (a snapshot it cannot decode).
func (s *kvstore) applyCommit(c commit, names []proposalName) ([]proposalName, error) {
	start := time.Now()
	var restored *decodedKV
	if c.snapshot != nil {
		// Decoded before taking the lock: reads go on meanwhile.
		kv, err := decodeKVSnapshot(c.snapshot, c.snapshotSize)
		c.snapshot.Close()
		if err != nil {
			return names, err
		}
		restored = kv
	}
	// One commit is applied under one lock, so readers of the map, its
	// digest and its index never see half a batch.
	before := len(names)
	s.mu.Lock()
	if restored != nil {
		s.replaceLocked(restored)
	}
	for _, data := range c.entries {
		names = s.applyEntry(data, names)
	}
	s.index = c.index
	keys := s.keys
	s.mu.Unlock()
	metricApplyDuration.Observe(time.Since(start).Seconds())
	metricProposalsApplied.Add(float64(len(names) - before))
	metricAppliedIndex.Set(float64(c.index))
	metricKeys.Set(float64(keys))
	return names, nil
}

// ProposalClock is the proposal clock (see dedup.go): how many named
// commands the state machine has decided.
func (s *kvstore) ProposalClock() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proposals.clock
}

// WasApplied reports whether a command named name was applied within the
// last proposalWindow ticks of the proposal clock.
func (s *kvstore) WasApplied(name proposalName) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proposals.wasApplied(name)
}

// State reports, consistently with each other, the log index the map
// reflects, the number of keys and the map's digest. Replicas at the same
// index have the same digest.
func (s *kvstore) State() (index uint64, keys int, digest uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index, s.keys, s.digest
}

// DataBytes is the size of all keys and values in the map.
func (s *kvstore) DataBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// pairDigest hashes one pair. The map's digest is the sum of its pairs'
// digests: independent of order, and updated in O(1) when a pair changes.
func pairDigest(k, v string) uint64 {
	// FNV-1a over len(k) as a uvarint, k, then v, written out so that the
	// apply path allocates nothing for it.
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for n := uint64(len(k)); ; n >>= 7 {
		b := byte(n & 0x7f)
		if n >= 0x80 {
			b |= 0x80
		}
		h = (h ^ uint64(b)) * prime
		if n < 0x80 {
			break
		}
	}
	for i := 0; i < len(k); i++ {
		h = (h ^ uint64(k[i])) * prime
	}
	for i := 0; i < len(v); i++ {
		h = (h ^ uint64(v[i])) * prime
	}
	return h
}

// applyEntry applies the commands of one committed entry and appends the
// names of the named ones it applied to names. The caller holds s.mu.
func (s *kvstore) applyEntry(data []byte, names []proposalName) []proposalName {
	cmds, err := splitEntry(data, s.split[:0])
	s.split = cmds[:0]
	if err != nil {
		// As for a command apply cannot decode: every replica skips it.
		s.lg.Error("skipping committed batch this version cannot decode", zap.Error(err))
		return names
	}
	for _, c := range cmds {
		if name, ok := s.apply(c); ok && name.origin != 0 {
			names = append(names, name)
		}
	}
	return names
}

// apply is the state machine's transition function: one committed command
// in, one change to the map out, and the name of the proposal it carried
// (zero for an anonymous one). It must be deterministic, since every replica
// applies the same entries and must reach the same map. ok is false when
// the command was not applied: it does not decode, or it is a copy of a
// command already applied, or too old to tell (see dedup.go). The caller
// holds s.mu.
func (s *kvstore) apply(data []byte) (name proposalName, ok bool) {
	cmd, err := decodeCommand(data)
	if err != nil {
		// Every replica skips the same entry, so they stay identical. Input is
		// validated before proposing, so this means a newer version wrote it.
		s.lg.Error("skipping committed entry this version cannot decode", zap.Error(err))
		return proposalName{}, false
	}
	if cmd.origin != 0 {
		switch s.proposals.decide(cmd) {
		case duplicate:
			metricProposalsDeduplicated.WithLabelValues("duplicate").Inc()
			return proposalName{}, false
		case expired:
			metricProposalsDeduplicated.WithLabelValues("expired").Inc()
			return proposalName{}, false
		}
	}
	old, had := s.lookupLocked(cmd.key)
	if had {
		s.digest -= pairDigest(cmd.key, old)
		s.bytes -= int64(len(cmd.key) + len(old))
	}
	switch cmd.op {
	case opPut:
		s.storeLocked(cmd.key, cmd.value, false)
		s.digest += pairDigest(cmd.key, cmd.value)
		s.bytes += int64(len(cmd.key) + len(cmd.value))
		if !had {
			s.keys++
		}
	case opDelete:
		if had {
			s.storeLocked(cmd.key, "", true)
			s.keys--
		}
	}
	return cmd.name(), true
}
