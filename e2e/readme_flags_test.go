package e2e

// The README's "## Flags" table against what the binary's --help prints:
// the same flags, with the same defaults, so that the table cannot drift
// from the code again (it once said --wal-segment-bytes defaults to
// 67108864 while the binary wrote 64000000).

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	tc "raftexample/internal/testcluster"
)

func TestREADMEFlagsTableListsExactlyTheFlagsAndDefaultsOfHelp(t *testing.T) {
	out, err := exec.Command(tc.Build(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("raftexample --help: %v\n%s", err, out)
	}
	help := parseHelpDefaults(t, string(out))
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table := readmeFlagsTable(t, string(readme))

	for name, def := range help {
		got, ok := table[name]
		switch {
		case !ok:
			t.Errorf("--%s: printed by --help (default %q) but not in the README's Flags table", name, def)
		case got != def:
			t.Errorf("--%s: the README's Flags table says the default is %q, --help says %q", name, got, def)
		}
	}
	for name := range table {
		if _, ok := help[name]; !ok {
			t.Errorf("--%s: in the README's Flags table but not printed by --help", name)
		}
	}
	if len(help) < 20 {
		t.Fatalf("found only %d flags in --help; the parser is broken:\n%s", len(help), out)
	}
}

// flagLine is a flag's line in the output of Go's flag.PrintDefaults:
// "  -name" and, for a flag that is not a bool, its type.
var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: ([a-z0-9]+))?(?:\s|$)`)

// parseHelpDefaults reads --help and returns each flag's default as the
// README writes it: what "(default X)" says (unquoted), or the type's zero
// value, which flag.PrintDefaults leaves out.
func parseHelpDefaults(t *testing.T, help string) map[string]string {
	t.Helper()
	type flagHelp struct{ name, typ, usage string }
	var flags []*flagHelp
	for _, line := range strings.Split(help, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags = append(flags, &flagHelp{name: m[1], typ: m[2]})
			continue
		}
		if len(flags) > 0 && strings.HasPrefix(line, "    ") {
			f := flags[len(flags)-1]
			f.usage += " " + strings.TrimSpace(line)
		}
	}
	defaults := map[string]string{}
	for _, f := range flags {
		def := zeroDefault(f.typ)
		if i := strings.LastIndex(f.usage, "(default "); i >= 0 && strings.HasSuffix(f.usage, ")") {
			def = f.usage[i+len("(default ") : len(f.usage)-1]
			if unq, err := strconv.Unquote(def); err == nil {
				def = unq
			}
		}
		defaults[f.name] = def
	}
	return defaults
}

// zeroDefault is how the README writes the zero value of a flag of type typ
// ("" for a bool: PrintDefaults names no type for those).
func zeroDefault(typ string) string {
	switch typ {
	case "":
		return "false"
	case "string":
		return ""
	case "duration":
		return "0s"
	default:
		return "0"
	}
}

// readmeFlagsTable reads the table of the README's "## Flags" section: each
// flag named in a row's first cell (one or more, "`--a`, `--b`") with the
// row's default, backticks removed.
func readmeFlagsTable(t *testing.T, readme string) map[string]string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Flags\n")
	if !ok {
		t.Fatal(`README.md has no "## Flags" section`)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	table := map[string]string{}
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("README Flags row %q: want | flag | default | meaning |", line)
		}
		rows++
		def := strings.Trim(strings.TrimSpace(cells[1]), "`")
		for _, name := range strings.Split(strings.TrimSpace(cells[0]), ", ") {
			name = strings.Trim(name, "`")
			if !strings.HasPrefix(name, "--") {
				t.Fatalf("README Flags row %q: %q is not a flag", line, name)
			}
			if _, dup := table[name[2:]]; dup {
				t.Errorf("README Flags table lists --%s twice", name[2:])
			}
			table[name[2:]] = def
		}
	}
	if rows == 0 {
		t.Fatal("README's Flags section holds no table rows")
	}
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	slices.Sort(names)
	t.Logf("README Flags table: %d rows, flags %s", rows, strings.Join(names, " "))
	return table
}
