package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTPAPIRoutesRawKeysAndAnswersInEachFace checks what the muxes must not
// change: paths a ServeMux would clean are keys byte for byte, every reserved
// path answers as before, and the mux's 405 speaks each API's language.
func TestHTTPAPIRoutesRawKeysAndAnswersInEachFace(t *testing.T) {
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	const timeout = time.Second
	api := &httpAPI{lg: c.lg, svc: n.svc, requestTimeout: timeout, maxValueBytes: 1 << 20}
	do := func(method, path, body string) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w
	}
	ipEventually(t, 30*time.Second, "a PUT is answered 204", func() error {
		if w := do(http.MethodPut, "/ready", "yes"); w.Code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", w.Code, w.Body)
		}
		return nil
	})

	t.Run("paths a ServeMux would clean are keys as sent", func(t *testing.T) {
		for path, key := range map[string]string{
			"//a": "/a", "/a//b": "a//b", "/a/../b": "a/../b", "/a/.": "a/.", "/..": "..", "/a/": "a/",
			"/v1/kv//c": "/c", "/v1/kv/../d": "../d", "/v1/kv/e/./f": "e/./f",
			"/health/": "health/", "/metrics/x": "metrics/x", "/v1x": "v1x", "/debug/pprof/heap": "debug/pprof/heap",
		} {
			if w := do(http.MethodPut, path, "at "+path); w.Code != http.StatusNoContent {
				t.Errorf("PUT %s: status %d %q, want 204", path, w.Code, w.Body)
				continue
			}
			if v, ok := n.store.value(key); !ok || v != "at "+path {
				t.Errorf("PUT %s: key %q holds %q (%v), want %q", path, key, v, ok, "at "+path)
			}
			if w := do(http.MethodGet, path+"?consistency=serializable", ""); w.Code != http.StatusOK || w.Body.String() != "at "+path {
				t.Errorf("GET %s: status %d %q", path, w.Code, w.Body)
			}
		}
	})
	t.Run("the mux's 405 is plain text at the root and JSON under /v1", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, allow string
			json                bool
		}{
			{"PATCH", "/k", "DELETE, GET, HEAD, POST, PUT", false},
			{"PATCH", "/a//b", "DELETE, GET, HEAD, POST, PUT", false},
			{"PUT", "/metrics", "GET, HEAD", false},
			{"PATCH", "/v1/kv/k", "DELETE, GET, HEAD, PUT", true},
			{"POST", "/v1/kv", "DELETE, GET, HEAD, PUT", true},
			{"PUT", "/v1/members/", "GET, HEAD, POST", true},
			{"GET", "/v1/members/1", "DELETE", true},
			{"GET", "/v1/members/1/2", "DELETE", true},
			{"POST", "/v1/status", "GET, HEAD", true},
			{"GET", "/v1/leader", "POST", true},
			{"POST", "/health", "GET, HEAD", false},
			{"DELETE", "/readyz", "GET, HEAD", false},
		} {
			w := do(tc.method, tc.path, "")
			what := tc.method + " " + tc.path
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != tc.allow {
				t.Errorf("%s: status %d Allow %q, want 405 with Allow %q", what, w.Code, w.Header().Get("Allow"), tc.allow)
			}
			want := "method " + tc.method + " not allowed"
			if tc.json {
				var e map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"] != want || w.Header().Get("Content-Type") != "application/json" {
					t.Errorf("%s: %s %q, want JSON {\"error\": %q}", what, w.Header().Get("Content-Type"), w.Body, want)
				}
			} else if w.Body.String() != want+"\n" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
				t.Errorf("%s: %s %q, want the plain text %q", what, w.Header().Get("Content-Type"), w.Body, want)
			}
		}
	})
	t.Run("every error at the root is one line of plain text", func(t *testing.T) {
		big := strings.Repeat("x", int(api.maxValueBytes)+1)
		for _, tc := range []struct {
			method, path, body string
			header             [2]string
			code               int
		}{
			{"PUT", "/health", "", [2]string{}, http.StatusMethodNotAllowed},
			{"DELETE", "/readyz", "", [2]string{}, http.StatusMethodNotAllowed},
			{"PUT", "/metrics", "", [2]string{}, http.StatusMethodNotAllowed},
			{"POST", "/livez", "", [2]string{}, http.StatusMethodNotAllowed},
			{"DELETE", "/version", "", [2]string{}, http.StatusMethodNotAllowed},
			{"PUT", "/ui/", "v", [2]string{}, http.StatusMethodNotAllowed},
			{"GET", "/ui/no-such-file", "", [2]string{}, http.StatusNotFound},
			{"PATCH", "/k", "", [2]string{}, http.StatusMethodNotAllowed},
			{"PUT", "/", "v", [2]string{}, http.StatusBadRequest},
			{"PUT", "/" + strings.Repeat("k", maxKeyBytes+1), "v", [2]string{}, http.StatusBadRequest},
			{"PUT", "/k?ttl=1y", "v", [2]string{}, http.StatusBadRequest},
			{"PUT", "/k", "v", [2]string{"If-Match", "no quotes"}, http.StatusBadRequest},
			{"PUT", "/k", "v", [2]string{"If-Match", `"999999"`}, http.StatusPreconditionFailed},
			{"PUT", "/k", big, [2]string{}, http.StatusRequestEntityTooLarge},
			{"GET", "/k?consistency=bogus", "", [2]string{}, http.StatusBadRequest},
			{"GET", "/k", "", [2]string{"If-None-Match", "no quotes"}, http.StatusBadRequest},
			{"GET", "/no-such-key", "", [2]string{}, http.StatusNotFound},
			{"POST", "/not-an-id", "http://127.0.0.1:1", [2]string{}, http.StatusBadRequest},
			{"POST", "/5", "not a URL", [2]string{}, http.StatusBadRequest},
			{"POST", "/1", "http://127.0.0.1:1", [2]string{}, http.StatusConflict},
			{"DELETE", "/not-an-id", "", [2]string{}, http.StatusBadRequest},
			{"DELETE", "/99", "", [2]string{}, http.StatusNotFound},
		} {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.header[0] != "" {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			w := httptest.NewRecorder()
			api.ServeHTTP(w, req)
			what := tc.method + " " + tc.path
			if len(what) > 60 {
				what = what[:60] + "..."
			}
			body := w.Body.String()
			if w.Code != tc.code {
				t.Errorf("%s: status %d %q, want %d", what, w.Code, body, tc.code)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(body, "{") ||
				!strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 {
				t.Errorf("%s: %s %q, want one line of plain text", what, ct, body)
			}
		}
	})
	t.Run("a browser's cross-site write is refused before it is routed", func(t *testing.T) {
		members := len(n.svc.Members())
		for _, tc := range []struct {
			method, path, body string
			header             [2]string
			json               bool
		}{
			{"POST", "/5", "http://127.0.0.1:1", [2]string{"Sec-Fetch-Site", "cross-site"}, false},
			{"POST", "/5", "http://127.0.0.1:1", [2]string{"Origin", "http://evil.example"}, false},
			{"POST", "/v1/members", `{"peerURL": "http://127.0.0.1:1"}`, [2]string{"Sec-Fetch-Site", "cross-site"}, true},
			{"PUT", "/v1/kv/csrf", "v", [2]string{"Origin", "http://evil.example"}, true},
			{"DELETE", "/1", "", [2]string{"Sec-Fetch-Site", "same-site"}, false},
		} {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set(tc.header[0], tc.header[1])
			w := httptest.NewRecorder()
			api.ServeHTTP(w, req)
			what := fmt.Sprintf("%s %s with %s: %s", tc.method, tc.path, tc.header[0], tc.header[1])
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "cross-origin request refused") ||
				strings.HasPrefix(w.Body.String(), "{") != tc.json {
				t.Errorf("%s: status %d %q, want 403 saying cross-origin request refused (JSON: %v)", what, w.Code, w.Body, tc.json)
			}
		}
		if got := len(n.svc.Members()); got != members {
			t.Errorf("%d members after the refused writes, want %d", got, members)
		}
		if _, ok := n.store.value("csrf"); ok {
			t.Error("the refused PUT was stored")
		}
		// The cluster page's own requests, and curl's (no such headers), pass.
		req := httptest.NewRequest("PUT", "/v1/kv/same-origin", strings.NewReader("v"))
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusNoContent {
			t.Errorf("a same-origin PUT: status %d %q", w.Code, w.Body)
		}
		if w := do("PUT", "/no-browser", "v"); w.Code != http.StatusNoContent {
			t.Errorf("a PUT without browser headers: status %d %q", w.Code, w.Body)
		}
		if w := do("GET", "/no-browser", ""); w.Code != http.StatusOK {
			t.Errorf("GET: status %d %q", w.Code, w.Body)
		}
	})
	t.Run("every other /v1 path is a JSON 404 naming it", func(t *testing.T) {
		for _, path := range []string{"/v1", "/v1/", "/v1/nope", "/v1//status", "/v1/status/", "/v1/./leader"} {
			for _, method := range []string{"GET", "PATCH"} {
				w := do(method, path, "")
				var e map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != http.StatusNotFound || err != nil || e["error"] != "no such endpoint: "+path {
					t.Errorf("%s %s: status %d %q, want 404 no such endpoint", method, path, w.Code, w.Body)
				}
			}
		}
	})
	t.Run("/v1/kv and /v1/members/ are the listings", func(t *testing.T) {
		for _, path := range []string{"/v1/kv", "/v1/kv/", "/v1/members", "/v1/members/"} {
			if w := do(http.MethodGet, path, ""); w.Code != http.StatusOK || !strings.HasPrefix(w.Body.String(), "[") {
				t.Errorf("GET %s: status %d %.80q, want 200 and a JSON array", path, w.Code, w.Body)
			}
		}
		if w := do(http.MethodDelete, "/v1/members/1/2", ""); w.Code != http.StatusBadRequest {
			t.Errorf("DELETE /v1/members/1/2: status %d %q, want 400", w.Code, w.Body)
		}
	})
	t.Run("the request timeout starts once the body is in", func(t *testing.T) {
		body, feed := io.Pipe()
		go func() {
			feed.Write([]byte("slow"))
			time.Sleep(timeout + timeout/2)
			feed.Write([]byte(" upload"))
			feed.Close()
		}()
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/slow", body))
		if w.Code != http.StatusNoContent {
			t.Fatalf("PUT with a body slower than --request-timeout: status %d %q, want 204", w.Code, w.Body)
		}
		if v, _ := n.store.value("slow"); v != "slow upload" {
			t.Fatalf("slow = %q, want %q", v, "slow upload")
		}
	})
}
