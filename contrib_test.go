package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on a copy of
// contrib/raftexample.service whose ExecStart is this test binary (verify
// wants an executable there; /usr/local/bin/raftexample is not installed
// here). verify exits 0 after mere warnings (an unknown key, a bad value),
// so any line it prints about the unit fails the test too.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: the unit is not checked")
	}
	unit, err := os.ReadFile("contrib/raftexample.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const execStart = "ExecStart=/usr/local/bin/raftexample\n"
	if !strings.Contains(string(unit), execStart) {
		t.Fatalf("the unit has no line %q", execStart)
	}
	copied := filepath.Join(t.TempDir(), "raftexample.service")
	if err := os.WriteFile(copied, []byte(strings.Replace(string(unit), execStart, "ExecStart="+self+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copied).CombinedOutput()
	var aboutUnit []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "raftexample.service") {
			aboutUnit = append(aboutUnit, line)
		} else if line != "" {
			t.Logf("systemd-analyze (not about the unit): %s", line)
		}
	}
	if err != nil || len(aboutUnit) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Type=simple", "EnvironmentFile=/etc/raftexample/raftexample.env", "StateDirectory=raftexample",
		"KillSignal=SIGTERM", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes"} {
		if !strings.Contains(string(unit), "\n"+want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
}

var envLine = regexp.MustCompile(`^#?(RAFTEXAMPLE_[A-Z0-9_]+)=(.*)$`)

// TestContribEnvFileSetsRealFlags reads contrib/raftexample.env as systemd
// would, sets its variables and parses the flags with them: every variable,
// and every one shown commented out, names a flag; the active ones pass
// parseFlags' checks and reach the options, with the commented-out ones
// too; and the data directory is the unit's StateDirectory.
func TestContribEnvFileSetsRealFlags(t *testing.T) {
	f, err := os.Open("contrib/raftexample.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	clearEnv(t)
	active, commented := map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		m := envLine.FindStringSubmatch(line)
		switch {
		case m != nil && line[0] == '#':
			commented[m[1]] = m[2]
		case m != nil:
			active[m[1]] = m[2]
		case line != "" && line[0] != '#':
			t.Errorf("a line that is neither a comment nor RAFTEXAMPLE_NAME=value: %q", line)
		}
	}
	if len(active) < 5 {
		t.Fatalf("only %d variables set: %v", len(active), active)
	}
	for name, value := range active {
		t.Setenv(name, value)
	}
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatalf("parseFlags with the env file: %v", err)
	}
	if len(o.env.unknown) != 0 || len(o.env.set) != len(active) {
		t.Fatalf("unknown %v; %d of %d variables set a flag", o.env.unknown, len(o.env.set), len(active))
	}
	if o.id != 1 || o.dataDir != "/var/lib/raftexample" || len(strings.Split(o.cluster, ",")) != 3 || o.logFormat != "json" {
		t.Fatalf("id %d, data-dir %q, cluster %q, log-format %q: want member 1 of 3 in /var/lib/raftexample, logging JSON", o.id, o.dataDir, o.cluster, o.logFormat)
	}
	// The commented-out ones, added to the rest, as a joining member with
	// TLS would have them.
	for name, value := range commented {
		t.Setenv(name, value)
	}
	o, err = parseFlags(nil)
	if err != nil {
		t.Fatalf("parseFlags with the env file's commented-out variables too: %v", err)
	}
	if len(o.env.unknown) != 0 || len(o.env.set) != len(active)+len(commented) || !o.join || o.peerTLS.TrustedCAFile == "" {
		t.Fatalf("commented-out variables: unknown %v; %d of %d set a flag", o.env.unknown, len(o.env.set), len(active)+len(commented))
	}
}
