package e2e

// Peer certificate names: with --peer-cert-allowed-cn or
// --peer-cert-allowed-hostname the peer port refuses, in the TLS handshake, a
// certificate signed by the peer CA that carries another name — such as the
// client certificate tools/devcerts issues from the same CA for the HTTP API.
// The pipeline and stream requests are built with peerclient_test.go's
// helpers and sent over TLS here.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tc "raftexample/internal/testcluster"
)

// devcertsPeerCN is the Common Name of tools/devcerts' peer certificate.
const devcertsPeerCN = "raftexample-peer"

// runDevcerts makes certificates as the README does, with
// `go run ./tools/devcerts -dir <dir>` at the module's root, and returns the
// directory.
func runDevcerts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	cmd := exec.Command("go", "run", "./tools/devcerts", "-dir", dir)
	cmd.Dir = ".." // e2e sits at the module's root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./tools/devcerts -dir %s: %v\n%s", dir, err, out)
	}
	if want := "--peer-cert-allowed-cn " + devcertsPeerCN; !strings.Contains(string(out), want) {
		t.Errorf("devcerts printed no %q:\n%s", want, out)
	}
	return dir
}

// loadPair loads a certificate and key for a tls.Config.
func loadPair(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// loadPool is a cert pool holding the PEM certificates in file.
func loadPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", file)
	}
	return p
}

// presenting is a TLS client config trusting roots that presents cert
// whatever CAs the server asks for (with Certificates alone, Go sends no
// certificate when the server's acceptable CAs do not match it).
func presenting(roots *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		RootCAs:              roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
}

// ---------------------------------------------------------------------------
// Requests to the peer port over TLS

// peerPortClient is an HTTPS client for peer ports, presenting cert.
func peerPortClient(roots *x509.CertPool, cert tls.Certificate) *http.Client {
	return httpsClient(presenting(roots, cert))
}

// httpsClient is an HTTPS client with cfg that never reuses connections.
func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// peerProbe is one rafthttp request to a member's peer port.
type peerProbe struct {
	what   string
	method string
	url    string
	header http.Header
	body   []byte
}

// send sends the probe with hc. A stream's 200 body never ends: only its
// header is read.
func (p peerProbe) send(hc *http.Client) peerAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, bytes.NewReader(p.body))
	if err != nil {
		return peerAnswer{Err: err}
	}
	req.Header = p.header.Clone()
	resp, err := hc.Do(req)
	if err != nil {
		return peerAnswer{Err: err}
	}
	defer resp.Body.Close()
	a := peerAnswer{Code: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		a.Body = string(b)
	}
	return a
}

// strangerID is a sender that is no member: a stream it asks for is
// answered (404) without taking over any member's stream.
const strangerID = 0x63

// peerProbes are rafthttp requests as member from would send them to
// target: a pipeline heartbeat at term (commit 0: from the leader, raft
// accepts it and nothing changes) and a request for a stream (from a
// stranger, so that no member's stream is taken over).
func peerProbes(t *testing.T, clusterID string, from, target *tc.Node, term uint64) []peerProbe {
	t.Helper()
	b, err := proto.Marshal(heartbeat(uint64(from.ID), uint64(target.ID), term))
	if err != nil {
		t.Fatal(err)
	}
	stream := peerHeader(clusterID, strangerID, "")
	stream.Del("Content-Type")
	stream.Set("X-Raft-To", strconv.FormatUint(uint64(target.ID), 16))
	return []peerProbe{
		{
			what: fmt.Sprintf("pipeline heartbeat %d→%d", from.ID, target.ID), method: http.MethodPost,
			url: target.PeerURL + "/raft", header: peerHeader(clusterID, uint64(from.ID), "application/protobuf"), body: b,
		},
		{
			what: fmt.Sprintf("message stream to %d", target.ID), method: http.MethodGet,
			url: fmt.Sprintf("%s/raft/stream/message/%x", target.PeerURL, strangerID), header: stream,
		},
	}
}

// expectRefusedInTLS checks that a peer port gave no HTTP answer at all and
// the error is the server's TLS alert.
func expectRefusedInTLS(t *testing.T, what string, a peerAnswer) {
	t.Helper()
	switch {
	case a.Err == nil:
		t.Errorf("%s: answered %v; want the certificate refused in the TLS handshake, no HTTP answer", what, a)
	case !strings.Contains(a.Err.Error(), "tls:"):
		t.Errorf("%s: failed with %v; want a TLS alert refusing the certificate", what, a.Err)
	default:
		t.Logf("%s: refused: %v", what, a.Err)
	}
}

// expectReachedRafthttp checks that a peer port answered over HTTP.
func expectReachedRafthttp(t *testing.T, what string, a peerAnswer) {
	t.Helper()
	if a.Err != nil {
		t.Errorf("%s: %v; want an HTTP answer (the certificate is allowed)", what, a.Err)
		return
	}
	t.Logf("%s: answered %v", what, a)
}

// expectPipelineServed sends a heartbeat from the leader to a follower with
// hc until it is answered 204 (raft took it): a certificate with the allowed
// name gets through to raft.
func expectPipelineServed(t *testing.T, hc *http.Client, nodes ...*tc.Node) {
	t.Helper()
	tc.Eventually(t, tc.Timeout, func() error {
		sts, err := tc.Statuses(nodes...)
		if err != nil {
			return err
		}
		id, err := tc.Agreement(sts)
		if err != nil {
			return err
		}
		var leader, follower *tc.Node
		for _, n := range nodes {
			if uint64(n.ID) == id {
				leader = n
			} else if follower == nil {
				follower = n
			}
		}
		if leader == nil || follower == nil {
			return fmt.Errorf("no leader and follower among the nodes: %s", tc.Summary(sts))
		}
		p := peerProbes(t, rafthttpClusterID(t, sts[0]), leader, follower, sts[0].Term)[0]
		if a := p.send(hc); a.Err != nil || a.Code != http.StatusNoContent {
			return fmt.Errorf("%s at term %d: %v, want 204", p.what, sts[0].Term, a)
		}
		t.Logf("%s at term %d: answered 204", p.what, sts[0].Term)
		return nil
	})
}

// rafthttpClusterID is st's cluster ID as rafthttp writes it (hex without
// leading zeros), or the old constant if st has none.
func rafthttpClusterID(t *testing.T, st tc.Status) string {
	t.Helper()
	if st.ClusterID == "" {
		return oldClusterID
	}
	id, err := strconv.ParseUint(st.ClusterID, 16, 64)
	if err != nil {
		t.Fatalf("cluster ID %q is not hex: %v", st.ClusterID, err)
	}
	return strconv.FormatUint(id, 16)
}

// expectNoErrorLogged checks the nodes' current runs logged nothing at error
// level and no panic.
func expectNoErrorLogged(t *testing.T, nodes ...*tc.Node) {
	t.Helper()
	for _, n := range nodes {
		if bad := tc.ErrorLines(n.RunLog()); len(bad) > 0 {
			t.Errorf("%v logged errors:\n%s", n, strings.Join(bad, "\n"))
		}
	}
}

// ---------------------------------------------------------------------------

func TestPeerPortRefusesAClientCertificateWhenTheNameIsPinned(t *testing.T) {
	certs := runDevcerts(t)
	f := func(name string) string { return filepath.Join(certs, name) }

	c := tc.New(t, 3)
	c.StartCustom("https", func(*tc.Node) []string {
		return []string{
			"--peer-cert-file", f("peer.pem"), "--peer-key-file", f("peer-key.pem"),
			"--peer-trusted-ca-file", f("ca.pem"), "--peer-cert-allowed-cn", devcertsPeerCN,
			"--cert-file", f("server.pem"), "--key-file", f("server-key.pem"), "--trusted-ca-file", f("ca.pem"),
		}
	})
	roots := loadPool(t, f("ca.pem"))
	clientCert := loadPair(t, f("client.pem"), f("client-key.pem"))
	peerCert := loadPair(t, f("peer.pem"), f("peer-key.pem"))
	for _, n := range c.Nodes {
		n.UseTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}})
	}

	// The members reach each other with the peer certificate, pinned to its
	// name, and serve clients with the client certificate.
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	var follower *tc.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	follower.MustPut("pinned", "yes")
	tc.ExpectValue(t, "pinned", "yes", c.Nodes...)

	// The client certificate (same CA, client auth) on a peer port: refused
	// in the handshake by every member, for the pipeline and the stream.
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	cid := rafthttpClusterID(t, st)
	intruder := peerPortClient(roots, clientCert)
	for _, target := range c.Nodes {
		// A heartbeat from the leader, or to the leader from a follower.
		from := leader
		if target == leader {
			from = follower
		}
		for _, p := range peerProbes(t, cid, from, target, st.Term) {
			expectRefusedInTLS(t, fmt.Sprintf("%s with the client certificate (CN raftexample-client)", p.what), p.send(intruder))
		}
	}

	// The very same requests with the peer certificate get through: the
	// pipeline to raft, the stream to rafthttp.
	member := peerPortClient(roots, peerCert)
	expectPipelineServed(t, member, c.Nodes...)
	for _, p := range peerProbes(t, cid, leader, follower, st.Term)[1:] {
		expectReachedRafthttp(t, p.what+" with the peer certificate", p.send(member))
	}

	expectHealthy(t, c.Nodes...)
	expectNoErrorLogged(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
	expectNoErrorLogged(t, c.Nodes...)
}

func TestPeerCertAllowedHostnameRefusesOtherNames(t *testing.T) {
	dir := t.TempDir()
	ca := tc.NewCA(t, dir, "peer-name-ca")
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	type pair struct{ cert, key string }
	own := map[int]pair{}
	for id := 1; id <= 3; id++ {
		cert, key := ca.IssueFor(t, fmt.Sprintf("member%d", id), fmt.Sprintf("member-%d", id), loopback, []string{"localhost"})
		own[id] = pair{cert, key}
	}

	c := tc.New(t, 3)
	c.StartCustom("https", func(n *tc.Node) []string {
		return []string{
			"--peer-cert-file", own[n.ID].cert, "--peer-key-file", own[n.ID].key,
			"--peer-trusted-ca-file", ca.CertFile, "--peer-cert-allowed-hostname", "127.0.0.1",
		}
	})
	leader, sts := tc.WaitLeader(t, tc.Timeout, c.Nodes...)
	follower := c.Nodes[0]
	if follower == leader {
		follower = c.Nodes[1]
	}
	follower.MustPut("pinned-to-127.0.0.1", "yes")
	tc.ExpectValue(t, "pinned-to-127.0.0.1", "yes", c.Nodes...)
	st := sts[leader.ID-1]
	cid := rafthttpClusterID(t, st)

	// Certificates from the peer CA, good for server and client, that are not
	// valid for 127.0.0.1: refused in the handshake.
	for i, bad := range []struct {
		what, cn string
		ips      []net.IP
		dns      []string
	}{
		{"a certificate for localhost and ::1 only", "member-9", []net.IP{net.ParseIP("::1")}, []string{"localhost"}},
		{"a certificate with CN 127.0.0.1 and no SAN", "127.0.0.1", nil, nil},
		{"a certificate for 127.0.0.2", "member-9", []net.IP{net.ParseIP("127.0.0.2")}, nil},
	} {
		cert, key := ca.IssueFor(t, fmt.Sprintf("intruder%d", i), bad.cn, bad.ips, bad.dns)
		hc := peerPortClient(ca.Pool(), loadPair(t, cert, key))
		for _, p := range peerProbes(t, cid, leader, follower, st.Term) {
			expectRefusedInTLS(t, fmt.Sprintf("%s with %s", p.what, bad.what), p.send(hc))
		}
	}

	// A certificate valid for 127.0.0.1, whatever its CN, gets through.
	cert, key := ca.IssueFor(t, "other-cn", "not-a-member-name", loopback, nil)
	hc := peerPortClient(ca.Pool(), loadPair(t, cert, key))
	expectPipelineServed(t, hc, c.Nodes...)
	for _, p := range peerProbes(t, cid, leader, follower, st.Term)[1:] {
		expectReachedRafthttp(t, p.what+" with a certificate for 127.0.0.1", p.send(hc))
	}

	expectHealthy(t, c.Nodes...)
	expectNoErrorLogged(t, c.Nodes...)
	expectHealthyAfterRestart(t, c.Nodes...)
}

func TestPeerCertAllowedNameFlagsNeedThePeerTrustedCA(t *testing.T) {
	bin := tc.Build(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		what string
		args []string
	}{
		{"--peer-cert-allowed-cn without any peer TLS flag", []string{"--peer-cert-allowed-cn", devcertsPeerCN}},
		{"--peer-cert-allowed-cn with a peer certificate but no peer CA", []string{
			"--peer-cert-file", "peer.pem", "--peer-key-file", "peer-key.pem", "--peer-cert-allowed-cn", devcertsPeerCN}},
		{"--peer-cert-allowed-hostname with a peer certificate but no peer CA", []string{
			"--peer-cert-file", "peer.pem", "--peer-key-file", "peer-key.pem", "--peer-cert-allowed-hostname", "127.0.0.1"}},
	} {
		ports := tc.FreePorts(t, 2)
		dataDir := filepath.Join(dir, strconv.Itoa(ports[0]))
		args := append([]string{
			"--id", "1", "--cluster", fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
			"--port", strconv.Itoa(ports[1]), "--data-dir", dataDir,
		}, tt.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		cmd := exec.CommandContext(ctx, bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s: %v (stderr %q), want exit code 2", tt.what, err, stderr.String())
			continue
		}
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, "--peer-trusted-ca-file") {
			t.Errorf("%s: stderr %q, want one line naming --peer-trusted-ca-file", tt.what, stderr.String())
		}
		if stdout.Len() > 0 {
			t.Errorf("%s: printed %q on stdout", tt.what, stdout.String())
		}
		if _, err := os.Stat(filepath.Join(dataDir, "raftexample-1")); err == nil {
			t.Errorf("%s: created its WAL directory before refusing the flags", tt.what)
		}
		t.Logf("%s: exit 2: %s", tt.what, msg)
	}
}

// ---------------------------------------------------------------------------
// A CA that can sign certificates with any names (testcluster's always
