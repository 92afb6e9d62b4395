package lincheck

// Transactions (POST /v1/txn): compares, evaluated at one point of the log,
// pick a branch of operations that runs there atomically; its writes share
// one revision, the store's next, and its gets see the writes before them.

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// CmpTarget is what a compare tests.
type CmpTarget int

const (
	CmpModRevision CmpTarget = iota
	CmpCreateRevision
	CmpVersion
	CmpValue
	CmpExists
)

// Compare is one of a transaction's compares: an equality. A missing key
// has modRevision, createRevision and version 0, equals no value, and does
// not exist.
type Compare struct {
	Key    string
	Target CmpTarget
	Num    uint64 // for CmpModRevision, CmpCreateRevision, CmpVersion
	Value  string // for CmpValue
	Exists bool   // for CmpExists
}

func (c Compare) String() string {
	switch c.Target {
	case CmpModRevision:
		return fmt.Sprintf("%s.mod==%d", c.Key, c.Num)
	case CmpCreateRevision:
		return fmt.Sprintf("%s.create==%d", c.Key, c.Num)
	case CmpVersion:
		return fmt.Sprintf("%s.version==%d", c.Key, c.Num)
	case CmpValue:
		return fmt.Sprintf("%s==%q", c.Key, c.Value)
	}
	if c.Exists {
		return c.Key + " exists"
	}
	return c.Key + " absent"
}

// TxnOp is one operation of a branch.
type TxnOp struct {
	Kind  Kind // Put, Delete or Get
	Key   string
	Value string        // for a put
	TTL   time.Duration // for a put; 0: none
}

func (o TxnOp) String() string {
	switch o.Kind {
	case Put:
		if o.TTL > 0 {
			return fmt.Sprintf("put %s=%q ttl %v", o.Key, o.Value, o.TTL)
		}
		return fmt.Sprintf("put %s=%q", o.Key, o.Value)
	case Delete:
		return "delete " + o.Key
	}
	return "get " + o.Key
}

// TxnResult is the answer for one operation of the branch that ran.
type TxnResult struct {
	Kind Kind
	Key  string
	// Found: for a get, whether the key existed; for a delete, whether it
	// deleted something.
	Found bool
	Value string // a get's
	// A put's modRevision and version; a get's modRevision, createRevision
	// and version (when found).
	ModRevision, CreateRevision, Version uint64
}

func (r TxnResult) String() string {
	switch {
	case r.Kind == Put:
		return fmt.Sprintf("@%d v%d", r.ModRevision, r.Version)
	case r.Kind == Delete:
		return fmt.Sprintf("deleted %v", r.Found)
	case !r.Found:
		return "not found"
	}
	return fmt.Sprintf("%q @%d c%d v%d", r.Value, r.ModRevision, r.CreateRevision, r.Version)
}

// TxnInfo is a transaction's request and, when its outcome is known, its
// answer.
type TxnInfo struct {
	Compare          []Compare
	Success, Failure []TxnOp
	// Succeeded: the compares held and the success branch ran.
	Succeeded bool
	// Results are parallel to the branch that ran; nil if not known (the
	// answer said resultsUnknown, or the outcome is unknown).
	Results []TxnResult
}

// keys are the keys t touches, sorted.
func (t *TxnInfo) keys() []string {
	seen := map[string]bool{}
	var ks []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			ks = append(ks, k)
		}
	}
	for _, c := range t.Compare {
		add(c.Key)
	}
	for _, o := range t.Success {
		add(o.Key)
	}
	for _, o := range t.Failure {
		add(o.Key)
	}
	sort.Strings(ks)
	return ks
}

// branch is the branch that ran.
func (t *TxnInfo) branch() []TxnOp {
	if t.Succeeded {
		return t.Success
	}
	return t.Failure
}

// SurelyWrote tells whether the answer shows that the transaction wrote
// (so that its revision is its own): the branch that ran has a put, or a
// delete that deleted something.
func (t *TxnInfo) SurelyWrote() bool {
	for i, o := range t.branch() {
		if o.Kind == Put || (o.Kind == Delete && t.Results != nil && i < len(t.Results) && t.Results[i].Found) {
			return true
		}
	}
	return false
}

// Effect is a write an operation made, or may have made, on one key.
type Effect struct {
	Key   string
	Put   bool // else a delete
	Value string
	TTL   time.Duration
	// Sure: the operation was acknowledged and this write is in the branch
	// that ran (a delete may still have found nothing to delete).
	Sure bool
}

// Effects are the writes op made or may have made: none for a get or a
// refused write; for a transaction of unknown outcome, those of both
// branches.
func (op Op) Effects() []Effect {
	switch {
	case op.Kind == Get || op.Refused:
		return nil
	case op.Kind != Txn:
		return []Effect{{Key: op.Key, Put: op.Kind == Put, Value: op.Value, TTL: op.TTL, Sure: !op.Unknown()}}
	}
	var es []Effect
	add := func(ops []TxnOp, sure bool) {
		for _, o := range ops {
			if o.Kind != Get {
				es = append(es, Effect{Key: o.Key, Put: o.Kind == Put, Value: o.Value, TTL: o.TTL, Sure: sure})
			}
		}
	}
	if op.Unknown() {
		add(op.Txn.Success, false)
		add(op.Txn.Failure, false)
	} else {
		add(op.Txn.branch(), true)
	}
	return es
}

// compareHolds tells whether c holds in s.
func compareHolds(s state, c Compare) tri {
	switch c.Target {
	case CmpExists:
		return boolTri(s.found == c.Exists)
	case CmpValue:
		return boolTri(s.found && s.value == c.Value)
	case CmpVersion:
		return boolTri(s.version == c.Num) // 0 when absent
	}
	if !s.found {
		return boolTri(c.Num == 0)
	}
	if c.Target == CmpModRevision {
		return revIs(s.rev, s.exact, c.Num)
	}
	return revIs(s.create, s.createExact, c.Num)
}

// stepTxn is the model's transition for a transaction: the states it may
// leave s in.
func stepTxn(s store, i input, o output) []store {
	t := i.txn
	h := yes
	for _, c := range t.Compare {
		h = h.and(compareHolds(s.get(c.Key), c))
	}
	if o.unknown {
		// Either branch, as the compares allow (or none at all: then
		// the checker places it after everything else).
		var outs []store
		if h != no {
			outs = append(outs, runBlind(refineCompares(s, t.Compare), t.Success, i.id))
		}
		if h != yes {
			outs = append(outs, runBlind(s, t.Failure, i.id))
		}
		return outs
	}
	if (t.Succeeded && h == no) || (!t.Succeeded && h == yes) {
		return nil
	}
	if t.Succeeded {
		s = refineCompares(s, t.Compare)
	}
	if n, ok := run(s, t.branch(), t.Results, o.rev, i.id); ok {
		return []store{n}
	}
	return nil
}

// refineCompares returns s knowing that the compares held.
func refineCompares(s store, cs []Compare) store {
	for _, c := range cs {
		old := s.get(c.Key)
		st := old
		switch c.Target {
		case CmpModRevision:
			st = st.refine(c.Num)
		case CmpCreateRevision:
			st = st.refineCreate(c.Num)
		}
		s = s.update(c.Key, old, st)
	}
	return s
}

// runBlind runs a branch of a transaction whose outcome is unknown: its
// writes take a revision above every one known.
func runBlind(s store, ops []TxnOp, id int) store {
	lo := s.maxRev()
	for _, op := range ops {
		st := s.get(op.Key)
		switch op.Kind {
		case Put:
			s = s.with(op.Key, st.written(op.Value, true, 0, lo, ttlToken(op, id), id))
		case Delete:
			if st.found {
				s = s.with(op.Key, st.written("", false, 0, lo, 0, id))
			}
		}
	}
	return s
}

func ttlToken(op TxnOp, id int) int {
	if op.TTL > 0 {
		return id
	}
	return 0
}

// run runs the branch that ran with the answer's results (nil: unknown)
// and revision rev (0: not recorded), and tells whether the answer could
// be this one.
func run(s store, ops []TxnOp, results []TxnResult, rev uint64, id int) (store, bool) {
	if results != nil && len(results) != len(ops) {
		return s, false
	}
	// Did it write? A put always does; a delete if the key exists when it
	// runs.
	wrote := false
	{
		w := s
		for _, op := range ops {
			switch st := w.get(op.Key); {
			case op.Kind == Put:
				wrote = true
				w = w.with(op.Key, state{found: true})
			case op.Kind == Delete && st.found:
				wrote = true
				w = w.with(op.Key, state{rev: 1})
			}
		}
	}
	lo := s.maxRev()
	if rev != 0 {
		// The store's revision after it: its own (above every earlier
		// one) if it wrote, else at least every earlier one.
		if (wrote && rev <= lo) || (!wrote && rev < lo) {
			return s, false
		}
	}
	r := uint64(0)
	if wrote {
		r = rev
		for k := 0; r == 0 && k < len(results); k++ {
			if ops[k].Kind == Put {
				r = results[k].ModRevision // the revision was not recorded, but the results show it
			}
		}
		if r != 0 && r <= lo {
			return s, false
		}
	}
	for k, op := range ops {
		st := s.get(op.Key)
		var res *TxnResult
		if results != nil {
			res = &results[k]
			if res.Kind != op.Kind || res.Key != op.Key {
				return s, false
			}
		}
		switch op.Kind {
		case Put:
			n := st.written(op.Value, true, r, lo, ttlToken(op, id), id)
			if res != nil && (res.ModRevision != r || res.Version != n.version) {
				return s, false
			}
			s = s.with(op.Key, n)
		case Delete:
			if res != nil && res.Found != st.found {
				return s, false
			}
			if st.found {
				s = s.with(op.Key, st.written("", false, r, lo, 0, id))
			}
		case Get:
			if res == nil {
				continue
			}
			if res.Found != st.found {
				return s, false
			}
			if !st.found {
				continue
			}
			if res.Value != st.value || !st.seen(res.ModRevision) || !st.seenCreate(res.CreateRevision) || (res.Version != 0 && res.Version != st.version) {
				return s, false
			}
			s = s.update(op.Key, st, st.refine(res.ModRevision).refineCreate(res.CreateRevision))
		}
	}
	return s, true
}

func describeTxn(i input, o output, unknown bool) string {
	t := i.txn
	var b strings.Builder
	b.WriteString("txn(")
	for k, c := range t.Compare {
		if k > 0 {
			b.WriteString(" && ")
		}
		b.WriteString(c.String())
	}
	b.WriteString(") then [")
	for k, op := range t.Success {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(op.String())
	}
	b.WriteString("] else [")
	for k, op := range t.Failure {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(op.String())
	}
	b.WriteString("]")
	switch {
	case unknown:
		b.WriteString(" -> ?")
		return b.String()
	case t.Succeeded:
		b.WriteString(" -> then")
	default:
		b.WriteString(" -> else")
	}
	if o.rev != 0 {
		fmt.Fprintf(&b, " @%d", o.rev)
	}
	if t.Results == nil {
		b.WriteString(" (results unknown)")
		return b.String()
	}
	b.WriteString(" [")
	for k, r := range t.Results {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.String())
	}
	b.WriteString("]")
	return b.String()
}
