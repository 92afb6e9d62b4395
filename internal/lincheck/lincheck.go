// Package lincheck records the history of a key-value workload and checks it
// for linearizability with porcupine.
//
// Every operation carries the client that issued it, its kind (put, get,
// delete), its key, the value written or read, and call and return times from
// a monotonic clock. A write whose outcome is unknown (it failed or timed out:
// it may still take effect later) returns at Infinity, so the checker may
// place it anywhere after its call. A failed read tells nothing and is not
// recorded.
//
// Revisions (issue #13): an operation may also carry the revision its answer
// showed (the ETag of a put or a get, the X-Revision of a delete), a
// condition (If-Match "<rev>", If-Match *, If-None-Match *) and whether the
// member refused it for its condition (412). The model keeps, per key,
// whether it exists, its value and its modRevision; after a write whose
// revision is unknown (not recorded, or the write's outcome is unknown) it
// keeps only a lower bound of the modRevision, which a later answer that
// shows it refines. Revision 0 means "not recorded": histories without
// revisions are checked exactly as before.
//
// Issue #14 adds transactions (one operation over several keys, txn.go) and
// keys that expire (a put with a TTL, expiry.go). The model (model.go) is
// partitioned by key, except that the keys one transaction touches share a
// partition; the model is nondeterministic, for transactions of unknown
// outcome whose compares may or may not have held.
package lincheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does.
type Kind int

const (
	Put Kind = iota
	Get
	Delete
	Txn    // a transaction: Op.Txn
	expire // an expiry the system may do (made up by the checker, expiry.go)
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	case Delete:
		return "delete"
	case Txn:
		return "txn"
	case expire:
		return "expire"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// CondKind is the kind of a write's condition.
type CondKind int

const (
	Always      CondKind = iota // no condition
	IfMatch                     // If-Match: "<Rev>": the key exists and its modRevision is Rev
	IfMatchAny                  // If-Match: *: the key exists
	IfNoneMatch                 // If-None-Match: *: the key does not exist
)

// Cond is a write's condition.
type Cond struct {
	Kind CondKind
	Rev  uint64 // for IfMatch
}

func (c Cond) String() string {
	switch c.Kind {
	case IfMatch:
		return fmt.Sprintf(" if-match %d", c.Rev)
	case IfMatchAny:
		return " if-match *"
	case IfNoneMatch:
		return " if-none-match *"
	}
	return ""
}

// Infinity is the return time of a write whose outcome is unknown.
const Infinity = int64(math.MaxInt64)

// Op is one operation of a history.
type Op struct {
	Client int
	Kind   Kind
	Key    string
	// Value is what a put wrote or what a get read (when Found).
	Value string
	// Found is false for a get that found no value (404). For a write
	// refused for its condition (Refused), it tells whether the answer
	// showed the key as present (an ETag).
	Found bool
	// Revision is what the answer showed, 0 if not recorded: for a put,
	// the new modRevision (its ETag); for a get that found the key, its
	// modRevision (ETag); for a delete, the X-Revision of the answer (the
	// deletion's revision if it deleted the key, else the store's
	// revision); for a refused write, the key's modRevision from the 412's
	// ETag.
	Revision uint64
	// Cond is a write's condition.
	Cond Cond
	// Refused: the member answered 412, the condition did not hold when
	// the write was applied, and nothing was changed.
	Refused bool
	// TTL is a put's time to live (0: none). The checker lets the system
	// delete the key at any time from TTL after the put's call on, as long
	// as the key still holds what the put wrote (its modRevision).
	TTL time.Duration
	// Txn is a transaction's request and answer (Kind Txn); Revision is
	// then the answer's revision.
	Txn *TxnInfo
	// Node is the member that answered, if recorded (not checked; for
	// reports).
	Node   int
	Call   int64 // nanoseconds on the recorder's clock
	Return int64 // Infinity for a write whose outcome is unknown
}

// Unknown reports whether op is a write whose outcome is unknown.
func (op Op) Unknown() bool { return op.Return == Infinity }

// Wrote reports whether op is a write that may have changed the store:
// acknowledged or of unknown outcome, not refused (for a transaction: one
// that has or may have a write in the branch that ran).
func (op Op) Wrote() bool {
	if op.Kind == Txn {
		return len(op.Effects()) > 0
	}
	return op.Kind != Get && !op.Refused
}

func (op Op) String() string {
	ret := "?"
	if !op.Unknown() {
		ret = fmt.Sprint(op.Return)
	}
	node := ""
	if op.Node != 0 {
		node = fmt.Sprintf(" on node %d", op.Node)
	}
	return fmt.Sprintf("c%d %s [%d,%s]%s", op.Client, describe(toInput(op, 0), toOutput(op), op.Unknown()), op.Call, ret, node)
}

// Recorder collects a history. It is safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the current time on the recorder's monotonic clock.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

func (r *Recorder) add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Put records a put of value under key, called at call. If ok, it returns
// now; otherwise its outcome is unknown.
func (r *Recorder) Put(client int, key, value string, call int64, ok bool) {
	r.add(Op{Client: client, Kind: Put, Key: key, Value: value, Found: true, Call: call, Return: r.ret(ok)})
}

// Delete records a delete of key, called at call, like Put.
func (r *Recorder) Delete(client int, key string, call int64, ok bool) {
	r.add(Op{Client: client, Kind: Delete, Key: key, Call: call, Return: r.ret(ok)})
}

// Get records a successful read of key called at call and returning now:
// value if found, nothing otherwise.
func (r *Recorder) Get(client int, key, value string, found bool, call int64) {
	if !found {
		value = ""
	}
	r.add(Op{Client: client, Kind: Get, Key: key, Value: value, Found: found, Call: call, Return: r.Now()})
}

func (r *Recorder) ret(ok bool) int64 {
	if ok {
		return r.Now()
	}
	return Infinity
}

// Add records op as it is.
func (r *Recorder) Add(op Op) { r.add(op) }

// Finish records op as returning now if known, or as a write of unknown
// outcome (returning at Infinity) otherwise.
func (r *Recorder) Finish(op Op, known bool) {
	op.Return = r.ret(known)
	if op.Kind == Get && !op.Found {
		op.Value = ""
	}
	r.add(op)
}

// History returns a copy of the operations recorded so far, in call order.
func (r *Recorder) History() []Op {
	r.mu.Lock()
	h := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(h, func(i, j int) bool { return h[i].Call < h[j].Call })
	return h
}

// Result is the verdict of Check.
type Result struct {
	Verdict porcupine.CheckResult // Ok, Illegal, or Unknown (timed out)
	Ops     int
	// HTML is the path of the visualization, written when Verdict is
	// Illegal and a directory was given.
	HTML string
	// Keys are the keys whose operations alone are not linearizable, when
	// Verdict is Illegal (for a partition of several keys, which
	// transactions tie together, "a+b+c").
	Keys []string
}

// Check checks history for linearizability, giving up after timeout (0: no
// limit). If the history is not linearizable and dir is not empty, it writes
// porcupine's visualization to dir/name.html and names it in the result.
func Check(history []Op, timeout time.Duration, dir, name string) (Result, error) {
	ops := Operations(history)
	verdict, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	res := Result{Verdict: verdict, Ops: len(ops)}
	if verdict == porcupine.Illegal {
		for _, part := range Model.Partition(ops) {
			if porcupine.CheckOperationsTimeout(Model, part, 10*time.Second) == porcupine.Illegal {
				res.Keys = append(res.Keys, strings.Join(partKeys(part), "+"))
			}
		}
	}
	if verdict != porcupine.Illegal || dir == "" {
		return res, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	res.HTML = filepath.Join(dir, name+".html")
	if err := porcupine.VisualizePath(Model, info, res.HTML); err != nil {
		return res, fmt.Errorf("writing %s: %v", res.HTML, err)
	}
	return res, nil
}

// CheckRevisions checks what porcupine cannot see across keys: the store's
// revision is one counter for every key, so two writes that took effect
// never share a revision, and a write called after another returned has a
// higher one. It looks at acknowledged puts and conditional deletes (an
// unconditional delete's X-Revision is not its own when the key was
// missing) whose revision was recorded, and at acknowledged transactions
// that surely wrote (all of whose writes share their one revision).
func CheckRevisions(history []Op) error {
	var ws []Op
	for _, op := range history {
		if op.Unknown() || op.Refused || op.Revision == 0 {
			continue
		}
		if op.Kind == Put || (op.Kind == Delete && op.Cond.Kind != Always) || (op.Kind == Txn && op.Txn.SurelyWrote()) {
			ws = append(ws, op)
		}
	}
	var errs []string
	byRev := map[uint64]Op{}
	for _, w := range ws {
		if o, ok := byRev[w.Revision]; ok {
			errs = append(errs, fmt.Sprintf("revision %d twice: %v and %v", w.Revision, o, w))
			continue
		}
		byRev[w.Revision] = w
	}
	// In call order, the highest revision of the writes that returned
	// before each call.
	byRet := append([]Op(nil), ws...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].Return < byRet[j].Return })
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Call < ws[j].Call })
	var top Op
	j := 0
	for _, w := range ws {
		for ; j < len(byRet) && byRet[j].Return < w.Call; j++ {
			if byRet[j].Revision > top.Revision {
				top = byRet[j]
			}
		}
		if top.Revision != 0 && w.Revision <= top.Revision {
			errs = append(errs, fmt.Sprintf("%v has a revision not above that of %v, which returned before it was called", w, top))
		}
	}
	if len(errs) > 0 {
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Sprintf("and %d more", len(errs)-10))
		}
		return fmt.Errorf("revisions: %s", strings.Join(errs, "; "))
	}
	return nil
}
