package main

// The cluster page: GET /ui/ serves a small page (ui/index.html, app.js,
// style.css, embedded in the binary: no build step, nothing fetched from
// elsewhere) that draws this member's view of the cluster from
// GET /v1/cluster/feed (ui_feed.go) and the key space's latest changes from
// a watch (GET /v1/watch/?prefix=).

import (
	"embed"
	"net/http"
)

//go:embed ui/index.html ui/app.js ui/style.css
var uiAssets embed.FS

// uiTypes is every file the page has, with its Content-Type; nothing else
// under /ui/ exists.
var uiTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"style.css":  "text/css; charset=utf-8",
}

// uiContentSecurityPolicy lets the page run its own script and style and
// talk to this member only. Key names and values come from anyone who can
// write: the page shows them as text, and should it ever not, the browser
// still refuses inline script and every other origin.
const uiContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiFile answers GET /ui/{file} (GET /ui/ is index.html).
func (h *httpAPI) uiFile(w http.ResponseWriter, r *http.Request) error {
	name := pathTail(r)
	if name == "" {
		name = "index.html"
	}
	ctype, ok := uiTypes[name]
	if !ok {
		return apiErr(http.StatusNotFound, "the cluster page has no file "+name)
	}
	data, err := uiAssets.ReadFile("ui/" + name)
	if err != nil {
		return err // embedded at build time: cannot happen
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache") // the page of the binary that runs, not of the one before an upgrade
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", uiContentSecurityPolicy)
	w.Write(data)
	return nil
}

// uiRedirect answers GET /ui: the page is /ui/, where its relative links
// resolve.
func uiRedirect(w http.ResponseWriter, r *http.Request) error {
	http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	return nil
}
