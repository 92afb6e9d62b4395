package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestVersionAndLivezNeedNoRaft serves /version and /livez from an httpAPI
// with no service at all: a handler that touched raft would panic.
func TestVersionAndLivezNeedNoRaft(t *testing.T) {
	api := &httpAPI{lg: zap.NewNop()}
	do := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w
	}
	if w := do("GET", "/livez"); w.Code != http.StatusOK || w.Body.String() != "ok\n" {
		t.Errorf("GET /livez: %d %q, want 200 ok", w.Code, w.Body)
	}
	w := do("GET", "/version")
	var v buildVersion
	if err := json.Unmarshal(w.Body.Bytes(), &v); w.Code != http.StatusOK || err != nil || v.GoVersion != runtime.Version() || v.Version == "" {
		t.Errorf("GET /version: %d %q (%v), want 200 and JSON with the version and %s", w.Code, w.Body, err, runtime.Version())
	}
	for _, path := range []string{"/livez", "/version"} {
		w := do("PUT", path)
		if w.Code != http.StatusMethodNotAllowed || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
			t.Errorf("PUT %s: %d %s %q, want a plain-text 405", path, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
	for _, path := range []string{"/livez/", "/version/", "/livezz"} { // keys, like /health/
		if tg := api.target(path); tg.mux != api.keys {
			t.Errorf("%s is not a key", path)
		}
	}
	if line := versionLine(); !strings.HasPrefix(line, "raftexample ") || strings.Contains(line, "\n") {
		t.Errorf("versionLine: %q", line)
	}
}

func TestLogFormat(t *testing.T) {
	for _, format := range []string{"console", "json"} {
		if _, err := newLogger("info", format); err != nil {
			t.Errorf("--log-format %s: %v", format, err)
		}
	}
	if _, err := newLogger("info", "xml"); err == nil || err.Error() != `--log-format must be console or json, not "xml"` {
		t.Errorf("--log-format xml: %v", err)
	}
}
