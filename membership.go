package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
)

// membership is the member list as the log decided it: who is in the cluster,
// at which peer URL, and which ids were removed (an id is never used twice).
// It changes only when the raft node applies a conf-change entry or installs
// a snapshot, so every replica holds the same list at the same index; --cluster
// only seeds the conf changes of a brand-new cluster.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]string // id -> peer URL
	removed map[uint64]bool
}

func newMembership() *membership {
	return &membership{members: make(map[uint64]string), removed: make(map[uint64]bool)}
}

// Reasons a membership change is refused, both before it is proposed and, for
// the ones that raced past that check, when it is applied.
var (
	errMemberExists = errors.New("that id is already a member")
	errIDRemoved    = errors.New("that id belonged to a removed member; ids are never reused")
	errNotMember    = errors.New("no member has that id")
	errLastMember   = errors.New("cannot remove the last member")
)

// member is one entry of the member list.
type member struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peerURL"`
}

func (m *membership) list() []member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]member, 0, len(m.members))
	for id, u := range m.members {
		out = append(out, member{ID: id, PeerURL: u})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *membership) isMember(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.members[id]
	return ok
}

func (m *membership) isRemoved(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.removed[id]
}

// check says whether cc may be applied to the current list. The raft node
// calls it when it applies cc, and cancels cc if it fails; the decision
// depends only on replicated state, so every replica decides the same.
func (m *membership) check(cc *raftpb.ConfChange) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		if m.removed[id] {
			return errIDRemoved
		}
		if _, ok := m.members[id]; ok {
			return errMemberExists
		}
	case raftpb.ConfChangeRemoveNode:
		if _, ok := m.members[id]; !ok {
			return errNotMember
		}
		if len(m.members) == 1 {
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
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		m.members[cc.GetNodeId()] = string(cc.GetContext())
	case raftpb.ConfChangeRemoveNode:
		delete(m.members, cc.GetNodeId())
		m.removed[cc.GetNodeId()] = true
	}
}

// membershipState is the member list as stored inside a snapshot.
type membershipState struct {
	Members []member `json:"members"`
	Removed []uint64 `json:"removed"`
}

func (m *membership) encode() []byte {
	st := membershipState{Members: m.list(), Removed: []uint64{}}
	m.mu.RLock()
	for id := range m.removed {
		st.Removed = append(st.Removed, id)
	}
	m.mu.RUnlock()
	sort.Slice(st.Removed, func(i, j int) bool { return st.Removed[i] < st.Removed[j] })
	data, err := json.Marshal(st)
	if err != nil {
		panic(err) // plain structs of numbers and strings always marshal
	}
	return data
}

// restore replaces the list with the one in data and returns the previous
// members, so the caller can bring its peer connections in line.
func (m *membership) restore(data []byte) (previous map[uint64]string, err error) {
	var st membershipState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decoding membership: %w", err)
	}
	members := make(map[uint64]string, len(st.Members))
	for _, mb := range st.Members {
		members[mb.ID] = mb.PeerURL
	}
	removed := make(map[uint64]bool, len(st.Removed))
	for _, id := range st.Removed {
		removed[id] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	previous, m.members, m.removed = m.members, members, removed
	return previous, nil
}

// parseMemberID reads a member id from a URL path segment.
func parseMemberID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("member id %q is not a positive integer", s)
	}
	return id, nil
}

// validatePeerURL accepts exactly http(s)://host:port, the form rafthttp dials.
func validatePeerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("peer URL %q does not parse: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("peer URL %q must start with http:// or https://", s)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return fmt.Errorf("peer URL %q must name a host and a port", s)
	}
	if port, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || port == 0 {
		return fmt.Errorf("peer URL %q has a bad port", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("peer URL %q must be only scheme://host:port", s)
	}
	return nil
}
