package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// This file is the peer port's HTTP side: what is checked about a request
// before rafthttp reads it, and what the node does with the messages
// rafthttp hands it (the rafthttp.Raft interface).

const (
	// maxPipelineBytes bounds one message on rafthttp's pipeline (POST /raft).
	// Raft sends at most MaxSizePerMsg of entries per message plus one entry,
	// which is at most a batch of commands (batch.go) and one value.
	maxPipelineBytes = 64 << 20
	// maxPipelineBytesInFlight bounds the pipeline bodies being read at once:
	// rafthttp reads each one whole into memory.
	maxPipelineBytesInFlight = 256 << 20
	// maxSnapshotEnvelopeBytes bounds the raft message before a snapshot's
	// data: metadata and the member list.
	maxSnapshotEnvelopeBytes = 1 << 20
	// peerBodyIdleTimeout is how long a peer may send nothing in the middle of
	// a request body.
	peerBodyIdleTimeout = 30 * time.Second
)

// peerHTTP serves the peer port: rafthttp's handler behind checks of its own.
type peerHTTP struct {
	rn        *raftNode
	peers     *peers
	rafthttp  http.Handler
	inFlight  atomic.Int64 // bytes of pipeline bodies being read
	uploading sync.Mutex   // held while a snapshot is received; one at a time
	// maxSnapshotBytes bounds a received snapshot's data: one that does not
	// fit in this machine's memory could not be loaded anyway.
	maxSnapshotBytes int64
}

func (h *peerHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.admitRemote(r)
	switch r.URL.Path {
	case rafthttp.RaftPrefix:
		h.servePipeline(w, r)
	case rafthttp.RaftSnapshotPrefix:
		h.serveSnapshot(w, r)
	case clusterInfoPath:
		h.peers.serveClusterInfo(w, r)
	case confChangePath:
		h.peers.serveConfChange(w, r)
	default:
		h.rafthttp.ServeHTTP(w, r)
	}
}

// admitRemote keeps rafthttp from starting senders for whatever a request
// claims: it adds a "remote" for a sender it does not know from the
// X-PeerURLs header (and panics if the header does not parse). Only a
// plausible future member, with URLs that parse, up to maxRemotePeers of
// them, keeps the header.
func (h *peerHTTP) admitRemote(r *http.Request) {
	urls := r.Header.Get("X-PeerURLs")
	if urls == "" {
		return
	}
	g := h.peers.guard
	from, err := types.IDFromString(r.Header.Get("X-Server-From"))
	ok := err == nil && uint64(from) != g.self && uint64(from) <= maxMemberID &&
		!g.members.isMember(uint64(from)) && !g.members.isRemoved(uint64(from))
	for _, u := range strings.Split(urls, ",") {
		if _, err := parsePeerURL(u); err != nil {
			ok = false
		}
	}
	if !ok || !g.remotes.admit(uint64(from)) {
		r.Header.Del("X-PeerURLs")
	}
}

func (h *peerHTTP) servePipeline(w http.ResponseWriter, r *http.Request) {
	n := r.ContentLength
	switch {
	case r.Method != http.MethodPost:
		h.rafthttp.ServeHTTP(w, r) // rafthttp answers 405
		return
	case n < 0:
		h.refuse(w, r, &peerRefusal{reason: "body", msg: "a raft message needs a Content-Length", code: http.StatusLengthRequired})
		return
	case n > maxPipelineBytes:
		h.refuse(w, r, &peerRefusal{reason: "body", msg: fmt.Sprintf("a raft message of %d bytes is over the limit of %d", n, maxPipelineBytes), code: http.StatusRequestEntityTooLarge})
		return
	}
	if h.inFlight.Add(n) > maxPipelineBytesInFlight {
		h.inFlight.Add(-n)
		h.refuse(w, r, &peerRefusal{reason: "body", msg: "too many raft messages are being received; retry", code: http.StatusServiceUnavailable})
		return
	}
	defer h.inFlight.Add(-n)
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(peerBodyIdleTimeout))
	h.rafthttp.ServeHTTP(w, r)
}

// serveSnapshot checks a snapshot upload before rafthttp saves its data: the
// envelope message is read here and given back to rafthttp in front of the
// rest of the body, so nothing is stored from a sender that may not send one.
func (h *peerHTTP) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.rafthttp.ServeHTTP(w, r)
		return
	}
	if r.Header.Get("X-Etcd-Cluster-ID") != formatClusterID(h.peers.clusterID) {
		h.rafthttp.ServeHTTP(w, r) // rafthttp refuses it (412) before reading the body
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(peerBodyIdleTimeout))
	var size [8]byte
	if _, err := io.ReadFull(r.Body, size[:]); err != nil {
		h.refuse(w, r, refuse("snapshot", "reading the snapshot message: %v", err))
		return
	}
	n := binary.BigEndian.Uint64(size[:])
	if n > maxSnapshotEnvelopeBytes {
		h.refuse(w, r, &peerRefusal{reason: "snapshot", msg: fmt.Sprintf("snapshot message of %d bytes", n), code: http.StatusRequestEntityTooLarge})
		return
	}
	envelope := make([]byte, n)
	m := &raftpb.Message{}
	if _, err := io.ReadFull(r.Body, envelope); err != nil {
		h.refuse(w, r, refuse("snapshot", "reading the snapshot message: %v", err))
		return
	} else if err := proto.Unmarshal(envelope, m); err != nil || m.GetType() != raftpb.MsgSnap {
		h.refuse(w, r, refuse("snapshot", "not a snapshot message (%v)", err))
		return
	}
	if err := h.rn.checkSnapshotUpload(m); err != nil {
		h.refuse(w, r, err)
		return
	}
	if !h.uploading.TryLock() {
		h.refuse(w, r, &peerRefusal{reason: "snapshot", msg: "another snapshot is being received", code: http.StatusServiceUnavailable})
		return
	}
	defer h.uploading.Unlock()
	index := m.GetSnapshot().GetMetadata().GetIndex()
	// In flight from here until raft decides. If raft takes the snapshot,
	// receiveSnapshot holds it on until persist has written the .snap file
	// that refers to the data; otherwise the data goes as soon as this
	// request is over.
	h.rn.snaps.log.disk.inFlight.add(index)
	h.peers.guard.receiving.Store(index)
	defer func() {
		h.peers.guard.receiving.Store(0)
		h.rn.snaps.log.disk.inFlight.done(index)
		h.rn.snaps.log.disk.removeUnreferencedDataFiles()
	}()
	rest := &maxBytes{r: &idleDeadlineReader{r: r.Body, rc: rc}, n: h.maxSnapshotBytes}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(size[:]), bytes.NewReader(envelope), rest), r.Body}
	rec := &statusRecorder{ResponseWriter: w}
	h.rafthttp.ServeHTTP(rec, r)
	// rafthttp answers 500 when snap.SaveDBFrom fails, and only logs it.
	// Unless reading the body failed (the sender's or the network's fault),
	// that is a failed write or fsync of our disk, which stops the member
	// like any other.
	if rec.code == http.StatusInternalServerError && strings.HasPrefix(rec.body, rafthttpSaveFailedMessage) && rest.err == nil {
		h.rn.snaps.fault(faultf(errors.New(strings.TrimSpace(rec.body)), "storing the snapshot at index %d received from member %d", index, m.GetFrom()))
	}
}

// rafthttpSaveFailedMessage starts rafthttp's answer when it could not save a
// snapshot's data.
const rafthttpSaveFailedMessage = "failed to save KV snapshot"

// statusRecorder remembers the status and the start of the body of an answer.
type statusRecorder struct {
	http.ResponseWriter
	code int
	body string
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	if len(s.body) < 512 {
		s.body += string(p[:min(len(p), 512-len(s.body))])
	}
	return s.ResponseWriter.Write(p)
}

// idleDeadlineReader moves the connection's read deadline on with every read,
// so a long upload may take its time but a stalled one ends.
type idleDeadlineReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (d *idleDeadlineReader) Read(p []byte) (int, error) {
	d.rc.SetReadDeadline(time.Now().Add(peerBodyIdleTimeout))
	return d.r.Read(p)
}

// maxBytes fails a read that goes past n bytes; err is the first error
// other than io.EOF that a read returned.
type maxBytes struct {
	r   io.Reader
	n   int64
	err error
}

func (m *maxBytes) Read(p []byte) (int, error) {
	k, err := m.r.Read(p)
	if m.n -= int64(k); m.n < 0 {
		err = fmt.Errorf("snapshot data is larger than this member's limit")
	}
	if err != nil && err != io.EOF && m.err == nil {
		m.err = err
	}
	return k, err
}

func (h *peerHTTP) refuse(w http.ResponseWriter, r *http.Request, err *peerRefusal) {
	h.peers.guard.refused(r.RemoteAddr, err)
	err.WriteTo(w)
}

// checkSnapshotUpload decides whether a snapshot may be received at all: from
// a member at our term or later (a leader's), and for an index raft could
// still take, which also keeps an upload from replacing a data file a .snap
// file of ours refers to.
func (rn *raftNode) checkSnapshotUpload(m *raftpb.Message) *peerRefusal {
	if err := rn.peers.guard.check(m); err != nil {
		return err
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	if term := rn.peers.guard.view.term.Load(); m.GetTerm() < term {
		return refuse("snapshot", "snapshot at term %d, below ours (%d)", m.GetTerm(), term)
	}
	if commit := rn.peers.guard.view.commit.Load(); index <= commit || rn.snaps.log.disk.refersTo(index) {
		return refuse("snapshot", "snapshot at index %d, not after our commit index %d", index, commit)
	}
	if err := rn.checkSnapshotData(m.GetSnapshot(), false); err != nil {
		return refuse("snapshot", "%v", err)
	}
	return nil
}

// The rafthttp.Raft interface: how the transport hands us peers' messages.

func (rn *raftNode) Process(ctx context.Context, m *raftpb.Message) error {
	if err := rn.peers.guard.check(m); err != nil {
		rn.peers.guard.refused("from member "+strconv.FormatUint(m.GetFrom(), 10), err)
		// A heartbeat at our term or later comes from that term's leader,
		// the one leader it has, if it is genuine.
		if err.pastLog && m.GetTerm() >= rn.view.term.Load() {
			rn.peers.guard.lost.note(m.GetFrom(), m.GetCommit(), rn.view.last.Load())
		}
		return err
	}
	if m.GetType() == raftpb.MsgSnap {
		return rn.receiveSnapshot(ctx, m)
	}
	return rn.node.Step(ctx, m)
}

// receiveSnapshot hands raft a snapshot whose data rafthttp has saved, once
// the data checks out: a snapshot raft installs must be one this node can
// load, now and after every restart.
func (rn *raftNode) receiveSnapshot(ctx context.Context, m *raftpb.Message) error {
	index := m.GetSnapshot().GetMetadata().GetIndex()
	if index == 0 || rn.peers.guard.receiving.Load() != index {
		err := refuse("type", "snapshots are taken only on %s", rafthttp.RaftSnapshotPrefix)
		rn.peers.guard.refused("from member "+strconv.FormatUint(m.GetFrom(), 10), err)
		return err
	}
	if err := rn.checkSnapshotData(m.GetSnapshot(), true); err != nil {
		refusal := refuse("snapshot", "%v", err)
		rn.peers.guard.refused("from member "+strconv.FormatUint(m.GetFrom(), 10), refusal)
		return refusal
	}
	before := rn.node.Status().HardState.GetCommit()
	if before >= index {
		return nil // raft would drop it: it has all of it already
	}
	if err := rn.node.Step(ctx, m); err != nil {
		return err
	}
	// Status goes through raft's goroutine after the message did, so it shows
	// whether raft took the snapshot (its commit index jumps to it).
	if rn.node.Status().HardState.GetCommit() >= index {
		rn.snaps.log.disk.inFlight.add(index) // until persist has written its .snap file
	}
	return nil
}
