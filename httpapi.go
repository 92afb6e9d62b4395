package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

const maxKeyBytes = 4096

// httpAPI serves two faces of one keyspace: raftexample's root API (PUT and
// GET /{key}, POST and DELETE /{id} for members; plain-text errors) and the
// JSON API under /v1 (JSON errors). /k and /v1/kv/k are the same key.
// Routing and the middleware are in httproute.go.
type httpAPI struct {
	lg             *zap.Logger
	svc            *service
	requestTimeout time.Duration
	maxValueBytes  int64
	pprof          bool         // serve Go's profiler under /debug/pprof/
	disk           *diskMonitor // free space of --data-dir; nil: not watched

	once     sync.Once
	keys     *http.ServeMux    // the root key space
	api      *http.ServeMux    // the reserved paths
	labels   map[string]string // pattern -> its route label in the metrics
	stop     chan struct{}     // closed when the server shuts down: watches end
	stopOnce sync.Once

	crossOrigin http.CrossOriginProtection // refuses a browser's cross-site writes (ServeHTTP)
}

// stopping is closed when the server shuts down (see stopWatches).
func (h *httpAPI) stopping() <-chan struct{} {
	h.once.Do(h.routes)
	return h.stop
}

// stopWatches ends every watch stream: give it to the server's
// RegisterOnShutdown, since Shutdown waits for every request to end.
func (h *httpAPI) stopWatches() {
	h.once.Do(h.routes)
	h.stopOnce.Do(func() { close(h.stop) })
}

// get answers GET /{key} and GET /v1/kv/{key}. The key is the path after
// the route's prefix, as sent; the query is not part of it.
func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) error {
	key := pathTail(r)
	linearizable, err := readConsistency(r)
	if err != nil {
		return err
	}
	if err := validKey(key); err != nil {
		return err
	}
	unchanged, err := unchangedCondition(r)
	if err != nil {
		return err
	}
	ctx := r.Context() // a serializable read does not wait
	if linearizable {
		var cancel context.CancelFunc
		ctx, cancel = h.waitContext(r)
		defer cancel()
	}
	v, found, revision, err := h.svc.Get(ctx, key, linearizable)
	if err != nil {
		return err
	}
	if !found {
		setRevision(w, revision)
		return apiErr(http.StatusNotFound, "key not found")
	}
	setKeyHeaders(w, v.meta, revision)
	if v.meta.ttl != 0 {
		left, ok := h.svc.TTLRemaining(key, v.meta.modRevision)
		if !ok {
			left = v.meta.ttl // applied here a moment ago
		}
		w.Header().Set("X-TTL", v.meta.ttl.String())
		w.Header().Set("X-TTL-Remaining", strconv.FormatInt(int64((left+time.Second-1)/time.Second), 10))
	}
	if unchanged.kind != condNone && unchanged.holds(found, v.meta) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.WriteString(w, v.value)
	return nil
}

// readConsistency reads ?consistency=: linearizable (the default) or
// serializable.
func readConsistency(r *http.Request) (linearizable bool, err error) {
	switch c := queryValue(r, "consistency"); c {
	case "", "linearizable":
		return true, nil
	case "serializable":
		return false, nil
	default:
		return false, apiErr(http.StatusBadRequest, "consistency must be linearizable or serializable, not "+c)
	}
}

// put answers PUT /{key} and PUT /v1/kv/{key}, honouring If-Match and
// If-None-Match: *, and ?ttl= (the key's time to live).
func (h *httpAPI) put(w http.ResponseWriter, r *http.Request) error {
	key := pathTail(r)
	if err := validKey(key); err != nil {
		return err
	}
	cond, err := writeCondition(r, true)
	if err != nil {
		return err
	}
	ttl, err := queryTTL(r)
	if err != nil {
		return err
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxValueBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiErr(http.StatusRequestEntityTooLarge, "value is larger than --max-value-bytes")
		}
		return apiErr(http.StatusBadRequest, "reading the value: "+err.Error())
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	result, err := h.svc.Put(ctx, key, string(value), ttl, cond)
	if err != nil {
		return err
	}
	return h.writeAnswered(w, result, true)
}

// queryValue is the first value of the query parameter name ("" if none).
// Most requests have no query at all, and are spared parsing one.
func queryValue(r *http.Request, name string) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get(name)
}

// queryTTL reads ?ttl= (see parseTTL); 0 if absent.
func queryTTL(r *http.Request) (time.Duration, error) {
	if r.URL.RawQuery == "" {
		return 0, nil
	}
	q := r.URL.Query()
	if !q.Has("ttl") {
		return 0, nil
	}
	d, err := parseTTL(q.Get("ttl"))
	if err != nil {
		return 0, apiErr(http.StatusBadRequest, err.Error())
	}
	return d, nil
}

// parseTTL reads a time to live: a Go duration from minTTL to maxTTL, the
// range decodeCommand holds a put to.
func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil {
		err = validTTL(d)
	}
	if err != nil {
		return 0, fmt.Errorf("ttl must be a Go duration from %s to %s, not %q", minTTL, maxTTL, s)
	}
	return d, nil
}

func validKey(key string) error {
	switch {
	case key == "":
		return apiErr(http.StatusBadRequest, "empty key")
	case len(key) > maxKeyBytes:
		return apiErr(http.StatusBadRequest, "key is longer than 4096 bytes")
	}
	return nil
}

// rootAddMember answers POST /{id} with the peer URL as the body: 204 once
// the member is added.
func (h *httpAPI) rootAddMember(w http.ResponseWriter, r *http.Request) error {
	id, err := parseMemberID(pathTail(r))
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error()+": use POST /{id} with the peer URL as the body")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
	if err != nil {
		return apiErr(http.StatusBadRequest, "reading the peer URL: "+err.Error())
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if _, err := h.addMember(ctx, id, strings.TrimSpace(string(body))); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rootRemoveMember answers DELETE /{id}. Keys are deleted under /v1 only,
// and a path that is not an id says so.
func (h *httpAPI) rootRemoveMember(w http.ResponseWriter, r *http.Request) error {
	id, err := parseMemberID(pathTail(r))
	if err != nil {
		return apiErr(http.StatusBadRequest, err.Error()+": DELETE /{id} removes a member; to delete a key use DELETE /v1/kv/{key}")
	}
	return h.removeMember(w, r, id)
}

// addMember adds member id at peerURL and returns the URL as stored
// (normalised by parsePeerURL).
func (h *httpAPI) addMember(ctx context.Context, id uint64, peerURL string) (string, error) {
	peerURL, err := parsePeerURL(peerURL)
	if err != nil {
		return "", apiErr(http.StatusBadRequest, err.Error())
	}
	return peerURL, h.svc.AddMember(ctx, id, peerURL)
}

func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request, id uint64) error {
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if err := h.svc.RemoveMember(ctx, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// maxHealthyApplyLag is how far the applied index may trail the commit index
// on a healthy node.
const maxHealthyApplyLag = 1000

// health answers GET /health: 200 when this node knows a leader, has
// applied nearly everything committed and has room on its disk (see
// lowDiskThreshold), else 503 with the reason.
func (h *httpAPI) health(w http.ResponseWriter, r *http.Request) error {
	st := h.svc.Status()
	applied := h.svc.State().index
	lowDisk := h.disk.lowReason()
	switch {
	case st.Leader == 0:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"health": false, "reason": "no leader"})
	case applied+maxHealthyApplyLag < st.Commit:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"health": false,
			"reason": fmt.Sprintf("applied index %d trails commit index %d", applied, st.Commit)})
	case lowDisk != "":
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"health": false, "reason": lowDisk})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"health": true})
	}
	return nil
}

// readyz answers GET /readyz: 200 when this node can serve a linearizable
// read now, which it proves by doing the read's first half. Without a known
// leader it answers 503 at once: the read would first wait about an election
// timeout for one, longer than a probe's usual timeout of one second.
func (h *httpAPI) readyz(w http.ResponseWriter, r *http.Request) error {
	if h.svc.Leader() == 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "no leader"})
		return nil
	}
	ctx, cancel := h.waitContext(r)
	defer cancel()
	if err := h.svc.catchUpForRead(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	return nil
}
