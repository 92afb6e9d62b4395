// Command raftexample is a replicated key-value store with an HTTP API, built
// on the etcd raft library. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

type options struct {
	id              uint64
	cluster         string
	port            int
	join            bool
	dataDir         string
	snapCount       uint64
	walSegmentBytes int64
	requestTimeout  time.Duration
	maxValueBytes   int64
	logLevel        string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("raftexample", flag.ContinueOnError)
	fs.Uint64Var(&o.id, "id", 1, "this member's id; its peer URL is the id-th entry of --cluster")
	fs.StringVar(&o.cluster, "cluster", "http://127.0.0.1:9021", "comma-separated peer URLs of the initial members, in id order")
	fs.IntVar(&o.port, "port", 9121, "port of the HTTP key-value API")
	fs.BoolVar(&o.join, "join", false, "join an existing cluster (after adding this member with POST /{id})")
	fs.StringVar(&o.dataDir, "data-dir", ".", "directory holding raftexample-<id>/ (WAL) and raftexample-<id>-snap/ (snapshots)")
	fs.Uint64Var(&o.snapCount, "snap-count", 10000, "applied entries between snapshots")
	fs.Int64Var(&o.walSegmentBytes, "wal-segment-bytes", wal.SegmentSizeBytes, "size at which the WAL starts a new segment file")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 5*time.Second, "how long a request waits for raft before answering 503")
	fs.Int64Var(&o.maxValueBytes, "max-value-bytes", 1<<20, "largest value a PUT may store")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch {
	case o.snapCount == 0:
		return o, errors.New("--snap-count must be positive")
	case o.walSegmentBytes < 4096:
		return o, errors.New("--wal-segment-bytes must be at least 4096")
	case o.requestTimeout <= 0:
		return o, errors.New("--request-timeout must be positive")
	case o.maxValueBytes <= 0:
		return o, errors.New("--max-value-bytes must be positive")
	}
	return o, nil
}

// run is the whole program; it returns the exit code. 0 means a clean stop:
// by signal, or because this member was removed from the cluster.
func run(args []string) int {
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftexample:", err)
		return 2
	}
	lg, err := newLogger(o.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftexample:", err)
		return 2
	}
	defer lg.Sync()
	wal.SegmentSizeBytes = o.walSegmentBytes

	// commitC carries committed work from the raft node to the kvstore, in
	// log order. Only the raft node sends, and it closes the channel when it
	// stops; the kvstore applies until then. The buffer lets the Ready loop
	// run ahead of the apply by a few batches.
	commitC := make(chan commit, 64)
	// waits connects requests to the outcome of their proposals: the kvstore
	// and the raft node register and report there; the raft node also fails
	// every pending wait when it loses the leader.
	waits := newWaitRegistry()
	var store *kvstore
	rn, err := startRaftNode(lg, raftConfig{
		id:        o.id,
		peerURLs:  strings.Split(o.cluster, ","),
		join:      o.join,
		waldir:    filepath.Join(o.dataDir, "raftexample-"+strconv.FormatUint(o.id, 10)),
		snapdir:   filepath.Join(o.dataDir, "raftexample-"+strconv.FormatUint(o.id, 10)+"-snap"),
		snapCount: o.snapCount,
	}, commitC, func() []byte {
		// Called only once the kvstore has applied a commit, so store is set.
		return store.snapshot()
	}, waits)
	if err != nil {
		lg.Error("cannot start", zap.Error(err))
		return 1
	}
	store = newKVStore(lg, rn, waits)
	storeErrC := make(chan error, 1)
	go func() {
		// run returns nil when the raft node closes commitC; that is not a failure.
		if err := store.run(commitC); err != nil {
			storeErrC <- err
		}
	}()

	api := &httpAPI{lg: lg, store: store, cluster: rn, requestTimeout: o.requestTimeout, maxValueBytes: o.maxValueBytes}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(o.port))
	if err != nil {
		lg.Error("cannot listen for HTTP", zap.Error(err))
		rn.Stop()
		return 1
	}
	httpErrC := make(chan error, 1)
	go func() { httpErrC <- srv.Serve(ln) }()
	lg.Info("serving HTTP", zap.String("addr", ln.Addr().String()), zap.Uint64("id", o.id))

	sigC := make(chan os.Signal, 1)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case sig := <-sigC:
		lg.Info("stopping on signal", zap.String("signal", sig.String()))
	case <-rn.Done():
	case err := <-storeErrC:
		lg.Error("state machine failed", zap.Error(err))
		code = 1
	case err := <-httpErrC:
		lg.Error("HTTP server failed", zap.Error(err))
		code = 1
	}

	// Close the HTTP listener first so no new request starts; stopping raft
	// then ends every request still waiting on a proposal (they answer 503),
	// which lets the HTTP shutdown finish.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdownDone := make(chan struct{})
	go func() {
		srv.Shutdown(ctx)
		close(shutdownDone)
	}()
	rn.Stop()
	<-shutdownDone
	if err := rn.Err(); err != nil && !errors.Is(err, errRemoved) {
		code = 1
	}
	lg.Info("stopped", zap.Int("exit-code", code))
	return code
}
