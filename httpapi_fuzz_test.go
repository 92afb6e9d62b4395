package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzHTTPAPIKeepsTheClusterHealthy sends random requests (method, path,
// headers, body) to the HTTP API of the members of an in-process 3-member
// cluster, and after each one checks what a hostile client must never
// achieve: a handler that panics or hangs, a member that stops, something in
// the log that a member cannot apply (the apply path logs it), or replicas
// that no longer agree or take writes.
//
// Requests that remove members are left out: removing a live member is a
// legitimate request (it then exits), not a fault. Adding members is in:
// the strict membership checks must keep a quorum however many phantom
// members a client adds.
//
//	go test -run '^$' -fuzz FuzzHTTPAPIKeepsTheClusterHealthy -fuzztime 2m .
func FuzzHTTPAPIKeepsTheClusterHealthy(f *testing.F) {
	for _, s := range [][4]string{
		{"PUT", "/k", "", "v"},
		{"GET", "/k?consistency=serializable", "", ""},
		{"POST", "/4", "", "http://127.0.0.1:1/"},
		{"POST", "/18446744073709551615", "", "http://127.0.0.1:1"},
		{"POST", "/v1/members", "Content-Type: application/json", `{"id":2,"id":5,"peerURL":"http://127.0.0.1:1"}`},
		{"POST", "/v1/members", "", `{"id":7,"peerURL":"http://127.0.0.1:2"} trailing`},
		{"GET", "/v1/kv/?prefix=&limit=10001", "", ""},
		{"GET", "/v1/kv/?start=%ff&limit=1", "", ""},
		{"HEAD", "/v1/status", "", ""},
		{"POST", "/v1/leader", "", `{"id":99}`},
		{"PUT", "/v1/kv/" + strings.Repeat("k", 5000), "", "v"},
		{"PATCH", "/metrics", "X-Forwarded-For: 1.2.3.4", "x"},
	} {
		f.Add(uint8(0), s[0], s[1], s[2], s[3])
	}
	c := newIPCluster(f, 3, 3, 50)
	var apis []*httpAPI
	for id := uint64(1); id <= 3; id++ {
		n := c.startKV(id, false)
		apis = append(apis, &httpAPI{lg: c.lg, svc: n.svc, requestTimeout: time.Second, maxValueBytes: 1 << 16})
	}
	c.waitLeader(c.nodes[1], c.nodes[2], c.nodes[3])
	seq := 0

	f.Fuzz(func(t *testing.T, member uint8, method, path, header, body string) {
		req, err := http.NewRequest(method, "http://member"+path, strings.NewReader(body))
		if err != nil || req.URL.Path != path && !strings.HasPrefix(path, req.URL.Path) {
			return // not a request a client can send
		}
		if removesMember(req) {
			return
		}
		for _, line := range strings.Split(header, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k != "" {
				req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		api := apis[int(member)%len(apis)]
		rec := httptest.NewRecorder()
		if !ipWithin(20*time.Second, func() { api.ServeHTTP(rec, req) }) {
			t.Fatalf("%s %q did not return within 20 s", method, path)
		}
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q answered %d: %s", method, path, rec.Code, rec.Body.String())
		}
		for id, n := range c.nodes {
			select {
			case <-n.rn.Done():
				t.Fatalf("member %d stopped after %s %q: %v", id, method, path, n.rn.Err())
			default:
			}
		}
		// The apply path logs what it cannot apply; bad input must not get
		// that far.
		if logs := c.logs.String(); strings.Contains(logs, "cannot decode") || strings.Contains(logs, "cancelled a membership change") {
			t.Fatalf("after %s %q %q, a committed entry was refused at apply time:\n%s", method, path, body, logs)
		}
		seq++
		key := fmt.Sprintf("fuzz-health-%d", seq)
		ipPut(t, c.nodes[1].svc, key, "ok")
		ipEventually(t, 30*time.Second, "replicas agree", func() error {
			st1 := c.nodes[1].store.State()
			index1, digest1 := st1.index, st1.digest
			for id, n := range c.nodes {
				if _, ok := n.store.value(key); !ok {
					return fmt.Errorf("member %d lacks %s", id, key)
				}
				if st := n.store.State(); st.index != index1 || st.digest != digest1 {
					return fmt.Errorf("member %d has digest %x at %d, member 1 %x at %d", id, st.digest, st.index, digest1, index1)
				}
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, _, err := c.nodes[2].svc.Get(ctx, key, true); err != nil {
			t.Fatalf("linearizable read after %s %q: %v", method, path, err)
		}
	})
}

// removesMember reports whether req asks to remove a member (see the fuzz
// target's comment).
func removesMember(req *http.Request) bool {
	if req.Method != http.MethodDelete {
		return false
	}
	p := req.URL.Path
	if strings.HasPrefix(p, "/v1/members/") {
		return true
	}
	_, err := parseMemberID(strings.TrimPrefix(p, "/"))
	return err == nil
}
