package main

// What the process says about itself, without a raft round: its version
// (GET /version, --version) and that it is alive (GET /livez).

import (
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildVersion is what the Go toolchain recorded in the binary: the main
// module's version ("(devel)" or a pseudo-version for a build from a clone,
// a tag for go install ...@vX) and, for a build in a git checkout, the
// commit, its time and whether the tree had uncommitted changes.
type buildVersion struct {
	Version     string `json:"version"`
	GoVersion   string `json:"goVersion"`
	VCSRevision string `json:"vcsRevision,omitempty"`
	VCSTime     string `json:"vcsTime,omitempty"`
	VCSModified *bool  `json:"vcsModified,omitempty"` // absent when the build recorded no VCS state
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.VCSRevision = s.Value
		case "vcs.time":
			v.VCSTime = s.Value
		case "vcs.modified":
			modified := s.Value == "true"
			v.VCSModified = &modified
		}
	}
	return v
}

// versionLine is what --version prints: one line, e.g.
// "raftexample (devel) go1.26.8 vcs 3f2c1e0d4b5a (2026-12-02T14:00:00Z, modified)".
func versionLine() string {
	v := readBuildVersion()
	line := "raftexample " + v.Version + " " + v.GoVersion
	if v.VCSRevision != "" {
		var about []string
		if v.VCSTime != "" {
			about = append(about, v.VCSTime)
		}
		if v.VCSModified != nil && *v.VCSModified {
			about = append(about, "modified")
		}
		line += " vcs " + v.VCSRevision
		if len(about) > 0 {
			line += " (" + strings.Join(about, ", ") + ")"
		}
	}
	return line
}

// version answers GET /version with buildVersion as JSON.
func (h *httpAPI) version(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, readBuildVersion())
	return nil
}

// livez answers GET /livez: 200 "ok" whenever the process serves HTTP at
// all, leader or not. It asks nothing of raft, so a liveness probe restarts
// a member only when its HTTP server is stuck, never for a lost quorum,
// which a restart does not cure (that is /readyz's and /health's to report).
func (h *httpAPI) livez(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
	return nil
}
