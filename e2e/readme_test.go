package e2e

// The README's examples and recipes for keys that expire and transactions
// (issue #14), run as the README shows them: its sh blocks are read from
// README.md, the quick start's HTTP ports (12380, 22380, 32380) replaced by
// those of a test cluster, and fed to bash; what the commands print is
// checked against the answers the README gives.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

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
