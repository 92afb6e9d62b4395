package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestUIPageAndFeed checks the cluster page's files and routes, and that
// the feed sends this member's status once a second and ends when the
// server stops.
func TestUIPageAndFeed(t *testing.T) {
	c := newIPCluster(t, 1, 1, 10000)
	n := c.startKV(1, false)
	api := &httpAPI{lg: c.lg, svc: n.svc, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	ipEventually(t, 30*time.Second, "a PUT is answered 204", func() error {
		if code, _, body := ipDo(t, http.MethodPut, srv.URL+"/ready", []byte("yes")); code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})

	t.Run("the page's files, and nothing else, are under /ui/", func(t *testing.T) {
		for path, ctype := range map[string]string{"/ui/": "text/html", "/ui/index.html": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
			code, h, body := ipDo(t, http.MethodGet, srv.URL+path, nil)
			if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), ctype) || len(body) == 0 || h.Get("Content-Security-Policy") == "" {
				t.Errorf("GET %s: status %d, %s, %d bytes, CSP %q; want 200 %s with a CSP", path, code, h.Get("Content-Type"), len(body), h.Get("Content-Security-Policy"), ctype)
			}
		}
		for _, path := range []string{"/ui/nope", "/ui/../ready", "/ui/ui/app.js"} {
			if code, h, body := ipDo(t, http.MethodGet, srv.URL+path, nil); code != http.StatusNotFound || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s: status %d %s %q, want a plain 404", path, code, h.Get("Content-Type"), body)
			}
		}
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.Get(srv.URL + "/ui")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
			t.Errorf("GET /ui: status %d Location %q, want 301 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("keys under ui/ are reached through /v1/kv only", func(t *testing.T) {
		if code, _, body := ipDo(t, http.MethodPut, srv.URL+"/ui/k", []byte("v")); code != http.StatusMethodNotAllowed {
			t.Errorf("PUT /ui/k: status %d %q, want 405", code, body)
		}
		if code, _, body := ipDo(t, http.MethodPut, srv.URL+"/v1/kv/ui/k", []byte("v")); code != http.StatusNoContent {
			t.Errorf("PUT /v1/kv/ui/k: status %d %q, want 204", code, body)
		}
		if v, ok := n.store.value("ui/k"); !ok || v != "v" {
			t.Errorf("ui/k = %q (%v), want v", v, ok)
		}
	})
	t.Run("the feed sends the status once a second and ends when the server stops", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/v1/cluster/feed")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d %s, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		frames := make(chan feedFrame)
		ended := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				var f feedFrame
				if err := json.Unmarshal([]byte(data), &f); err != nil {
					ended <- fmt.Errorf("a frame that is not a snapshot: %v: %q", err, data)
					return
				}
				frames <- f
			}
			ended <- sc.Err()
		}()
		next := func() feedFrame {
			t.Helper()
			select {
			case f := <-frames:
				return f
			case err := <-ended:
				t.Fatalf("the feed ended: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("no frame within 5 s")
			}
			return feedFrame{}
		}
		first := next()
		if first.Status.ID != 1 || first.Status.Leader != 1 || first.Status.State != "leader" || len(first.Status.Members) != 1 || first.Status.Applied == 0 {
			t.Fatalf("first frame %+v, want member 1 leading itself", first.Status)
		}
		if code, _, body := ipDo(t, http.MethodPut, srv.URL+"/counted", []byte("1")); code != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", code, body)
		}
		if code, _, body := ipDo(t, http.MethodGet, srv.URL+"/counted", nil); code != http.StatusOK {
			t.Fatalf("GET: %d %s", code, body)
		}
		start := time.Now()
		second := next()
		if gap := time.Since(start); gap > 2*feedInterval {
			t.Errorf("the second frame came %v after the first", gap)
		}
		if second.Writes <= first.Writes || second.Reads <= first.Reads || second.Status.Revision <= first.Status.Revision {
			t.Errorf("after a PUT and a GET: writes %d -> %d, reads %d -> %d, revision %d -> %d; want each to grow",
				first.Writes, second.Writes, first.Reads, second.Reads, first.Status.Revision, second.Status.Revision)
		}
		api.stopWatches()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case <-frames:
				continue // sent before the stop
			case err := <-ended:
				if err != nil && err != io.EOF {
					t.Logf("the feed ended with %v", err)
				}
				return
			case <-deadline:
				t.Fatal("the feed still runs 5 s after the server stopped")
			}
		}
	})
}
