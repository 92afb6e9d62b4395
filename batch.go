package main

import "context"

// Proposal batching. Every entry costs raft a step, a WAL record and a slot
// in a MsgApp, and every proposal a round trip to raft's goroutine. Under
// load many requests wait to propose at the same moment; the batcher gathers
// whatever commands are waiting into one entry (see encodeBatch). It never
// waits to fill a batch: a lone request is proposed at once, as itself.

const (
	maxBatchCommands = 256
	maxBatchBytes    = 512 << 10
)

// batchedProposal is one command waiting to be proposed, and where to report
// whether raft took the entry carrying it.
type batchedProposal struct {
	data     []byte
	accepted chan error // buffered: the batcher never waits for the requester
}

type batcher struct {
	proposer proposer
	// queue carries commands from requests to the batching goroutine, which
	// runs until the proposer stops. Its buffer lets requests queue while a
	// batch is being proposed.
	queue chan batchedProposal
}

func newBatcher(p proposer) *batcher {
	b := &batcher{proposer: p, queue: make(chan batchedProposal, maxBatchCommands)}
	go b.run()
	return b
}

// propose hands data to raft, possibly in one entry with other commands, and
// returns once raft took the entry (or refused it). Like raft's Propose, a
// nil error says nothing about commit.
func (b *batcher) propose(ctx context.Context, data []byte) error {
	p := batchedProposal{data: data, accepted: make(chan error, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return ctx.Err() // never queued: nothing was done
	case <-b.proposer.Done():
		return errStopped
	}
	select {
	case err := <-p.accepted:
		return err
	case <-ctx.Done():
		return ctx.Err() // queued: it may still be proposed
	case <-b.proposer.Done():
		return errStoppedOutcomeUnknown
	}
}

func (b *batcher) run() {
	batch := make([]batchedProposal, 0, maxBatchCommands)
	cmds := make([][]byte, 0, maxBatchCommands)
	for {
		batch, cmds = batch[:0], cmds[:0]
		select {
		case p := <-b.queue:
			batch = append(batch, p)
		case <-b.proposer.Done():
			return
		}
		size := len(batch[0].data)
	gather:
		for len(batch) < maxBatchCommands && size < maxBatchBytes {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
				size += len(p.data)
			default:
				break gather
			}
		}
		data := batch[0].data
		if len(batch) > 1 {
			for _, p := range batch {
				cmds = append(cmds, p.data)
			}
			data = encodeBatch(cmds)
		}
		// Not any one request's context: the entry carries them all. The raft
		// node bounds how long it waits for a leader and for raft to take it.
		err := b.proposer.Propose(context.Background(), data)
		metricBatchSize.Observe(float64(len(batch)))
		for _, p := range batch {
			p.accepted <- err
		}
	}
}
