package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// proposer is the kvstore's view of the raft node: it takes a command into the
// replicated log, finds the index a linearizable read must wait for, and tells
// when the node has stopped for good.
type proposer interface {
	Propose(ctx context.Context, data []byte) error
	ReadIndex(ctx context.Context) (uint64, error)
	Done() <-chan struct{}
}

// commit is one unit of work for the state machine. The raft node sends them
// on the commit channel in log order; see main.go where the channel is made.
type commit struct {
	// snapshot, when non-nil, replaces the whole map before entries are
	// applied. It reads the kvstore part of a raft snapshot (the encoding of
	// frozenKV.WriteTo), snapshotSize bytes long; the kvstore closes it.
	snapshot     io.ReadCloser
	snapshotSize int64
	// entries holds the data of committed normal entries, in log order.
	entries [][]byte
	// index is the log index the state reaches once this commit is applied
	// (entries without data, such as conf changes, advance it too).
	index uint64
	// applied is closed once everything above is applied to the map. The raft
	// node waits on it before taking a snapshot, so that a snapshot at index i
	// holds every entry up to i.
	applied chan<- struct{}
}

// kvstore is the replicated state machine: a map from key to value, changed
// only by applying committed entries.
type kvstore struct {
	lg       *zap.Logger
	proposer proposer
	ids      *requestIDs
	waits    *waitRegistry // shared with the raft node, which fails waits when the leader is lost
	applied  appliedIndex

	mu sync.RWMutex
	kv map[string]string
	// While a snapshot is written out, kv is frozen: the writer reads it
	// without the lock, and changes collect in pending until it is done (see
	// freeze). pending is nil otherwise.
	pending map[string]pendingValue
	frozen  *frozenKV
	keys    int    // the number of keys, counting pending changes
	digest  uint64 // sum of pairDigest over all pairs, kept current by apply
	index   uint64 // the log index the map reflects
}

// pendingValue is a change made while the map is frozen: a new value, or the
// key's deletion.
type pendingValue struct {
	value   string
	deleted bool
}

func newKVStore(lg *zap.Logger, p proposer, waits *waitRegistry) *kvstore {
	return &kvstore{
		lg:       lg,
		proposer: p,
		ids:      newRequestIDs(),
		waits:    waits,
		kv:       make(map[string]string),
	}
}

// Get reads key. A linearizable read first learns the cluster's commit index
// through raft's ReadIndex and waits until this node has applied that far, so
// it sees every write acknowledged before it began, on any node. A
// serializable read (linearizable false) reads the local map at once and may
// be stale.
func (s *kvstore) Get(ctx context.Context, key string, linearizable bool) (string, bool, error) {
	if linearizable {
		if err := s.catchUpForRead(ctx); err != nil {
			return "", false, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.lookupLocked(key)
	return v, ok, nil
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

// List returns up to limit pairs whose key starts with prefix, sorted by key
// (limit 0 means no limit). Consistency is as for Get.
func (s *kvstore) List(ctx context.Context, prefix string, limit int, linearizable bool) ([]kvPair, error) {
	if linearizable {
		if err := s.catchUpForRead(ctx); err != nil {
			return nil, err
		}
	}
	s.mu.RLock()
	var out []kvPair
	for k, v := range s.kv {
		if _, changed := s.pending[k]; !changed && strings.HasPrefix(k, prefix) {
			out = append(out, kvPair{Key: k, Value: v})
		}
	}
	for k, p := range s.pending {
		if !p.deleted && strings.HasPrefix(k, prefix) {
			out = append(out, kvPair{Key: k, Value: p.value})
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *kvstore) catchUpForRead(ctx context.Context) error {
	index, err := s.proposer.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return s.applied.waitApplied(ctx, index, s.proposer.Done())
}

// Put proposes key=value and returns once this node has applied it, so a nil
// error means the write is committed and visible here.
func (s *kvstore) Put(ctx context.Context, key, value string) error {
	return s.propose(ctx, command{op: opPut, key: key, value: value})
}

// Delete proposes removing key (a missing key is no error) and returns once
// this node has applied it.
func (s *kvstore) Delete(ctx context.Context, key string) error {
	return s.propose(ctx, command{op: opDelete, key: key})
}

func (s *kvstore) propose(ctx context.Context, c command) error {
	c.id = s.ids.next()
	data := encodeCommand(c)
	return s.waits.proposeAndWait(ctx, c.id, s.proposer.Done(), func(ctx context.Context) error {
		return s.proposer.Propose(ctx, data)
	})
}

// run applies commits until the channel is closed. An error means the state
// machine can no longer follow the log (a snapshot it cannot decode).
func (s *kvstore) run(commitC <-chan commit) error {
	var ids []uint64
	for c := range commitC {
		ids = ids[:0]
		start := time.Now()
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
		}
		for _, data := range c.entries {
			if id, ok := s.apply(data); ok {
				ids = append(ids, id)
			}
		}
		s.index = c.index
		keys := s.keys
		s.mu.Unlock()
		metricApplyDuration.Observe(time.Since(start).Seconds())
		metricProposalsApplied.Add(float64(len(c.entries)))
		metricAppliedIndex.Set(float64(c.index))
		metricKeys.Set(float64(keys))
		// Reads waiting for this index may go before the writers hear back,
		// so a read issued right after a write's 204 does not wait.
		s.applied.advance(c.index)
		for _, id := range ids {
			s.waits.trigger(id, nil)
		}
		close(c.applied)
	}
	return nil
}

// State reports, consistently with each other, the log index the map
// reflects, the number of keys and the map's digest. Replicas at the same
// index have the same digest.
func (s *kvstore) State() (index uint64, keys int, digest uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index, s.keys, s.digest
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

// apply is the state machine's transition function: one committed entry in,
// one change to the map out, and the id of the proposal it carried. It must
// be deterministic, since every replica applies the same entries and must
// reach the same map. The caller holds s.mu.
func (s *kvstore) apply(data []byte) (id uint64, ok bool) {
	cmd, err := decodeCommand(data)
	if err != nil {
		// Every replica skips the same entry, so they stay identical. Input is
		// validated before proposing, so this means a newer version wrote it.
		s.lg.Error("skipping committed entry this version cannot decode", zap.Error(err))
		return 0, false
	}
	old, had := s.lookupLocked(cmd.key)
	if had {
		s.digest -= pairDigest(cmd.key, old)
	}
	switch cmd.op {
	case opPut:
		s.storeLocked(cmd.key, cmd.value, false)
		s.digest += pairDigest(cmd.key, cmd.value)
		if !had {
			s.keys++
		}
	case opDelete:
		if had {
			s.storeLocked(cmd.key, "", true)
			s.keys--
		}
	}
	return cmd.id, true
}

// A command is the payload of one normal raft entry. Its encoding starts with
// an operation byte, so later operations (delete, ...) add a new byte value
// and old logs keep decoding:
//
//	op (1 byte) | request id (uvarint) | key (uvarint length + bytes) | value (rest)
//
// A delete has no value.
type command struct {
	op    byte
	id    uint64 // the proposal's identity, reported back when applied
	key   string
	value string
}

const (
	opPut    byte = 1
	opDelete byte = 2
)

func encodeCommand(c command) []byte {
	buf := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.key)+len(c.value))
	buf = append(buf, c.op)
	buf = binary.AppendUvarint(buf, c.id)
	buf = appendString(buf, c.key)
	return append(buf, c.value...)
}

func decodeCommand(data []byte) (command, error) {
	if len(data) == 0 {
		return command{}, errors.New("empty command")
	}
	c := command{op: data[0]}
	if c.op != opPut && c.op != opDelete {
		return command{}, fmt.Errorf("unknown operation %d", c.op)
	}
	var err error
	if c.id, data, err = readUvarint(data[1:]); err != nil {
		return command{}, err
	}
	if c.key, data, err = readString(data); err != nil {
		return command{}, err
	}
	if c.op == opDelete && len(data) > 0 {
		return command{}, errors.New("delete carries a value")
	}
	c.value = string(data)
	return c, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func readUvarint(data []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, errors.New("bad uvarint")
	}
	return v, data[n:], nil
}

func readString(data []byte) (string, []byte, error) {
	n, data, err := readUvarint(data)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(len(data)) {
		return "", nil, errors.New("string runs past the end")
	}
	return string(data[:n]), data[n:], nil
}
