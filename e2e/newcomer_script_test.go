package e2e

// scripts/cluster.sh as the README uses it, run in a copy of the repository's
// layout (the script, the built binary, the Procfile with free ports): a
// member that exits during start is reported, logs are appended to, and a
// Ctrl-C or `scripts/cluster.sh stop` stops every member with a pid file in
// logs/, including those the README starts by hand.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// scriptRepo is a temporary directory laid out as the repository is for the
// script, with the README's ports replaced by free ones.
type scriptRepo struct {
	dir   string
	ports map[string]string // README port -> this run's
}

func newScriptRepo(t *testing.T) *scriptRepo {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "ps"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("scripts/cluster.sh needs %s: %v", tool, err)
		}
	}
	r := &scriptRepo{dir: t.TempDir(), ports: map[string]string{}}
	free := tc.FreePorts(t, 10)
	for i, p := range []string{"12379", "22379", "32379", "42379", "52379", "12380", "22380", "32380", "42380", "52380"} {
		r.ports[p] = strconv.Itoa(free[i])
	}
	script, err := os.ReadFile("../scripts/cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(tc.Build(t))
	if err != nil {
		t.Fatal(err)
	}
	procfile, err := os.ReadFile("../Procfile")
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		"scripts/cluster.sh": script,
		"raftexample":        bin,
		"Procfile":           []byte(r.local(string(procfile))),
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(r.dir, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, path), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Whatever the script or the test failed to stop is killed, by pid.
	t.Cleanup(func() {
		if t.Failed() {
			files, _ := filepath.Glob(filepath.Join(r.dir, "logs", "*.log"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				t.Logf("---- the end of %s ----\n%s", f, tc.Tail(string(b), 15))
			}
		}
		for _, pid := range r.pidFiles(t) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return r
}

// readmePort is a port of the README's cluster, in a URL or after --port.
var readmePort = regexp.MustCompile(`\b[1-5]23(79|80)\b`)

// local replaces the README's ports in s by this run's.
func (r *scriptRepo) local(s string) string {
	return readmePort.ReplaceAllStringFunc(s, func(p string) string { return r.ports[p] })
}

// pidFiles reads logs/*.pid: name -> pid.
func (r *scriptRepo) pidFiles(t *testing.T) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(r.dir, "logs", "*.pid"))
	out := map[string]int{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
		}
	}
	return out
}

// bash runs a command line in the repository, as typed into a terminal
// there, and returns what it printed on its standard output.
func (r *scriptRepo) bash(t *testing.T, line string) string {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", line)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "NO_BUILD=1")
	// A file, not a pipe: a member started in the background keeps the
	// descriptor, and reading a pipe to its end would wait for the member.
	out, err := os.CreateTemp(t.TempDir(), "bash-out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr syncBuffer // curl's progress meter, say
	cmd.Stdout, cmd.Stderr = out, &stderr
	err = cmd.Run()
	printed, _ := os.ReadFile(out.Name())
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", line, err, printed, stderr.String())
	}
	return string(printed)
}

// scriptRun is scripts/cluster.sh running in the foreground, in a process
// group of its own, as in a terminal.
type scriptRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (r *scriptRepo) start(t *testing.T, env ...string) *scriptRun {
	t.Helper()
	cmd := exec.Command("bash", "scripts/cluster.sh")
	cmd.Dir = r.dir
	cmd.Env = append(append(os.Environ(), "NO_BUILD=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &scriptRun{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

// exited waits for the script to end and returns its exit code.
func (s *scriptRun) exited(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(tc.Timeout):
		t.Fatalf("scripts/cluster.sh still runs %v later; it printed:\n%s", tc.Timeout, s.out)
		return 0
	}
}

// up waits until the script says the cluster is up.
func (s *scriptRun) up(t *testing.T) {
	t.Helper()
	err := tc.Poll(tc.Timeout, func() error {
		if strings.Contains(s.out.String(), "cluster is up") {
			return nil
		}
		select {
		case <-s.done:
			return tc.GiveUp(errors.New("the script exited"))
		default:
			return errors.New("not up yet")
		}
	})
	if err != nil {
		t.Fatalf("scripts/cluster.sh: %v; it printed:\n%s", err, s.out)
	}
}

// healthy waits until the member on the README's HTTP port answers /health
// with 200.
func (r *scriptRepo) healthy(t *testing.T, readmePort string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	tc.Eventually(t, tc.Timeout, func() error {
		resp, err := client.Get("http://127.0.0.1:" + r.ports[readmePort] + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /health on the member at the README's %s: %d", readmePort, resp.StatusCode)
		}
		return nil
	})
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestClusterScriptStopsEveryMemberItFindsAndReportsOneThatDies(t *testing.T) {
	r := newScriptRepo(t)
	logs := filepath.Join(r.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	const earlier = "a line from an earlier run\n"
	if err := os.WriteFile(filepath.Join(logs, "raft1.log"), []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t)

	t.Run("Ctrl-C stops the members it started and those started by hand, at once", func(t *testing.T) {
		s := r.start(t)
		s.up(t)
		// The README's restart of member 2 and its join of member 4, word
		// for word but for the ports.
		kill, restart := findBlock(t, blocks, "kill -KILL $(cat logs/raft2.pid)")
		r.bash(t, blockLine(t, kill, "kill -KILL"))
		r.bash(t, r.local(blockLine(t, restart, "./raftexample --id 2 ")))
		r.healthy(t, "22380")
		join, _ := findBlock(t, blocks, "/4 -XPOST -d http://127.0.0.1:42379")
		r.bash(t, r.local(blockLine(t, join, "curl -L http://127.0.0.1:12380/4 -XPOST")))
		r.bash(t, r.local(blockLine(t, join, "./raftexample --id 4 ")))
		r.healthy(t, "42380")
		pids := r.pidFiles(t)
		for _, name := range []string{"raft1", "raft2", "raft3", "raft4"} {
			if !alive(pids[name]) {
				t.Fatalf("logs/%s.pid holds %d, which is not running (pid files %v)", name, pids[name], pids)
			}
		}
		// A pid file of a member long gone.
		gone := exec.Command("true")
		if err := gone.Run(); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(logs, "ghost.pid"), []byte(strconv.Itoa(gone.Process.Pid)+"\n"), 0o644)

		ctrlC := time.Now()
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT) // the terminal's Ctrl-C: the whole foreground job
		code := s.exited(t)
		took := time.Since(ctrlC)
		out := s.out.String()
		if code != 0 {
			t.Errorf("after Ctrl-C the script exited %d, want 0; it printed:\n%s", code, out)
		}
		for name, pid := range pids {
			if alive(pid) {
				t.Errorf("%s (pid %d) still runs after the script's Ctrl-C", name, pid)
			}
			if !strings.Contains(out, fmt.Sprintf("stopped %s (pid %d)", name, pid)) {
				t.Errorf("the script did not say it stopped %s; it printed:\n%s", name, out)
			}
		}
		if left := r.pidFiles(t); len(left) > 0 {
			t.Errorf("pid files left in logs/: %v", left)
		}
		if !strings.Contains(out, "removing stale logs/ghost.pid") {
			t.Errorf("the script did not remove the stale logs/ghost.pid; it printed:\n%s", out)
		}
		for name := range pids {
			if b, _ := os.ReadFile(filepath.Join(logs, name+".log")); strings.Contains(string(b), "hand leadership over") {
				t.Errorf("logs/%s.log: a hand-off attempt on Ctrl-C:\n%s", name, tc.Tail(string(b), 5))
			}
		}
		t.Logf("Ctrl-C stopped 4 members in %v", took.Round(time.Millisecond))
	})

	t.Run("scripts/cluster.sh stop stops a running cluster; logs are appended to", func(t *testing.T) {
		s := r.start(t)
		s.up(t)
		pids := r.pidFiles(t)
		out := r.bash(t, "scripts/cluster.sh stop")
		for name, pid := range pids {
			if !strings.Contains(out, fmt.Sprintf("stopped %s (pid %d)", name, pid)) || alive(pid) {
				t.Errorf("stop: %s (pid %d) alive %v; stop printed:\n%s", name, pid, alive(pid), out)
			}
		}
		if code := s.exited(t); code != 0 {
			t.Errorf("the script exited %d once its members were stopped, want 0; it printed:\n%s", code, s.out)
		}
		b, err := os.ReadFile(filepath.Join(logs, "raft1.log"))
		if err != nil {
			t.Fatal(err)
		}
		runs := regexp.MustCompile(`(?m)^==== .* scripts/cluster.sh starts: \./raftexample --id 1 `).FindAllIndex(b, -1)
		if !strings.HasPrefix(string(b), earlier) || len(runs) != 2 {
			t.Errorf("logs/raft1.log: starts %q, %d runs of the script, want the earlier line kept and 2 runs", tc.Shorten(string(b), 80), len(runs))
		}
	})

	t.Run("a member that exits during start is reported, and the others stopped", func(t *testing.T) {
		taken, err := net.Listen("tcp", ":"+r.ports["32380"])
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		s := r.start(t)
		code := s.exited(t)
		out := s.out.String()
		if code == 0 || strings.Contains(out, "cluster is up") || !strings.Contains(out, "raft3 exited during start (exit code 1)") ||
			!strings.Contains(out, "address already in use") {
			t.Fatalf("with raft3's port taken the script exited %d and printed:\n%s\nwant exit 1 and raft3's failure, with the reason from its log", code, out)
		}
		for _, name := range []string{"raft1", "raft2"} {
			if !strings.Contains(out, "stopped "+name) {
				t.Errorf("the script did not stop %s; it printed:\n%s", name, out)
			}
		}
		if left := r.pidFiles(t); len(left) > 0 {
			t.Errorf("pid files left in logs/: %v", left)
		}
	})
	t.Run("a member that cannot start is replaced under a new id as the README says", func(t *testing.T) {
		r.bash(t, "rm -rf raftexample-*") // a fresh cluster: the first subtest added a member 4
		taken, err := net.Listen("tcp", ":"+r.ports["42380"])
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		s := r.start(t)
		s.up(t)
		join, _ := findBlock(t, blocks, "/4 -XPOST -d http://127.0.0.1:42379")
		r.bash(t, r.local(blockLine(t, join, "curl -L http://127.0.0.1:12380/4 -XPOST")))
		r.bash(t, r.local(blockLine(t, join, "./raftexample --id 4 ")))
		four := r.pidFiles(t)["raft4"]
		tc.Eventually(t, tc.Timeout, func() error {
			if alive(four) {
				return fmt.Errorf("member 4 (pid %d) still runs with its HTTP port taken", four)
			}
			return nil
		})
		if b, _ := os.ReadFile(filepath.Join(logs, "raft4.log")); !strings.Contains(string(b), "address already in use") {
			t.Fatalf("logs/raft4.log does not say the port was taken:\n%s", tc.Tail(string(b), 5))
		}
		replace, _ := findBlock(t, blocks, "/4 -XDELETE")
		if out := r.bash(t, r.local(replace.text)); strings.TrimSpace(out) != "" {
			t.Fatalf("the README's commands to replace member 4 printed %q, want nothing (204s)", out)
		}
		r.healthy(t, "52380")
		tc.Eventually(t, tc.Timeout, func() error {
			resp, err := http.Get("http://127.0.0.1:" + r.ports["12380"] + "/v1/members")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var ms []struct{ ID int }
			if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
				return err
			}
			if got := fmt.Sprint(ms); got != "[{1} {2} {3} {5}]" {
				return fmt.Errorf("members %s, want 1, 2, 3 and 5", got)
			}
			return nil
		})
		out := r.bash(t, "scripts/cluster.sh stop")
		if !strings.Contains(out, "stopped raft5") || !strings.Contains(out, "removing stale logs/raft4.pid") {
			t.Errorf("scripts/cluster.sh stop printed:\n%s\nwant raft5 stopped and raft4's pid file removed", out)
		}
		s.exited(t)
	})
}
