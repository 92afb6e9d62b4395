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
// goroutine (service.run). It knows nothing of proposals, waiters, watchers
// or raft: the same commits in the same order give the same map, with the
// same revisions, on every replica. Reads (Lookup, List, State) may come
// from any goroutine.
//
// The store has a revision: every applied command that changes the map
// moves it one up, and each key records the revisions of its creation and
// its last change, and how many times it was written since its creation.
type kvstore struct {
	lg *zap.Logger

	mu sync.RWMutex
	kv map[string]storedValue
	// While a snapshot is written out, kv is frozen: the writer reads it
	// without the lock, and changes collect in pending until it is done (see
	// freeze). pending is nil otherwise.
	pending  map[string]pendingValue
	frozen   *frozenKV
	split    [][]byte // reused by applyEntry
	keys     int      // the number of keys, counting pending changes
	bytes    int64    // the size of all keys and values, counting pending changes
	digest   uint64   // sum of pairDigest over all pairs, kept current by apply
	index    uint64   // the log index the map reflects
	revision uint64   // changes applied so far
	// proposals remembers the named commands applied lately, so that a
	// command proposed twice is applied once (see dedup.go).
	proposals *appliedProposals
}

// storedValue is a key's value and its revisions.
type storedValue struct {
	value string
	meta  keyMeta
}

// keyMeta is what the store records of a key besides its value. Keys
// written by versions before revisions carry zeros.
type keyMeta struct {
	createRevision uint64 // the revision that created it
	modRevision    uint64 // the revision of its last change
	version        uint64 // writes since its creation, 1 at creation
	// ttl is the key's time to live, set by its last write; 0 for none. When
	// it runs out the leader proposes the key's deletion (see expiry.go).
	ttl time.Duration
}

// pendingValue is a change made while the map is frozen: a new value, or the
// key's deletion.
type pendingValue struct {
	storedValue
	deleted bool
}

func newKVStore(lg *zap.Logger) *kvstore {
	return &kvstore{lg: lg, kv: make(map[string]storedValue), proposals: newAppliedProposals()}
}

// Lookup reads key from the map as it is now, and the store's revision.
func (s *kvstore) Lookup(key string) (v storedValue, found bool, revision uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, found = s.lookupLocked(key)
	return v, found, s.revision
}

// lookupLocked reads key, seeing changes made while the map is frozen. The
// caller holds s.mu.
func (s *kvstore) lookupLocked(key string) (storedValue, bool) {
	if p, ok := s.pending[key]; ok {
		return p.storedValue, !p.deleted
	}
	v, ok := s.kv[key]
	return v, ok
}

// storeLocked sets key to v, or deletes it, in pending while the map is
// frozen and in the map itself otherwise. The caller holds s.mu for writing.
func (s *kvstore) storeLocked(key string, v storedValue, deleted bool) {
	switch {
	case s.pending != nil:
		s.pending[key] = pendingValue{storedValue: v, deleted: deleted}
	case deleted:
		delete(s.kv, key)
	default:
		s.kv[key] = v
	}
}

// kvPair is one key, its value and its revisions.
type kvPair struct {
	Key   string
	Value string
	Meta  keyMeta
}

// listPage is one page of a listing: pairs sorted by key, where the next
// page starts ("" when this is the last), and the store revision it
// reflects.
type listPage struct {
	Pairs    []kvPair
	Next     string
	Revision uint64
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
	offer := func(k string, v storedValue) {
		if k < start || !strings.HasPrefix(k, prefix) {
			return
		}
		if smallest.Len() <= limit {
			heap.Push(smallest, kvPair{k, v.value, v.meta})
		} else if k < (*smallest)[0].Key {
			(*smallest)[0] = kvPair{k, v.value, v.meta}
			heap.Fix(smallest, 0)
		}
	}
	s.mu.RLock()
	s.rangeLocked(offer)
	revision := s.revision
	s.mu.RUnlock()
	pairs := []kvPair(*smallest)
	slices.SortFunc(pairs, func(a, b kvPair) int { return strings.Compare(a.Key, b.Key) })
	var size int64
	for i, p := range pairs {
		if size += int64(len(p.Key) + len(p.Value)); i == limit || (i > 0 && size > maxBytes) {
			return listPage{Pairs: pairs[:i], Next: p.Key, Revision: revision}
		}
	}
	return listPage{Pairs: pairs, Revision: revision}
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

// TTLKeys lists the keys that have a time to live.
func (s *kvstore) TTLKeys() []ttlKey {
	var out []ttlKey
	offer := func(k string, v storedValue) {
		if v.meta.ttl != 0 {
			out = append(out, ttlKey{key: k, modRevision: v.meta.modRevision, ttl: v.meta.ttl})
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.rangeLocked(offer)
	return out
}

// rangeLocked calls f for every pair, in no order, seeing changes made while
// the map is frozen. The caller holds s.mu.
func (s *kvstore) rangeLocked(f func(k string, v storedValue)) {
	for k, v := range s.kv {
		if _, changed := s.pending[k]; !changed {
			f(k, v)
		}
	}
	for k, p := range s.pending {
		if !p.deleted {
			f(k, p.storedValue)
		}
	}
}

// ProposalClock is the proposal clock (see dedup.go): how many named
// commands the state machine has decided.
func (s *kvstore) ProposalClock() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proposals.clock
}

// AppliedOutcome reports whether a command named name was applied within
// the last proposalWindow ticks of the proposal clock, and what it did.
func (s *kvstore) AppliedOutcome(name proposalName) (outcome, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proposals.outcome(name)
}

// State reports, consistently with each other, the log index the map
// reflects, the number of keys, the map's digest and the store's revision.
// Replicas at the same index have the same digest and revision.
func (s *kvstore) State() storeState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return storeState{index: s.index, keys: s.keys, digest: s.digest, revision: s.revision}
}

// storeState is kvstore.State.
type storeState struct {
	index    uint64
	keys     int
	digest   uint64
	revision uint64
}

// DataBytes is the size of all keys and values in the map.
func (s *kvstore) DataBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// pairDigest hashes one pair with its revisions and its time to live. The
// map's digest is the sum of its pairs' digests: independent of order, and
// updated in O(1) when a pair changes. A pair from before revisions (zero
// meta) hashes as it did then, and one without a TTL as before TTLs.
func pairDigest(k string, v storedValue) uint64 {
	// FNV-1a over len(k) as a uvarint, k, v, then the revisions (8 bytes
	// each, little-endian) unless all are zero, then the TTL in nanoseconds
	// (8 bytes) unless it is zero, written out so that the apply path
	// allocates nothing for it.
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
	for i := 0; i < len(v.value); i++ {
		h = (h ^ uint64(v.value[i])) * prime
	}
	if v.meta != (keyMeta{}) {
		for _, n := range [3]uint64{v.meta.createRevision, v.meta.modRevision, v.meta.version} {
			for i := 0; i < 8; i++ {
				h = (h ^ (n >> (8 * i) & 0xff)) * prime
			}
		}
	}
	if n := uint64(v.meta.ttl); n != 0 {
		for i := 0; i < 8; i++ {
			h = (h ^ (n >> (8 * i) & 0xff)) * prime
		}
	}
	return h
}
