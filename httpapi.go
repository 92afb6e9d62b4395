package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux, served with --pprof
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

const maxKeyBytes = 4096

// httpAPI serves two faces of one keyspace: raftexample's root API (PUT and
// GET /{key}, POST and DELETE /{id} for members; plain-text errors) and the
// JSON API under /v1 (JSON errors). /k and /v1/kv/k are the same key.
type httpAPI struct {
	lg             *zap.Logger
	svc            *service
	requestTimeout time.Duration
	maxValueBytes  int64
	pprof          bool // serve Go's profiler under /debug/pprof/
}

// contextFor bounds a request's wait for raft by --request-timeout.
func contextFor(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), timeout)
}

// isGet reports whether r reads: GET, or HEAD, which net/http answers with
// GET's status and headers and no body.
func isGet(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}

// clientBodyTimeout is how long a client may take to send a request body,
// beyond --request-timeout.
const clientBodyTimeout = 30 * time.Second

func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// No request holds its connection for ever: a body must arrive, and the
	// answer be taken, within a bound. (Set per request rather than as the
	// server's ReadTimeout, which would also cancel a request still waiting
	// for raft once it passed.)
	rc := http.NewResponseController(w)
	deadline := start.Add(h.requestTimeout + clientBodyTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline.Add(5 * time.Second)) // a body that timed out still hears why
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	route := h.route(rec, r)
	observeHTTP(route, r.Method, rec.code, start)
}

// route serves r and names the route it took, for metrics.
func (h *httpAPI) route(w http.ResponseWriter, r *http.Request) string {
	path := r.URL.Path
	switch {
	case path == "/v1/kv" || strings.HasPrefix(path, "/v1/kv/"):
		h.serveV1KV(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "/v1/kv"), "/"))
		return "/v1/kv"
	case path == "/v1/members" || strings.HasPrefix(path, "/v1/members/"):
		h.serveV1Members(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "/v1/members"), "/"))
		return "/v1/members"
	case path == "/v1/status":
		h.serveV1Status(w, r)
		return path
	case path == "/v1/leader":
		h.serveV1Leader(w, r)
		return path
	case path == "/v1" || strings.HasPrefix(path, "/v1/"):
		jsonError(w, http.StatusNotFound, "no such endpoint: "+path)
		return "/v1/other"
	case path == "/health":
		h.serveHealth(w, r)
		return path
	case path == "/readyz":
		h.serveReadyz(w, r)
		return path
	case h.pprof && strings.HasPrefix(path, "/debug/pprof/"):
		http.DefaultServeMux.ServeHTTP(w, r) // where net/http/pprof registers
		return "/debug/pprof/"
	case path == "/metrics":
		if !isGet(r) {
			w.Header().Set("Allow", "GET, HEAD")
			plainError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		} else {
			promhttp.Handler().ServeHTTP(w, r)
		}
		return path
	default:
		h.serveRoot(w, r, strings.TrimPrefix(path, "/"))
		if r.Method == http.MethodPost || r.Method == http.MethodDelete {
			return "/{id}"
		}
		return "/{key}"
	}
}

// serveRoot is raftexample's API. The key is the path without its leading
// slash; the query is not part of it.
func (h *httpAPI) serveRoot(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, key, plainError)
	case http.MethodPut:
		h.put(w, r, key, plainError)
	case http.MethodPost:
		id, err := parseMemberID(key)
		if err != nil {
			plainError(w, http.StatusBadRequest, err.Error()+": use POST /{id} with the peer URL as the body")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
		if err != nil {
			plainError(w, http.StatusBadRequest, "reading the peer URL: "+err.Error())
			return
		}
		h.addMember(w, r, id, strings.TrimSpace(string(body)), plainError, http.StatusNoContent)
	case http.MethodDelete:
		id, err := parseMemberID(key)
		if err != nil {
			plainError(w, http.StatusBadRequest, err.Error()+": DELETE /{id} removes a member; to delete a key use DELETE /v1/kv/{key}")
			return
		}
		h.removeMember(w, r, id, plainError)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE")
		plainError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request, key string, reply errorStyle) {
	linearizable, ok := readConsistency(w, r, reply)
	if !ok || !validKey(w, key, reply) {
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	v, found, err := h.svc.Get(ctx, key, linearizable)
	if err != nil {
		h.fail(w, err, reply)
		return
	}
	if !found {
		reply(w, http.StatusNotFound, "key not found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.WriteString(w, v)
}

// readConsistency reads ?consistency=: linearizable (the default) or
// serializable.
func readConsistency(w http.ResponseWriter, r *http.Request, reply errorStyle) (linearizable, ok bool) {
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable":
		return true, true
	case "serializable":
		return false, true
	default:
		reply(w, http.StatusBadRequest, "consistency must be linearizable or serializable, not "+c)
		return false, false
	}
}

func (h *httpAPI) put(w http.ResponseWriter, r *http.Request, key string, reply errorStyle) {
	if !validKey(w, key, reply) {
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxValueBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(w, http.StatusRequestEntityTooLarge, "value is larger than --max-value-bytes")
			return
		}
		reply(w, http.StatusBadRequest, "reading the value: "+err.Error())
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.Put(ctx, key, string(value)); err != nil {
		h.fail(w, err, reply)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func validKey(w http.ResponseWriter, key string, reply errorStyle) bool {
	switch {
	case key == "":
		reply(w, http.StatusBadRequest, "empty key")
		return false
	case len(key) > maxKeyBytes:
		reply(w, http.StatusBadRequest, "key is longer than 4096 bytes")
		return false
	}
	return true
}

func (h *httpAPI) addMember(w http.ResponseWriter, r *http.Request, id uint64, peerURL string, reply errorStyle, okCode int) {
	peerURL, err := parsePeerURL(peerURL)
	if err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.AddMember(ctx, id, peerURL); err != nil {
		h.fail(w, err, reply)
		return
	}
	if okCode == http.StatusNoContent {
		w.WriteHeader(okCode)
		return
	}
	writeJSON(w, okCode, member{ID: id, PeerURL: peerURL})
}

func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request, id uint64, reply errorStyle) {
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.RemoveMember(ctx, id); err != nil {
		h.fail(w, err, reply)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxHealthyApplyLag is how far the applied index may trail the commit index
// on a healthy node.
const maxHealthyApplyLag = 1000

// serveHealth answers GET /health: 200 when this node knows a leader and has
// applied nearly everything committed, else 503 with the reason.
func (h *httpAPI) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	st := h.svc.Status()
	applied, _, _ := h.svc.State()
	switch {
	case st.Leader == 0:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"health": false, "reason": "no leader"})
	case applied+maxHealthyApplyLag < st.Commit:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"health": false,
			"reason": fmt.Sprintf("applied index %d trails commit index %d", applied, st.Commit)})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"health": true})
	}
}

// serveReadyz answers GET /readyz: 200 when this node can serve a
// linearizable read now, which it proves by doing the read's first half.
func (h *httpAPI) serveReadyz(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	ctx, cancel := contextFor(r, h.requestTimeout)
	defer cancel()
	if err := h.svc.catchUpForRead(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if isGet(r) {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	return false
}
