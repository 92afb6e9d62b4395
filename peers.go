package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	stats "go.etcd.io/etcd/server/v3/etcdserver/api/v2stats"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

// This file connects the raft node to its peers through rafthttp: the
// transport, the peer listener, and keeping the transport's peer list in line
// with the member list.

const (
	// maxPeerConns caps the peer port's connections: each member keeps a few
	// streams and pipeline connections to every other.
	maxPeerConns = 256
	// peerIdleTimeout closes a peer's keep-alive connection it stopped using.
	peerIdleTimeout = 2 * time.Minute
)

func (rn *raftNode) startTransport(existed bool) error {
	ownURL := rn.cfg.peerURLs[rn.cfg.id-1]
	rn.transport = &rafthttp.Transport{
		Logger:      rn.lg.Named("rafthttp"),
		ID:          types.ID(rn.cfg.id),
		URLs:        types.MustNewURLs([]string{ownURL}),
		ClusterID:   types.ID(rn.clusterID),
		Raft:        rn,
		ServerStats: stats.NewServerStats("", ""),
		LeaderStats: stats.NewLeaderStats(rn.lg, strconv.FormatUint(rn.cfg.id, 10)),
		ErrorC:      make(chan error, 1),
		TLSInfo:     rn.cfg.peerTLS, // how we dial peers
		// A snapshot from the leader arrives with the kvstore's part
		// streamed after the message; it is saved here, beside our own.
		Snapshotter: rn.disk.snapshotter,
	}
	if err := rn.transport.Start(); err != nil {
		return fmt.Errorf("starting peer transport: %w", err)
	}
	if existed {
		// Peers known from the snapshot; the rest come with replayed entries.
		for _, m := range rn.members.list() {
			rn.addPeer(m.ID, m.PeerURL)
		}
	} else {
		for i, u := range rn.cfg.peerURLs {
			rn.addPeer(uint64(i+1), u)
		}
	}
	listenURL := ownURL
	if rn.cfg.listenPeerURL != "" {
		listenURL = rn.cfg.listenPeerURL
	}
	u, _ := url.Parse(listenURL)
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		rn.lg.Warn("the peer port is plaintext http:// on an address other than loopback: anyone who can reach it can "+
			"read and write the cluster's data and disrupt it; use https:// peer URLs with --peer-trusted-ca-file and "+
			"--peer-cert-allowed-cn, or a private network (see README, Security)", zap.String("peer-url", listenURL))
	}
	ln, err := newStoppableListener(u.Host)
	if err != nil {
		rn.transport.Stop()
		return fmt.Errorf("listening for peers on %s: %w", u.Host, err)
	}
	rn.peerLn = ln
	var serveLn net.Listener = ln
	if u.Scheme == "https" {
		cfg, err := rn.cfg.peerTLS.ServerConfig()
		if err != nil {
			ln.stop()
			rn.transport.Stop()
			return fmt.Errorf("peer TLS: %w", err)
		}
		serveLn = tls.NewListener(ln, cfg)
	}
	limited := newConnLimiter(serveLn, maxPeerConns, "peer")
	srv := &http.Server{
		Handler:           &peerHTTP{rn: rn, rafthttp: rn.transport.Handler(), maxSnapshotBytes: physicalMemory()},
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       peerIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         limited.track,
		// rafthttp ends a pipeline request it cannot process with a panic,
		// which net/http recovers and logs with a stack: not for info level.
		ErrorLog: debugLog(rn.lg),
	}
	go func() {
		if err := srv.Serve(limited); err != nil && !errors.Is(err, errListenerStopped) {
			rn.lg.Error("peer server stopped", zap.Error(err))
		}
	}()
	return nil
}

// newPeerClient is an HTTP client for this server's own requests to other
// members' peer ports (clusterInfoPath, confChangePath), with the peer
// certificate when the peers use TLS.
func newPeerClient(tlsInfo transport.TLSInfo) (*http.Client, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: peerIdleTimeout}
	if !tlsInfo.Empty() {
		cfg, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr}, nil
}

// isLoopback reports whether host (a name or an IP address) is this machine
// only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (rn *raftNode) addPeer(id uint64, peerURL string) {
	if id != rn.cfg.id {
		rn.transport.AddPeer(types.ID(id), []string{peerURL})
	}
}

// syncPeers brings the transport in line with the member list after it was
// replaced wholesale by a snapshot; previous is the list before.
func (rn *raftNode) syncPeers(previous map[uint64]string) {
	current := rn.members.list()
	stale := make(map[uint64]bool, len(previous)+len(rn.cfg.peerURLs))
	for id := range previous {
		stale[id] = true
	}
	// A joining node seeded its transport from --cluster, which may name
	// members that are gone by the time the snapshot was taken.
	for i := range rn.cfg.peerURLs {
		stale[uint64(i+1)] = true
	}
	for id := range stale {
		if id != rn.cfg.id && !containsMember(current, id) && rn.transport.Get(types.ID(id)) != nil {
			rn.transport.RemovePeer(types.ID(id))
		}
	}
	for _, m := range current {
		if old, ok := previous[m.ID]; ok && old != m.PeerURL && m.ID != rn.cfg.id {
			rn.transport.UpdatePeer(types.ID(m.ID), []string{m.PeerURL})
		}
		rn.addPeer(m.ID, m.PeerURL)
	}
}

func containsMember(ms []member, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// The rest of the rafthttp.Raft interface (Process is in peerhttp.go).

func (rn *raftNode) IsIDRemoved(id uint64) bool  { return rn.members.isRemoved(id) }
func (rn *raftNode) ReportUnreachable(id uint64) { rn.node.ReportUnreachable(id) }
func (rn *raftNode) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	rn.node.ReportSnapshot(id, status)
}
