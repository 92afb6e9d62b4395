package e2e

// Helpers of the transaction tests: the results the contract gives, and
// checked requests.

import (
	"reflect"
	"testing"

	tc "raftexample/internal/testcluster"
)

// resPut, resDel, resGet and resMissing are the results the contract
// gives for a put, a delete, a get that found the key and one that did not.
func resPut(key string, mod, version uint64) tc.TxnResult {
	return tc.TxnResult{Put: &tc.TxnPutResult{Key: key, ModRevision: mod, Version: version}}
}

func resDel(key string, deleted bool) tc.TxnResult {
	return tc.TxnResult{Delete: &tc.TxnDeleteResult{Key: key, Deleted: deleted}}
}

func resGet(key, val string, create, mod, version uint64) tc.TxnResult {
	return tc.TxnResult{Get: &tc.TxnGetResult{Key: key, Found: true, Value: val, CreateRevision: create, ModRevision: mod, Version: version}}
}

func resMissing(key string) tc.TxnResult {
	return tc.TxnResult{Get: &tc.TxnGetResult{Key: key}}
}

// expectTxn sends req to n and requires a 200 answer with succeeded,
// revision and results as given.
func expectTxn(t *testing.T, n *tc.Node, req tc.TxnRequest, succeeded bool, rev uint64, results ...tc.TxnResult) tc.TxnResponse {
	t.Helper()
	tr, resp, err := n.Txn(req)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ResultsUnknown != "" {
		t.Fatalf("POST /v1/txn on %v: resultsUnknown %q for a transaction it took itself: %s", n, tr.ResultsUnknown, resp.Body)
	}
	if tr.Succeeded != succeeded || tr.Revision != rev || !(reflect.DeepEqual(tr.Results, results) || len(tr.Results) == 0 && len(results) == 0) {
		t.Fatalf("POST /v1/txn on %v:\n got succeeded %v revision %d results %v\nwant succeeded %v revision %d results %v\n(answer %s)",
			n, tr.Succeeded, tr.Revision, tr.Results, succeeded, rev, results, resp.Body)
	}
	return tr
}

// revOf reads key's revisions through n (linearizable).
func revOf(t *testing.T, n *tc.Node, key string) tc.KeyRevs {
	t.Helper()
	k, err := n.Revs("/v1/kv/" + key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// expectPutAnyRev PUTs val under key (/v1) through n and returns the new
// revision.
func expectPutAnyRev(t *testing.T, n *tc.Node, key, val string) uint64 {
	t.Helper()
	rev, _, _ := tc.ETag(expectPutAny(t, n, "/v1/kv/"+key, val).Header)
	return rev
}
