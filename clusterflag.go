package main

import (
	"fmt"
	"strings"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// --cluster seeds only a brand-new cluster: once a member has data, its
// members and their URLs come from its log and snapshot, and --cluster is
// not read again (a restart with the original flag still finds members added
// since). A member started on old data with new URLs, say the https:// ones
// of the README's TLS section on the quick start's http:// data, would
// silently keep the old ones; so it warns, once, at start.

// warnIfClusterDisagrees logs one warning when an id that --cluster lists is
// a stored member at another peer URL. Ids --cluster lists that the log
// removed, and members it added, are what membership changes leave: no
// warning for those.
func warnIfClusterDisagrees(lg *zap.Logger, cfg raftConfig, snapshotted *membership, st *diskState) {
	stored := storedMembers(snapshotted, st)
	disagree := false
	for i, u := range cfg.peerURLs {
		if s := stored.peerURL(uint64(i + 1)); s != "" && s != u {
			disagree = true
		}
	}
	if !disagree {
		return
	}
	flag := make([]string, len(cfg.peerURLs))
	for i, u := range cfg.peerURLs {
		flag[i] = fmt.Sprintf("%d=%s", i+1, u)
	}
	var list []string
	for _, m := range stored.list() {
		list = append(list, fmt.Sprintf("%d=%s", m.ID, m.PeerURL))
	}
	lg.Warn("--cluster disagrees with the member list stored in the data directory; using the stored list (--cluster only seeds a new cluster: to start one with these URLs, start from empty data directories)",
		zap.String("dir", cfg.waldir), zap.String("cluster", strings.Join(flag, ",")), zap.String("stored", strings.Join(list, ",")))
}

// storedMembers is the member list the node will have once it has replayed
// its log: the snapshot's, and the committed conf changes after it, checked
// and applied as the Ready loop will.
func storedMembers(snapshotted *membership, st *diskState) *membership {
	m := newMembership()
	m.restore(snapshotted.encode(0)) // a copy: the list was checked when the snapshot was read
	commit := st.hardState.GetCommit()
	for _, e := range st.entries {
		if e.GetIndex() > commit {
			break
		}
		cc := &raftpb.ConfChange{}
		if e.GetType() != raftpb.EntryConfChange || proto.Unmarshal(e.GetData(), cc) != nil || m.check(cc) != nil {
			continue
		}
		m.apply(cc)
	}
	return m
}
