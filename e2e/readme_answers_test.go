package e2e

// Commands with the answer the README gives: running a block through bash
// and matching what each command printed.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	tc "raftexample/internal/testcluster"
)

// matchDots reports whether got is want, where each "..." in want stands
// for any text.
func matchDots(got, want string) bool {
	parts := strings.Split(want, "...")
	if len(parts) == 1 {
		return got == want
	}
	if !strings.HasPrefix(got, parts[0]) || !strings.HasSuffix(got[len(parts[0]):], parts[len(parts)-1]) {
		return false
	}
	rest := got[len(parts[0]) : len(got)-len(parts[len(parts)-1])]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// sameJSON reports whether got and want are the same JSON text but for
// insignificant white space (the README shows an answer on one line).
func sameJSON(got, want string) bool {
	var g, w bytes.Buffer
	return json.Compact(&g, []byte(got)) == nil && json.Compact(&w, []byte(want)) == nil && g.String() == w.String()
}

// checkAnswer compares what a command of the README printed with the
// answer its comment gives. With curl -i the comment is "STATUS, Name:
// value, ...; body" (headers and body optional: only those given are
// compared); otherwise it is the output. JSON is compared but for white
// space; "..." stands for any text.
func checkAnswer(cmd, out, comment string) error {
	fields := strings.Fields(cmd)
	withHeaders := false
	for _, f := range fields {
		if f == "-i" || f == "-si" || f == "-Li" {
			withHeaders = true
		}
	}
	if !withHeaders {
		if sameJSON(out, comment) {
			return nil
		}
		if !matchDots(strings.TrimSpace(out), comment) {
			return fmt.Errorf("printed %q, the README says %q", tc.Shorten(out, 400), comment)
		}
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		return fmt.Errorf("printed %q: %v", tc.Shorten(out, 400), err)
	}
	body, _ := io.ReadAll(resp.Body)
	head, wantBody, hasBody := strings.Cut(comment, "; ")
	parts := strings.Split(head, ", ")
	if code, err := strconv.Atoi(parts[0]); err != nil || code != resp.StatusCode {
		return fmt.Errorf("status %d (%q), the README says %q", resp.StatusCode, tc.Shorten(out, 400), comment)
	}
	for _, p := range parts[1:] {
		name, val, ok := strings.Cut(p, ": ")
		if !ok {
			return fmt.Errorf("the README's answer %q: %q is not a header", comment, p)
		}
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != val {
			return fmt.Errorf("header %s: %q, the README says %q (answer %q)", name, got, val, tc.Shorten(out, 400))
		}
	}
	if hasBody && !sameJSON(string(body), wantBody) && !matchDots(strings.TrimSpace(string(body)), wantBody) {
		return fmt.Errorf("body %q, the README says %q", body, wantBody)
	}
	return nil
}

// runExamples runs block b (with c's ports) through one bash, and checks
// every curl command with an answer in a comment ("  # ...") against what
// it printed.
func runExamples(t *testing.T, c *tc.Cluster, b readmeBlock) {
	t.Helper()
	type check struct{ cmd, comment string }
	var (
		script strings.Builder
		checks []check
	)
	for _, line := range strings.Split(readmePorts(c, b.text), "\n") {
		script.WriteString(line + "\n")
		cmd, comment, ok := strings.Cut(line, "  # ")
		if !ok || !strings.HasPrefix(line, "curl ") {
			continue
		}
		checks = append(checks, check{strings.TrimSpace(cmd), strings.TrimSpace(comment)})
		fmt.Fprintf(&script, "printf '\\n%s\\n'\n", outputMark)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script.String())
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("README block at line %d: %v\n%s\n%s", b.line, err, out, stderr.String())
	}
	outs := strings.Split(string(out), "\n"+outputMark+"\n")
	if len(outs) != len(checks)+1 {
		t.Fatalf("README block at line %d: %d outputs for %d commands: %q", b.line, len(outs)-1, len(checks), out)
	}
	for i, ch := range checks {
		if err := checkAnswer(ch.cmd, outs[i], ch.comment); err != nil {
			t.Errorf("README line %q: %v", ch.cmd, err)
		}
	}
}

const outputMark = "----readme-test-output----"
