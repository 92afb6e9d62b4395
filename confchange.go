package main

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// This file is the raft node's side of membership changes: proposing them on
// behalf of the HTTP API, and applying them when they commit.

// AddMember proposes adding member id at peerURL and returns once the change
// is applied here (or refused at apply time).
func (rn *raftNode) AddMember(ctx context.Context, id uint64, peerURL string) error {
	if err := rn.members.check(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id}); err != nil {
		return err
	}
	return rn.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id, Context: []byte(peerURL),
	})
}

// RemoveMember proposes removing member id and returns once it is applied.
func (rn *raftNode) RemoveMember(ctx context.Context, id uint64) error {
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: &id}
	if err := rn.members.check(cc); err != nil {
		return err
	}
	return rn.proposeConfChange(ctx, cc)
}

func (rn *raftNode) proposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	id := rn.ids.next()
	cc.Id = &id
	return rn.waits.proposeAndWait(ctx, id, rn.donec, func(ctx context.Context) error {
		return rn.propose(ctx, func(ctx context.Context) error { return rn.node.ProposeConfChange(ctx, cc) })
	})
}

// Members lists the current members.
func (rn *raftNode) Members() []member { return rn.members.list() }

// applyConfChange applies one conf-change entry to raft, the member list and
// the transport, or cancels it if the member list refuses it.
func (rn *raftNode) applyConfChange(e *raftpb.Entry) (removedSelf bool, err error) {
	cc := &raftpb.ConfChange{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return false, fmt.Errorf("decoding conf change at index %d: %w", e.GetIndex(), err)
	}
	refusal := rn.members.check(cc)
	if refusal != nil {
		// Raft must still see the entry; node id 0 makes it a no-op.
		cancelled := proto.Clone(cc).(*raftpb.ConfChange)
		cancelled.NodeId = new(uint64(0))
		rn.confState = rn.node.ApplyConfChange(cancelled)
		rn.waits.trigger(cc.GetId(), refusal)
		return false, nil
	}
	rn.confState = rn.node.ApplyConfChange(cc)
	rn.members.apply(cc)
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		rn.addPeer(id, string(cc.GetContext()))
		rn.lg.Info("member added", zap.Uint64("id", id), zap.ByteString("peer-url", cc.GetContext()))
	case raftpb.ConfChangeRemoveNode:
		if id != rn.cfg.id {
			rn.transport.RemovePeer(types.ID(id))
		}
		rn.lg.Info("member removed", zap.Uint64("id", id))
	}
	rn.waits.trigger(cc.GetId(), nil)
	return cc.GetType() == raftpb.ConfChangeRemoveNode && id == rn.cfg.id, nil
}
