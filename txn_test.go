package main

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Transactions, as the state machine applies them and as their decoder
// refuses them.

func txnOf(compares []txnCompare, success, failure []txnOp) command {
	return command{op: opTxn, txn: &txnCommand{compares: compares, success: success, failure: failure}}
}

func TestATransactionsWritesShareOneRevisionInTheOrderGiven(t *testing.T) {
	s := kvTestStore(t)
	applyNamed(t, s, 1, command{op: opPut, key: "a", value: "old"})
	applyNamed(t, s, 2, command{op: opPut, key: "b", value: "gone"})
	cmd := txnOf(
		[]txnCompare{{field: cmpModRevision, key: "a", number: 1}, {field: cmpExists, key: "c"}, {field: cmpValue, key: "b", value: "gone"}},
		[]txnOp{{kind: txnPut, key: "a", value: "1"}, {kind: txnDelete, key: "b"}, {kind: txnGet, key: "a"}, {kind: txnPut, key: "c", value: "3", ttl: time.Minute}, {kind: txnGet, key: "b"}},
		[]txnOp{{kind: txnGet, key: "a"}})
	cmd.origin, cmd.id, cmd.base = 1, 3, s.ProposalClock()
	s.mu.Lock()
	var out appliedCommit
	s.apply(encodeCommand(cmd), &out)
	s.mu.Unlock()
	if len(out.outcomes) != 1 {
		t.Fatalf("%d outcomes", len(out.outcomes))
	}
	o := out.outcomes[0].result
	if o.failed || o.revision != 3 || s.State().revision != 3 {
		t.Fatalf("outcome %+v, store at %d: want the success branch at revision 3", o, s.State().revision)
	}
	want := []change{
		{revision: 3, key: "a", value: "1", meta: keyMeta{createRevision: 1, modRevision: 3, version: 2}},
		{revision: 3, key: "b", deleted: true},
		{revision: 3, key: "c", value: "3", meta: keyMeta{createRevision: 3, modRevision: 3, version: 1, ttl: time.Minute}},
	}
	if fmt.Sprint(out.changes) != fmt.Sprint(want) {
		t.Fatalf("changes %+v, want %+v", out.changes, want)
	}
	results := *o.results
	if len(results) != 5 || results[2].value != "1" || !results[2].found || results[4].found || !results[1].found || results[0].meta.modRevision != 3 {
		t.Fatalf("results %+v: a get must see the writes before it", results)
	}
	// The window keeps how it ended, not what it read.
	if kept, ok := s.AppliedOutcome(proposalName{1, 3}); !ok || kept.results != nil || kept.revision != 3 || kept.failed {
		t.Fatalf("remembered %+v, %v", kept, ok)
	}
}

func TestATransactionWhoseCompareFailsRunsItsFailureBranch(t *testing.T) {
	s := kvTestStore(t)
	applyNamed(t, s, 1, command{op: opPut, key: "a", value: "x"})
	cases := []struct {
		cmp  txnCompare
		hold bool
	}{
		{txnCompare{field: cmpModRevision, key: "a", number: 1}, true},
		{txnCompare{field: cmpModRevision, key: "a", number: 2}, false},
		{txnCompare{field: cmpCreateRevision, key: "a", number: 1}, true},
		{txnCompare{field: cmpVersion, key: "a", number: 1}, true},
		{txnCompare{field: cmpVersion, key: "a", number: 2}, false},
		{txnCompare{field: cmpValue, key: "a", value: "x"}, true},
		{txnCompare{field: cmpValue, key: "a", value: "y"}, false},
		{txnCompare{field: cmpExists, key: "a", number: 1}, true},
		{txnCompare{field: cmpExists, key: "a", number: 0}, false},
		// A missing key: revisions and version 0, no value.
		{txnCompare{field: cmpModRevision, key: "m", number: 0}, true},
		{txnCompare{field: cmpVersion, key: "m", number: 0}, true},
		{txnCompare{field: cmpValue, key: "m", value: ""}, false},
		{txnCompare{field: cmpExists, key: "m", number: 0}, true},
	}
	for i, c := range cases {
		o := applyNamed(t, s, uint64(10+i), txnOf([]txnCompare{c.cmp}, []txnOp{{kind: txnGet, key: "a"}}, []txnOp{{kind: txnPut, key: "f", value: "x"}}))
		if o.failed == c.hold {
			t.Errorf("compare %+v: failed = %v, want %v", c.cmp, o.failed, !c.hold)
		}
	}
}

func TestATransactionThatChangesNothingMovesNoRevision(t *testing.T) {
	s := kvTestStore(t)
	applyNamed(t, s, 1, command{op: opPut, key: "a", value: "x"})
	o := applyNamed(t, s, 2, txnOf(nil, []txnOp{{kind: txnGet, key: "a"}, {kind: txnDelete, key: "missing"}}, nil))
	if o.revision != 1 || s.State().revision != 1 {
		t.Fatalf("outcome %+v, store at %d: want revision 1", o, s.State().revision)
	}
}

func TestATransactionDecodesAsItWasEncoded(t *testing.T) {
	cmd := txnOf(
		[]txnCompare{{field: cmpModRevision, key: "a", number: 5}, {field: cmpValue, key: "c", value: "x\x00"}, {field: cmpExists, key: "b"}},
		[]txnOp{{kind: txnPut, key: "a", value: "1", ttl: 10 * time.Second}, {kind: txnDelete, key: "b"}, {kind: txnGet, key: "c"}},
		[]txnOp{{kind: txnGet, key: "a"}})
	cmd.origin, cmd.id, cmd.base = 3, 9, 2
	got, err := decodeCommand(encodeCommand(cmd))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", *got.txn) != fmt.Sprintf("%+v", *cmd.txn) {
		t.Fatalf("round trip gave %+v, want %+v", *got.txn, *cmd.txn)
	}
	got.txn, cmd.txn = nil, nil
	if got != cmd {
		t.Fatalf("round trip gave %+v, want %+v", got, cmd)
	}
}

func TestATransactionTheRulesRefuseIsNotDecoded(t *testing.T) {
	many := make([]txnOp, maxTxnOps+1)
	for i := range many {
		many[i] = txnOp{kind: txnGet, key: fmt.Sprint(i)}
	}
	get := []txnOp{{kind: txnGet, key: "a"}}
	cases := map[string]command{
		"no operation":           txnOf([]txnCompare{{field: cmpExists, key: "a"}}, nil, nil),
		"too many operations":    txnOf(nil, many, nil),
		"too many in all":        txnOf([]txnCompare{{field: cmpExists, key: "a"}}, many[:maxTxnOps/2], many[:maxTxnOps/2]),
		"a key put twice":        txnOf(nil, []txnOp{{kind: txnPut, key: "a"}, {kind: txnPut, key: "a"}}, nil),
		"a key put and deleted":  txnOf(nil, nil, []txnOp{{kind: txnPut, key: "a"}, {kind: txnDelete, key: "a"}}),
		"an empty key":           txnOf(nil, []txnOp{{kind: txnGet, key: ""}}, nil),
		"a key too long":         txnOf([]txnCompare{{field: cmpExists, key: strings.Repeat("k", maxKeyBytes+1)}}, get, nil),
		"a ttl too short":        txnOf(nil, []txnOp{{kind: txnPut, key: "a", ttl: time.Millisecond}}, nil),
		"a ttl too long":         txnOf(nil, []txnOp{{kind: txnPut, key: "a", ttl: maxTTL + 1}}, nil),
		"an unknown compare":     txnOf([]txnCompare{{field: 9, key: "a"}}, get, nil),
		"exists neither 0 nor 1": txnOf([]txnCompare{{field: cmpExists, key: "a", number: 2}}, get, nil),
		"an unknown operation":   txnOf(nil, []txnOp{{kind: 9, key: "a"}}, nil),
	}
	for name, cmd := range cases {
		if _, err := decodeCommand(encodeCommand(cmd)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decodeCommand(append(encodeCommand(txnOf(nil, get, nil)), 0)); err == nil {
		t.Error("trailing bytes: decoded")
	}
	// Written twice across the branches is fine: only one runs.
	if _, err := decodeCommand(encodeCommand(txnOf(nil, []txnOp{{kind: txnPut, key: "a"}}, []txnOp{{kind: txnPut, key: "a"}, {kind: txnGet, key: "a"}}))); err != nil {
		t.Errorf("one write per branch refused: %v", err)
	}
}

func TestAPutWithATTLOutsideItsRangeIsNotDecoded(t *testing.T) {
	for _, ttl := range []uint64{1, uint64(time.Second - 1), uint64(maxTTL + 1), 1 << 63, 1<<64 - 1} {
		data := []byte{opPutTTL}
		for _, n := range []uint64{1, 1, 0} {
			data = binary.AppendUvarint(data, n)
		}
		data = append(data, condNone)
		data = binary.AppendUvarint(data, ttl)
		data = appendString(data, "k")
		if _, err := decodeCommand(data); err == nil {
			t.Errorf("ttl %d ns: decoded", ttl)
		}
	}
	c := command{op: opPut, origin: 1, id: 2, ttl: time.Second, key: "k", value: "v"}
	if got, err := decodeCommand(encodeCommand(c)); err != nil || got != c {
		t.Fatalf("round trip gave %+v, %v", got, err)
	}
}
