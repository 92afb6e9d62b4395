// Command devcerts writes a throwaway certificate authority and three
// certificates it signs, for trying raftexample's TLS on one machine:
//
//	ca.pem                      the CA (its key is not kept)
//	peer.pem, peer-key.pem      CN raftexample-peer, for the peer port: server and client
//	server.pem, server-key.pem  CN raftexample-server, for the HTTP API: server
//	client.pem, client-key.pem  CN raftexample-client, for HTTP API clients: client only
//
// The peer and server certificates are valid for 127.0.0.1, ::1 and
// localhost; the client certificate names no host. Since the client
// certificate is signed by the same CA, the peer port must be pinned to the
// peer name (--peer-cert-allowed-cn raftexample-peer) to refuse it. They are
// for experiments, not for production.
//
//	go run ./tools/devcerts -dir certs
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// peerCN is the Common Name of the peer certificate, the name to give
// --peer-cert-allowed-cn.
const peerCN = "raftexample-peer"

// A cert is one certificate to issue.
type cert struct {
	file  string // <file>.pem and <file>-key.pem
	cn    string
	hosts bool // valid for 127.0.0.1, ::1 and localhost
	usage []x509.ExtKeyUsage
}

var certs = []cert{
	{"peer", peerCN, true, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	{"server", "raftexample-server", true, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	{"client", "raftexample-client", false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
}

func main() {
	dir := flag.String("dir", "certs", "directory to write the PEM files to")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
	d := func(name string) string { return filepath.Join(*dir, name) }
	fmt.Printf(`devcerts: wrote ca.pem, peer.pem, server.pem, client.pem and their -key.pem files to %s
Start each member (https:// --cluster URLs) with:
  --peer-cert-file %s --peer-key-file %s --peer-trusted-ca-file %s --peer-cert-allowed-cn %s
  --cert-file %s --key-file %s --trusted-ca-file %s
and talk to it with:
  curl --cacert %s --cert %s --key %s https://127.0.0.1:<port>/<key>
`, *dir, d("peer.pem"), d("peer-key.pem"), d("ca.pem"), peerCN,
		d("server.pem"), d("server-key.pem"), d("ca.pem"),
		d("ca.pem"), d("client.pem"), d("client-key.pem"))
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := template("raftexample dev CA")
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	for _, c := range certs {
		if err := issue(dir, c, ca, caKey); err != nil {
			return err
		}
	}
	return nil
}

func template(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
	}
}

// issue writes <c.file>.pem and <c.file>-key.pem, signed by ca.
func issue(dir string, c cert, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := template(c.cn)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = c.usage
	if c.hosts {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, c.file+".pem"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, c.file+"-key.pem"), "PRIVATE KEY", keyDER, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
