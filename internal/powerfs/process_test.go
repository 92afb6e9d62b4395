//go:build linux

package powerfs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The way black-box tests use the mount: a separate process writes, syncs
// some of it, holds a lock, and is killed with SIGKILL; then the power goes.
func TestKilledProcessLosesOnlyWhatItDidNotSync(t *testing.T) {
	f, mnt := mount(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "POWERFS_HELPER_DIR="+mnt)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// A kill alone loses nothing: the page cache outlives the process.
	wantContent(t, filepath.Join(mnt, "log"), "synced+unsynced")
	crash(t, f)
	wantContent(t, filepath.Join(mnt, "log"), "synced")
	wantGone(t, filepath.Join(mnt, "unsynced-name"))
}

// TestHelperProcess is the process that TestKilledProcessLosesOnlyWhatItDidNotSync kills.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("POWERFS_HELPER_DIR")
	if dir == "" {
		t.Skip("only run as a helper process")
	}
	fl, err := os.OpenFile(filepath.Join(dir, "log"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(fl.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.WriteString("synced"); err != nil {
		t.Fatal(err)
	}
	if err := fl.Sync(); err != nil {
		t.Fatal(err)
	}
	syncFile(t, dir)
	if _, err := fl.WriteString("+unsynced"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "unsynced-name"), 0, "x", true)
	os.Stdout.WriteString("ready\n")
	select {}
}

func TestCrashFailsWhileAFileIsOpenAndWorksOnceClosed(t *testing.T) {
	f, mnt := mount(t)
	fl, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Crash(); err == nil {
		t.Fatal("crash with a file open succeeded")
	} else {
		t.Log(err)
	}
	write(t, filepath.Join(mnt, "g"), 0, "", false) // still mounted and usable
	fl.Close()
	crash(t, f)
	wantGone(t, filepath.Join(mnt, "f"))
}
