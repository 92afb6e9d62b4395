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

// getOrList answers GET /v1/kv/{key}, and for the empty key the sorted
// listing GET /v1/kv/?prefix=P&start=K&limit=N.
func (h *httpAPI) getOrList(w http.ResponseWriter, r *http.Request) error {
	if pathTail(r) == "" {
		return h.list(w, r)
	}
	return h.get(w, r)
}

// deleteKey removes key, honouring If-Match; deleting a missing key
// succeeds too (204), so a retried DELETE is harmless.
func (h *httpAPI) deleteKey(w http.ResponseWriter, r *http.Request) error {
	key := pathTail(r)
	if err := validKey(key); err != nil {
		return err
	}
	cond, err := writeCondition(r, false)
	if err != nil {
		return err
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	result, err := h.svc.Delete(ctx, key, cond)
	if err != nil {
		return err
	}
	return h.writeAnswered(w, result, false)
}

// noSuchEndpoint answers every /v1 path no route takes.
func noSuchEndpoint(w http.ResponseWriter, r *http.Request) error {
	return apiErr(http.StatusNotFound, "no such endpoint: "+pathTail(r))
}

// listItem is one pair in a listing. JSON strings must be UTF-8, so when the
// key or the value is not, both are given in standard base64 and encoding
// says so.
type listItem struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"createRevision"`
	ModRevision    uint64 `json:"modRevision"`
	Version        uint64 `json:"version"`
	TTL            string `json:"ttl,omitempty"` // the key's time to live, where it has one
	Encoding       string `json:"encoding,omitempty"`
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
func (h *httpAPI) list(w http.ResponseWriter, r *http.Request) error {
	linearizable, err := readConsistency(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := defaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxListLimit {
			return apiErr(http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 0 to %d (0: %d), not %s", maxListLimit, defaultListLimit, s))
		}
		if n > 0 {
			limit = n
		}
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	page, err := h.svc.List(ctx, q.Get("prefix"), q.Get("start"), limit, maxListBytes, linearizable)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	setRevision(w, page.Revision)
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
		li := listItem{Key: p.Key, Value: p.Value,
			CreateRevision: p.Meta.createRevision, ModRevision: p.Meta.modRevision, Version: p.Meta.version}
		if p.Meta.ttl != 0 {
			li.TTL = p.Meta.ttl.String()
		}
		if !utf8.ValidString(p.Key) || !utf8.ValidString(p.Value) {
			li.Key = base64.StdEncoding.EncodeToString([]byte(p.Key))
			li.Value = base64.StdEncoding.EncodeToString([]byte(p.Value))
			li.Encoding = "base64"
		}
		enc.Encode(li)
		if i > 0 {
			bw.WriteByte(',')
		}
		if _, err := bw.Write(bytes.TrimSuffix(item.Bytes(), []byte("\n"))); err != nil {
			return nil // the client went away
		}
	}
	bw.WriteString("]\n")
	bw.Flush()
	return nil
}

func (h *httpAPI) listMembers(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, h.svc.Members())
	return nil
}

// v1AddMember answers POST /v1/members {"id": N, "peerURL": "..."}, with
// "learner": true for a learner: 201 and the member as stored, once added.
func (h *httpAPI) v1AddMember(w http.ResponseWriter, r *http.Request) error {
	var m member
	if err := decodeJSONBody(w, r, &m); err != nil {
		return apiErr(http.StatusBadRequest, `body must be JSON {"id": N, "peerURL": "http://host:port"} (and "learner": true for a learner): `+err.Error())
	}
	if m.ID == 0 || m.ID > maxMemberID {
		return apiErr(http.StatusBadRequest, errBadMemberID.Error())
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if !m.Learner {
		peerURL, err := h.addMember(ctx, m.ID, m.PeerURL)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, member{ID: m.ID, PeerURL: peerURL})
		return nil
	}
	peerURL, err := parsePeerURL(m.PeerURL)
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error())
	}
	if err := h.svc.AddLearner(ctx, m.ID, peerURL); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, member{ID: m.ID, PeerURL: peerURL, Learner: true})
	return nil
}

// v1PromoteMember answers POST /v1/members/{id}/promote: 200 and the member,
// now a voter, once the promotion is applied here.
func (h *httpAPI) v1PromoteMember(w http.ResponseWriter, r *http.Request) error {
	id, err := parseMemberID(pathTail(r))
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error())
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if err := h.svc.PromoteMember(ctx, id); err != nil {
		return err
	}
	for _, m := range h.svc.Members() {
		if m.ID == id {
			writeJSON(w, http.StatusOK, member{ID: id, PeerURL: m.PeerURL})
			return nil
		}
	}
	// Applied here, and removed since by a later change.
	return errNotMember
}

func (h *httpAPI) v1RemoveMember(w http.ResponseWriter, r *http.Request) error {
	id, err := parseMemberID(pathTail(r))
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error())
	}
	return h.removeMember(w, r, id)
}

// statusResponse is GET /v1/status: raft's view from this node plus the
// state of its map. Two members that report the same applied index must
// report the same digest.
type statusResponse struct {
	raftStatus
	Applied  uint64 `json:"applied"` // log index the map reflects
	Keys     int    `json:"keys"`
	Digest   string `json:"digest"`   // of the map at the applied index
	Revision uint64 `json:"revision"` // of the store at the applied index
}

func (h *httpAPI) status(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, h.statusNow())
	return nil
}

// statusNow is GET /v1/status's answer (and the cluster feed's snapshot).
func (h *httpAPI) statusNow() statusResponse {
	st := h.svc.State()
	return statusResponse{
		raftStatus: h.svc.Status(),
		Applied:    st.index,
		Keys:       st.keys,
		Digest:     fmt.Sprintf("%016x", st.digest),
		Revision:   st.revision,
	}
}

// transferLeadership answers POST /v1/leader {"id": N}: move leadership to
// member N, answering once N leads.
func (h *httpAPI) transferLeadership(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID uint64 `json:"id"`
	}
	if err := decodeJSONBody(w, r, &req); err != nil || req.ID == 0 {
		return apiErr(http.StatusBadRequest, `body must be JSON {"id": N} with N a member id`)
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if err := h.svc.TransferLeadership(ctx, req.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"leader": req.ID})
	return nil
}
