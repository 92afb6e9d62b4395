package e2e

// The README's fenced blocks: finding them and the lines in them, with the
// quick start's ports replaced by a test cluster's.

import (
	"fmt"
	"os"
	"strings"
	"testing"

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
