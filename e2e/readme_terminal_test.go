package e2e

// Terminals: bash fed commands by the README test, its output read line by
// line and as watch frames.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
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
