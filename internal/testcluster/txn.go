package testcluster

// Helpers for keys that expire and transactions (issue #14): the TTL
// headers of a GET, and POST /v1/txn with its request and answer as the
// contract spells them.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TTLOf reads the TTL headers of a GET's answer: X-TTL (the TTL as set) and
// X-TTL-Remaining (whole seconds). ok is false when the answer has neither;
// one without the other, more than one of either, or a value that does not
// parse is an error.
func TTLOf(h http.Header) (ttl time.Duration, remaining uint64, ok bool, err error) {
	ttls, rems := h.Values("X-TTL"), h.Values("X-TTL-Remaining")
	if len(ttls) == 0 && len(rems) == 0 {
		return 0, 0, false, nil
	}
	if len(ttls) != 1 || len(rems) != 1 {
		return 0, 0, true, fmt.Errorf("X-TTL %q and X-TTL-Remaining %q, want one of each", ttls, rems)
	}
	if ttl, err = time.ParseDuration(ttls[0]); err != nil {
		return 0, 0, true, fmt.Errorf("X-TTL %q: %v", ttls[0], err)
	}
	if remaining, err = strconv.ParseUint(rems[0], 10, 64); err != nil {
		return 0, 0, true, fmt.Errorf("X-TTL-Remaining %q is not a decimal number", rems[0])
	}
	return ttl, remaining, true, nil
}

// TxnRequest is the body of POST /v1/txn.
type TxnRequest struct {
	Compare []TxnCompare `json:"compare,omitempty"`
	Success []TxnOp      `json:"success,omitempty"`
	Failure []TxnOp      `json:"failure,omitempty"`
}

// TxnCompare is one compare: Key and exactly one of the other fields (the
// helpers ModRev, CreateRev, Version, Value and Exists make them).
type TxnCompare struct {
	Key            string  `json:"key"`
	ModRevision    *uint64 `json:"modRevision,omitempty"`
	CreateRevision *uint64 `json:"createRevision,omitempty"`
	Version        *uint64 `json:"version,omitempty"`
	Value          *string `json:"value,omitempty"`
	Exists         *bool   `json:"exists,omitempty"`
}

// ModRev compares key's modRevision with rev.
func ModRev(key string, rev uint64) TxnCompare { return TxnCompare{Key: key, ModRevision: &rev} }

// CreateRev compares key's createRevision with rev.
func CreateRev(key string, rev uint64) TxnCompare { return TxnCompare{Key: key, CreateRevision: &rev} }

// Version compares key's version with v.
func Version(key string, v uint64) TxnCompare { return TxnCompare{Key: key, Version: &v} }

// Value compares key's value with v.
func Value(key, v string) TxnCompare { return TxnCompare{Key: key, Value: &v} }

// Exists compares whether key exists with e.
func Exists(key string, e bool) TxnCompare { return TxnCompare{Key: key, Exists: &e} }

// TxnOp is one operation: exactly one of Put, Delete, Get (see TxnPut,
// TxnDelete, TxnGet).
type TxnOp struct {
	Put    *TxnPutOp `json:"put,omitempty"`
	Delete *TxnKey   `json:"delete,omitempty"`
	Get    *TxnKey   `json:"get,omitempty"`
}

// TxnPutOp is the body of a put operation.
type TxnPutOp struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	TTL   string `json:"ttl,omitempty"`
}

// TxnKey is the body of a delete or get operation.
type TxnKey struct {
	Key string `json:"key"`
}

// TxnPut puts val under key; ttl is a Go duration or "" for none.
func TxnPut(key, val, ttl string) TxnOp {
	return TxnOp{Put: &TxnPutOp{Key: key, Value: val, TTL: ttl}}
}

// TxnDelete deletes key.
func TxnDelete(key string) TxnOp { return TxnOp{Delete: &TxnKey{Key: key}} }

// TxnGet reads key.
func TxnGet(key string) TxnOp { return TxnOp{Get: &TxnKey{Key: key}} }

// TxnResponse is the 200 answer of POST /v1/txn.
type TxnResponse struct {
	Succeeded      bool        `json:"succeeded"`
	Revision       uint64      `json:"revision"`
	Results        []TxnResult `json:"results"`
	ResultsUnknown string      `json:"resultsUnknown"`
}

// TxnResult is the result of one operation: exactly one field is set.
type TxnResult struct {
	Put    *TxnPutResult    `json:"put"`
	Delete *TxnDeleteResult `json:"delete"`
	Get    *TxnGetResult    `json:"get"`
}

// TxnPutResult is what a put did.
type TxnPutResult struct {
	Key         string `json:"key"`
	ModRevision uint64 `json:"modRevision"`
	Version     uint64 `json:"version"`
}

// TxnDeleteResult is what a delete did.
type TxnDeleteResult struct {
	Key     string `json:"key"`
	Deleted bool   `json:"deleted"`
}

// TxnGetResult is what a get read; Key and Value are decoded from base64
// when Encoding says so.
type TxnGetResult struct {
	Key            string `json:"key"`
	Found          bool   `json:"found"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"createRevision"`
	ModRevision    uint64 `json:"modRevision"`
	Version        uint64 `json:"version"`
	TTL            string `json:"ttl"` // where the key has one (not in the contract; as in the listing)
	Encoding       string `json:"encoding"`
}

func (r TxnResult) String() string {
	switch {
	case r.Put != nil && r.Delete == nil && r.Get == nil:
		return fmt.Sprintf("put %q mod %d version %d", r.Put.Key, r.Put.ModRevision, r.Put.Version)
	case r.Delete != nil && r.Put == nil && r.Get == nil:
		return fmt.Sprintf("delete %q deleted %v", r.Delete.Key, r.Delete.Deleted)
	case r.Get != nil && r.Put == nil && r.Delete == nil:
		g := r.Get
		if !g.Found {
			return fmt.Sprintf("get %q not found", g.Key)
		}
		return fmt.Sprintf("get %q = %q create %d mod %d version %d", g.Key, Shorten(g.Value, 20), g.CreateRevision, g.ModRevision, g.Version)
	}
	b, _ := json.Marshal(r)
	return "malformed result " + string(b)
}

// PostTxn sends body as POST /v1/txn to n and returns the whole answer.
func (n *Node) PostTxn(body string) (Response, error) {
	return n.DoRequest(http.MethodPost, "/v1/txn", body, http.Header{"Content-Type": {"application/json"}})
}

// Txn sends req to n's POST /v1/txn. A 200 answer is decoded strictly (no
// field the contract does not name, each result with exactly one kind);
// any other answer is an error that carries the status and body.
func (n *Node) Txn(req TxnRequest) (TxnResponse, Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return TxnResponse{}, Response{}, err
	}
	resp, err := n.PostTxn(string(b))
	if err != nil {
		return TxnResponse{}, resp, fmt.Errorf("POST /v1/txn on %v: %v", n, err)
	}
	if resp.Code != http.StatusOK {
		return TxnResponse{}, resp, fmt.Errorf("POST /v1/txn on %v: status %d: %s", n, resp.Code, strings.TrimSpace(resp.Body))
	}
	tr, err := DecodeTxnResponse(resp.Body)
	if err != nil {
		return tr, resp, fmt.Errorf("POST /v1/txn on %v: %v", n, err)
	}
	return tr, resp, nil
}

// DecodeTxnResponse decodes a 200 answer of POST /v1/txn strictly.
func DecodeTxnResponse(body string) (TxnResponse, error) {
	var tr TxnResponse
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil {
		return tr, fmt.Errorf("answer %q: %v", Shorten(body, 300), err)
	}
	for i, r := range tr.Results {
		kinds := 0
		for _, set := range []bool{r.Put != nil, r.Delete != nil, r.Get != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return tr, fmt.Errorf("answer %q: result %d has %d kinds, want one", Shorten(body, 300), i+1, kinds)
		}
		if g := r.Get; g != nil && g.Encoding == "base64" {
			k, err1 := base64.StdEncoding.DecodeString(g.Key)
			v, err2 := base64.StdEncoding.DecodeString(g.Value)
			if err1 != nil || err2 != nil {
				return tr, fmt.Errorf("answer %q: bad base64 in result %d", Shorten(body, 300), i+1)
			}
			g.Key, g.Value = string(k), string(v)
		}
	}
	return tr, nil
}
