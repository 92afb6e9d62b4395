package lincheck

// Keys that expire. A put with a TTL lets the system delete the key later,
// once, if the key still holds what the put wrote (the expiry is a deletion
// conditional on the put's modRevision), never sooner than TTL after the
// put was applied. The checker adds to the history, for every such put (or
// transaction's put), one made-up deletion of unknown outcome conditional
// on that put, called TTL after the put's call: the put cannot have been
// applied before its call, and a leader change only delays an expiry (the
// new leader restarts the TTL in full). So a read that finds the key gone
// (or a write that finds it absent) is linearizable only if some client
// deleted it or it was at least TTL since the put that set it.

import "github.com/anishathalye/porcupine"

// expiryClient is the first client id of the made-up expiries.
const expiryClient = 1 << 20

// expiries are the expiries the system may do in history: one for each key
// a put with a TTL wrote or may have written, unless another write surely
// replaced what it wrote before its TTL was up (see superseded). Each
// expiry left pending (of unknown outcome, like every expiry) costs the
// checker: most TTL puts on busy keys are overwritten long before they
// could expire.
func expiries(history []Op) []porcupine.Operation {
	var ops []porcupine.Operation
	sup := superseded(history)
	add := func(key string, id int, call int64) {
		if sup(key, history[id-1], call) {
			return
		}
		ops = append(ops, porcupine.Operation{
			ClientId: expiryClient + len(ops),
			Input:    input{kind: expire, key: key, id: id},
			Call:     call,
			Output:   output{unknown: true},
			Return:   Infinity,
		})
	}
	for n, op := range history {
		switch {
		case op.Kind == Put && op.TTL > 0 && !op.Refused:
			add(op.Key, n+1, op.Call+int64(op.TTL))
		case op.Kind == Txn:
			// One token per key: the shortest TTL of its puts (one per
			// branch at most).
			ttl := map[string]int64{}
			var keys []string
			for _, o := range append(append([]TxnOp(nil), op.Txn.Success...), op.Txn.Failure...) {
				if o.Kind != Put || o.TTL <= 0 {
					continue
				}
				if d, ok := ttl[o.Key]; !ok {
					keys = append(keys, o.Key)
					ttl[o.Key] = int64(o.TTL)
				} else {
					ttl[o.Key] = min(d, int64(o.TTL))
				}
			}
			for _, k := range keys {
				add(k, n+1, op.Call+ttl[k])
			}
		}
	}
	return ops
}

// expired is s after the expiry of the put with token id: deleted if the
// key still holds what that put wrote, else unchanged. (The deletion's
// revision is named -id: not the put's.)
func (s state) expired(id int) state {
	if !s.found || s.ttl != id {
		return s
	}
	return s.written("", false, 0, 0, 0, -id)
}

// superseded returns a test of whether a write on key, after op (which it
// is part of), surely took effect after op did and returned before the
// time at, so that from then on the key never holds what op wrote.
func superseded(history []Op) func(key string, op Op, at int64) bool {
	type w struct{ call, ret int64 }
	byKey := map[string][]w{}
	for _, o := range history {
		if o.Unknown() {
			continue
		}
		for _, e := range o.Effects() {
			if e.Sure {
				byKey[e.Key] = append(byKey[e.Key], w{o.Call, o.Return})
			}
		}
	}
	return func(key string, op Op, at int64) bool {
		if op.Unknown() {
			return false
		}
		for _, x := range byKey[key] {
			if x.call > op.Return && x.ret < at {
				return true
			}
		}
		return false
	}
}
