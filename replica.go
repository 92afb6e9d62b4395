package main

import (
	"context"
	"io"

	"go.uber.org/zap"
)

// replica is one member of the cluster, wired: the raft node, the state
// machine it feeds, and the service in front of both. main, the in-process
// tests and the benchmarks all build members with startReplica.
//
//	HTTP API ─▶ service ─Propose/ProposeConfChange─▶ raftNode ─Ready loop─▶ commit channel ─▶ service.run ─▶ kvstore
//	              ▲                                     │                                        │
//	              ├── membership change applied, ───────┘                                        │
//	              │   proposals in doubt (nodeHooks)                                             │
//	              └── command ids applied, applied through index N ◀─────────────────────────────┘
type replica struct {
	node    *raftNode
	store   *kvstore
	service *service
	// applyDone is closed when the apply loop has ended: when the raft node
	// closed the commit channel, or early, with applyErr, because the state
	// machine cannot follow the log (a snapshot it cannot decode).
	applyDone chan struct{}
	applyErr  error
}

// commit is one unit of work for the state machine, sent by the raft node on
// the commit channel in log order: entries, a snapshot that replaces the
// state, or a request to hold the state still for a snapshot.
type commit struct {
	// snapshot, when non-nil, replaces the whole map before entries are
	// applied. It reads the kvstore part of a raft snapshot (the encoding of
	// frozenKV.WriteTo), snapshotSize bytes long; the kvstore closes it.
	snapshot     io.ReadCloser
	snapshotSize int64
	// entries holds the data of committed normal entries, in log order.
	entries [][]byte
	// index is the log index the state reaches once this commit is applied
	// (entries without data, such as conf changes, advance it too).
	index uint64
	// freeze, when non-nil, asks for the state as it is once everything
	// before this commit is applied, held still (kvstore.freeze); nothing
	// else is in the commit. The channel is buffered.
	freeze chan<- kvImage
}

// proposer is how proposals reach raft (the raft node; fakes in tests).
type proposer interface {
	Propose(ctx context.Context, data []byte) error
	Done() <-chan struct{}
}

// historyLimits bound a member's history of changes for watches.
type historyLimits struct {
	events int
	bytes  int64
}

// defaultHistory is --watch-history and --watch-history-bytes by default.
var defaultHistory = historyLimits{events: 10000, bytes: 64 << 20}

// startReplica replays a member's storage and starts it.
func startReplica(lg *zap.Logger, cfg raftConfig, history historyLimits) (*replica, error) {
	// commitC carries committed work from the raft node to the apply loop,
	// in log order. Only the raft node sends, and it closes the channel when
	// it stops; the apply loop runs until then. The buffer lets the Ready
	// loop run ahead of the apply by a few batches.
	commitC := make(chan commit, 64)
	store := newKVStore(lg)
	svc := newService(lg, store, newWatchHub(history.events, history.bytes))
	rn, err := newRaftNode(lg, cfg, commitC, svc)
	if err != nil {
		return nil, err
	}
	svc.attach(rn)
	r := &replica{node: rn, store: store, service: svc, applyDone: make(chan struct{})}
	if err := rn.start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(r.applyDone)
		r.applyErr = svc.run(commitC)
	}()
	return r, nil
}

// Stop stops the member and waits until its WAL is closed.
func (r *replica) Stop() { r.node.Stop() }
