package lincheck

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// Shorthands for histories with transactions, on keys a and b (put, get,
// ... of revision_test.go are on key k).
func on(key string, op Op) Op { op.Key = key; return op }

func mod(k string, n uint64) Compare     { return Compare{Key: k, Target: CmpModRevision, Num: n} }
func created(k string, n uint64) Compare { return Compare{Key: k, Target: CmpCreateRevision, Num: n} }
func version(k string, n uint64) Compare { return Compare{Key: k, Target: CmpVersion, Num: n} }
func valueIs(k, v string) Compare        { return Compare{Key: k, Target: CmpValue, Value: v} }
func exists(k string, e bool) Compare    { return Compare{Key: k, Target: CmpExists, Exists: e} }

func tput(k, v string) TxnOp { return TxnOp{Kind: Put, Key: k, Value: v} }
func tdel(k string) TxnOp    { return TxnOp{Kind: Delete, Key: k} }
func tget(k string) TxnOp    { return TxnOp{Kind: Get, Key: k} }

func rput(k string, rev, ver uint64) TxnResult {
	return TxnResult{Kind: Put, Key: k, ModRevision: rev, Version: ver}
}
func rdel(k string, deleted bool) TxnResult { return TxnResult{Kind: Delete, Key: k, Found: deleted} }
func rget(k, v string, mod, create, ver uint64) TxnResult {
	return TxnResult{Kind: Get, Key: k, Found: true, Value: v, ModRevision: mod, CreateRevision: create, Version: ver}
}
func rmiss(k string) TxnResult { return TxnResult{Kind: Get, Key: k} }

// txn is an acknowledged transaction (results nil: unknown) or, with ret
// Infinity, one of unknown outcome.
func txn(c int, cmp []Compare, then, els []TxnOp, succeeded bool, rev uint64, results []TxnResult, call, ret int64) Op {
	return Op{Client: c, Kind: Txn, Revision: rev, Call: call, Return: ret,
		Txn: &TxnInfo{Compare: cmp, Success: then, Failure: els, Succeeded: succeeded, Results: results}}
}

func cmps(cs ...Compare) []Compare { return cs }
func ops(os ...TxnOp) []TxnOp      { return os }
func res(rs ...TxnResult) []TxnResult {
	if rs == nil {
		return []TxnResult{}
	}
	return rs
}

func TestTxnHistoriesThatHoldAreLinearizable(t *testing.T) {
	for name, h := range map[string][]Op{
		"a compare-and-swap over two keys, whose writes share a revision, read back": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3), exists("b", false)), ops(tput("b", "x"), tdel("a"), tget("b")), ops(tget("a")), true, 4,
				res(rput("b", 4, 1), rdel("a", true), rget("b", "x", 4, 4, 1)), 11, 20),
			on("a", get(2, "", 0, 21, 22)), on("b", get(2, "x", 4, 23, 24)),
		},
		"compares that fail run the other branch; a read-only answer shows the store's revision": {
			on("a", put(0, "1", 3, 0, 10)), on("b", put(0, "2", 5, 11, 12)),
			txn(1, cmps(mod("a", 2)), ops(tput("b", "x")), ops(tget("a"), tget("b")), false, 5,
				res(rget("a", "1", 3, 3, 1), rget("b", "2", 5, 5, 1)), 13, 20),
		},
		"value, version and createRevision compares": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 6, 11, 12)),
			txn(1, cmps(valueIs("a", "2"), version("a", 2), created("a", 3), version("b", 0), created("b", 0)), ops(tput("a", "3")), nil, true, 7,
				res(rput("a", 7, 3)), 13, 20),
			on("a", get(2, "3", 7, 21, 22)),
		},
		"a get sees the writes before it in the transaction": {
			txn(1, nil, ops(tget("a"), tput("a", "x"), tget("a"), tdel("a"), tget("a")), nil, true, 2,
				res(rmiss("a"), rput("a", 2, 1), rget("a", "x", 2, 2, 1), rdel("a", true), rmiss("a")), 0, 10),
		},
		"a transaction deleting only missing keys writes nothing": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tdel("b")), nil, true, 3, res(rdel("b", false)), 11, 20),
			on("b", put(0, "2", 4, 21, 22)),
		},
		"concurrent transactions in either order": {
			txn(1, cmps(exists("a", false)), ops(tput("a", "x"), tput("b", "x")), ops(tget("a")), false, 2, res(rget("a", "y", 2, 2, 1)), 0, 10),
			txn(2, cmps(exists("a", false)), ops(tput("a", "y"), tput("b", "y")), ops(tget("a")), true, 2, res(rput("a", 2, 1), rput("b", 2, 1)), 0, 10),
			on("b", get(3, "y", 2, 11, 12)),
		},
		"a transaction of unknown outcome: the failure branch ran": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 0, 11, Infinity)),
			txn(1, cmps(mod("a", 3)), ops(tput("b", "s")), ops(tput("b", "f")), false, 0, nil, 20, Infinity),
			on("b", get(2, "f", 0, 30, 31)), on("a", get(2, "2", 0, 32, 33)),
		},
		"a transaction of unknown outcome whose compare may have held: either branch": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 0, 11, Infinity)),
			txn(1, cmps(mod("a", 5)), ops(tput("b", "s")), ops(tput("b", "f")), false, 0, nil, 20, Infinity),
			on("a", get(2, "2", 5, 30, 31)), on("b", get(2, "s", 0, 32, 33)),
		},
		"the same, the other branch": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 0, 11, Infinity)),
			txn(1, cmps(mod("a", 5)), ops(tput("b", "s")), ops(tput("b", "f")), false, 0, nil, 20, Infinity),
			on("a", get(2, "2", 6, 30, 31)), on("b", get(2, "f", 0, 32, 33)),
		},
		"a transaction of unknown outcome: its keys seen at one revision": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 0, nil, 0, Infinity),
			txn(2, cmps(mod("a", 7)), ops(tget("b")), nil, true, 7, res(rget("b", "1", 7, 7, 1)), 20, 21),
			on("b", get(2, "1", 7, 22, 23)),
		},
		"a transaction of unknown outcome that never took effect": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tput("a", "x"), tput("b", "x")), nil, false, 0, nil, 11, Infinity),
			on("a", get(2, "1", 3, 20, 21)), on("b", get(2, "", 0, 22, 23)),
		},
		"an acknowledged transaction whose results are unknown": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3)), ops(tput("a", "2"), tget("b")), ops(tget("a")), true, 4, nil, 11, 20),
			on("a", get(2, "2", 4, 21, 22)),
		},
		"transactions and single-key writes mixed, with conditions": {
			on("a", cput(0, "1", ifNoneMatch, 2, 0, 10)),
			txn(1, cmps(valueIs("a", "1")), ops(tput("a", "2"), tput("b", "2")), nil, true, 3, res(rput("a", 3, 2), rput("b", 3, 1)), 11, 20),
			on("b", cput(0, "3", ifMatch(3), 4, 21, 30)), on("a", refused(0, Put, "x", ifMatch(2), 3, 31, 32)),
			txn(1, cmps(mod("b", 4), mod("a", 3)), ops(tdel("a"), tdel("b")), nil, true, 5, res(rdel("a", true), rdel("b", true)), 33, 40),
			on("a", get(2, "", 0, 41, 42)),
		},
	} {
		t.Run(name, func(t *testing.T) {
			if v := verdict(t, h); v != porcupine.Ok {
				t.Fatalf("got %v, want Ok: %v", v, h)
			}
			if err := CheckRevisions(h); err != nil {
				t.Fatalf("CheckRevisions: %v", err)
			}
		})
	}
}

func TestTxnChecksCatchBadHistories(t *testing.T) {
	for name, h := range map[string][]Op{
		"a transaction succeeding although its compare fails": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 2)), ops(tput("b", "x")), nil, true, 4, res(rput("b", 4, 1)), 11, 20),
		},
		"a transaction failing although its compares hold": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3), exists("b", false)), ops(tput("b", "x")), ops(tget("a")), false, 3, res(rget("a", "1", 3, 3, 1)), 11, 20),
		},
		"a value compare on a missing key holding": {
			txn(1, cmps(valueIs("a", "")), ops(tput("b", "x")), nil, true, 1, res(rput("b", 1, 1)), 0, 10),
		},
		"a version compare that does not count the puts": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 4, 11, 12)),
			txn(1, cmps(version("a", 1)), ops(tput("b", "x")), nil, true, 5, res(rput("b", 5, 1)), 13, 20),
		},
		"a createRevision compare holding on a key's modRevision": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 4, 11, 12)),
			txn(1, cmps(created("a", 4)), ops(tput("b", "x")), nil, true, 5, res(rput("b", 5, 1)), 13, 20),
		},
		"half a transaction seen: one key new, then the other old": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tput("a", "2"), tput("b", "2")), nil, true, 4, nil, 11, Infinity),
			on("b", get(2, "2", 4, 20, 21)), on("a", get(2, "1", 3, 22, 23)),
		},
		"the keys of one transaction at two revisions": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 0, nil, 0, 10),
			on("a", get(2, "1", 4, 20, 21)), on("b", get(2, "1", 5, 22, 23)),
		},
		"a transaction's revision not above an earlier write's": {
			on("a", put(0, "1", 5, 0, 10)),
			txn(1, cmps(exists("a", true)), ops(tput("b", "x")), nil, true, 5, res(rput("b", 5, 1)), 11, 20),
		},
		"the keys of one transaction of unknown outcome at two revisions": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 0, nil, 0, Infinity),
			on("a", get(2, "1", 4, 20, 21)), on("b", get(2, "1", 5, 22, 23)),
		},
		"a compare learning the revision of one key of a transaction of unknown outcome, a get showing another for the other": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 0, nil, 0, Infinity),
			txn(2, cmps(mod("a", 7)), ops(tget("b")), nil, true, 7, res(rget("b", "1", 8, 8, 1)), 20, 21),
		},
		"a read-only transaction answering a revision below the store's": {
			on("a", put(0, "1", 5, 0, 10)),
			txn(1, cmps(exists("a", false)), ops(tput("a", "x")), ops(tget("a")), false, 4, res(rget("a", "1", 5, 5, 1)), 11, 20),
		},
		"a put's result at another revision than the transaction's": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 4, res(rput("a", 4, 1), rput("b", 5, 1)), 0, 10),
		},
		"a put's result with the wrong version": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tput("a", "2")), nil, true, 4, res(rput("a", 4, 1)), 11, 20),
		},
		"a get that does not see the put before it in the transaction": {
			txn(1, nil, ops(tput("a", "x"), tget("a")), nil, true, 1, res(rput("a", 1, 1), rmiss("a")), 0, 10),
		},
		"a get that sees a stale value": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 4, 11, 12)),
			txn(1, nil, ops(tget("a")), nil, true, 4, res(rget("a", "1", 3, 3, 1)), 13, 20),
		},
		"a get that sees a value never written": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tget("a")), nil, true, 3, res(rget("a", "9", 3, 3, 1)), 11, 20),
		},
		"a get with the wrong version": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tget("a")), nil, true, 3, res(rget("a", "1", 3, 3, 2)), 11, 20),
		},
		"a get with the wrong createRevision": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 4, 11, 12)),
			txn(1, nil, ops(tget("a")), nil, true, 4, res(rget("a", "2", 4, 4, 2)), 13, 20),
		},
		"a delete reported as deleting nothing although the key exists": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, nil, ops(tdel("a")), nil, true, 3, res(rdel("a", false)), 11, 20),
		},
		"a delete reported as deleting a missing key": {
			txn(1, nil, ops(tdel("a")), nil, true, 1, res(rdel("a", true)), 0, 10),
		},
		"results not parallel to the branch": {
			txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 1, res(rput("a", 1, 1)), 0, 10),
		},
		"results of the other branch": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3)), ops(tget("b")), ops(tget("a")), true, 3, res(rget("a", "1", 3, 3, 1)), 11, 20),
		},
		"a transaction of unknown outcome: a branch its compare excludes": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3)), ops(tput("b", "s")), ops(tput("b", "f")), false, 0, nil, 11, Infinity),
			on("b", get(2, "f", 0, 30, 31)),
		},
		"a transaction of unknown outcome: the branch the later state excludes": {
			on("a", put(0, "1", 3, 0, 10)), on("a", put(0, "2", 0, 11, Infinity)),
			txn(1, cmps(mod("a", 5)), ops(tput("b", "s")), ops(tput("b", "f")), false, 0, nil, 20, Infinity),
			on("a", get(2, "2", 6, 30, 31)), on("b", get(2, "s", 0, 32, 33)),
		},
		"a transaction of unknown outcome taking effect twice": {
			txn(1, nil, ops(tput("a", "x")), nil, false, 0, nil, 0, Infinity),
			on("a", get(2, "x", 1, 10, 11)), on("a", put(0, "y", 2, 12, 13)), on("a", get(2, "x", 0, 14, 15)),
		},
	} {
		t.Run(name, func(t *testing.T) {
			if v := verdict(t, h); v != porcupine.Illegal {
				t.Fatalf("got %v, want Illegal: %v", v, h)
			}
		})
	}
}

func TestCheckRevisionsCountsATransactionOnce(t *testing.T) {
	two := txn(1, nil, ops(tput("a", "1"), tput("b", "1")), nil, true, 4, res(rput("a", 4, 1), rput("b", 4, 1)), 11, 20)
	if err := CheckRevisions([]Op{on("a", put(0, "0", 3, 0, 10)), two}); err != nil {
		t.Fatalf("one transaction's writes at one revision, yet: %v", err)
	}
	readOnly := txn(1, nil, ops(tget("a")), nil, true, 3, res(rget("a", "0", 3, 3, 1)), 11, 20)
	noop := txn(1, nil, ops(tdel("b")), nil, true, 3, res(rdel("b", false)), 11, 20)
	if err := CheckRevisions([]Op{on("a", put(0, "0", 3, 0, 10)), readOnly, noop}); err != nil {
		t.Fatalf("transactions that wrote nothing answer the store's revision, yet: %v", err)
	}
	deleted := txn(1, nil, ops(tdel("a")), nil, true, 3, res(rdel("a", true)), 11, 20)
	for name, h := range map[string][]Op{
		"a transaction sharing a put's revision":           {on("c", put(0, "0", 4, 0, 10)), two},
		"a deleting transaction sharing a put's revision":  {on("c", put(0, "0", 3, 0, 10)), deleted},
		"a transaction below a write that returned before": {on("c", put(0, "0", 5, 0, 10)), two},
	} {
		if err := CheckRevisions(h); err == nil || !strings.Contains(err.Error(), "revision") {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestTxnEffectsAndString(t *testing.T) {
	op := txn(1, cmps(mod("a", 3), exists("b", false)), ops(tput("b", "x"), tdel("a"), tget("b")), ops(tget("a")), true, 4,
		res(rput("b", 4, 1), rdel("a", true), rget("b", "x", 4, 4, 1)), 11, 20)
	want := `c1 txn(a.mod==3 && b absent) then [put b="x", delete a, get b] else [get a] -> then @4 [@4 v1, deleted true, "x" @4 c4 v1] [11,20]`
	if got := op.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if es := op.Effects(); len(es) != 2 || !es[0].Put || es[0].Key != "b" || es[1].Put || es[1].Key != "a" || !es[0].Sure {
		t.Errorf("effects %+v", es)
	}
	op.Return = Infinity
	if es := op.Effects(); len(es) != 2 || es[0].Sure {
		t.Errorf("effects of an unknown one %+v", es)
	}
	op.Txn.Failure = ops(tput("c", "y"))
	if es := op.Effects(); len(es) != 3 || es[2].Key != "c" {
		t.Errorf("effects of an unknown one with two writing branches %+v", es)
	}
}
