package e2e

// Cross-process tests of TLS: peer traffic over https:// with mutual
// authentication, and the HTTP API over HTTPS with client certificates.
// Certificates are made at test time in a t.TempDir; no key is committed.
// Requests to peer ports are sent with tls_identity_test.go's peerProbe.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// peerTLSFlags are the peer TLS flags for a node.
func peerTLSFlags(certFile, keyFile, caFile string) []string {
	return []string{"--peer-cert-file", certFile, "--peer-key-file", keyFile, "--peer-trusted-ca-file", caFile}
}

func TestPeerTLSRefusesPeersWithoutValidCertificate(t *testing.T) {
	certs := t.TempDir()
	ca := tc.NewCA(t, certs, "peer-ca")
	other := tc.NewCA(t, certs, "other-ca")
	type pair struct{ cert, key string }
	good := map[int]pair{}
	for id := 1; id <= 3; id++ {
		cert, key := ca.Issue(t, fmt.Sprintf("node%d", id))
		good[id] = pair{cert, key}
	}

	c := tc.New(t, 3)
	c.StartCustom("https", func(n *tc.Node) []string {
		return peerTLSFlags(good[n.ID].cert, good[n.ID].key, ca.CertFile)
	})
	for i, u := range c.URLs {
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("peer URL %d is %s, want https://", i+1, u)
		}
	}
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	n1.MustPut("over-tls", "yes")
	tc.ExpectValue(t, "over-tls", "yes", n2, n3)
	n3.MustPut("from-3", "yes")
	tc.ExpectValue(t, "from-3", "yes", n1, n2)

	// The peer port speaks TLS and wants a client certificate from the peer CA.
	probe := peerProbe{what: "GET /raft/probing", method: http.MethodGet, url: c.URLs[0] + "/raft/probing"}
	a := probe.send(peerPortClient(ca.Pool(), ca.KeyPair(t, "probe")))
	expectStatus(t, "GET /raft/probing with a peer certificate", a.Code, a.Body, a.Err, http.StatusOK)
	expectRefusedInTLS(t, "peer port, no client certificate: "+probe.what,
		probe.send(httpsClient(&tls.Config{RootCAs: ca.Pool()})))
	expectRefusedInTLS(t, "peer port, client certificate from another CA: "+probe.what,
		probe.send(peerPortClient(ca.Pool(), other.KeyPair(t, "intruder"))))
	plain := peerProbe{what: "plain http GET /raft/probing", method: http.MethodGet,
		url: "http://" + strings.TrimPrefix(c.URLs[0], "https://") + "/raft/probing"}
	if a := plain.send(peerHTTP); a.Err == nil && a.Code == http.StatusOK {
		t.Errorf("plain http to the peer port answered 200")
	}

	// Node 3 restarted with a certificate from another CA (still trusting
	// the peer CA): the others refuse it as a client, and it fails their
	// check as a server. It must never hear from the leader.
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}
	rogueCert, rogueKey := other.Issue(t, "node3")
	n3.SetFlag("peer-cert-file", rogueCert)
	n3.SetFlag("peer-key-file", rogueKey)
	n3.Restart()
	// Wait for it to replay its own log, which needs no peer.
	var base tc.Status
	tc.Eventually(t, tc.Timeout, func() error {
		var err error
		if base, err = n3.Status(); err != nil {
			return err
		}
		if base.Applied != base.Commit {
			return fmt.Errorf("node 3 replaying its log: %s", tc.Summary([]tc.Status{base}))
		}
		return nil
	})
	// Writes keep going through the two good nodes; for three election
	// timeouts and at least 10 of those writes, node 3 learns no leader,
	// applies nothing and cannot write.
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline) || i < 10; i++ {
		c.Nodes[i%2].MustPut(fmt.Sprintf("while-rogue-%d", i), "v")
		st, err := n3.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader != 0 || st.Applied != base.Applied || st.Commit != base.Commit {
			t.Fatalf("node 3 with a certificate from another CA reached the cluster: %s (at its restart: %s)",
				tc.Summary([]tc.Status{st}), tc.Summary([]tc.Status{base}))
		}
		if i == 0 {
			code, body, err := n3.Put("rogue-write", "x")
			expectStatus(t, "PUT through node 3 with a certificate from another CA", code, body, err, http.StatusServiceUnavailable)
		}
	}
	code, body, err := n3.Do(http.MethodGet, "/while-rogue-0?consistency=serializable", "")
	expectStatus(t, "serializable GET on node 3 of a key written while it had a rogue certificate", code, body, err, http.StatusNotFound)
	code, body, err = n1.Get("rogue-write")
	expectStatus(t, "GET of the write tried through node 3", code, body, err, http.StatusNotFound)

	// With its own certificate back, node 3 catches up: the certificate was
	// the only thing keeping it out.
	if code := n3.Stop(); code != 0 {
		t.Fatalf("node 3 exited with code %d after SIGTERM, want 0", code)
	}
	n3.SetFlag("peer-cert-file", good[3].cert)
	n3.SetFlag("peer-key-file", good[3].key)
	n3.Restart()
	tc.ExpectValue(t, "while-rogue-9", "v", n3)
	n3.MustPut("node3-back", "yes")
	tc.ExpectValue(t, "node3-back", "yes", n1, n2)
}

func TestClientTLSRequiresClientCertificate(t *testing.T) {
	certs := t.TempDir()
	ca := tc.NewCA(t, certs, "client-ca")
	other := tc.NewCA(t, certs, "other-ca")
	serverCert, serverKey := ca.Issue(t, "server")

	c := tc.New(t, 3, "--cert-file", serverCert, "--key-file", serverKey, "--trusted-ca-file", ca.CertFile)
	c.Start()
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	trusted := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.KeyPair(t, "client")}}
	for _, n := range c.Nodes {
		n.UseTLS(trusted)
	}
	tc.Eventually(t, tc.Timeout, func() error {
		code, body, err := n1.Put("over-https", "secret")
		if err != nil || code != http.StatusNoContent {
			return fmt.Errorf("PUT over HTTPS on node 1: status %d %q err %v", code, strings.TrimSpace(body), err)
		}
		return nil
	})
	for _, n := range []*tc.Node{n2, n3} {
		tc.Eventually(t, tc.Timeout, func() error {
			code, body, err := n.Get("over-https")
			if err != nil || code != http.StatusOK || body != "secret" {
				return fmt.Errorf("GET over HTTPS on %v: status %d %q err %v", n, code, body, err)
			}
			return nil
		})
	}

	// with sends one request to n2 with another client configuration (nil:
	// plain http), then goes back to the trusted client certificate.
	with := func(cfg *tls.Config, method, key, body string) (int, string, error) {
		n2.UseTLS(cfg)
		defer n2.UseTLS(trusted)
		return n2.Do(method, "/"+key, body)
	}
	what := fmt.Sprintf("GET %s", n2.URL("/over-https"))
	code, body, err := with(&tls.Config{RootCAs: ca.Pool()}, http.MethodGet, "over-https", "")
	expectRefusedInTLS(t, "API without a client certificate: "+what, peerAnswer{Code: code, Body: body, Err: err})
	code, body, err = with(presenting(ca.Pool(), other.KeyPair(t, "stranger")), http.MethodGet, "over-https", "")
	expectRefusedInTLS(t, "API with a client certificate from another CA: "+what, peerAnswer{Code: code, Body: body, Err: err})

	// Plain http to the HTTPS port gets no service: an error or Go's
	// "client sent an HTTP request to an HTTPS server" 400.
	code, body, err = with(nil, http.MethodPut, "over-https", "overwritten")
	if err == nil && code != http.StatusBadRequest {
		t.Errorf("plain http PUT to the HTTPS port: status %d %q, want an error or 400", code, strings.TrimSpace(body))
	}
	t.Logf("plain http to the HTTPS port: status %d %q err %v", code, strings.TrimSpace(body), err)
	code, body, err = n2.Get("over-https")
	if err != nil || code != http.StatusOK || body != "secret" {
		t.Errorf("GET over HTTPS after the refused requests: status %d %q err %v, want 200 \"secret\"", code, body, err)
	}
}
