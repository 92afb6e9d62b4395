package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

const maxKeyBytes = 4096

// clusterAdmin is what the HTTP API needs from the raft node to change the
// member list.
type clusterAdmin interface {
	AddMember(ctx context.Context, id uint64, peerURL string) error
	RemoveMember(ctx context.Context, id uint64) error
}

// httpAPI serves raftexample's API: PUT and GET /{key} for the store, POST
// and DELETE /{id} for members. Writes answer only once applied on this node.
type httpAPI struct {
	lg             *zap.Logger
	store          *kvstore
	cluster        clusterAdmin
	requestTimeout time.Duration
	maxValueBytes  int64
}

func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The key is the path without its leading slash; the query is not part of it.
	key := strings.TrimPrefix(r.URL.Path, "/")
	switch r.Method {
	case http.MethodGet:
		h.get(w, key)
	case http.MethodPut:
		h.put(w, r, key)
	case http.MethodPost:
		h.addMember(w, r, key)
	case http.MethodDelete:
		h.removeMember(w, r, key)
	default:
		w.Header().Set("Allow", "GET, PUT, POST, DELETE")
		http.Error(w, "method "+r.Method+" not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *httpAPI) get(w http.ResponseWriter, key string) {
	v, ok := h.store.Lookup(key)
	if !ok {
		http.Error(w, "key not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.WriteString(w, v)
}

func (h *httpAPI) put(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxValueBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "value is larger than --max-value-bytes", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the value: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.requestTimeout)
	defer cancel()
	h.answer(w, h.store.Put(ctx, key, string(value)))
}

func validKey(w http.ResponseWriter, key string) bool {
	switch {
	case key == "":
		http.Error(w, "empty key: use PUT /{key}", http.StatusBadRequest)
		return false
	case len(key) > maxKeyBytes:
		http.Error(w, "key is longer than 4096 bytes", http.StatusBadRequest)
		return false
	}
	return true
}

// addMember handles POST /{id} with the new member's peer URL as the body.
func (h *httpAPI) addMember(w http.ResponseWriter, r *http.Request, idText string) {
	id, err := parseMemberID(idText)
	if err != nil {
		http.Error(w, err.Error()+": use POST /{id} with the peer URL as the body", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
	if err != nil {
		http.Error(w, "reading the peer URL: "+err.Error(), http.StatusBadRequest)
		return
	}
	peerURL := strings.TrimSpace(string(body))
	if err := validatePeerURL(peerURL); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.requestTimeout)
	defer cancel()
	h.answer(w, h.cluster.AddMember(ctx, id, peerURL))
}

// removeMember handles DELETE /{id}.
func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request, idText string) {
	id, err := parseMemberID(idText)
	if err != nil {
		http.Error(w, err.Error()+": DELETE /{id} removes a member", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.requestTimeout)
	defer cancel()
	h.answer(w, h.cluster.RemoveMember(ctx, id))
}

// answer turns the outcome of a proposal into a status: 204 only when it was
// applied, 503 when it was not (or may not have been), 4xx when refused.
func (h *httpAPI) answer(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, errNoLeader), errors.Is(err, errOutcomeUnknown), errors.Is(err, errStopped):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, errNotMember):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, errMemberExists), errors.Is(err, errIDRemoved), errors.Is(err, errLastMember):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		h.lg.Error("request failed", zap.Error(err))
		http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
	}
}
