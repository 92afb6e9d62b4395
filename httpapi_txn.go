package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// POST /v1/txn: a transaction over several keys (see txn.go), in JSON.

// txnRequest is the body of POST /v1/txn. Each compare and each operation
// names exactly one field or kind; pointers tell which one was given.
type txnRequest struct {
	Compare []txnCompareJSON `json:"compare"`
	Success []txnOpJSON      `json:"success"`
	Failure []txnOpJSON      `json:"failure"`
}

type txnCompareJSON struct {
	Key            string  `json:"key"`
	ModRevision    *uint64 `json:"modRevision"`
	CreateRevision *uint64 `json:"createRevision"`
	Version        *uint64 `json:"version"`
	Value          *string `json:"value"`
	Exists         *bool   `json:"exists"`
}

type txnOpJSON struct {
	Put *struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		TTL   string `json:"ttl"`
	} `json:"put"`
	Delete *txnKeyJSON `json:"delete"`
	Get    *txnKeyJSON `json:"get"`
}

type txnKeyJSON struct {
	Key string `json:"key"`
}

// txnAnswer is the answer to POST /v1/txn.
type txnAnswer struct {
	Succeeded      bool            `json:"succeeded"`
	Revision       uint64          `json:"revision"`
	Results        []txnResultJSON `json:"results"`
	ResultsUnknown string          `json:"resultsUnknown,omitempty"`
}

// txnResultJSON is what one operation did, under its kind's name as in the
// request.
type txnResultJSON struct {
	Put    *txnPutResult    `json:"put,omitempty"`
	Delete *txnDeleteResult `json:"delete,omitempty"`
	Get    *txnGetResult    `json:"get,omitempty"`
}

type txnPutResult struct {
	Key         string `json:"key"`
	ModRevision uint64 `json:"modRevision"`
	Version     uint64 `json:"version"`
}

type txnDeleteResult struct {
	Key     string `json:"key"`
	Deleted bool   `json:"deleted"`
}

// txnGetResult is a key as a get found it. As in the listing, a key or
// value that is not UTF-8 is given, with the other, in base64.
type txnGetResult struct {
	Key            string  `json:"key"`
	Found          bool    `json:"found"`
	Value          *string `json:"value,omitempty"`
	CreateRevision uint64  `json:"createRevision,omitempty"`
	ModRevision    uint64  `json:"modRevision,omitempty"`
	Version        uint64  `json:"version,omitempty"`
	TTL            string  `json:"ttl,omitempty"`
	Encoding       string  `json:"encoding,omitempty"`
}

// maxTxnBytes is how large an encoded transaction may be: as large as the
// largest single PUT, so a transaction makes no larger raft entry than a PUT
// can, plus what its 128 operations' framing takes.
func (h *httpAPI) maxTxnBytes() int64 {
	return h.maxValueBytes + maxKeyBytes + 32*maxTxnOps
}

// txn answers POST /v1/txn: 200 with what the transaction did, once applied
// here. Everything is checked before anything is proposed, by decoding the
// command that would be proposed with the decoder apply uses.
func (h *httpAPI) txn(w http.ResponseWriter, r *http.Request) error {
	var req txnRequest
	if err := decodeJSONBodyUpTo(w, r, &req, 2*h.maxTxnBytes()+64<<10); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiErr(http.StatusRequestEntityTooLarge, "transaction body is larger than twice the largest PUT (--max-value-bytes)")
		}
		return apiErr(http.StatusBadRequest, "body must be a JSON transaction {\"compare\": [...], \"success\": [...], \"failure\": [...]}: "+err.Error())
	}
	t, err := req.command()
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error())
	}
	data := encodeCommand(command{op: opTxn, txn: t})
	if int64(len(data)) > h.maxTxnBytes() {
		return apiErr(http.StatusRequestEntityTooLarge, fmt.Sprintf("transaction is larger than the largest PUT (--max-value-bytes plus one key): %d bytes", len(data)))
	}
	decoded, err := decodeCommand(data)
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error())
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	result, err := h.svc.Txn(ctx, decoded.txn)
	if err != nil {
		return err
	}
	setRevision(w, result.revision)
	if result.results == nil {
		writeJSON(w, http.StatusOK, txnAnswer{Succeeded: !result.failed, Revision: result.revision,
			ResultsUnknown: "this member learned of the transaction's commit from a snapshot, which keeps only whether it succeeded and its revision; read the keys again"})
		return nil
	}
	writeTxnAnswer(w, !result.failed, result.revision, *result.results)
	return nil
}

// writeTxnAnswer writes a txnAnswer, streamed: each result is encoded and
// written as it comes, so an answer of 128 large values is never held whole
// (the values themselves are shared with the map).
func writeTxnAnswer(w http.ResponseWriter, succeeded bool, revision uint64, results []txnResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	fmt.Fprintf(bw, `{"succeeded":%t,"revision":%d,"results":[`, succeeded, revision)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i, res := range results {
		if i > 0 {
			bw.WriteByte(',')
		}
		enc.Encode(txnResultOf(res)) // of strings and numbers: cannot fail
	}
	bw.WriteString("]}\n")
	bw.Flush() // an error: the client went away
}

// command is the transaction req asks for. It checks only what the JSON
// shape leaves open (which field a compare names, which kind an operation
// is, the ttl's syntax); decodeTxn checks the rest.
func (req *txnRequest) command() (*txnCommand, error) {
	t := &txnCommand{compares: make([]txnCompare, len(req.Compare))}
	for i, c := range req.Compare {
		cmp := txnCompare{key: c.Key}
		given := 0
		number := func(field byte, n *uint64) {
			if n != nil {
				cmp.field, cmp.number, given = field, *n, given+1
			}
		}
		number(cmpModRevision, c.ModRevision)
		number(cmpCreateRevision, c.CreateRevision)
		number(cmpVersion, c.Version)
		if c.Value != nil {
			cmp.field, cmp.value, given = cmpValue, *c.Value, given+1
		}
		if c.Exists != nil {
			cmp.field, given = cmpExists, given+1
			if *c.Exists {
				cmp.number = 1
			}
		}
		if given != 1 {
			return nil, fmt.Errorf("compare %d must have a key and exactly one of modRevision, createRevision, version, value, exists", i+1)
		}
		t.compares[i] = cmp
	}
	var err error
	if t.success, err = txnOps(req.Success, "success"); err != nil {
		return nil, err
	}
	if t.failure, err = txnOps(req.Failure, "failure"); err != nil {
		return nil, err
	}
	return t, nil
}

func txnOps(in []txnOpJSON, branch string) ([]txnOp, error) {
	ops := make([]txnOp, len(in))
	for i, o := range in {
		kinds := 0
		if o.Put != nil {
			kinds++
			ops[i] = txnOp{kind: txnPut, key: o.Put.Key, value: o.Put.Value}
			if o.Put.TTL != "" {
				d, err := time.ParseDuration(o.Put.TTL)
				if err != nil || d == 0 {
					return nil, fmt.Errorf("%s operation %d: ttl must be a Go duration from %s to %s, not %q", branch, i+1, minTTL, maxTTL, o.Put.TTL)
				}
				ops[i].ttl = d // its range is decodeTxn's to check
			}
		}
		if o.Delete != nil {
			kinds++
			ops[i] = txnOp{kind: txnDelete, key: o.Delete.Key}
		}
		if o.Get != nil {
			kinds++
			ops[i] = txnOp{kind: txnGet, key: o.Get.Key}
		}
		if kinds != 1 {
			return nil, fmt.Errorf("%s operation %d must be exactly one of put, delete, get", branch, i+1)
		}
	}
	return ops, nil
}

func txnResultOf(res txnResult) txnResultJSON {
	switch res.kind {
	case txnPut:
		return txnResultJSON{Put: &txnPutResult{Key: res.key, ModRevision: res.meta.modRevision, Version: res.meta.version}}
	case txnDelete:
		return txnResultJSON{Delete: &txnDeleteResult{Key: res.key, Deleted: res.found}}
	}
	g := &txnGetResult{Key: res.key, Found: res.found}
	if res.found {
		value := res.value
		g.Value = &value
		g.CreateRevision, g.ModRevision, g.Version = res.meta.createRevision, res.meta.modRevision, res.meta.version
		if res.meta.ttl != 0 {
			g.TTL = res.meta.ttl.String()
		}
	}
	if !utf8.ValidString(res.key) || !utf8.ValidString(res.value) {
		g.Key = base64.StdEncoding.EncodeToString([]byte(res.key))
		if g.Value != nil {
			value := base64.StdEncoding.EncodeToString([]byte(res.value))
			g.Value = &value
		}
		g.Encoding = "base64"
	}
	return txnResultJSON{Get: g}
}
