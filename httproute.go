package main

// Routing: which handler serves a request, and the one middleware around
// all of them (deadlines, metrics).
//
// Two ServeMuxes pick the handler by method and path, so a 405 and its Allow
// header are net/http's. The root key space has one of its own: its patterns
// ("GET /{key...}", "POST /{id...}", ...) match every path, so beside the
// reserved routes they would take POST /v1/status or PUT /health, which must
// be 405.
//
// Keys are raw: "/a//b", "/a/../b" and "/a/." are keys, byte for byte, and
// "/v1/kv" is the listing as "/v1/kv/" is; a ServeMux would redirect all of
// them. So ServeHTTP takes the key (or member id) from the path as sent,
// keeps it in the request's context (pathTail), and shows the mux a clean
// placeholder of the same route instead.

import (
	"context"
	"io"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux, served with --pprof
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes builds the muxes, on the first request: tests build an httpAPI as a
// struct literal.
func (h *httpAPI) routes() {
	h.stop = make(chan struct{})
	h.keys, h.api = http.NewServeMux(), http.NewServeMux()
	h.labels = map[string]string{}
	handle := func(mux *http.ServeMux, pattern string, handler http.Handler) {
		mux.Handle(pattern, handler)
		h.labels[pattern] = strings.TrimSuffix(pattern[strings.IndexByte(pattern, '/'):], "{$}")
	}
	plain := func(fn apiHandler) http.Handler { return h.serve(plainFace, fn) }
	json := func(fn apiHandler) http.Handler { return h.serve(jsonFace, fn) }

	handle(h.keys, "GET /{key...}", plain(h.get))
	handle(h.keys, "PUT /{key...}", plain(h.put))
	handle(h.keys, "POST /{id...}", plain(h.rootAddMember))
	handle(h.keys, "DELETE /{id...}", plain(h.rootRemoveMember))

	handle(h.api, "GET /v1/kv/{key...}", json(h.getOrList))
	handle(h.api, "PUT /v1/kv/{key...}", json(h.put))
	handle(h.api, "DELETE /v1/kv/{key...}", json(h.deleteKey))
	handle(h.api, "GET /v1/members", json(h.listMembers))
	handle(h.api, "POST /v1/members", json(h.v1AddMember))
	handle(h.api, "DELETE /v1/members/{id}", json(h.v1RemoveMember))
	handle(h.api, "POST /v1/members/{id}/promote", json(h.v1PromoteMember))
	handle(h.api, "GET /v1/watch/{key...}", json(h.watch))
	handle(h.api, "POST /v1/txn", json(h.txn))
	handle(h.api, "GET /v1/status", json(h.status))
	handle(h.api, "GET /v1/snapshot", json(h.backup))
	handle(h.api, "POST /v1/leader", json(h.transferLeadership))
	handle(h.api, "GET /v1/cluster/feed", json(h.clusterFeed))
	handle(h.api, "GET /ui/", plain(h.uiFile))
	handle(h.api, "GET /ui", plain(uiRedirect))
	handle(h.api, "/v1/{$}", json(noSuchEndpoint)) // where target sends every other /v1 path
	handle(h.api, "GET /health", plain(h.health))  // outside /v1: its errors (a 405) are plain text
	handle(h.api, "GET /readyz", plain(h.readyz))
	handle(h.api, "GET /metrics", promhttp.Handler())
	handle(h.api, "GET /version", plain(h.version))
	handle(h.api, "GET /livez", plain(h.livez))
	if h.pprof {
		handle(h.api, "/debug/pprof/", http.DefaultServeMux) // where net/http/pprof registers
	}
}

// target is where a request goes: the mux, the path the mux sees ("": the
// path as sent), the tail a handler reads with pathTail, and the face its
// errors (and the mux's 405) are written in.
type target struct {
	mux  *http.ServeMux
	path string
	tail string
	face face
}

// target routes by the path as sent, exactly as before the muxes: what is
// reserved is the exact paths below and the prefixes /v1/, /ui/ and, with
// --pprof, /debug/pprof/; everything else is a key ("/health/" too). Only
// clean paths reach a mux as they are.
func (h *httpAPI) target(path string) target {
	switch {
	case path == "/v1/kv" || strings.HasPrefix(path, "/v1/kv/"):
		key := strings.TrimPrefix(strings.TrimPrefix(path, "/v1/kv"), "/")
		return target{mux: h.api, path: "/v1/kv/k", tail: key, face: jsonFace}
	case path == "/v1/members" || path == "/v1/members/":
		return target{mux: h.api, path: "/v1/members", face: jsonFace}
	case strings.HasPrefix(path, "/v1/members/"):
		tail := strings.TrimPrefix(path, "/v1/members/")
		if id, ok := strings.CutSuffix(tail, "/promote"); ok {
			return target{mux: h.api, path: "/v1/members/i/promote", tail: id, face: jsonFace}
		}
		return target{mux: h.api, path: "/v1/members/i", tail: tail, face: jsonFace}
	case path == "/v1/watch" || strings.HasPrefix(path, "/v1/watch/"):
		key := strings.TrimPrefix(strings.TrimPrefix(path, "/v1/watch"), "/")
		return target{mux: h.api, path: "/v1/watch/k", tail: key, face: jsonFace}
	case path == "/v1/status" || path == "/v1/leader" || path == "/v1/txn" || path == "/v1/snapshot" || path == "/v1/cluster/feed":
		return target{mux: h.api, face: jsonFace}
	case path == "/health" || path == "/readyz":
		// Their answers are JSON, but they are root paths: a request they
		// refuse (PUT /health) hears why in plain text, like every root error.
		return target{mux: h.api, face: plainFace}
	case path == "/ui":
		return target{mux: h.api, face: plainFace}
	case strings.HasPrefix(path, "/ui/"):
		return target{mux: h.api, path: "/ui/", tail: strings.TrimPrefix(path, "/ui/"), face: plainFace}
	case path == "/v1" || strings.HasPrefix(path, "/v1/"):
		return target{mux: h.api, path: "/v1/", tail: path, face: jsonFace}
	case path == "/metrics":
		return target{mux: h.api, face: plainFace}
	case path == "/version" || path == "/livez":
		return target{mux: h.api, face: plainFace}
	case h.pprof && strings.HasPrefix(path, "/debug/pprof/"):
		return target{mux: h.api, face: plainFace}
	default:
		return target{mux: h.keys, path: "/k", tail: strings.TrimPrefix(path, "/"), face: plainFace}
	}
}

type tailKey struct{}

// pathTail is the key or member id of r's path as sent, byte for byte
// (empty if the path has none); for the /v1 catch-all, the whole path.
func pathTail(r *http.Request) string {
	tail, _ := r.Context().Value(tailKey{}).(string)
	return tail
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
	// A request without a body has nothing left to read.
	rc := http.NewResponseController(w)
	deadline := start.Add(h.requestTimeout + clientBodyTimeout)
	if r.Body != http.NoBody {
		rc.SetReadDeadline(deadline)
	}
	rc.SetWriteDeadline(deadline.Add(5 * time.Second)) // a body that timed out still hears why
	h.once.Do(h.routes)

	t := h.target(r.URL.Path)
	// A page of any other site that the operator's browser opens may send a
	// POST here (a form's needs no CORS permission): root POST /{id} adds a
	// member, and the JSON API's POSTs are read whatever their Content-Type.
	// Browsers say where a request comes from (Sec-Fetch-Site, Origin); such
	// a write from another origin is refused before it is routed. curl and
	// other programs send neither header and are unaffected, and the
	// cluster page's own buttons are same-origin.
	if err := h.crossOrigin.Check(r); err != nil {
		t.face(w, http.StatusForbidden, "cross-origin request refused: a page of another site may not write to this cluster", nil)
		observeHTTP("other", r.Method, http.StatusForbidden, start)
		return
	}
	ctx := r.Context()
	if t.tail != "" {
		ctx = context.WithValue(ctx, tailKey{}, t.tail)
	}
	req := r.WithContext(ctx) // a copy: the mux sets its Pattern, and maybe a placeholder URL
	if t.path != "" {
		u := *r.URL
		u.Path, u.RawPath = t.path, ""
		req.URL = &u
	}
	rec := &responseRecorder{ResponseWriter: w, code: http.StatusOK, face: t.face, req: req}
	t.mux.ServeHTTP(rec, req)
	route, ok := h.labels[req.Pattern]
	if !ok {
		route = "other" // the mux's own 405
	}
	observeHTTP(route, r.Method, rec.code, start)
}

// waitContext bounds how long a handler waits for raft by --request-timeout.
// Handlers take it once they have read the body: an upload has its own
// allowance (clientBodyTimeout) and must not eat into the time raft gets.
func (h *httpAPI) waitContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.requestTimeout)
}

// responseRecorder remembers the status for the metrics, and writes the 405
// the mux answers itself (no pattern matched the method) in the request's
// face, as every other error of that API: JSON under /v1.
type responseRecorder struct {
	http.ResponseWriter
	code     int
	face     face
	req      *http.Request
	muxsText bool // the rest of what is written is the mux's plain text, already said in face
}

func (w *responseRecorder) WriteHeader(code int) {
	w.code = code
	if code == http.StatusMethodNotAllowed && w.req.Pattern == "" {
		w.Header().Del("X-Content-Type-Options") // http.Error's; the faces set their own headers
		w.face(w.ResponseWriter, code, "method "+w.req.Method+" not allowed", nil)
		w.muxsText = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(p []byte) (int, error) {
	if w.muxsText {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// WriteString lets a value be written without its copy as a []byte: the
// embedded interface alone would hide net/http's own WriteString.
func (w *responseRecorder) WriteString(s string) (int, error) {
	if w.muxsText {
		return len(s), nil
	}
	return io.WriteString(w.ResponseWriter, s)
}

func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
