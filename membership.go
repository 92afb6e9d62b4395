package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/etcd/client/pkg/v3/types"

	"go.etcd.io/raft/v3/raftpb"
)

// membership is the member list as the log decided it: who is in the cluster,
// at which peer URL, which members are learners (they replicate the log but
// neither vote nor count for a quorum), and which ids were removed (an id is
// never used twice). It changes only when the raft node applies a
// conf-change entry or installs a snapshot, so every replica holds the same
// list at the same index; --cluster only seeds the conf changes of a
// brand-new cluster.
type membership struct {
	mu       sync.RWMutex
	members  map[uint64]string // id -> peer URL, voters and learners
	learners map[uint64]bool   // a subset of members
	removed  map[uint64]bool
}

func newMembership() *membership {
	return &membership{members: make(map[uint64]string), learners: make(map[uint64]bool), removed: make(map[uint64]bool)}
}

// Reasons a membership change is refused, both before it is proposed and, for
// the ones that raced past that check, when it is applied.
var (
	errMemberExists = errors.New("that id is already a member")
	errIDRemoved    = errors.New("that id belonged to a removed member; ids are never reused")
	errNotMember    = errors.New("no member has that id")
	errLastMember   = errors.New("cannot remove the last voting member")
	errNotLearner   = errors.New("that member is not a learner")
)

// member is one entry of the member list. Snapshots taken before learners
// existed have no learner field: every member in them votes.
type member struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peerURL"`
	Learner bool   `json:"learner,omitempty"`
}

func (m *membership) list() []member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]member, 0, len(m.members))
	for id, u := range m.members {
		out = append(out, member{ID: id, PeerURL: u, Learner: m.learners[id]})
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (m *membership) isMember(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.members[id]
	return ok
}

func (m *membership) isLearner(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.learners[id]
}

// voters is how many members vote.
func (m *membership) voters() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.members) - len(m.learners)
}

// learnerIDs lists the learners in order, nil if there are none.
func (m *membership) learnerIDs() []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []uint64
	for id := range m.learners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// isPromotion reports whether cc makes a learner a voter: raft promotes with
// ConfChangeAddNode on a learner, and our promotions carry no peer URL (the
// learner keeps its own), which is what tells one from an add.
func isPromotion(cc *raftpb.ConfChange) bool {
	return cc.GetType() == raftpb.ConfChangeAddNode && len(cc.GetContext()) == 0
}

// peerURL is member id's peer URL, "" if it is not a member.
func (m *membership) peerURL(id uint64) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.members[id]
}

// empty reports whether the log has not named any member yet (a joining
// member before it has applied anything).
func (m *membership) empty() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.members) == 0
}

func (m *membership) isRemoved(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.removed[id]
}

// check says whether cc may be applied to the current list. The raft node
// calls it when it applies cc, and cancels cc if it fails; the decision
// depends only on replicated state, so every replica decides the same.
//
// It refuses only what no version of this server ever applied (an earlier
// one crashed on a peer URL the transport refuses), so a replica replaying
// an old entry decides as one that applied it long ago and restored the
// result from a snapshot. Rules that are newer than that (unique URLs, the
// id range, quorum safety, a learner's readiness) are checked before
// proposing, in raftNode.checkMembershipChange. The learner rules are no
// exception: versions before learners cancelled every learner change and
// every add without a peer URL, and never proposed one, so no log holds an
// entry that they applied and these rules refuse, or the other way round.
// They also keep raft itself from refusing a change, which it does by
// panicking: removing the last voter, or demoting a voter.
func (m *membership) check(cc *raftpb.ConfChange) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	id := cc.GetNodeId()
	_, isMember := m.members[id]
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if isPromotion(cc) {
			if !isMember {
				return errNotMember
			}
			if !m.learners[id] {
				return errNotLearner
			}
			return nil
		}
		if _, err := parsePeerURL(string(cc.GetContext())); err != nil {
			return err
		}
		if m.removed[id] {
			return errIDRemoved
		}
		if isMember {
			return errMemberExists
		}
	case raftpb.ConfChangeRemoveNode:
		if !isMember {
			return errNotMember
		}
		if !m.learners[id] && len(m.members)-len(m.learners) == 1 {
			return errLastMember
		}
	default:
		return fmt.Errorf("unsupported conf change type %s", cc.GetType())
	}
	return nil
}

// apply records a checked conf change.
func (m *membership) apply(cc *raftpb.ConfChange) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := cc.GetNodeId()
	switch {
	case isPromotion(cc):
		delete(m.learners, id)
	case cc.GetType() == raftpb.ConfChangeAddNode:
		m.members[id] = string(cc.GetContext())
	case cc.GetType() == raftpb.ConfChangeAddLearnerNode:
		m.members[id] = string(cc.GetContext())
		m.learners[id] = true
	case cc.GetType() == raftpb.ConfChangeRemoveNode:
		delete(m.members, id)
		delete(m.learners, id)
		m.removed[id] = true
	}
}

// membershipState is the member list as stored inside a snapshot, with the
// cluster's id (absent from snapshots taken before clusters had their own).
type membershipState struct {
	ClusterID string   `json:"clusterID,omitempty"`
	Members   []member `json:"members"`
	Removed   []uint64 `json:"removed"`
}

func (m *membership) encode(clusterID uint64) []byte {
	st := membershipState{ClusterID: formatClusterID(clusterID), Members: m.list(), Removed: []uint64{}}
	m.mu.RLock()
	for id := range m.removed {
		st.Removed = append(st.Removed, id)
	}
	m.mu.RUnlock()
	slices.Sort(st.Removed)
	data, err := json.Marshal(st)
	if err != nil {
		panic(err) // plain structs of numbers and strings always marshal
	}
	return data
}

// parseMembershipState decodes and checks a member list from a snapshot:
// restore refuses what it refuses, and a snapshot from a peer is checked
// with it before raft may install it.
func parseMembershipState(data []byte) (*membershipState, error) {
	var st membershipState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decoding membership: %w", err)
	}
	seen := map[uint64]bool{}
	voters := 0
	for _, mb := range st.Members {
		if mb.ID == 0 || seen[mb.ID] {
			return nil, fmt.Errorf("decoding membership: member id %d is 0 or listed twice", mb.ID)
		}
		seen[mb.ID] = true
		if _, err := parsePeerURL(mb.PeerURL); err != nil {
			return nil, fmt.Errorf("decoding membership: member %d: %w", mb.ID, err)
		}
		if !mb.Learner {
			voters++
		}
	}
	if voters == 0 && len(st.Members) > 0 {
		return nil, errors.New("decoding membership: every member is a learner")
	}
	return &st, nil
}

// restore replaces the list with the one in data and returns the previous
// members, so the caller can bring its peer connections in line.
func (m *membership) restore(data []byte) (previous map[uint64]string, err error) {
	st, err := parseMembershipState(data)
	if err != nil {
		return nil, err
	}
	members := make(map[uint64]string, len(st.Members))
	learners := map[uint64]bool{}
	for _, mb := range st.Members {
		members[mb.ID] = mb.PeerURL
		if mb.Learner {
			learners[mb.ID] = true
		}
	}
	removed := make(map[uint64]bool, len(st.Removed))
	for _, id := range st.Removed {
		removed[id] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	previous, m.members, m.learners, m.removed = m.members, members, learners, removed
	return previous, nil
}

// maxMemberID is the largest id a new member may have: ids stay within what
// JSON numbers and signed 64-bit integers carry exactly.
const maxMemberID = 1<<63 - 1

// parseMemberID reads a member id (1 to maxMemberID) from a URL path segment.
func parseMemberID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 || id > maxMemberID {
		return 0, fmt.Errorf("member id %q is not an integer from 1 to %d", s, uint64(maxMemberID))
	}
	return id, nil
}

// parsePeerURL checks a peer URL and returns it normalised: lower-case
// scheme and host, canonical IP address, decimal port. It accepts a URL only
// if rafthttp's own parser (types.NewURLs, which panics inside the transport
// on anything it refuses) accepts it, and only the one form this server
// listens on and dials: http(s)://host:port, nothing before or after.
//
// Both the HTTP API (before proposing) and the apply path (before handing a
// committed URL to the transport) call it, so a URL that gets into the log
// cannot be one that the transport refuses.
func parsePeerURL(s string) (string, error) {
	bad := func(why string) (string, error) { return "", fmt.Errorf("peer URL %q %s", s, why) }
	if _, err := types.NewURLs([]string{s}); err != nil {
		return bad("is refused by the peer transport: " + err.Error())
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return bad("does not parse")
	case s != strings.TrimSpace(s):
		return bad("has spaces around it")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("must start with http:// or https://")
	case u.Opaque != "" || u.User != nil || u.Path != "" || u.RawPath != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return bad("must be only scheme://host:port, with no path (not even /), query or fragment")
	}
	host, portText, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return bad("must name a host and a port")
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return bad("has a bad port (1 to 65535)")
	}
	host = strings.ToLower(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return bad("must not name an IPv6 zone")
		}
		host = ip.Unmap().String()
	} else if strings.ContainsAny(host, "%[]") {
		return bad("has a malformed host")
	}
	out := u.Scheme + "://" + net.JoinHostPort(host, strconv.FormatUint(port, 10))
	if _, err := types.NewURLs([]string{out}); err != nil {
		return bad("cannot be normalised: " + err.Error()) // not reached; keeps the promise above explicit
	}
	return out, nil
}
