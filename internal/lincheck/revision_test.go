package lincheck

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// Shorthands for histories with revisions. Each op is [call, ret]; ret
// Infinity for an unknown outcome.
func put(c int, v string, rev uint64, call, ret int64) Op {
	return Op{Client: c, Kind: Put, Key: "k", Value: v, Found: true, Revision: rev, Call: call, Return: ret}
}

func cput(c int, v string, cond Cond, rev uint64, call, ret int64) Op {
	op := put(c, v, rev, call, ret)
	op.Cond = cond
	return op
}

// refused is a 412 for a put of v under cond, whose ETag showed cur (0: no
// ETag, the key is absent).
func refused(c int, kind Kind, v string, cond Cond, cur uint64, call, ret int64) Op {
	return Op{Client: c, Kind: kind, Key: "k", Value: v, Cond: cond, Refused: true, Found: cur != 0, Revision: cur, Call: call, Return: ret}
}

func get(c int, v string, rev uint64, call, ret int64) Op {
	return Op{Client: c, Kind: Get, Key: "k", Value: v, Found: v != "", Revision: rev, Call: call, Return: ret}
}

func del(c int, cond Cond, rev uint64, call, ret int64) Op {
	return Op{Client: c, Kind: Delete, Key: "k", Cond: cond, Revision: rev, Call: call, Return: ret}
}

func ifMatch(rev uint64) Cond { return Cond{Kind: IfMatch, Rev: rev} }

var (
	ifMatchAny  = Cond{Kind: IfMatchAny}
	ifNoneMatch = Cond{Kind: IfNoneMatch}
)

func verdict(t *testing.T, h []Op) porcupine.CheckResult {
	t.Helper()
	res, err := Check(h, 0, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return res.Verdict
}

func TestRevisionHistoriesThatHoldAreLinearizable(t *testing.T) {
	for name, h := range map[string][]Op{
		"puts with rising revisions, gets showing them": {
			put(0, "a", 3, 0, 10), get(1, "a", 3, 11, 12), put(0, "b", 7, 20, 30), get(1, "b", 7, 31, 32),
		},
		"compare-and-swap on the current revision, a 412 on a stale one": {
			put(0, "a", 3, 0, 10), get(1, "a", 3, 11, 12),
			cput(1, "b", ifMatch(3), 5, 13, 14),
			refused(2, Put, "c", ifMatch(3), 5, 15, 16),
			get(2, "b", 5, 17, 18),
		},
		"one creator with If-None-Match, the other refused with the winner's ETag": {
			cput(0, "a", ifNoneMatch, 4, 0, 10), refused(1, Put, "b", ifNoneMatch, 4, 1, 11), get(2, "a", 4, 12, 13),
		},
		"If-Match * on an absent key refused, on a present one done": {
			refused(0, Put, "a", ifMatchAny, 0, 0, 1), put(0, "b", 2, 2, 3), cput(1, "c", ifMatchAny, 9, 4, 5),
		},
		"conditional delete, then the key is absent and a create works": {
			put(0, "a", 3, 0, 10), del(1, ifMatch(3), 4, 11, 12), get(2, "", 0, 13, 14),
			refused(1, Delete, "", ifMatch(3), 0, 15, 16), cput(0, "b", ifNoneMatch, 6, 17, 18),
		},
		"a delete of a missing key answers the store's revision": {
			put(0, "a", 3, 0, 10), del(1, Cond{}, 4, 11, 12), del(1, Cond{}, 4, 13, 14), put(0, "b", 5, 15, 16),
		},
		"an unknown put: its revision is learnt from a later get": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), get(2, "b", 8, 20, 21), cput(2, "c", ifMatch(8), 9, 22, 23),
		},
		"an unknown put that never took effect": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), get(2, "a", 3, 20, 21), cput(2, "c", ifMatch(3), 9, 22, 23),
		},
		"an unknown conditional put whose condition may not have held": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), cput(2, "x", ifMatch(5), 0, 12, Infinity),
			get(2, "b", 6, 20, 21), get(2, "b", 6, 22, 23),
		},
		"an unknown conditional put that did take effect": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), cput(2, "x", ifMatch(5), 0, 12, Infinity),
			get(2, "b", 5, 20, 21), get(2, "x", 9, 22, 23),
		},
		"a 412 after an unknown put shows its revision": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), refused(2, Put, "c", ifMatch(3), 6, 20, 21), get(2, "b", 6, 22, 23),
		},
		"concurrent puts may take revisions in either order": {
			put(0, "a", 5, 0, 10), put(1, "b", 4, 0, 10), get(2, "a", 5, 11, 12),
		},
		"no revisions recorded: the old checks": {
			put(0, "a", 0, 0, 10), get(1, "a", 0, 11, 12), del(0, Cond{}, 0, 13, 14), get(1, "", 0, 15, 16),
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

func TestRevisionChecksCatchBadHistories(t *testing.T) {
	for name, h := range map[string][]Op{
		"a 412 against the matching revision": {
			put(0, "a", 3, 0, 10), refused(1, Put, "b", ifMatch(3), 3, 11, 12),
		},
		"a 412 showing the revision it was conditioned on, after an unknown put": {
			put(0, "a", 3, 0, 10), put(1, "b", 0, 11, Infinity), refused(2, Put, "c", ifMatch(6), 6, 20, 21),
		},
		"a 412 whose ETag is not the current revision": {
			put(0, "a", 3, 0, 10), refused(1, Put, "b", ifMatch(2), 4, 11, 12),
		},
		"a 412 without ETag although the key exists": {
			put(0, "a", 3, 0, 10), refused(1, Put, "b", ifMatch(2), 0, 11, 12),
		},
		"a 412 for If-Match * although the key exists": {
			put(0, "a", 3, 0, 10), refused(1, Put, "b", ifMatchAny, 3, 11, 12),
		},
		"a 412 for If-None-Match * although the key is absent": {
			refused(1, Put, "b", ifNoneMatch, 0, 0, 1),
		},
		"a compare-and-swap succeeding against a stale revision": {
			put(0, "a", 3, 0, 10), put(0, "b", 5, 11, 20), cput(1, "c", ifMatch(3), 6, 21, 22),
		},
		"a conditional delete succeeding against a stale revision": {
			put(0, "a", 3, 0, 10), put(0, "b", 5, 11, 20), del(1, ifMatch(3), 6, 21, 22),
		},
		"If-Match * succeeding on an absent key": {
			cput(1, "c", ifMatchAny, 6, 0, 1),
		},
		"a put returning a revision not above the last": {
			put(0, "a", 5, 0, 10), put(1, "b", 5, 11, 12),
		},
		"a put returning a revision below the last": {
			put(0, "a", 5, 0, 10), put(1, "b", 4, 11, 12),
		},
		"a compare-and-swap returning a revision not above the one it matched": {
			get(0, "", 0, 0, 1), put(0, "a", 0, 2, Infinity), cput(1, "b", ifMatch(7), 7, 20, 21),
		},
		"a delete returning a revision below the last write": {
			put(0, "a", 5, 0, 10), del(1, Cond{}, 4, 11, 12),
		},
		"a delete of a missing key answering a revision below its deletion": {
			put(0, "a", 5, 0, 10), del(1, Cond{}, 6, 11, 12), del(1, Cond{}, 5, 13, 14),
		},
		"a get showing a wrong modRevision": {
			put(0, "a", 5, 0, 10), get(1, "a", 4, 11, 12),
		},
		"a get showing a revision below one known before an unknown put": {
			put(0, "a", 5, 0, 10), put(1, "b", 0, 11, Infinity), get(2, "b", 5, 20, 21),
		},
		"a get showing a revision the key had not anymore": {
			put(0, "a", 0, 0, Infinity), get(1, "a", 8, 10, 11), get(1, "a", 9, 12, 13),
		},
		"two If-None-Match creators both succeeding": {
			cput(0, "a", ifNoneMatch, 4, 0, 10), cput(1, "b", ifNoneMatch, 5, 1, 11),
		},
		"two concurrent compare-and-swaps on one revision both succeeding": {
			put(0, "a", 3, 0, 10), cput(1, "b", ifMatch(3), 4, 11, 20), cput(2, "c", ifMatch(3), 5, 11, 20),
		},
		"a value read after its compare-and-swap was refused": {
			put(0, "a", 3, 0, 10), refused(1, Put, "b", ifMatch(2), 3, 11, 12), get(2, "b", 0, 13, 14),
		},
	} {
		t.Run(name, func(t *testing.T) {
			if v := verdict(t, h); v != porcupine.Illegal {
				t.Fatalf("got %v, want Illegal: %v", v, h)
			}
		})
	}
}

func TestCheckRevisionsCatchesSharedAndBackwardRevisions(t *testing.T) {
	other := func(op Op) Op { op.Key = "j"; return op }
	ok := []Op{put(0, "a", 3, 0, 10), other(put(1, "b", 4, 11, 12)), other(put(1, "c", 2, 0, 9)), del(1, Cond{}, 4, 13, 14)}
	if err := CheckRevisions(ok); err != nil {
		t.Fatalf("good revisions, yet: %v", err)
	}
	for name, h := range map[string][]Op{
		"two keys' puts with one revision":            {put(0, "a", 3, 0, 10), other(put(1, "b", 3, 0, 10))},
		"a later put on another key with a lower one": {put(0, "a", 3, 0, 10), other(put(1, "b", 2, 11, 12))},
		"a conditional delete sharing a put's one":    {put(0, "a", 3, 0, 10), other(del(1, ifMatch(1), 3, 0, 10))},
	} {
		if err := CheckRevisions(h); err == nil || !strings.Contains(err.Error(), "revision") {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestOpStringShowsConditionsAndRevisions(t *testing.T) {
	for want, op := range map[string]Op{
		`c1 put(k, "b") if-match 3 -> 412 @5 [11,12]`: refused(1, Put, "b", ifMatch(3), 5, 11, 12),
		`c0 put(k, "a") if-none-match * -> @4 [0,10]`: cput(0, "a", ifNoneMatch, 4, 0, 10),
		`c2 get(k) -> "a" @4 [1,2]`:                   get(2, "a", 4, 1, 2),
		`c2 delete(k) if-match * -> ? [1,?]`:          del(2, ifMatchAny, 0, 1, Infinity),
		`c0 put(k, "a") [0,10]`:                       put(0, "a", 0, 0, 10),
	} {
		if got := op.String(); got != want {
			t.Errorf("got %s, want %s", got, op)
		}
	}
}
