package faultproxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// send makes one request from member from through proxy p, on a fresh
// connection, and returns the body.
func send(p *Proxy, from string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/raft", nil)
	if err != nil {
		return "", err
	}
	if from != "" {
		req.Header.Set("X-Server-From", from)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func newTarget(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" got a request from "+r.Header.Get("X-Server-From"))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func TestProxyForwardsCutsHealsAndDelaysPerDirection(t *testing.T) {
	n := NewNetwork(1)
	defer n.Close()
	p2, err := n.Listen(2, "127.0.0.1:0", newTarget(t, "member 2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := net.SplitHostPort(p2.Addr()); err != nil {
		t.Fatalf("Addr %q: %v", p2.Addr(), err)
	}

	// Member 1 reaches member 2 through its proxy.
	if body, err := send(p2, "1"); err != nil || body != "member 2 got a request from 1" {
		t.Fatalf("through the proxy: %q, %v", body, err)
	}

	// Cutting 1 -> 2 stops member 1's requests, not member 3's.
	n.Set(1, 2, Fault{Cut: true})
	if body, err := send(p2, "1"); err == nil {
		t.Fatalf("1 -> 2 is cut, yet the request got through: %q", body)
	}
	if _, err := send(p2, "3"); err != nil {
		t.Fatalf("3 -> 2 is not cut: %v", err)
	}
	// A cut of the answer direction (2 -> 1) also breaks the exchange.
	n.Heal()
	n.Set(2, 1, Fault{Cut: true})
	if body, err := send(p2, "1"); err == nil {
		t.Fatalf("2 -> 1 is cut, yet the answer came back: %q", body)
	}
	n.Isolate(2, []uint64{1, 2, 3})
	if _, err := send(p2, "3"); err == nil {
		t.Fatal("member 2 is isolated, yet 3 reached it")
	}

	// Heal restores everything.
	n.Heal()
	for _, from := range []string{"1", "3"} {
		if _, err := send(p2, from); err != nil {
			t.Fatalf("after Heal, %s -> 2: %v", from, err)
		}
	}

	// Delay holds every chunk back: a request and its answer each wait.
	const delay = 150 * time.Millisecond
	n.Set(1, 2, Fault{Delay: delay})
	start := time.Now()
	if _, err := send(p2, "1"); err != nil {
		t.Fatalf("delayed request: %v", err)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("1 -> 2 delayed by %v, yet the request took only %v", delay, took)
	}
	// The other direction of another pair is not delayed.
	start = time.Now()
	if _, err := send(p2, "3"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Logf("3 -> 2 took %v (not delayed, but the machine is slow)", took)
	}

	// DropRate 1 breaks every connection carrying data.
	n.Set(1, 2, Fault{DropRate: 1})
	if _, err := send(p2, "1"); err == nil {
		t.Fatal("DropRate 1, yet the request got through")
	}
	n.Heal()
	if _, err := send(p2, "1"); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}
