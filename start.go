package main

import (
	"fmt"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// This file is how a raft node starts: its configuration, replaying its
// storage, making raft.Node, and starting the goroutines.

type raftConfig struct {
	id        uint64
	peerURLs  []string // --cluster: seeds the members of a brand-new cluster
	join      bool     // start empty and learn the members from the cluster
	waldir    string
	snapdir   string
	snapCount uint64            // applied entries between snapshots
	peerTLS   transport.TLSInfo // empty for plain http:// peers
	// clusterToken tells apart clusters founded with the same URLs; see
	// deriveClusterID.
	clusterToken string
	// listenPeerURL, when set, is where the peer port listens; peers still
	// reach this node at its --cluster URL (through a proxy, say).
	listenPeerURL string
	// unsafeNoFsync (--unsafe-no-fsync) skips every fsync of the WAL and of
	// our own files: for tests only, a power cut then loses acknowledged
	// writes.
	unsafeNoFsync bool
}

// newRaftNode replays this node's storage and makes its raft.Node, without
// starting anything: start does, once hooks can be called.
func newRaftNode(lg *zap.Logger, cfg raftConfig, commitC chan<- commit, hooks nodeHooks) (*raftNode, error) {
	if cfg.id == 0 || cfg.id > uint64(len(cfg.peerURLs)) {
		return nil, fmt.Errorf("--id %d has no entry in --cluster (%d URLs)", cfg.id, len(cfg.peerURLs))
	}
	urls := make([]string, len(cfg.peerURLs))
	for i, u := range cfg.peerURLs {
		var err error
		if urls[i], err = parsePeerURL(u); err != nil {
			return nil, fmt.Errorf("--cluster: %w", err)
		}
	}
	cfg.peerURLs = urls
	if cfg.listenPeerURL != "" {
		if _, err := parsePeerURL(cfg.listenPeerURL); err != nil {
			return nil, fmt.Errorf("--listen-peer-url: %w", err)
		}
	}
	disk, state, err := openDiskStorage(lg, cfg.id, cfg.waldir, cfg.snapdir, storageOptions{noFsync: cfg.unsafeNoFsync}, func() (uint64, error) {
		if cfg.join {
			return learnClusterID(lg, cfg.peerURLs, cfg.id, cfg.peerTLS)
		}
		return deriveClusterID(cfg.peerURLs, cfg.clusterToken), nil
	})
	if err != nil {
		return nil, err
	}
	dl := &durableLog{memory: raft.NewMemoryStorage(), disk: disk}
	rn := &raftNode{
		cfg:     cfg,
		lg:      lg,
		log:     dl,
		snaps:   newSnapshots(lg, cfg.snapCount, dl),
		view:    &logView{},
		members: newMembership(),
		hooks:   hooks,
		commitC: commitC,
		applied: appliedState{confState: &raftpb.ConfState{}},
		life:    lifecycle{stop: make(chan struct{}), done: make(chan struct{})},
	}
	rn.lead = newLeadership(rn)
	rn.reads = newReadIndex(rn)
	if err := rn.restore(dl, state); err != nil {
		disk.close()
		return nil, err
	}
	if state.existed {
		warnIfClusterDisagrees(lg, cfg, rn.members, state)
	}
	// The transport starts with the members the snapshot names (the rest
	// come with replayed entries), or for a new member those of --cluster.
	initial := rn.members.list()
	if !state.existed {
		initial = nil
		for i, u := range cfg.peerURLs {
			initial = append(initial, member{ID: uint64(i + 1), PeerURL: u})
		}
	}
	if rn.peers, err = newPeers(rn, state.clusterID, initial); err != nil {
		disk.close()
		return nil, err
	}
	c := &raft.Config{
		ID:                        cfg.id,
		ElectionTick:              electionTicks,
		HeartbeatTick:             1,
		Storage:                   dl.memory,
		Applied:                   rn.applied.index,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true, // a leader cut off from the majority steps down
		PreVote:                   true, // a partitioned or removed node cannot disrupt the others
		StepDownOnRemoval:         true,
		Logger:                    newRaftLogger(lg),
	}
	if state.existed || cfg.join {
		// The members come from the log and snapshot (or, when joining, from
		// the leader), never from --cluster.
		rn.node = raft.RestartNode(c)
	} else {
		peers := make([]raft.Peer, len(cfg.peerURLs))
		for i, u := range cfg.peerURLs {
			// The URL rides in the bootstrap conf changes, so the log itself
			// records where every member listens.
			peers[i] = raft.Peer{ID: uint64(i + 1), Context: []byte(u)}
		}
		rn.node = raft.StartNode(c, peers)
	}
	if len(cfg.peerURLs) == 1 && !cfg.join {
		// Raft refuses to campaign before the conf changes it knows of are
		// applied: the bootstrap one, or those replayed from the WAL.
		rn.lead.campaignOnceApplied(max(1, state.hardState.GetCommit()))
	}
	return rn, nil
}

// restore loads what the node found on disk: raft's log, the member list
// and the state machine's snapshot (handed to it first, by the loop).
func (rn *raftNode) restore(dl *durableLog, st *diskState) error {
	if st.snapshot != nil {
		membersData, kv, size, err := rn.snaps.open(st.snapshot)
		if err != nil {
			return err
		}
		if _, err := rn.members.restore(membersData); err != nil {
			kv.Close()
			return err
		}
		md := st.snapshot.GetMetadata()
		rn.applied = appliedState{index: md.GetIndex(), confState: md.GetConfState()}
		rn.snaps.restored(md.GetIndex(), kv, size)
	}
	if err := dl.load(st); err != nil {
		rn.snaps.closeStartup()
		return err
	}
	if hs := st.hardState; hs != nil {
		rn.view.term.Store(hs.GetTerm())
		rn.view.commit.Store(hs.GetCommit())
	}
	last, _ := dl.memory.LastIndex()
	rn.view.last.Store(last)
	return nil
}

// start starts the peer transport, the Ready loop and the read loop.
func (rn *raftNode) start() error {
	// The transport starts after the node exists: peers may send us messages
	// the moment it listens, and those go straight to rn.node.
	if err := rn.peers.start(); err != nil {
		rn.node.Stop()
		rn.snaps.closeStartup()
		rn.log.close()
		return err
	}
	go rn.run()
	go rn.reads.run()
	return nil
}
