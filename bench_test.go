package main

// Benchmarks of the hot paths, from the entry encoding up to a 3-node
// cluster. They run only with -bench:
//
//	go test -run '^$' -bench . -benchtime 2s .
//
// The clusters here are in-process raft nodes with real transports on
// loopback and real WAL directories under the test's temp dir, like the
// "ip" tests; their helpers carry a "bench" prefix. bench/run.sh measures
// the real binary over HTTP.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

const (
	benchKeys       = 100000
	benchValueBytes = 256
)

var benchValue = strings.Repeat("v", benchValueBytes)

func benchKey(i int) string { return "bench-" + strconv.Itoa(i) }

func BenchmarkEncodeCommand(b *testing.B) {
	b.ReportAllocs()
	c := command{op: opPut, id: 1 << 40, key: benchKey(12345), value: benchValue}
	for i := 0; b.Loop(); i++ {
		c.id++
		encodeCommand(c)
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	b.ReportAllocs()
	data := encodeCommand(command{op: opPut, id: 1 << 40, key: benchKey(12345), value: benchValue})
	for b.Loop() {
		if _, err := decodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEntries encodes n puts of random keys out of benchKeys, named as one
// member's proposals first, first+1, ..., each with the base its member would
// give it when proposals apply in order: every one is applied, none is a copy.
func benchEntries(first uint64, n int) [][]byte {
	ents := make([][]byte, n)
	for i := range ents {
		id := first + uint64(i)
		ents[i] = encodeCommand(command{op: opPut, origin: 2, id: id, base: id - 1, key: benchKey(rand.IntN(benchKeys)), value: benchValue})
	}
	return ents
}

// BenchmarkApplyPut applies committed puts to a map that holds benchKeys keys.
// "entry" is the transition function under the lock (decode, the window of
// applied proposals, map, digest); "run" goes through the apply loop
// (service.run) with commits of 64 entries, as the Ready loop sends them,
// and counts per entry (also metrics and completing pending requests).
// Every 131,072 entries the benchmark stops its clock to encode more.
func BenchmarkApplyPut(b *testing.B) {
	const chunk = 1 << 17 // a multiple of the batch below
	newStore := func() *kvstore {
		s := newKVStore(zap.NewNop())
		var out appliedCommit
		for _, e := range benchEntries(1, benchKeys) {
			s.apply(e, &out)
			out.reset()
		}
		return s
	}
	next := func(b *testing.B, s *kvstore) [][]byte {
		b.StopTimer()
		defer b.StartTimer()
		return benchEntries(s.ProposalClock()+1, chunk)
	}
	b.Run("entry", func(b *testing.B) {
		s := newStore()
		ents := next(b, s)
		var out appliedCommit
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i > 0 && i%chunk == 0 {
				ents = next(b, s)
			}
			s.mu.Lock()
			s.apply(ents[i%chunk], &out)
			s.mu.Unlock()
			out.reset()
		}
	})
	b.Run("run", func(b *testing.B) {
		const batch = 64
		svc := newService(zap.NewNop(), newStore(), newWatchHub(defaultHistory.events, defaultHistory.bytes))
		svc.pending = newPendingCommands(1)
		commitC := make(chan commit, 64)
		runDone := make(chan error, 1)
		go func() { runDone <- svc.run(commitC) }()
		var ents [][]byte
		b.ReportAllocs()
		b.ResetTimer()
		var last uint64
		for i, index := 0, uint64(0); i < b.N; i += batch {
			if i%chunk < batch {
				<-svc.applied.Wait(index) // the clock the next chunk starts from
				ents = next(b, svc.store)
			}
			n := min(batch, b.N-i)
			c := commit{entries: make([][]byte, n)}
			for j := range n {
				c.entries[j] = ents[(i+j)%chunk]
			}
			index += uint64(n)
			c.index = index
			last = index
			commitC <- c
		}
		<-svc.applied.Wait(last)
		b.StopTimer()
		close(commitC)
		if err := <-runDone; err != nil {
			b.Fatal(err)
		}
	})
}

// benchNode is one in-process member.
type benchNode struct {
	rn    *raftNode
	store *service
}

// benchCluster starts size in-process members on free loopback ports with
// their data under b.TempDir(), waits until every member knows the leader and
// a write commits, and stops them when the benchmark ends.
func benchCluster(b *testing.B, size int) []*benchNode {
	b.Helper()
	dir := b.TempDir() // before the nodes, so it is removed after they stop
	urls := make([]string, size)
	lns := make([]net.Listener, size)
	for i := range urls {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns[i] = ln
		urls[i] = "http://" + ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close() // held until all were picked, so the ports differ
	}
	lg := zap.NewNop()
	nodes := make([]*benchNode, size)
	for i := range nodes {
		id := uint64(i + 1)
		name := "raftexample-" + strconv.FormatUint(id, 10)
		r, err := startReplica(lg, raftConfig{
			id:        id,
			peerURLs:  urls,
			waldir:    filepath.Join(dir, name),
			snapdir:   filepath.Join(dir, name+"-snap"),
			snapCount: 10000,
		}, defaultHistory)
		if err != nil {
			b.Fatalf("starting member %d: %v", id, err)
		}
		b.Cleanup(r.Stop)
		nodes[i] = &benchNode{rn: r.node, store: r.service}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := benchReady(nodes)
		if err == nil {
			return nodes
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster not ready within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func benchReady(nodes []*benchNode) error {
	lead := nodes[0].rn.Leader()
	for _, n := range nodes {
		if l := n.rn.Leader(); l == 0 || l != lead {
			return fmt.Errorf("leaders known: %d and %d", lead, l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return nodes[0].store.put(ctx, "bench-ready", "yes")
}

// benchLeader returns the member that leads and one that follows (nil for a
// cluster of one).
func benchLeader(nodes []*benchNode) (leader, follower *benchNode) {
	lead := nodes[0].rn.Leader()
	for _, n := range nodes {
		if n.rn.cfg.id == lead {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	return leader, follower
}

// benchLoad writes keys bench-0 .. bench-(n-1) through s, 64 at a time.
func benchLoad(b *testing.B, s *service, n int) {
	b.Helper()
	var next atomic.Int64
	errc := make(chan error, 64)
	for range 64 {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					errc <- nil
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := s.put(ctx, benchKey(i), benchValue)
				cancel()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range 64 {
		if err := <-errc; err != nil {
			b.Fatalf("loading keys: %v", err)
		}
	}
}

// benchParallelism is how many goroutines per GOMAXPROCS the parallel
// benchmarks run: enough concurrent requests for batching to show.
const benchParallelism = 64

// BenchmarkHTTPPutHandler serves PUT /bench-<random n> through the HTTP API
// of a 1-member cluster (the handler is called directly, no sockets): the
// handler, the proposal, the WAL fsync and the apply.
func BenchmarkHTTPPutHandler(b *testing.B) {
	nodes := benchCluster(b, 1)
	api := &httpAPI{lg: zap.NewNop(), svc: nodes[0].store, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20}
	// The request is built by hand (as net/http would have parsed it) and
	// the response discarded: the allocations counted are this server's.
	put := func() error {
		req := &http.Request{
			Method: http.MethodPut, URL: &url.URL{Path: "/" + benchKey(rand.IntN(benchKeys))}, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader(benchValue)), ContentLength: int64(len(benchValue)),
		}
		w := &benchResponseWriter{header: http.Header{}}
		api.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			return fmt.Errorf("PUT: %d", w.code)
		}
		return nil
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := put(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := put(); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
			}
		})
	})
}

// BenchmarkHTTPGetHandler serves a serializable GET through the HTTP API:
// the handler and the map, without raft. The request is parsed once and the
// response discarded, so what is measured (time and allocations per GET) is
// this server's part of a request, not net/http's nor httptest's.
func BenchmarkHTTPGetHandler(b *testing.B) {
	nodes := benchCluster(b, 1)
	benchLoad(b, nodes[0].store, 1000)
	api := &httpAPI{lg: zap.NewNop(), svc: nodes[0].store, requestTimeout: 5 * time.Second, maxValueBytes: 1 << 20}
	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		reqs := make([]*http.Request, 64)
		for i := range reqs {
			reqs[i] = httptest.NewRequest(http.MethodGet, "/"+benchKey(int(next.Add(1))%1000)+"?consistency=serializable", nil)
		}
		w := &benchResponseWriter{header: http.Header{}}
		for i := 0; pb.Next(); i++ {
			w.reset()
			api.ServeHTTP(w, reqs[i%len(reqs)])
			if w.code != http.StatusOK || w.bytes != benchValueBytes {
				b.Errorf("GET: %d, %d bytes", w.code, w.bytes)
				return
			}
		}
	})
}

// benchResponseWriter is a ResponseWriter that keeps only the status and
// how much was written, and allocates nothing once its header map is grown.
type benchResponseWriter struct {
	header http.Header
	code   int
	bytes  int
}

func (w *benchResponseWriter) reset() {
	clear(w.header)
	w.code, w.bytes = 0, 0
}

func (w *benchResponseWriter) Header() http.Header { return w.header }

func (w *benchResponseWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *benchResponseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.bytes += len(p)
	return len(p), nil
}

// WriteString and the deadlines are there as net/http's own writer has them.
func (w *benchResponseWriter) WriteString(s string) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.bytes += len(s)
	return len(s), nil
}

func (w *benchResponseWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *benchResponseWriter) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkInProcessClusterPut runs concurrent service.Put calls of random
// keys on one member of a 3-member cluster: propose, replicate, fsync on a
// quorum, commit and apply, without HTTP.
func BenchmarkInProcessClusterPut(b *testing.B) {
	nodes := benchCluster(b, 3)
	leader, follower := benchLeader(nodes)
	for _, bc := range []struct {
		name string
		n    *benchNode
	}{{"leader", leader}, {"follower", follower}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := bc.n.store.put(ctx, benchKey(rand.IntN(benchKeys)), benchValue)
					cancel()
					if err != nil {
						b.Errorf("Put: %v", err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLinearizableGet runs concurrent linearizable service.Get calls of
// random existing keys on one member of a 3-member cluster: a ReadIndex round
// (shared by the reads waiting together), the wait for the apply, the map.
func BenchmarkLinearizableGet(b *testing.B) {
	const keys = 10000
	nodes := benchCluster(b, 3)
	leader, follower := benchLeader(nodes)
	benchLoad(b, leader.store, keys)
	for _, bc := range []struct {
		name string
		n    *benchNode
	}{{"leader", leader}, {"follower", follower}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, ok, _, err := bc.n.store.Get(ctx, benchKey(rand.IntN(keys)), true)
					cancel()
					if err != nil || !ok {
						b.Errorf("Get: found %v, %v", ok, err)
						return
					}
				}
			})
		})
	}
}
