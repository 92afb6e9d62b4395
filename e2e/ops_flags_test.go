package e2e

// Cross-process tests of the ecosystem's conventions: flags from
// RAFTEXAMPLE_* variables (the command line winning), --log-format json,
// GET /version, --version and GET /livez.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// TestMemberConfiguredByEnvironmentLogsJSONAndIsAliveWithoutLeader starts
// member 1 of a three-member cluster configured as contrib/raftexample.env
// configures one, by variables only, but for its port, which the command
// line gives over a wrong RAFTEXAMPLE_PORT; the other two never start. It
// runs, logs only JSON lines, answers /version, and /livez 200 while
// /readyz and /health say 503: no leader.
func TestMemberConfiguredByEnvironmentLogsJSONAndIsAliveWithoutLeader(t *testing.T) {
	c := tc.New(t, 3)
	n := c.Node(1)
	wrongPort := tc.FreePorts(t, 1)[0]
	n.Args = []string{"--port", strconv.Itoa(n.HTTPPort)}
	n.Env = []string{
		"RAFTEXAMPLE_ID=1",
		"RAFTEXAMPLE_CLUSTER=" + strings.Join(c.URLs, ","),
		"RAFTEXAMPLE_DATA_DIR=" + n.DataDir,
		"RAFTEXAMPLE_PORT=" + strconv.Itoa(wrongPort), // the command line's --port wins
		"RAFTEXAMPLE_LOG_FORMAT=json",
		"RAFTEXAMPLE_LOG_LEVEL=debug", // more lines to check, from raft and net/http too
		"RAFTEXAMPLE_REQUEST_TIMEOUT=1s",
		"RAFTEXAMPLE_SNAPCOUNT=5", // a typo: warned of
	}
	n.WorkDir = t.TempDir() // not the data directory: RAFTEXAMPLE_DATA_DIR must put the data there
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	t.Run("the variables configured it, the command line's --port won", func(t *testing.T) {
		var st tc.Status
		if code, err := n.GetJSON("/v1/status", &st); err != nil || code != http.StatusOK || st.ID != 1 || len(st.Members) != 3 {
			t.Fatalf("/v1/status: %d %v %+v, want member 1 of 3", code, err, st)
		}
		if _, err := os.Stat(n.WALDir()); err != nil {
			t.Fatalf("no WAL in RAFTEXAMPLE_DATA_DIR: %v", err)
		}
		if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/livez", wrongPort)); err == nil {
			t.Fatalf("something answers at RAFTEXAMPLE_PORT %d, which --port overrode", wrongPort)
		}
	})
	t.Run("/livez is 200 without a leader, /readyz and /health 503", func(t *testing.T) {
		if code, body, err := n.Do(http.MethodGet, "/livez", ""); err != nil || code != http.StatusOK || body != "ok\n" {
			t.Fatalf("GET /livez: %d %q %v, want 200 ok", code, body, err)
		}
		expectHealthAnswer(t, n, "/readyz", "ready", http.StatusServiceUnavailable, false)
		expectHealthAnswer(t, n, "/health", "health", http.StatusServiceUnavailable, false)
		if code, body, _ := n.Do(http.MethodPut, "/livez", "x"); code != http.StatusMethodNotAllowed {
			t.Fatalf("PUT /livez: %d %q, want 405 (a reserved path, not a key)", code, body)
		}
	})
	t.Run("/version", func(t *testing.T) {
		var v struct {
			Version, GoVersion, VCSRevision string
			VCSModified                     *bool
		}
		code, err := n.GetJSON("/version", &v)
		if err != nil || code != http.StatusOK || v.Version == "" || !strings.HasPrefix(v.GoVersion, "go") {
			t.Fatalf("GET /version: %d %v %+v, want the module and Go versions", code, err, v)
		}
		head, gitErr := exec.Command("git", "rev-parse", "HEAD").Output()
		switch {
		case v.VCSRevision != "" && gitErr == nil && v.VCSRevision != strings.TrimSpace(string(head)):
			t.Fatalf("vcsRevision %s, but the binary was built at HEAD %s", v.VCSRevision, head)
		case v.VCSRevision != "" && v.VCSModified == nil:
			t.Fatalf("vcsRevision without vcsModified: %+v", v)
		case v.VCSRevision == "":
			t.Logf("the build recorded no VCS state: %+v", v)
		}
		out, err := exec.Command(tc.Build(t), "--version").Output()
		if line := strings.TrimSuffix(string(out), "\n"); err != nil || !strings.HasPrefix(line, "raftexample "+v.Version+" "+v.GoVersion) || strings.Contains(line, "\n") {
			t.Fatalf("raftexample --version: %q %v, want one line with %s %s", out, err, v.Version, v.GoVersion)
		}
	})
	t.Run("every log line is JSON, and the typo is warned of", func(t *testing.T) {
		if code := n.Stop(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		lines := strings.Split(strings.TrimSuffix(n.RunLog(), "\n"), "\n")
		levels := map[string]int{}
		warned := false
		for _, line := range lines {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("a log line that is not JSON (%v): %s", err, line)
			}
			level, _ := entry["level"].(string)
			levels[level]++
			if entry["variable"] == "RAFTEXAMPLE_SNAPCOUNT" && level == "warn" {
				warned = true
			}
		}
		if !warned || levels["debug"] == 0 || len(lines) < 10 {
			t.Fatalf("%d lines by level %v, warning about RAFTEXAMPLE_SNAPCOUNT %v:\n%s", len(lines), levels, warned, tc.Tail(n.RunLog(), 20))
		}
		t.Logf("%d JSON lines by level %v", len(lines), levels)
	})
}

// TestBadVariableOrLogFormatStopsTheStart checks that a variable a flag
// refuses, and a --log-format that is neither console nor json, stop the
// member at once with exit code 2 and one line naming what was wrong.
func TestBadVariableOrLogFormatStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"RAFTEXAMPLE_SNAP_COUNT=lots"}, nil, `raftexample: RAFTEXAMPLE_SNAP_COUNT: invalid value "lots" for --snap-count: parse error`},
		{[]string{"RAFTEXAMPLE_JOIN=yes"}, nil, `raftexample: RAFTEXAMPLE_JOIN: invalid value "yes" for --join: parse error`},
		{[]string{"RAFTEXAMPLE_LOG_FORMAT=xml"}, nil, `raftexample: --log-format must be console or json, not "xml"`},
		{[]string{"RAFTEXAMPLE_PORT=9300"}, []string{"--listen-client-url", "http://127.0.0.1:9300"}, "raftexample: --listen-client-url replaces RAFTEXAMPLE_PORT; give one"},
	} {
		n := tc.NewNode(t, tc.Build(t), filepath.Join(dir, strconv.Itoa(i)), filepath.Join(dir, strconv.Itoa(i)+".log"), 0, c.args)
		n.Env = c.env
		n.Start()
		code, ok := n.Wait(30 * time.Second)
		if got := strings.TrimSpace(n.RunLog()); !ok || code != 2 || got != c.want {
			t.Errorf("%v %v: exit code %d (exited: %v), printed %q; want 2 and %q", c.env, c.args, code, ok, got, c.want)
		}
	}
}
