package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	stats "go.etcd.io/etcd/server/v3/etcdserver/api/v2stats"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

const (
	// maxPeerConns caps the peer port's connections: each member keeps a few
	// streams and pipeline connections to every other.
	maxPeerConns = 256
	// peerIdleTimeout closes a peer's keep-alive connection it stopped using.
	peerIdleTimeout = 2 * time.Minute
)

// peers connects the node to the other members through rafthttp: the
// transport, the peer port's server in front of it (peerHTTP, peerGuard),
// and the transport's peer list kept in line with the member list. The
// Ready loop changes the peer list; rafthttp's goroutines and the peer
// server use the rest, which does not change once started.
type peers struct {
	rn        *raftNode
	clusterID uint64 // from the WAL, or for a new member (see clusterid.go)
	transport *rafthttp.Transport
	guard     *peerGuard
	client    *http.Client // for this node's own requests to other members
	server    *http.Server
	initial   []member // the peers to start with
}

func newPeers(rn *raftNode, clusterID uint64, initial []member) (*peers, error) {
	client, err := newPeerClient(rn.cfg.peerTLS)
	if err != nil {
		return nil, err
	}
	seeds := make([]uint64, len(rn.cfg.peerURLs))
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	p := &peers{rn: rn, clusterID: clusterID, client: client, initial: initial}
	p.guard = &peerGuard{lg: rn.lg, self: rn.cfg.id, members: rn.members, seeds: seeds, view: rn.view,
		remotes: &remotePeers{ids: map[uint64]bool{}}, lost: newLostLog(), logEvery: rate.Sometimes{Interval: time.Second}}
	ownURL := rn.cfg.peerURLs[rn.cfg.id-1]
	p.transport = &rafthttp.Transport{
		Logger:      rn.lg.Named("rafthttp"),
		ID:          types.ID(rn.cfg.id),
		URLs:        types.MustNewURLs([]string{ownURL}),
		ClusterID:   types.ID(clusterID),
		Raft:        rn,
		ServerStats: stats.NewServerStats("", ""),
		LeaderStats: stats.NewLeaderStats(rn.lg, strconv.FormatUint(rn.cfg.id, 10)),
		ErrorC:      make(chan error, 1),
		TLSInfo:     rn.cfg.peerTLS, // how we dial peers
		// A snapshot from the leader arrives with the kvstore's part
		// streamed after the message; it is saved here, beside our own.
		Snapshotter: rn.snaps.log.disk.snapshotter,
	}
	rn.transport = p.transport
	return p, nil
}

// start starts the transport, adds the initial peers, and serves the peer
// port.
func (p *peers) start() error {
	rn := p.rn
	if err := p.transport.Start(); err != nil {
		return fmt.Errorf("starting peer transport: %w", err)
	}
	for _, m := range p.initial {
		p.add(m.ID, m.PeerURL)
	}
	listenURL := rn.cfg.peerURLs[rn.cfg.id-1]
	if rn.cfg.listenPeerURL != "" {
		listenURL = rn.cfg.listenPeerURL
	}
	u, _ := url.Parse(listenURL)
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		rn.lg.Warn("the peer port is plaintext http:// on an address other than loopback: anyone who can reach it can "+
			"read and write the cluster's data and disrupt it; use https:// peer URLs with --peer-trusted-ca-file and "+
			"--peer-cert-allowed-cn, or a private network (see README, Security)", zap.String("peer-url", listenURL))
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		p.transport.Stop()
		return fmt.Errorf("listening for peers on %s: %w", u.Host, err)
	}
	if u.Scheme == "https" {
		cfg, err := rn.cfg.peerTLS.ServerConfig()
		if err != nil {
			ln.Close()
			p.transport.Stop()
			return fmt.Errorf("peer TLS: %w", err)
		}
		ln = tls.NewListener(ln, cfg)
	}
	limited := newConnLimiter(ln, maxPeerConns, "peer")
	p.server = &http.Server{
		Handler:           &peerHTTP{rn: rn, peers: p, rafthttp: p.transport.Handler(), maxSnapshotBytes: physicalMemory()},
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       peerIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         limited.track,
		// rafthttp ends a pipeline request it cannot process with a panic,
		// which net/http recovers and logs with a stack: not for info level.
		ErrorLog: debugLog(rn.lg),
	}
	go func() {
		if err := p.server.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rn.lg.Error("peer server stopped", zap.Error(err))
		}
	}()
	return nil
}

// stop stops the transport and closes the peer port.
func (p *peers) stop() {
	p.transport.Stop()
	if p.server != nil {
		p.server.Close()
	}
}

// errorC is where rafthttp reports failures it cannot handle itself.
func (p *peers) errorC() <-chan error { return p.transport.ErrorC }

// add starts talking to member id at peerURL (not to ourselves).
func (p *peers) add(id uint64, peerURL string) {
	if id != p.rn.cfg.id {
		p.transport.AddPeer(types.ID(id), []string{peerURL})
	}
}

// remove stops talking to member id.
func (p *peers) remove(id uint64) {
	if id != p.rn.cfg.id {
		p.transport.RemovePeer(types.ID(id))
	}
}

// sync brings the transport in line with the member list after it was
// replaced wholesale by a snapshot; previous is the list before.
func (p *peers) sync(previous map[uint64]string) {
	rn := p.rn
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
		isMember := slices.ContainsFunc(current, func(m member) bool { return m.ID == id })
		if !isMember && p.transport.Get(types.ID(id)) != nil {
			p.remove(id)
		}
	}
	for _, m := range current {
		if old, ok := previous[m.ID]; ok && old != m.PeerURL && m.ID != rn.cfg.id {
			p.transport.UpdatePeer(types.ID(m.ID), []string{m.PeerURL})
		}
		p.add(m.ID, m.PeerURL)
	}
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

// The rest of the rafthttp.Raft interface (Process is in peerhttp.go).

func (rn *raftNode) IsIDRemoved(id uint64) bool  { return rn.members.isRemoved(id) }
func (rn *raftNode) ReportUnreachable(id uint64) { rn.node.ReportUnreachable(id) }
func (rn *raftNode) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	rn.node.ReportSnapshot(id, status)
}
