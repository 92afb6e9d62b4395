package testcluster

import (
	"os"
	"strings"
)

// environ is the environment of n's process: the test's own without any
// RAFTEXAMPLE_* variable (each sets a flag of the server, so a developer's
// shell, or the tests' RAFTEXAMPLE_ARTIFACTS, must not take part), then
// n.Env.
func (n *Node) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTEXAMPLE_") {
			env = append(env, kv)
		}
	}
	return append(env, n.Env...)
}
