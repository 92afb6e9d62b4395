package main

// Cross-process tests of TLS: peer traffic over https:// with mutual
// authentication, and the HTTP API over HTTPS with client certificates.
// Certificates are made at test time in a t.TempDir; no key is committed.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	tc "raftexample/internal/testcluster"
)

// tlsPeerFlags are the peer TLS flags for a node.
func tlsPeerFlags(certFile, keyFile, caFile string) []string {
	return []string{"--peer-cert-file", certFile, "--peer-key-file", keyFile, "--peer-trusted-ca-file", caFile}
}

// tlsExpectRefused checks that a request with client fails at the transport
// level (TLS handshake or alert), not with an HTTP status.
func tlsExpectRefused(t *testing.T, what string, client *tc.Client, url string) {
	t.Helper()
	code, body, err := client.DoURL(http.MethodGet, url, "")
	if err == nil {
		t.Errorf("%s: GET %s answered %d %q, want the connection refused", what, url, code, strings.TrimSpace(body))
		return
	}
	if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("%s: GET %s failed with %v, want a TLS error", what, url, err)
		return
	}
	t.Logf("%s: refused as it should be: %v", what, err)
}

// tlsPresenting is a client config trusting roots that presents cert
// whatever CAs the server asks for. (With Certificates alone, Go's client
// sends no certificate at all when the server's acceptable CAs don't match,
// and the server's verification would not be exercised.)
func tlsPresenting(roots *tls.Config, cert tls.Certificate) *tls.Config {
	cfg := roots.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
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
		return tlsPeerFlags(good[n.ID].cert, good[n.ID].key, ca.CertFile)
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
	probe := c.URLs[0] + "/raft/probing"
	trusted := tc.NewTLSClient(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.KeyPair(t, "probe")}}, 5*time.Second)
	code, body, err := trusted.DoURL(http.MethodGet, probe, "")
	procExpectStatus(t, "GET /raft/probing with a peer certificate", code, body, err, http.StatusOK)
	tlsExpectRefused(t, "peer port, no client certificate",
		tc.NewTLSClient(&tls.Config{RootCAs: ca.Pool()}, 5*time.Second), probe)
	tlsExpectRefused(t, "peer port, client certificate from another CA",
		tc.NewTLSClient(tlsPresenting(&tls.Config{RootCAs: ca.Pool()}, other.KeyPair(t, "intruder")), 5*time.Second), probe)
	plain := &tc.Client{Scheme: "http", HTTP: &http.Client{Timeout: 5 * time.Second}}
	if code, _, err := plain.DoURL(http.MethodGet, "http://"+strings.TrimPrefix(c.URLs[0], "https://")+"/raft/probing", ""); err == nil && code == http.StatusOK {
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
			procExpectStatus(t, "PUT through node 3 with a certificate from another CA", code, body, err, http.StatusServiceUnavailable)
		}
	}
	code, body, err = n3.Do(http.MethodGet, "/while-rogue-0?consistency=serializable", "")
	procExpectStatus(t, "serializable GET on node 3 of a key written while it had a rogue certificate", code, body, err, http.StatusNotFound)
	code, body, err = n1.Get("rogue-write")
	procExpectStatus(t, "GET of the write tried through node 3", code, body, err, http.StatusNotFound)

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

	client := tc.NewTLSClient(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.KeyPair(t, "client")}}, 10*time.Second)
	tc.Eventually(t, tc.Timeout, func() error {
		code, body, err := client.Do(n1, http.MethodPut, "/over-https", "secret")
		if err != nil || code != http.StatusNoContent {
			return fmt.Errorf("PUT over HTTPS on node 1: status %d %q err %v", code, strings.TrimSpace(body), err)
		}
		return nil
	})
	for _, n := range []*tc.Node{n2, n3} {
		tc.Eventually(t, tc.Timeout, func() error {
			code, body, err := client.Do(n, http.MethodGet, "/over-https", "")
			if err != nil || code != http.StatusOK || body != "secret" {
				return fmt.Errorf("GET over HTTPS on %v: status %d %q err %v", n, code, body, err)
			}
			return nil
		})
	}

	url := fmt.Sprintf("https://127.0.0.1:%d/over-https", n2.HTTPPort)
	tlsExpectRefused(t, "API without a client certificate",
		tc.NewTLSClient(&tls.Config{RootCAs: ca.Pool()}, 5*time.Second), url)
	tlsExpectRefused(t, "API with a client certificate from another CA",
		tc.NewTLSClient(tlsPresenting(&tls.Config{RootCAs: ca.Pool()}, other.KeyPair(t, "stranger")), 5*time.Second), url)

	// Plain http to the HTTPS port gets no service: an error or Go's
	// "client sent an HTTP request to an HTTPS server" 400.
	plain := &tc.Client{Scheme: "http", HTTP: &http.Client{Timeout: 5 * time.Second}}
	code, body, err := plain.Do(n2, http.MethodPut, "/over-https", "overwritten")
	if err == nil && code != http.StatusBadRequest {
		t.Errorf("plain http PUT to the HTTPS port: status %d %q, want an error or 400", code, strings.TrimSpace(body))
	}
	t.Logf("plain http to the HTTPS port: status %d %q err %v", code, strings.TrimSpace(body), err)
	code, body, err = client.Do(n2, http.MethodGet, "/over-https", "")
	if err != nil || code != http.StatusOK || body != "secret" {
		t.Errorf("GET over HTTPS after the refused requests: status %d %q err %v, want 200 \"secret\"", code, body, err)
	}
}
