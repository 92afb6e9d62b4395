package e2e

// A small rafthttp client for forging peer traffic: it speaks to a member's
// peer port (n.PeerURL) exactly as another member's transport would, with
// the encodings of go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp
// (createPostRequest in util.go, messageEncoder in msg_codec.go,
// createSnapBody in snapshot_sender.go, streamReader.dial in stream.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	tc "raftexample/internal/testcluster"
)

// peerTimeout bounds every request to a peer port, body included.
const peerTimeout = 20 * time.Second

// The versions a member of this build announces (etcd's version package).
const (
	peerServerVersion     = "3.7.3"
	peerMinClusterVersion = "3.0.0"
)

// oldClusterID is the constant every cluster used before cluster IDs were
// derived per cluster.
const oldClusterID = "1000"

// peerHTTP never reuses connections: a refused request may leave its
// connection closed by the server.
var peerHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// peerAnswer is what a peer port answered. Err is set (and Code 0) when no
// answer came: refused connection, connection closed mid-request, timeout.
type peerAnswer struct {
	Code int
	Body string
	Err  error
}

func (a peerAnswer) String() string {
	if a.Err != nil {
		return fmt.Sprintf("no answer (%v)", a.Err)
	}
	return fmt.Sprintf("%d %q", a.Code, strings.TrimSpace(a.Body))
}

// refused reports whether the peer port answered with a 4xx status.
func (a peerAnswer) refused() bool { return a.Err == nil && a.Code >= 400 && a.Code < 500 }

// clusterIDOf returns n's cluster ID as rafthttp writes it in
// X-Etcd-Cluster-ID (types.ID.String: lower-case hex, no leading zeros). A
// server that does not report one yet uses the old constant.
func clusterIDOf(t testing.TB, n *tc.Node) string {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatalf("cluster ID of %v: %v", n, err)
	}
	if st.ClusterID == "" {
		return oldClusterID
	}
	id, err := strconv.ParseUint(st.ClusterID, 16, 64)
	if err != nil {
		t.Fatalf("%v reports cluster ID %q, not hex: %v", n, st.ClusterID, err)
	}
	return strconv.FormatUint(id, 16)
}

// peerHeader is the header rafthttp's createPostRequest sets (without
// X-PeerURLs, which would make the receiver dial us back).
func peerHeader(clusterID string, from uint64, contentType string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", contentType)
	h.Set("X-Server-From", strconv.FormatUint(from, 16))
	h.Set("X-Server-Version", peerServerVersion)
	h.Set("X-Min-Cluster-Version", peerMinClusterVersion)
	h.Set("X-Etcd-Cluster-ID", clusterID)
	return h
}

// peerDo sends one request to path on n's peer port. size is the body's
// Content-Length, or -1 to send it chunked. The answer's body is read up to
// 64 KiB.
func peerDo(ctx context.Context, n *tc.Node, method, path string, h http.Header, body io.Reader, size int64) peerAnswer {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(n.PeerURL, "/")+path, body)
	if err != nil {
		return peerAnswer{Err: err}
	}
	req.Header = h
	req.ContentLength = size // overrides what NewRequest guessed; -1 sends it chunked
	if body == nil {
		req.ContentLength = 0
	}
	resp, err := peerHTTP.Do(req)
	if err != nil {
		return peerAnswer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return peerAnswer{Code: resp.StatusCode, Body: string(b), Err: err}
}

// sendMessage posts m to n's pipeline (POST /raft) as m's sender would,
// with n's own cluster ID.
func sendMessage(t testing.TB, n *tc.Node, m *raftpb.Message) peerAnswer {
	t.Helper()
	return sendMessageWithClusterID(t, n, clusterIDOf(t, n), m)
}

// sendMessageWithClusterID is sendMessage with a cluster ID of our choice.
func sendMessageWithClusterID(t testing.TB, n *tc.Node, clusterID string, m *raftpb.Message) peerAnswer {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshalling %v: %v", m, err)
	}
	h := peerHeader(clusterID, m.GetFrom(), "application/protobuf")
	return peerDo(context.Background(), n, http.MethodPost, "/raft", h, bytes.NewReader(b), int64(len(b)))
}

// sendPipelineBody posts an arbitrary body to n's pipeline as member from.
func sendPipelineBody(ctx context.Context, t testing.TB, n *tc.Node, from uint64, body io.Reader, size int64) peerAnswer {
	t.Helper()
	h := peerHeader(clusterIDOf(t, n), from, "application/protobuf")
	return peerDo(ctx, n, http.MethodPost, "/raft", h, body, size)
}

// sendSnapshot posts a snapshot to n (POST /raft/snapshot) as m's sender
// would: the 8-byte big-endian length of the MsgSnap, the MsgSnap, then the
// data file's bytes, read from data as they are sent. size is the data's
// length (-1: unknown, the body is sent chunked).
func sendSnapshot(ctx context.Context, t testing.TB, n *tc.Node, m *raftpb.Message, data io.Reader, size int64) peerAnswer {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshalling %v: %v", m, err)
	}
	head := binary.BigEndian.AppendUint64(nil, uint64(len(b)))
	head = append(head, b...)
	total := int64(-1)
	if size >= 0 {
		total = int64(len(head)) + size
	}
	h := peerHeader(clusterIDOf(t, n), m.GetFrom(), "application/octet-stream")
	return peerDo(ctx, n, http.MethodPost, "/raft/snapshot", h, io.MultiReader(bytes.NewReader(head), data), total)
}

// openStream asks n for a stream (kind "message" or "msgapp") as member
// from would, and hangs up as soon as the answer's header arrived.
func openStream(t testing.TB, n *tc.Node, kind string, from uint64, clusterID string) peerAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/raft/stream/%s/%x", strings.TrimSuffix(n.PeerURL, "/"), kind, from), nil)
	if err != nil {
		return peerAnswer{Err: err}
	}
	req.Header = peerHeader(clusterID, from, "")
	req.Header.Del("Content-Type")
	req.Header.Set("X-Raft-To", strconv.FormatUint(uint64(n.ID), 16))
	resp, err := peerHTTP.Do(req)
	if err != nil {
		return peerAnswer{Err: err}
	}
	defer resp.Body.Close()
	a := peerAnswer{Code: resp.StatusCode}
	if resp.StatusCode != http.StatusOK { // a 200 stream body never ends
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		a.Body = string(b)
	}
	return a
}

// ---------------------------------------------------------------------------
// Messages

// heartbeat is a MsgHeartbeat from → to at term.
func heartbeat(from, to, term uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(from), To: new(to), Term: new(term)}
}

// snapshotMessage is a MsgSnap from → to at term for a snapshot at index
// (taken at term) with the given voters, whose data names members as the
// server encodes it (format byte 2, then the JSON member list).
func snapshotMessage(from, to, term, index uint64, cs *raftpb.ConfState, members []tc.Member) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), From: new(from), To: new(to), Term: new(term),
		Snapshot: &raftpb.Snapshot{
			Data:     snapshotMembersData(members),
			Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: cs},
		},
	}
}

func snapshotMembersData(members []tc.Member) []byte {
	b, err := json.Marshal(struct {
		Members []tc.Member `json:"members"`
		Removed []uint64    `json:"removed"`
	}{members, []uint64{}})
	if err != nil {
		panic(err)
	}
	return append([]byte{2}, b...)
}

// kvSnapshotFile is a valid data file (the server's <index>.snap.db) for a
// map holding kvs: pair count, then per pair uvarint length + key, uvarint
// length + value, then the CRC-32C of all of it, big-endian.
func kvSnapshotFile(kvs ...tc.KV) []byte {
	b := binary.AppendUvarint(nil, uint64(len(kvs)))
	for _, kv := range kvs {
		b = binary.AppendUvarint(b, uint64(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.AppendUvarint(b, uint64(len(kv.Val)))
		b = append(b, kv.Val...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// ---------------------------------------------------------------------------
// Huge bodies and the receiver's memory

// garbageReader yields size pseudo-random bytes without holding them: one
// 64 KiB block, repeated. Sent says how much the server has taken so far.
type garbageReader struct {
	block     []byte
	size      int64
	remaining int64        // used by Read only
	sent      atomic.Int64 // bytes handed out so far
}

func newGarbageReader(size int64) *garbageReader {
	block := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	return &garbageReader{block: block, size: size, remaining: size}
}

func (g *garbageReader) Read(p []byte) (int, error) {
	if g.remaining <= 0 {
		return 0, io.EOF
	}
	n := copy(p, g.block[g.sent.Load()%int64(len(g.block)):])
	n = int(min(int64(n), g.remaining))
	g.remaining -= int64(n)
	g.sent.Add(int64(n))
	return n, nil
}

// Sent is the number of bytes read from g so far.
func (g *garbageReader) Sent() int64 { return g.sent.Load() }

// cutOff reports whether the server ended the request a (which sent g as
// its body) by closing the connection before all of g was sent: a refusal
// too, for a huge body. Our own timeout or cancellation is not one.
func (g *garbageReader) cutOff(a peerAnswer) bool {
	return a.Err != nil && !errors.Is(a.Err, context.DeadlineExceeded) && !errors.Is(a.Err, context.Canceled) &&
		g.Sent() < g.size
}
