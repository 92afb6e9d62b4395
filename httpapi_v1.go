package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"
)

// serveV1KV serves /v1/kv/{key} (GET, PUT, DELETE) and, for an empty key,
// the sorted listing GET /v1/kv/?prefix=P&start=K&limit=N.
func (h *httpAPI) serveV1KV(w http.ResponseWriter, r *http.Request, key string) {
	switch {
	case isGet(r) && key == "":
		h.list(w, r)
	case isGet(r):
		h.get(w, r, key, jsonError)
	case r.Method == http.MethodPut:
		h.put(w, r, key, jsonError)
	case r.Method == http.MethodDelete:
		h.deleteKey(w, r, key)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
}

// deleteKey removes key; deleting a missing key succeeds too (204), so a
// retried DELETE is harmless.
func (h *httpAPI) deleteKey(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key, jsonError) {
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.Delete(ctx, key); err != nil {
		h.fail(w, err, jsonError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listItem is one pair in a listing. JSON strings must be UTF-8, so when the
// key or the value is not, both are given in standard base64 and encoding
// says so.
type listItem struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// Listing pages: how many pairs a page holds unless limit says otherwise,
// how many it may hold at most, and about how many bytes of keys and values.
const (
	defaultListLimit = 1000
	maxListLimit     = 10000
	maxListBytes     = 4 << 20
)

// list answers a page of the listing as a JSON array, streamed: each item is
// encoded and written as it comes, so the answer is never held whole, and a
// slow reader holds the page's pairs (shared with the map) and no more. When
// more pairs follow, X-Next-Start says where (query-escaped, ready for
// start=).
func (h *httpAPI) list(w http.ResponseWriter, r *http.Request) {
	linearizable, ok := readConsistency(w, r, jsonError)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := defaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxListLimit {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 0 to %d (0: %d), not %s", maxListLimit, defaultListLimit, s))
			return
		}
		if n > 0 {
			limit = n
		}
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	page, err := h.svc.List(ctx, q.Get("prefix"), q.Get("start"), limit, maxListBytes, linearizable)
	if err != nil {
		h.fail(w, err, jsonError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if page.Next != "" {
		w.Header().Set("X-Next-Start", url.QueryEscape(page.Next))
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	var item bytes.Buffer
	enc := json.NewEncoder(&item)
	enc.SetEscapeHTML(false) // "<" is one byte, not six
	bw.WriteByte('[')
	for i, p := range page.Pairs {
		item.Reset()
		if utf8.ValidString(p.Key) && utf8.ValidString(p.Value) {
			enc.Encode(listItem{Key: p.Key, Value: p.Value})
		} else {
			enc.Encode(listItem{
				Key:      base64.StdEncoding.EncodeToString([]byte(p.Key)),
				Value:    base64.StdEncoding.EncodeToString([]byte(p.Value)),
				Encoding: "base64",
			})
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		if _, err := bw.Write(bytes.TrimSuffix(item.Bytes(), []byte("\n"))); err != nil {
			return // the client went away
		}
	}
	bw.WriteString("]\n")
	bw.Flush()
}

// serveV1Members serves GET and POST /v1/members and DELETE /v1/members/{id}.
func (h *httpAPI) serveV1Members(w http.ResponseWriter, r *http.Request, idText string) {
	switch {
	case idText == "" && isGet(r):
		writeJSON(w, http.StatusOK, h.svc.Members())
	case idText == "" && r.Method == http.MethodPost:
		var m member
		if err := decodeJSONBody(w, r, &m); err != nil {
			jsonError(w, http.StatusBadRequest, `body must be JSON {"id": N, "peerURL": "http://host:port"}: `+err.Error())
			return
		}
		if m.ID == 0 || m.ID > maxMemberID {
			jsonError(w, http.StatusBadRequest, errBadMemberID.Error())
			return
		}
		h.addMember(w, r, m.ID, m.PeerURL, jsonError, http.StatusCreated)
	case idText != "" && r.Method == http.MethodDelete:
		id, err := parseMemberID(idText)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		h.removeMember(w, r, id, jsonError)
	case idText == "":
		w.Header().Set("Allow", "GET, HEAD, POST")
		jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	default:
		w.Header().Set("Allow", "DELETE")
		jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
}

// statusResponse is GET /v1/status: raft's view from this node plus the
// state of its map. Two members that report the same applied index must
// report the same digest.
type statusResponse struct {
	raftStatus
	Applied uint64 `json:"applied"` // log index the map reflects
	Keys    int    `json:"keys"`
	Digest  string `json:"digest"` // of the map at the applied index
}

func (h *httpAPI) serveV1Status(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	applied, keys, digest := h.svc.State()
	writeJSON(w, http.StatusOK, statusResponse{
		raftStatus: h.svc.Status(),
		Applied:    applied,
		Keys:       keys,
		Digest:     fmt.Sprintf("%016x", digest),
	})
}

// serveV1Leader handles POST /v1/leader {"id": N}: move leadership to member
// N, answering once N leads.
func (h *httpAPI) serveV1Leader(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	var req struct {
		ID uint64 `json:"id"`
	}
	if err := decodeJSONBody(w, r, &req); err != nil || req.ID == 0 {
		jsonError(w, http.StatusBadRequest, `body must be JSON {"id": N} with N a member id`)
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.TransferLeadership(ctx, req.ID); err != nil {
		h.fail(w, err, jsonError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"leader": req.ID})
}
