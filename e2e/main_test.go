// Package e2e holds black-box tests: they run the real raftexample binary as
// separate processes with real data directories (internal/testcluster) and
// talk to it over real HTTP, on its client port and on its peer port. They
// use nothing of package main.
package e2e

import (
	"os"
	"testing"

	tc "raftexample/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tc.RemoveBuild()
	os.Exit(code)
}
