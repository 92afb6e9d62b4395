package e2e

// The README's examples and recipes for keys that expire and transactions
// (issue #14), run as the README shows them: its sh blocks are read from
// README.md, the quick start's HTTP ports (12380, 22380, 32380) replaced by
// those of a test cluster, and fed to bash; what the commands print is
// checked against the answers the README gives.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// readmeBlock is one fenced block of README.md.
type readmeBlock struct {
	lang string // after the opening fence: "sh", or "" for output
	text string
	line int // of the opening fence
}

// readmeBlocks returns every fenced block of the README.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []readmeBlock
		cur    *readmeBlock
		body   []string
	)
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(line, "```"), line: i + 1}
			body = nil
		case cur != nil && line == "```":
			cur.text = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body = append(body, line)
		}
	}
	return blocks
}

// findBlock returns the one block of blocks that holds text, and the block
// after it.
func findBlock(t *testing.T, blocks []readmeBlock, text string) (readmeBlock, readmeBlock) {
	t.Helper()
	found := -1
	for i, b := range blocks {
		if strings.Contains(b.text, text) {
			if found >= 0 {
				t.Fatalf("README blocks at lines %d and %d both hold %q", blocks[found].line, b.line, text)
			}
			found = i
		}
	}
	if found < 0 {
		t.Fatalf("no README block holds %q", text)
	}
	var next readmeBlock
	if found+1 < len(blocks) {
		next = blocks[found+1]
	}
	return blocks[found], next
}

// blockLine returns the one line of b that starts with prefix.
func blockLine(t *testing.T, b readmeBlock, prefix string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(b.text, "\n") {
		if strings.HasPrefix(line, prefix) {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README block at line %d: %d lines start with %q, want one", b.line, len(found), prefix)
	}
	return found[0]
}

// blockLines returns the lines of b from the one starting with first to the
// one equal to last, inclusive.
func blockLines(t *testing.T, b readmeBlock, first, last string) string {
	t.Helper()
	lines := strings.Split(b.text, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, first) {
			for j := i; j < len(lines); j++ {
				if lines[j] == last {
					return strings.Join(lines[i:j+1], "\n") + "\n"
				}
			}
		}
	}
	t.Fatalf("README block at line %d: no lines from %q to %q", b.line, first, last)
	return ""
}

// readmePorts replaces the quick start's HTTP ports in s by those of c's
// nodes 1, 2 and 3.
func readmePorts(c *tc.Cluster, s string) string {
	for i, p := range []string{"12380", "22380", "32380"} {
		s = strings.ReplaceAll(s, "127.0.0.1:"+p, fmt.Sprintf("127.0.0.1:%d", c.Node(i+1).HTTPPort))
	}
	return s
}

// ---------------------------------------------------------------------------
// Commands with the answer the README gives

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

// ---------------------------------------------------------------------------
// Terminals

// terminal is a bash reading commands from the test, as if typed into a
// terminal: its standard output is read line by line, each stamped with
// when it came.
type terminal struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan termLine
	stderr *syncBuffer
	mu     sync.Mutex
	seen   []string
}

type termLine struct {
	text string
	at   time.Time
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openTerminal starts bash in a directory of its own, in a process group of
// its own that is killed when the test ends (with everything it started).
func openTerminal(t *testing.T, name string) *terminal {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-s")
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{name: name, cmd: cmd, stdin: stdin, lines: make(chan termLine, 4096), stderr: &syncBuffer{}}
	cmd.Stderr = term.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(term.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			term.lines <- termLine{sc.Text(), time.Now()}
		}
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			term.mu.Lock()
			t.Logf("---- terminal %s: its last lines ----\n%s\n---- its stderr ----\n%s", name,
				tc.Tail(strings.Join(term.seen, "\n"), 30), tc.Tail(term.stderr.String(), 30))
			term.mu.Unlock()
		}
	})
	return term
}

// run types text (one or more lines) into the terminal.
func (term *terminal) run(t *testing.T, text string) {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if _, err := io.WriteString(term.stdin, text); err != nil {
		t.Fatalf("terminal %s: %v", term.name, err)
	}
}

// line returns the next line the terminal prints, ok false if none came
// within timeout.
func (term *terminal) line(timeout time.Duration) (termLine, bool) {
	select {
	case l, ok := <-term.lines:
		if ok {
			term.mu.Lock()
			term.seen = append(term.seen, l.text)
			term.mu.Unlock()
		}
		return l, ok
	case <-time.After(timeout):
		return termLine{}, false
	}
}

// expect skips lines until one matches re, failing the test if none does
// within timeout; it returns that line and its submatches.
func (term *terminal) expect(t *testing.T, re string, timeout time.Duration) (termLine, []string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		l, ok := term.line(time.Until(deadline))
		if !ok {
			t.Fatalf("terminal %s: no line matching %q within %v", term.name, re, timeout)
		}
		if m := rx.FindStringSubmatch(l.text); m != nil {
			return l, m
		}
	}
}

// quiet requires that the terminal prints nothing for d.
func (term *terminal) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	if l, ok := term.line(d); ok {
		t.Fatalf("terminal %s printed %q, want nothing yet", term.name, l.text)
	}
}

// sseFrame is one Server-Sent Events frame as curl -N prints it.
type sseFrame struct {
	lines []string
	id    uint64
	event string
	data  map[string]any
	at    time.Time // when its last line came
}

// frame reads the next frame the terminal prints (a curl -N of a watch),
// failing the test if none comes within timeout.
func (term *terminal) frame(t *testing.T, timeout time.Duration) sseFrame {
	t.Helper()
	var f sseFrame
	deadline := time.Now().Add(timeout)
	for {
		l, ok := term.line(time.Until(deadline))
		if !ok {
			t.Fatalf("terminal %s: no whole frame within %v (got %q)", term.name, timeout, f.lines)
		}
		if l.text == "" {
			if len(f.lines) > 0 {
				f.at = l.at
				return f
			}
			continue
		}
		f.lines = append(f.lines, l.text)
		field, val, _ := strings.Cut(l.text, ": ")
		switch field {
		case "id":
			f.id, _ = strconv.ParseUint(val, 10, 64)
		case "event":
			f.event = val
		case "data":
			if err := json.Unmarshal([]byte(val), &f.data); err != nil {
				t.Fatalf("terminal %s: data line %q: %v", term.name, l.text, err)
			}
		}
	}
}

// change returns the next frame that is not progress.
func (term *terminal) change(t *testing.T, timeout time.Duration) sseFrame {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if f := term.frame(t, time.Until(deadline)); f.event != "progress" {
			return f
		}
	}
}

// hasProcess reports whether a process of the terminal's group has s in
// its command line.
func (term *terminal) hasProcess(s string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 3 || f[2] != strconv.Itoa(term.cmd.Process.Pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if strings.Contains(string(cmdline), s) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------

func TestREADMEExamplesAndRecipesOfTTLsAndTransactionsWorkAsShown(t *testing.T) {
	// A fresh cluster, as the README's examples start from: nothing
	// written yet (StartCluster would write a key).
	c := tc.New(t, 3)
	c.Start()
	tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	blocks := readmeBlocks(t)

	t.Run("the examples answer as the README says, on a fresh cluster", func(t *testing.T) {
		ttlBlock, _ := findBlock(t, blocks, "v1/kv/session?ttl=5s")
		runExamples(t, c, ttlBlock)

		watchBlock, frameBlock := findBlock(t, blocks, "curl -N http://127.0.0.1:22380/v1/watch/session")
		term := openTerminal(t, "watch")
		caughtUp(t, c.Node(2))
		term.run(t, readmePorts(c, watchBlock.text))
		if f := term.frame(t, watchTimeout); f.event != "progress" || f.id != 2 {
			t.Fatalf("watch: first frame %q, want the progress frame at 2", f.lines)
		}
		f := term.change(t, tc.Timeout) // after a progress frame every 5 s of quiet
		want := strings.Split(strings.TrimSpace(frameBlock.text), "\n")
		if strings.Join(f.lines, "\n") != strings.Join(want, "\n") {
			t.Fatalf("watch printed\n%s\nthe README says\n%s", strings.Join(f.lines, "\n"), strings.Join(want, "\n"))
		}

		txnBlock, _ := findBlock(t, blocks, "/v1/txn -d \"$order\"")
		runExamples(t, c, txnBlock)
	})

	defs, _ := findBlock(t, blocks, "acquire() {")
	t.Run("recipes", func(t *testing.T) {
		t.Run("a lock: acquired, renewed, released, and a waiter that gets it then", func(t *testing.T) {
			t.Parallel()
			usage, _ := findBlock(t, blocks, "acquire locks/printer alice 10s")
			waiter, _ := findBlock(t, blocks, "acquire locks/printer bob 10s")
			alice, bob := openTerminal(t, "alice"), openTerminal(t, "bob")
			alice.run(t, readmePorts(c, defs.text))
			bob.run(t, readmePorts(c, defs.text))

			alice.run(t, blockLine(t, usage, "acquire locks/printer alice"))
			_, m := alice.expect(t, `^alice holds it: "(\d+)"$`, tc.Timeout)
			first, _ := strconv.ParseUint(m[1], 10, 64)
			k := revOf(t, c.Node(2), "locks/printer")
			if k.Value != "alice" || k.ModRevision != first || k.Version != 1 {
				t.Fatalf("after alice's acquire: %v, want alice at %d", k, first)
			}

			// Bob waits in the watch until alice lets go.
			bob.run(t, blockLine(t, waiter, "acquire locks/printer bob"))
			tc.Eventually(t, tc.Timeout, func() error {
				if !bob.hasProcess("/v1/watch/locks/printer?fromRevision=") {
					return fmt.Errorf("bob's terminal does not watch the lock")
				}
				return nil
			})
			alice.run(t, blockLine(t, usage, "renew locks/printer alice"))
			_, m = alice.expect(t, `^still hers: "(\d+)"$`, tc.Timeout)
			renewed, _ := strconv.ParseUint(m[1], 10, 64)
			resp, err := c.Node(3).DoRequest(http.MethodGet, "/v1/kv/locks/printer", "", nil)
			ttl, _, _, _ := tc.TTLOf(resp.Header)
			if err != nil || resp.Body != "alice" || resp.Header.Get("ETag") != tag(renewed) || ttl != 10*time.Second || renewed <= first {
				t.Fatalf("after alice's renewal: %d %q ETag %q X-TTL %q %v; want alice at %d with a 10 s TTL", resp.Code, resp.Body, resp.Header.Get("ETag"), resp.Header.Get("X-TTL"), err, renewed)
			}
			// Her first ETag is worth nothing now.
			resp, err = c.Node(1).DoRequest(http.MethodDelete, "/v1/kv/locks/printer", "", hdr("If-Match", tag(first)))
			expectStatus(t, "DELETE with the ETag from before the renewal", resp.Code, resp.Body, err, http.StatusPreconditionFailed)
			bob.quiet(t, 200*time.Millisecond)

			alice.run(t, blockLine(t, usage, "release locks/printer"))
			released, _ := alice.expect(t, `^204$`, tc.Timeout)
			got, m := bob.expect(t, `^bob holds it: "(\d+)"$`, tc.Timeout)
			bobs, _ := strconv.ParseUint(m[1], 10, 64)
			if wait := got.at.Sub(released.at); wait > 5*time.Second {
				t.Fatalf("bob got the lock %v after alice released it: not through the watch", wait)
			}
			k = revOf(t, c.Node(1), "locks/printer")
			if k.Value != "bob" || k.ModRevision != bobs || k.Version != 1 || bobs <= renewed {
				t.Fatalf("after bob's acquire: %v, want bob at %d, created after %d", k, bobs, renewed)
			}
			// Alice's renewal fails now: the lock is bob's.
			alice.run(t, blockLine(t, usage, "renew locks/printer alice"))
			alice.quiet(t, time.Second)
			if k := revOf(t, c.Node(2), "locks/printer"); k.Value != "bob" || k.ModRevision != bobs {
				t.Fatalf("after alice's late renewal: %v, want bob's lock at %d untouched", k, bobs)
			}
			bob.run(t, blockLine(t, usage, "release locks/printer"))
			bob.expect(t, `^204$`, tc.Timeout)
			if k := revOf(t, c.Node(3), "locks/printer"); k.Code != http.StatusNotFound {
				t.Fatalf("after bob's release: %v, want 404", k)
			}
		})

		t.Run("leader election: a watcher learns the new leader when the old one stops renewing", func(t *testing.T) {
			t.Parallel()
			campaign, _ := findBlock(t, blocks, "campaign() {")
			watch, _ := findBlock(t, blocks, "curl -N http://127.0.0.1:32380/v1/watch/election/leader")
			observer := openTerminal(t, "observer")
			caughtUp(t, c.Node(3))
			observer.run(t, readmePorts(c, watch.text))
			observer.frame(t, watchTimeout) // progress

			term := openTerminal(t, "candidates")
			term.run(t, readmePorts(c, defs.text))
			term.run(t, readmePorts(c, blockLines(t, campaign, "campaign() {", "}")))
			term.run(t, blockLine(t, campaign, "campaign alice &"))
			term.expect(t, `^alice leads$`, tc.Timeout)
			term.run(t, blockLine(t, campaign, "campaign bob &"))
			getLeader := readmePorts(c, blockLine(t, campaign, "curl -s http://127.0.0.1:32380/v1/kv/election/leader"))
			term.run(t, getLeader+"\necho") // the value has no newline of its own
			term.expect(t, `^alice$`, tc.Timeout)

			// Alice renews every second; for longer than the 3 s TTL the
			// watch sees only her puts, and bob does not lead.
			until := time.Now().Add(4 * time.Second)
			var last sseFrame
			renewals := 0
			for time.Now().Before(until) {
				f := observer.change(t, watchTimeout)
				if f.event != "put" || f.data["value"] != "alice" {
					t.Fatalf("while alice renews the watch printed %q", f.lines)
				}
				last = f
				renewals++
			}
			if renewals < 3 {
				t.Fatalf("%d renewals of alice in 4 s, want one about every second", renewals)
			}
			term.quiet(t, 100*time.Millisecond) // bob does not lead

			term.run(t, "kill %1")
			killed := time.Now()
			f := observer.change(t, tc.Timeout)
			for f.event == "put" && f.data["value"] == "alice" { // a renewal already under way
				last = f
				f = observer.change(t, tc.Timeout)
			}
			if f.event != "delete" || f.data["expired"] != true || f.data["key"] != "election/leader" {
				t.Fatalf("after alice stopped the watch printed %q, want the key's expiry", f.lines)
			}
			expiredAfter := f.at.Sub(last.at)
			f = observer.change(t, tc.Timeout)
			if f.event != "put" || f.data["value"] != "bob" || f.data["version"] != 1.0 {
				t.Fatalf("after the expiry the watch printed %q, want a put of bob, version 1", f.lines)
			}
			leads, _ := term.expect(t, `^bob leads$`, tc.Timeout)
			// Alice's last renewal was sent at most about a second before the
			// kill, and keeps the key 3 s from then.
			if leads.at.Before(killed.Add(1500 * time.Millisecond)) {
				t.Fatalf("bob led %v after alice stopped, before her last renewal's 3 s were up", leads.at.Sub(killed).Round(time.Millisecond))
			}
			term.run(t, getLeader+"\necho")
			term.expect(t, `^bob$`, tc.Timeout)
			t.Logf("alice renewed %d times; her key expired %v after her last renewal was seen, bob led %v after she was killed",
				renewals, expiredAfter.Round(time.Millisecond), leads.at.Sub(killed).Round(time.Millisecond))
		})

		t.Run("a service registry: a prefix watch sees registrations, renewals and an expiry", func(t *testing.T) {
			t.Parallel()
			register, _ := findBlock(t, blocks, "register() {")
			client, frameBlock := findBlock(t, blocks, "-o web.json") // then the expiry frame it prints
			services := openTerminal(t, "services")
			services.run(t, readmePorts(c, register.text))
			tc.Eventually(t, tc.Timeout, func() error {
				items, _, err := c.Node(2).ListRevs("services/web/", "")
				if err != nil || len(items) != 2 {
					return fmt.Errorf("services/web/: %v %v, want 2 instances", items, err)
				}
				return nil
			})

			clients := openTerminal(t, "client")
			clients.run(t, readmePorts(c, blockLine(t, client, "rev=$(curl")))
			clients.run(t, blockLine(t, client, "cat web.json"))
			l, _ := clients.expect(t, `^\[`, tc.Timeout)
			var listed []map[string]any
			if err := json.Unmarshal([]byte(l.text), &listed); err != nil || len(listed) != 2 {
				t.Fatalf("cat web.json: %q (%v), want both instances", l.text, err)
			}
			for i, want := range [][2]string{{"services/web/web-1", "10.0.0.1:8080"}, {"services/web/web-2", "10.0.0.2:8080"}} {
				if listed[i]["key"] != want[0] || listed[i]["value"] != want[1] || listed[i]["ttl"] != "5s" {
					t.Fatalf("cat web.json: item %d is %v, want %s = %s with \"ttl\":\"5s\"", i, listed[i], want[0], want[1])
				}
			}
			clients.run(t, readmePorts(c, blockLine(t, client, "curl -N")))
			clients.frame(t, watchTimeout) // progress
			// Renewals: puts of both, with versions above 1.
			renewed := map[string]bool{}
			for len(renewed) < 2 {
				f := clients.change(t, watchTimeout)
				if f.event != "put" || f.data["version"].(float64) < 2 {
					t.Fatalf("watch printed %q, want renewals", f.lines)
				}
				renewed[f.data["key"].(string)] = true
			}

			services.run(t, "kill %1")
			killed := time.Now()
			for {
				f := clients.change(t, tc.Timeout)
				if f.event == "put" {
					continue // renewals (of web-1 before the kill took effect too)
				}
				if f.event != "delete" || f.data["key"] != "services/web/web-1" || f.data["expired"] != true {
					t.Fatalf("after web-1 stopped the watch printed %q, want web-1's expiry", f.lines)
				}
				// The README's frame, but for the revision.
				want := strings.Split(strings.TrimSpace(frameBlock.text), "\n")
				rev := strconv.FormatUint(f.id, 10)
				for i := range want {
					want[i] = strings.ReplaceAll(want[i], "42", rev)
				}
				if strings.Join(f.lines, "\n") != strings.Join(want, "\n") {
					t.Fatalf("watch printed\n%s\nthe README says\n%s", strings.Join(f.lines, "\n"), strings.Join(want, "\n"))
				}
				t.Logf("web-1 expired %v after it was stopped", f.at.Sub(killed).Round(time.Millisecond))
				break
			}
			items, _, err := c.Node(1).ListRevs("services/web/", "")
			if err != nil || len(items) != 1 || items[0].Key != "services/web/web-2" {
				t.Fatalf("services/web/ after web-1's expiry: %+v %v, want web-2 alone", items, err)
			}
		})
	})
}
