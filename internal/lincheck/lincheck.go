// Package lincheck records the history of a key-value workload and checks it
// for linearizability with porcupine.
//
// Every operation carries the client that issued it, its kind (put, get,
// delete), its key, the value written or read, and call and return times from
// a monotonic clock. A write whose outcome is unknown (it failed or timed out:
// it may still take effect later) returns at Infinity, so the checker may
// place it anywhere after its call. A failed read tells nothing and is not
// recorded.
package lincheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
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
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", int(k))
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
	// Found is false for a get that found no value (404).
	Found  bool
	Call   int64 // nanoseconds on the recorder's clock
	Return int64 // Infinity for a write whose outcome is unknown
}

// Unknown reports whether op is a write whose outcome is unknown.
func (op Op) Unknown() bool { return op.Return == Infinity }

func (op Op) String() string {
	ret := "?"
	if !op.Unknown() {
		ret = fmt.Sprint(op.Return)
	}
	switch op.Kind {
	case Get:
		if !op.Found {
			return fmt.Sprintf("c%d get(%s) -> not found [%d,%s]", op.Client, op.Key, op.Call, ret)
		}
		return fmt.Sprintf("c%d get(%s) -> %q [%d,%s]", op.Client, op.Key, op.Value, op.Call, ret)
	case Put:
		return fmt.Sprintf("c%d put(%s, %q) [%d,%s]", op.Client, op.Key, op.Value, op.Call, ret)
	}
	return fmt.Sprintf("c%d delete(%s) [%d,%s]", op.Client, op.Key, op.Call, ret)
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

// History returns a copy of the operations recorded so far, in call order.
func (r *Recorder) History() []Op {
	r.mu.Lock()
	h := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(h, func(i, j int) bool { return h[i].Call < h[j].Call })
	return h
}

// input and output are what the model sees of an operation.
type input struct {
	kind       Kind
	key, value string
}

type output struct {
	value string
	found bool
}

// state is one key's value; found is false when the key has none.
type state struct {
	value string
	found bool
}

// Model is a key-value store partitioned by key, for porcupine.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(input).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return state{} },
	Step: func(st, in, out any) (bool, any) {
		s, i := st.(state), in.(input)
		switch i.kind {
		case Put:
			return true, state{value: i.value, found: true}
		case Delete:
			return true, state{}
		default:
			o := out.(output)
			return o == output(s), s
		}
	},
	DescribeOperation: func(in, out any) string {
		i := in.(input)
		switch i.kind {
		case Put:
			return fmt.Sprintf("put(%s, %q)", i.key, i.value)
		case Delete:
			return fmt.Sprintf("delete(%s)", i.key)
		}
		o := out.(output)
		if !o.found {
			return fmt.Sprintf("get(%s) -> not found", i.key)
		}
		return fmt.Sprintf("get(%s) -> %q", i.key, o.value)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		if !s.found {
			return "(none)"
		}
		return fmt.Sprintf("%q", s.value)
	},
}

// Operations converts a history to porcupine's form.
func Operations(history []Op) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(history))
	for _, op := range history {
		ops = append(ops, porcupine.Operation{
			ClientId: op.Client,
			Input:    input{kind: op.Kind, key: op.Key, value: op.Value},
			Call:     op.Call,
			Output:   output{value: op.Value, found: op.Found},
			Return:   op.Return,
		})
	}
	return ops
}

// Result is the verdict of Check.
type Result struct {
	Verdict porcupine.CheckResult // Ok, Illegal, or Unknown (timed out)
	Ops     int
	// HTML is the path of the visualization, written when Verdict is
	// Illegal and a directory was given.
	HTML string
}

// Check checks history for linearizability, giving up after timeout (0: no
// limit). If the history is not linearizable and dir is not empty, it writes
// porcupine's visualization to dir/name.html and names it in the result.
func Check(history []Op, timeout time.Duration, dir, name string) (Result, error) {
	ops := Operations(history)
	verdict, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	res := Result{Verdict: verdict, Ops: len(ops)}
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
