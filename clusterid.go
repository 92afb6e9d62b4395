package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.uber.org/zap"
)

// Every rafthttp request carries the cluster's id, and a member refuses
// requests with another one (412). The id keeps clusters that can reach each
// other (several on one machine, a member started with another cluster's
// URLs) apart; it is not a secret: anyone who can reach the peer port can
// read it (see the README's Security section).
//
// A new cluster's id is derived from its founding members' URLs and
// --cluster-token, as etcd does, so that every founding member computes the
// same id on its own. A joining member learns it from the cluster. Either
// way it is stored in the WAL's metadata, and in snapshots.

// deriveClusterID is the id of a cluster founded with peerURLs (normalised)
// and token.
func deriveClusterID(peerURLs []string, token string) uint64 {
	h := sha256.New()
	for _, u := range slices.Sorted(slices.Values(peerURLs)) {
		h.Write([]byte(u))
		h.Write([]byte{0})
	}
	h.Write([]byte(token))
	id := binary.BigEndian.Uint64(h.Sum(nil))
	if id == 0 || id == legacyClusterID {
		id++ // 0 means "none", and the legacy id would mix with old clusters
	}
	return id
}

// clusterInfoPath serves clusterInfo on the peer port, for joining members.
const clusterInfoPath = "/raftexample/cluster"

// clusterInfo is what a joining member needs to know before it talks raft.
type clusterInfo struct {
	ClusterID string   `json:"clusterID"` // see formatClusterID
	Members   []member `json:"members"`
}

// formatClusterID writes a cluster id as rafthttp's X-Etcd-Cluster-ID header
// carries it: hexadecimal, without leading zeros.
func formatClusterID(id uint64) string { return types.ID(id).String() }

func (p *peers) serveClusterInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	writeJSON(w, http.StatusOK, clusterInfo{ClusterID: formatClusterID(p.clusterID), Members: p.rn.members.list()})
}

// learnClusterID asks the members in peerURLs (all but our own entry,
// self) for the cluster's id, and checks that the cluster lists this member
// at its URL: a member that was never added, or was added at another URL,
// would otherwise start and be refused by its peers for good. Members
// running a version without cluster ids answer 404; their cluster has the
// legacy id.
func learnClusterID(lg *zap.Logger, peerURLs []string, self uint64, tlsInfo transport.TLSInfo) (uint64, error) {
	client, err := newPeerClient(tlsInfo)
	if err != nil {
		return 0, err
	}
	ownURL := peerURLs[self-1]
	var lastErr error
	// The member that took POST /{id} answered once it applied the change;
	// the others apply it moments later, so a peer may not list us yet.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for i, u := range peerURLs {
			if uint64(i+1) == self {
				continue
			}
			id, err := askClusterID(ctx, client, u, self, ownURL)
			if err == nil {
				return id, nil
			}
			lastErr = err
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	lg.Warn("could not learn the cluster id from its members", zap.Error(lastErr))
	return 0, fmt.Errorf("joining: %w", lastErr)
}

func askClusterID(ctx context.Context, client *http.Client, peerURL string, self uint64, ownURL string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL+clusterInfoPath, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return legacyClusterID, nil
	}
	var info clusterInfo
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || dec.Decode(&info) != nil {
		return 0, fmt.Errorf("%s answered %s to %s", peerURL, resp.Status, clusterInfoPath)
	}
	id, err := strconv.ParseUint(info.ClusterID, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%s sent a bad cluster id %q", peerURL, info.ClusterID)
	}
	var listed []string
	for _, m := range info.Members {
		listed = append(listed, fmt.Sprintf("%d at %s", m.ID, m.PeerURL))
		if m.ID != self {
			continue
		}
		if u, err := parsePeerURL(m.PeerURL); err != nil || u != ownURL {
			return 0, fmt.Errorf("the cluster at %s lists member %d at %s, not at %s", peerURL, self, m.PeerURL, ownURL)
		}
		return id, nil
	}
	return 0, errors.New("the cluster at " + peerURL + " has no member " + strconv.FormatUint(self, 10) +
		" (its members: " + strings.Join(listed, ", ") + "); add this member first with POST /" + strconv.FormatUint(self, 10))
}
