package lincheck

// The model porcupine checks histories against: a store of keys with
// revisions, partitioned by key (keys one transaction touches share a
// partition). Transactions are in txn.go, expiries in expiry.go.

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// input and output are what the model sees of an operation.
type input struct {
	kind       Kind
	key, value string
	cond       Cond
	ttl        time.Duration
	id         int      // the operation's number in the history (from 1): a TTL write's token
	txn        *TxnInfo // for a transaction
}

type output struct {
	value   string
	found   bool
	rev     uint64
	refused bool
	unknown bool // the write's outcome is unknown: any answer goes
}

// toInput is what the model sees of op, the id-th operation of its history
// (0: not in one).
func toInput(op Op, id int) input {
	return input{kind: op.Kind, key: op.Key, value: op.Value, cond: op.Cond, ttl: op.TTL, id: id, txn: op.Txn}
}

func toOutput(op Op) output {
	return output{value: op.Value, found: op.Found, rev: op.Revision, refused: op.Refused, unknown: op.Unknown()}
}

// keys are the keys op touches.
func (i input) keys() []string {
	if i.kind == Txn {
		return i.txn.keys()
	}
	return []string{i.key}
}

// state is one key's state. rev is the key's last write revision (the
// modRevision of the value, or the revision of the deletion that removed
// it, 0 if never written) when exact; otherwise a lower bound of it (after
// a write whose revision is unknown). create is its createRevision, exact
// or a lower bound likewise; version counts the puts since it was created
// (always exact: every write on the key is in its partition). ttl is the
// token (the writing operation's id) of a put with a TTL that wrote the
// value, 0 if the value has none: an expiry of that token may delete it.
// sym (createSym) names, while rev (create) is not exact, the write whose
// revision it is, so that what is learnt of one key a transaction of
// unknown revision wrote holds for its other keys too (store.learn).
type state struct {
	value       string
	found       bool
	rev         uint64
	exact       bool
	create      uint64
	createExact bool
	version     uint64
	ttl         int
	sym         int
	createSym   int
}

// absent is the state of a key never written.
var absent = state{exact: true, createExact: true}

// Three-valued logic for conditions against an inexact state.
type tri int

const (
	no tri = iota
	yes
	maybe
)

// holds tells whether c holds in s.
func holds(s state, c Cond) tri {
	switch c.Kind {
	case IfMatchAny:
		return boolTri(s.found)
	case IfNoneMatch:
		return boolTri(!s.found)
	case IfMatch:
		if !s.found {
			return no
		}
		return revIs(s.rev, s.exact, c.Rev)
	}
	return yes
}

// revIs tells whether a revision known as rev (exact, or a lower bound)
// is m.
func revIs(rev uint64, exact bool, m uint64) tri {
	switch {
	case exact:
		return boolTri(rev == m)
	case m < rev:
		return no
	}
	return maybe
}

func boolTri(b bool) tri {
	if b {
		return yes
	}
	return no
}

// and is the conjunction of a and b.
func (a tri) and(b tri) tri {
	switch {
	case a == no || b == no:
		return no
	case a == maybe || b == maybe:
		return maybe
	}
	return yes
}

// seen tells whether the key's modRevision may be m (it exists).
func (s state) seen(m uint64) bool {
	return m == 0 || revIs(s.rev, s.exact, m) != no // 0: not recorded
}

// seenCreate tells whether the key's createRevision may be m.
func (s state) seenCreate(m uint64) bool {
	return m == 0 || revIs(s.create, s.createExact, m) != no
}

// refine returns s with its modRevision known to be m (unless 0); a value
// put once was created at that revision.
func (s state) refine(m uint64) state {
	if m != 0 {
		s.rev, s.exact, s.sym = m, true, 0
		if s.found && s.version == 1 {
			s.create, s.createExact, s.createSym = m, true, 0
		}
	}
	return s
}

// refineCreate returns s with its createRevision known to be m (unless 0).
func (s state) refineCreate(m uint64) state {
	if m != 0 && s.found {
		s.create, s.createExact, s.createSym = m, true, 0
		if s.version == 1 {
			s.rev, s.exact, s.sym = m, true, 0
		}
	}
	return s
}

// written returns the state after a write that took effect: a put of
// value (found) or a deletion, with revision r (0: unknown, then only
// known to be above lo, and named sym). ttl is the put's TTL token (0:
// none).
func (s state) written(value string, found bool, r, lo uint64, ttl, sym int) state {
	n := state{value: value, found: found, ttl: ttl, rev: r, exact: true}
	if r == 0 {
		n.rev, n.exact, n.sym = max(lo, s.rev)+1, false, sym
	}
	switch {
	case !found:
		n.value, n.ttl, n.createExact = "", 0, true
	case s.found:
		n.create, n.createExact, n.createSym, n.version = s.create, s.createExact, s.createSym, s.version+1
	default:
		n.create, n.createExact, n.createSym, n.version = n.rev, n.exact, n.sym, 1
	}
	return n
}

// step is the model's transition for an operation on one key: whether the
// operation with input i and output o may take effect in state s, and the
// state after it.
func step(s state, i input, o output) (bool, state) {
	switch i.kind {
	case Get:
		if o.found != s.found {
			return false, s
		}
		if !s.found {
			return true, s
		}
		if o.value != s.value || !s.seen(o.rev) {
			return false, s
		}
		return true, s.refine(o.rev)
	case expire:
		return true, s.expired(i.id)
	}
	h := holds(s, i.cond)
	if i.kind == Delete && i.cond.Kind == Always && !s.found {
		// A delete of a missing key changes nothing; its X-Revision is
		// the store's revision, at least the key's last write.
		return o.unknown || o.rev == 0 || o.rev >= s.rev, s
	}
	found := i.kind == Put
	lo := uint64(0)
	if i.cond.Kind == IfMatch {
		lo = i.cond.Rev
	}
	ttl := 0
	if found && i.ttl > 0 {
		ttl = i.id
	}
	switch {
	case o.unknown:
		if h == no {
			return true, s
		}
		// If it may have taken effect here, say it did: if it did not,
		// the checker may as well place it after everything else.
		return true, s.written(i.value, found, 0, lo, ttl, i.id)
	case o.refused:
		if h == yes || o.found != s.found {
			return false, s
		}
		if !o.found {
			return true, s
		}
		if !s.seen(o.rev) || (i.cond.Kind == IfMatch && o.rev != 0 && o.rev == i.cond.Rev) {
			return false, s
		}
		return true, s.refine(o.rev)
	}
	if h == no {
		return false, s
	}
	if o.rev != 0 && (o.rev <= s.rev || (i.cond.Kind == IfMatch && o.rev <= i.cond.Rev)) {
		return false, s // a write's revision is above every earlier one
	}
	return true, s.written(i.value, found, o.rev, lo, ttl, i.id)
}

func describe(i input, o output, unknown bool) string {
	var b strings.Builder
	switch i.kind {
	case Put:
		fmt.Fprintf(&b, "put(%s, %q)%s", i.key, i.value, i.cond)
		if i.ttl > 0 {
			fmt.Fprintf(&b, " ttl %v", i.ttl)
		}
	case Delete:
		fmt.Fprintf(&b, "delete(%s)%s", i.key, i.cond)
	case Txn:
		return describeTxn(i, o, unknown)
	case expire:
		return fmt.Sprintf("expire(%s) of the put #%d, if it still holds", i.key, i.id)
	default:
		if !o.found {
			return fmt.Sprintf("get(%s) -> not found", i.key)
		}
		if o.rev != 0 {
			return fmt.Sprintf("get(%s) -> %q @%d", i.key, o.value, o.rev)
		}
		return fmt.Sprintf("get(%s) -> %q", i.key, o.value)
	}
	switch {
	case unknown:
		b.WriteString(" -> ?")
	case o.refused && o.found && o.rev != 0:
		fmt.Fprintf(&b, " -> 412 @%d", o.rev)
	case o.refused && o.found:
		b.WriteString(" -> 412")
	case o.refused:
		b.WriteString(" -> 412 (absent)")
	case o.rev != 0:
		fmt.Fprintf(&b, " -> @%d", o.rev)
	}
	return b.String()
}

func (s state) String() string {
	rev := fmt.Sprintf("@%d", s.rev)
	if !s.exact {
		rev = fmt.Sprintf("@>=%d", s.rev)
	}
	if !s.found {
		return "(none) " + rev
	}
	ttl := ""
	if s.ttl != 0 {
		ttl = fmt.Sprintf(" ttl of #%d", s.ttl)
	}
	return fmt.Sprintf("%q %s v%d%s", s.value, rev, s.version, ttl)
}

// store is the state of a partition's keys: the keys not absent, sorted.
// It is never modified, only replaced.
type store []entry

type entry struct {
	key string
	st  state
}

func (s store) get(key string) state {
	i := sort.Search(len(s), func(i int) bool { return s[i].key >= key })
	if i < len(s) && s[i].key == key {
		return s[i].st
	}
	return absent
}

// with returns s with key in state st.
func (s store) with(key string, st state) store {
	i := sort.Search(len(s), func(i int) bool { return s[i].key >= key })
	n := make(store, 0, len(s)+1)
	n = append(n, s[:i]...)
	if st != absent {
		n = append(n, entry{key, st})
	}
	if i < len(s) && s[i].key == key {
		i++
	}
	return append(n, s[i:]...)
}

// update returns s with key's state refined from old to n: a revision
// learnt is also that of the other keys the same write wrote.
func (s store) update(key string, old, n state) store {
	s = s.with(key, n)
	if old.sym != 0 && !old.exact && n.exact {
		s = s.learn(old.sym, n.rev)
	}
	if old.createSym != 0 && !old.createExact && n.createExact {
		s = s.learn(old.createSym, n.create)
	}
	return s
}

// learn returns s knowing that the revision named sym is rev.
func (s store) learn(sym int, rev uint64) store {
	var n store
	for k, e := range s {
		st := e.st
		if st.sym == sym && !st.exact {
			st.rev, st.exact, st.sym = rev, true, 0
		}
		if st.createSym == sym && !st.createExact {
			st.create, st.createExact, st.createSym = rev, true, 0
		}
		if st != e.st {
			if n == nil {
				n = append(store(nil), s...)
			}
			n[k].st = st
		}
	}
	if n == nil {
		return s
	}
	return n
}

// maxRev is the highest revision (or lower bound of one) of s's keys.
func (s store) maxRev() uint64 {
	var m uint64
	for _, e := range s {
		m = max(m, e.st.rev)
	}
	return m
}

func (s store) String() string {
	if len(s) == 0 {
		return "(empty)"
	}
	var parts []string
	for _, e := range s {
		parts = append(parts, e.key+"="+e.st.String())
	}
	return strings.Join(parts, ", ")
}

// next are the states an operation may leave s in (none: it cannot take
// effect in s).
func next(s store, i input, o output) []store {
	if i.kind == Txn {
		return stepTxn(s, i, o)
	}
	old := s.get(i.key)
	ok, st := step(old, i, o)
	if !ok {
		return nil
	}
	if i.kind == Get || o.refused {
		return []store{s.update(i.key, old, st)}
	}
	return []store{s.with(i.key, st)}
}

// Model is the model of the store, for porcupine: nondeterministic (a
// transaction of unknown outcome may have run either branch), made
// deterministic by porcupine's power-set construction.
var Model = (&porcupine.NondeterministicModel{
	Partition: partition,
	Init:      func() []any { return []any{store(nil)} },
	Step: func(st, in, out any) []any {
		var outs []any
		for _, s := range next(st.(store), in.(input), out.(output)) {
			outs = append(outs, s)
		}
		return outs
	},
	Equal: func(a, b any) bool {
		x, y := a.(store), b.(store)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	},
	Hash: func(st any) uint64 {
		h := fnv.New64a()
		for _, e := range st.(store) {
			fmt.Fprintf(h, "%s\x00%s\x00%+v\x00", e.key, e.st.value, e.st)
		}
		return h.Sum64()
	},
	DescribeOperation: func(in, out any) string {
		o := out.(output)
		return describe(in.(input), o, o.unknown)
	},
	DescribeState: func(st any) string { return st.(store).String() },
}).ToModel()

// partition splits a history by key, keeping together the keys a
// transaction touches (and so every operation on them).
func partition(history []porcupine.Operation) [][]porcupine.Operation {
	parent := map[string]string{}
	var find func(k string) string
	find = func(k string) string {
		p, ok := parent[k]
		if !ok {
			parent[k] = k
			return k
		}
		if p == k {
			return k
		}
		r := find(p)
		parent[k] = r
		return r
	}
	for _, op := range history {
		ks := op.Input.(input).keys()
		r := find(ks[0])
		for _, k := range ks[1:] {
			if o := find(k); o != r {
				if o < r {
					r, o = o, r
				}
				parent[o] = r
			}
		}
	}
	byRoot := map[string][]porcupine.Operation{}
	var roots []string
	for _, op := range history {
		r := find(op.Input.(input).keys()[0])
		if _, ok := byRoot[r]; !ok {
			roots = append(roots, r)
		}
		byRoot[r] = append(byRoot[r], op)
	}
	sort.Strings(roots)
	out := make([][]porcupine.Operation, 0, len(roots))
	for _, r := range roots {
		out = append(out, byRoot[r])
	}
	return out
}

// partKeys are the keys of a partition's operations, sorted.
func partKeys(part []porcupine.Operation) []string {
	seen := map[string]bool{}
	var ks []string
	for _, op := range part {
		for _, k := range op.Input.(input).keys() {
			if !seen[k] {
				seen[k] = true
				ks = append(ks, k)
			}
		}
	}
	sort.Strings(ks)
	return ks
}

// Operations converts a history to porcupine's form, with the expiries
// the system may do (see expiries).
func Operations(history []Op) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(history))
	for n, op := range history {
		ops = append(ops, porcupine.Operation{
			ClientId: op.Client,
			Input:    toInput(op, n+1),
			Call:     op.Call,
			Output:   toOutput(op),
			Return:   op.Return,
		})
	}
	return append(ops, expiries(history)...)
}
