package testcluster

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeout is how long the polling helpers below wait for a condition. The
// machines running these tests are small and noisy, hence the generous value.
const Timeout = 30 * time.Second

// KV is one key and its value.
type KV struct{ Key, Val string }

// MustPut stores val under key through n, retrying while the node answers
// anything but 204 (e.g. 503 during an election). It fails the test if that
// does not succeed within Timeout.
func (n *Node) MustPut(key, val string) {
	n.t.Helper()
	Eventually(n.t, Timeout, func() error { return n.put(key, val) })
}

func (n *Node) put(key, val string) error {
	start := time.Now()
	code, body, err := n.Put(key, val)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		return fmt.Errorf("PUT %s on %v (at %s, took %v): %v", key, n, start.Format("15:04:05.000"), took, err)
	}
	if code != http.StatusNoContent {
		return fmt.Errorf("PUT %s on %v (at %s, took %v): status %d: %s", key, n, start.Format("15:04:05.000"), took, code, strings.TrimSpace(body))
	}
	return nil
}

// PutMany stores every kv, spreading the requests over nodes with a few
// concurrent writers. Each PUT is retried until it gets 204 or Timeout runs
// out.
func PutMany(t testing.TB, kvs []KV, nodes ...*Node) {
	t.Helper()
	const writers = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				n := nodes[i%len(nodes)]
				if err := Poll(Timeout, func() error { return n.put(kvs[i].Key, kvs[i].Val) }); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range kvs {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatalf("PutMany: %v", first)
	}
}

// ExpectValues waits until every node returns every kv's value on GET.
func ExpectValues(t testing.TB, kvs []KV, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		done := 0 // kvs[:done] were seen on n already
		Eventually(t, Timeout, func() error {
			for ; done < len(kvs); done++ {
				kv := kvs[done]
				code, body, err := n.Get(kv.Key)
				if err != nil {
					return fmt.Errorf("GET %s on %v: %v", kv.Key, n, err)
				}
				if code != http.StatusOK || body != kv.Val {
					return fmt.Errorf("GET %s on %v: status %d, body %q; want 200 %q (%d of %d keys seen)",
						kv.Key, n, code, short(body), short(kv.Val), done, len(kvs))
				}
			}
			return nil
		})
	}
}

// ExpectValue waits until every node returns val for key.
func ExpectValue(t testing.TB, key, val string, nodes ...*Node) {
	t.Helper()
	ExpectValues(t, []KV{{key, val}}, nodes...)
}

func short(s string) string { return Shorten(s, 40) }

// Shorten cuts s to its first n bytes and "..." if it is longer, for
// messages.
func Shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// KVs returns n keys "<prefix>-<i>" with values of about size bytes that
// differ per key.
func KVs(prefix string, n, size int) []KV {
	kvs := make([]KV, n)
	for i := range kvs {
		v := fmt.Sprintf("%s-value-%d-", prefix, i)
		if pad := size - len(v); pad > 0 {
			v += strings.Repeat(string(rune('a'+i%26)), pad)
		}
		kvs[i] = KV{Key: fmt.Sprintf("%s-%d", prefix, i), Val: v}
	}
	return kvs
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// ErrorLines returns the lines of log that were written at error level or
// above (zap console lines "time<TAB>LEVEL<TAB>..."; raft's default logger
// "... ERROR: ..."), and Go runtime panics, fatal errors and data races.
func ErrorLines(log string) []string {
	var bad []string
	for _, line := range strings.Split(log, "\n") {
		clean := ansi.ReplaceAllString(line, "")
		if strings.HasPrefix(clean, "panic:") || strings.HasPrefix(clean, "fatal error:") ||
			strings.Contains(clean, "WARNING: DATA RACE") ||
			strings.Contains(clean, " ERROR: ") || strings.Contains(clean, " PANIC: ") || strings.Contains(clean, " FATAL: ") {
			bad = append(bad, line)
			continue
		}
		fields := strings.Split(clean, "\t")
		for i := 0; i < len(fields) && i < 2; i++ {
			switch strings.ToLower(strings.TrimSpace(fields[i])) {
			case "error", "dpanic", "panic", "fatal":
				bad = append(bad, line)
				i = 2
			}
		}
	}
	return bad
}
