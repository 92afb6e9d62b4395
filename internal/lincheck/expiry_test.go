package lincheck

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// ttl is a put (of revision_test.go) with a TTL of d nanoseconds.
func ttl(op Op, d int64) Op { op.TTL = time.Duration(d); return op }

func TestExpiryHistoriesThatHoldAreLinearizable(t *testing.T) {
	for name, h := range map[string][]Op{
		"a key gone TTL after its put": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "a", 3, 20, 30), get(1, "", 0, 100, 110),
		},
		"the expiry takes a revision": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 100, 110), cput(1, "b", ifNoneMatch, 5, 120, 130),
		},
		"a key gone as soon as TTL has passed since the put's call, not its return": {
			ttl(put(0, "a", 3, 0, 90), 100), get(1, "", 0, 95, 101),
		},
		"a key may outlive its TTL (a leader change restarts it)": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "a", 3, 500, 510), get(1, "", 0, 900, 910),
		},
		"a put without TTL after a TTL put: the key stays": {
			ttl(put(0, "a", 3, 0, 10), 100), put(0, "b", 4, 20, 30), get(1, "b", 4, 500, 510),
		},
		"a keep-alive: the re-put's TTL counts": {
			ttl(put(0, "a", 3, 0, 10), 100), ttl(cput(0, "b", ifMatch(3), 4, 50, 60), 100),
			get(1, "b", 4, 120, 130), get(1, "", 0, 150, 160),
		},
		"a TTL put of unknown outcome that took effect and expired": {
			put(0, "a", 3, 0, 10), ttl(put(0, "b", 0, 20, Infinity), 100), get(1, "b", 0, 30, 40), get(1, "", 0, 120, 130),
		},
		"a transaction's TTL put expires": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 3)), ops(TxnOp{Kind: Put, Key: "b", Value: "x", TTL: 100}, tput("a", "2")), nil, true, 4, res(rput("b", 4, 1), rput("a", 4, 2)), 20, 30),
			on("b", get(1, "x", 4, 40, 50)), on("b", get(1, "", 0, 120, 130)), on("a", get(1, "2", 4, 131, 132)),
		},
		"a TTL put concurrent with a put: it may land last, and expire": {
			ttl(put(0, "a", 0, 0, 10), 100), put(1, "b", 0, 5, 15), get(1, "", 0, 200, 210),
		},
		"a TTL put overwritten after its TTL: it may have expired before": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 105, 106), put(1, "b", 5, 150, 160), get(1, "b", 5, 200, 210),
		},
		"expiries of two keys": {
			ttl(put(0, "a", 3, 0, 10), 100), on("j", ttl(put(0, "b", 4, 0, 10), 200)),
			get(1, "", 0, 150, 160), on("j", get(1, "b", 4, 150, 160)), on("j", get(1, "", 0, 210, 220)),
		},
	} {
		t.Run(name, func(t *testing.T) {
			if v := verdict(t, h); v != porcupine.Ok {
				t.Fatalf("got %v, want Ok: %v", v, h)
			}
		})
	}
}

func TestExpiryChecksCatchBadHistories(t *testing.T) {
	for name, h := range map[string][]Op{
		"a key gone before its TTL": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 50, 60),
		},
		"a key without TTL gone": {
			put(0, "a", 3, 0, 10), get(1, "", 0, 500, 510),
		},
		"an expiry removing a newer write without TTL": {
			ttl(put(0, "a", 3, 0, 10), 100), put(0, "b", 4, 20, 30), get(1, "", 0, 500, 510),
		},
		"an expiry removing a newer TTL write before its own TTL": {
			ttl(put(0, "a", 3, 0, 10), 100), ttl(put(0, "b", 4, 20, 30), 1000), get(1, "", 0, 500, 510),
		},
		"a keep-alive ignored: the old TTL expiring the re-put key": {
			ttl(put(0, "a", 3, 0, 10), 100), ttl(cput(0, "b", ifMatch(3), 4, 50, 60), 100), get(1, "", 0, 120, 130),
		},
		"an expired key coming back": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 200, 210), get(1, "a", 3, 220, 230),
		},
		"a key expiring twice": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 200, 210), put(0, "b", 5, 220, 230), get(1, "", 0, 240, 250),
		},
		"an expiry taking no revision": {
			ttl(put(0, "a", 3, 0, 10), 100), get(1, "", 0, 100, 110), cput(1, "b", ifNoneMatch, 4, 120, 130),
		},
		"a refused TTL put expiring the key": {
			put(0, "a", 3, 0, 10), ttl(refused(0, Put, "b", ifNoneMatch, 3, 20, 30), 100), get(1, "", 0, 500, 510),
		},
		"a TTL put in the branch that did not run expiring the key": {
			on("a", put(0, "1", 3, 0, 10)),
			txn(1, cmps(mod("a", 2)), ops(TxnOp{Kind: Put, Key: "a", Value: "2", TTL: 100}), ops(tget("a")), false, 3, res(rget("a", "1", 3, 3, 1)), 20, 30),
			on("a", get(1, "", 0, 500, 510)),
		},
		"a transaction's TTL put expiring its other key": {
			txn(1, nil, ops(TxnOp{Kind: Put, Key: "a", Value: "1", TTL: 100}, tput("b", "1")), nil, true, 1, res(rput("a", 1, 1), rput("b", 1, 1)), 0, 10),
			on("b", get(1, "", 0, 500, 510)),
		},
	} {
		t.Run(name, func(t *testing.T) {
			if v := verdict(t, h); v != porcupine.Illegal {
				t.Fatalf("got %v, want Illegal: %v", v, h)
			}
		})
	}
}

func TestExpiriesOfOverwrittenPutsAreLeftOut(t *testing.T) {
	h := []Op{
		ttl(put(0, "a", 3, 0, 10), 100),        // overwritten at [20,30], before 100: no expiry
		put(0, "b", 4, 20, 30),                 //
		ttl(put(0, "c", 5, 40, 50), 100),       // overwritten at [150,160], after 140: an expiry
		put(0, "d", 6, 150, 160),               //
		ttl(put(0, "e", 0, 200, Infinity), 10), // unknown: an expiry
		put(0, "f", 0, 300, 310),               //
	}
	if n := len(Operations(h)) - len(h); n != 2 {
		t.Fatalf("%d expiries, want 2", n)
	}
}
