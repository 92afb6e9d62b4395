// Command raftexample is a replicated key-value store with an HTTP API, built
// on the etcd raft library. See README.md.
package main

import (
	"context"
	"crypto/tls"
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

	"go.etcd.io/etcd/client/pkg/v3/transport"
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
	logFormat       string
	pprof           bool
	listenPeerURL   string
	listenClientURL string
	clusterToken    string
	maxClientConns  int
	history         historyLimits
	unsafeNoFsync   bool
	clientTLS       transport.TLSInfo
	peerTLS         transport.TLSInfo
	printVersion    bool
	env             envReport // what the RAFTEXAMPLE_* variables set (env.go)
	restore         string    // --restore: seed the data directory from this backup and exit
}

// maxHeaderBytes bounds a request's header on both ports: a key of
// maxKeyBytes in the path fits many times over.
const maxHeaderBytes = 64 << 10

// maxValueLimit is the most --max-value-bytes may be: a batch with one such
// value must fit in a peer message (maxPipelineBytes) with room to spare.
const maxValueLimit = 16 << 20

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("raftexample", flag.ContinueOnError)
	fs.Uint64Var(&o.id, "id", 1, "this member's id; its peer URL is the id-th entry of --cluster")
	fs.StringVar(&o.cluster, "cluster", "http://127.0.0.1:9021", "comma-separated peer URLs of the initial members, in id order")
	fs.IntVar(&o.port, "port", 9121, "port of the HTTP key-value API")
	fs.BoolVar(&o.join, "join", false, "join an existing cluster (after adding this member with POST /{id})")
	fs.StringVar(&o.dataDir, "data-dir", ".", "directory holding raftexample-<id>/ (WAL) and raftexample-<id>-snap/ (snapshots)")
	fs.Uint64Var(&o.snapCount, "snap-count", 10000, "applied entries between snapshots (one also starts after 64 MiB of entries)")
	fs.Int64Var(&o.walSegmentBytes, "wal-segment-bytes", wal.SegmentSizeBytes, "size at which the WAL starts a new segment file")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 5*time.Second, "how long a request waits for raft before answering 503")
	fs.Int64Var(&o.maxValueBytes, "max-value-bytes", 1<<20, "largest value a PUT may store")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "console", "log format: console (one readable line per event) or json (one JSON object per line)")
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ on the HTTP API port (those keys are then unreachable at the root)")
	fs.StringVar(&o.listenPeerURL, "listen-peer-url", "", "where the peer port listens, if not at this member's --cluster URL (e.g. behind a proxy)")
	fs.StringVar(&o.listenClientURL, "listen-client-url", "", "where the HTTP API listens, as http(s)://host:port (e.g. http://127.0.0.1:9121 for this machine only); replaces --port")
	fs.StringVar(&o.clusterToken, "cluster-token", "", "mixed into a new cluster's id, so that clusters founded with the same --cluster URLs stay apart")
	fs.IntVar(&o.maxClientConns, "max-client-conns", 4096, "most HTTP API connections open at once; the longest-idle one is closed to make room")
	fs.IntVar(&o.history.events, "watch-history", defaultHistory.events, "most changes each member keeps for watches to start from or resume at")
	fs.Int64Var(&o.history.bytes, "watch-history-bytes", defaultHistory.bytes, "most bytes of keys and values the watch history keeps")
	fs.BoolVar(&o.unsafeNoFsync, "unsafe-no-fsync", false, "never fsync the WAL, snapshot files or directories: for tests only, a power cut loses acknowledged writes")
	fs.StringVar(&o.clientTLS.CertFile, "cert-file", "", "serve the HTTP API over TLS with this certificate (PEM)")
	fs.StringVar(&o.clientTLS.KeyFile, "key-file", "", "key of --cert-file (PEM)")
	fs.StringVar(&o.clientTLS.TrustedCAFile, "trusted-ca-file", "", "require HTTP API clients to present a certificate signed by this CA (PEM)")
	fs.StringVar(&o.peerTLS.CertFile, "peer-cert-file", "", "certificate for peer traffic, as server and as client (PEM); needed for https:// peer URLs")
	fs.StringVar(&o.peerTLS.KeyFile, "peer-key-file", "", "key of --peer-cert-file (PEM)")
	fs.StringVar(&o.peerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "CA that signs every peer's certificate; peers without one are refused (PEM)")
	var allowedCN, allowedHost string
	fs.StringVar(&allowedCN, "peer-cert-allowed-cn", "", "refuse peers whose certificate's Common Name is not this (with --peer-trusted-ca-file)")
	fs.StringVar(&allowedHost, "peer-cert-allowed-hostname", "", "refuse peers whose certificate is not valid for this host name or IP address (with --peer-trusted-ca-file)")
	fs.StringVar(&o.restore, "restore", "", "seed this member's data directory for a new cluster from this backup (GET /v1/snapshot), then exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.printVersion {
		return o, nil
	}
	env, err := applyEnv(fs, os.Environ())
	if err != nil {
		return o, err
	}
	o.env = env
	switch {
	case o.snapCount == 0:
		return o, errors.New("--snap-count must be positive")
	case o.walSegmentBytes < 4096:
		return o, errors.New("--wal-segment-bytes must be at least 4096")
	case o.requestTimeout <= 0:
		return o, errors.New("--request-timeout must be positive")
	case o.maxValueBytes <= 0:
		return o, errors.New("--max-value-bytes must be positive")
	case (o.clientTLS.CertFile == "") != (o.clientTLS.KeyFile == ""):
		return o, errors.New("--cert-file and --key-file go together")
	case o.clientTLS.TrustedCAFile != "" && o.clientTLS.CertFile == "":
		return o, errors.New("--trusted-ca-file needs --cert-file and --key-file")
	case (o.peerTLS.CertFile == "") != (o.peerTLS.KeyFile == ""):
		return o, errors.New("--peer-cert-file and --peer-key-file go together")
	case o.peerTLS.TrustedCAFile != "" && o.peerTLS.CertFile == "":
		return o, errors.New("--peer-trusted-ca-file needs --peer-cert-file and --peer-key-file")
	case (allowedCN != "" || allowedHost != "") && o.peerTLS.TrustedCAFile == "":
		return o, errors.New("--peer-cert-allowed-cn and --peer-cert-allowed-hostname need --peer-trusted-ca-file")
	case allowedCN != "" && allowedHost != "":
		return o, errors.New("--peer-cert-allowed-cn and --peer-cert-allowed-hostname are alternatives; give one")
	case o.maxValueBytes > maxValueLimit:
		return o, fmt.Errorf("--max-value-bytes must be at most %d", maxValueLimit)
	case o.maxClientConns < 1:
		return o, errors.New("--max-client-conns must be positive")
	case o.history.events < 1 || o.history.bytes < 1:
		return o, errors.New("--watch-history and --watch-history-bytes must be positive")
	case o.restore != "" && o.join:
		return o, errors.New("--restore seeds a member of a new cluster; it does not go with --join")
	}
	if allowedCN != "" {
		o.peerTLS.AllowedCNs = []string{allowedCN}
	}
	if allowedHost != "" {
		o.peerTLS.AllowedHostnames = []string{allowedHost}
	}
	if o.listenClientURL != "" {
		port := false
		fs.Visit(func(f *flag.Flag) { port = port || f.Name == "port" })
		if port {
			return o, fmt.Errorf("%s replaces %s; give one", env.given("listen-client-url"), env.given("port"))
		}
		u, err := parsePeerURL(o.listenClientURL) // the same form: scheme://host:port
		if err != nil {
			return o, fmt.Errorf("--listen-client-url: %w", err)
		}
		if strings.HasPrefix(u, "https://") != (o.clientTLS.CertFile != "") {
			return o, errors.New("--listen-client-url: https:// goes with --cert-file and --key-file, http:// without them")
		}
		o.listenClientURL = u
	}
	o.clientTLS.ClientCertAuth = o.clientTLS.TrustedCAFile != ""
	o.peerTLS.ClientCertAuth = o.peerTLS.TrustedCAFile != ""
	if strings.Contains(o.cluster, "https://") && o.peerTLS.CertFile == "" {
		return o, errors.New("https:// peer URLs need --peer-cert-file and --peer-key-file")
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
	if o.printVersion {
		fmt.Println(versionLine())
		return 0
	}
	lg, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftexample:", err)
		return 2
	}
	defer lg.Sync()
	o.env.log(lg)
	wal.SegmentSizeBytes = o.walSegmentBytes
	if o.unsafeNoFsync {
		lg.Warn("--unsafe-no-fsync: nothing is fsynced; a power cut loses acknowledged writes (for tests only)")
	}

	if o.restore != "" {
		done, err := restoreBackup(lg, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "raftexample: --restore:", err)
			return 1
		}
		fmt.Println(done)
		return 0
	}
	r, err := startReplica(lg, raftConfig{
		id:        o.id,
		peerURLs:  strings.Split(o.cluster, ","),
		join:      o.join,
		waldir:    filepath.Join(o.dataDir, "raftexample-"+strconv.FormatUint(o.id, 10)),
		snapdir:   filepath.Join(o.dataDir, "raftexample-"+strconv.FormatUint(o.id, 10)+"-snap"),
		snapCount: o.snapCount,
		peerTLS:   o.peerTLS,

		clusterToken:  o.clusterToken,
		listenPeerURL: o.listenPeerURL,
		unsafeNoFsync: o.unsafeNoFsync,
	}, o.history)
	if err != nil {
		lg.Error("cannot start", zap.Error(err))
		return 1
	}
	rn := r.node
	go limitMemory(lg, r.store.DataBytes, rn.Done())
	disk := newDiskMonitor(lg, o.dataDir, o.walSegmentBytes, rn.snaps.log.disk.snapBytes.Load)
	go disk.run(rn.Done())

	api := &httpAPI{lg: lg, svc: r.service, requestTimeout: o.requestTimeout, maxValueBytes: o.maxValueBytes, pprof: o.pprof, disk: disk}
	ln, err := listenClients(o)
	if err != nil {
		lg.Error("cannot listen for HTTP", zap.Error(err))
		rn.Stop()
		return 1
	}
	limited := newConnLimiter(ln, clientConnLimit(lg, o.maxClientConns), "client")
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       clientIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         limited.track,
		ErrorLog:          debugLog(lg),
	}
	srv.RegisterOnShutdown(api.stopWatches) // Shutdown waits for every request; a watch ends only when told
	httpErrC := make(chan error, 1)
	go func() { httpErrC <- srv.Serve(limited) }()
	lg.Info("serving HTTP", zap.String("addr", ln.Addr().String()), zap.Uint64("id", o.id))

	sigC := make(chan os.Signal, 1)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case sig := <-sigC:
		// SIGTERM (systemd, kill, a rolling restart) stops one member: a
		// leader hands over first. SIGINT is Ctrl-C, which the terminal sends
		// to its whole foreground job, i.e. every member started from it
		// (scripts/cluster.sh, goreman): the followers are stopping too, so
		// there is no one to hand over to.
		handOver := sig == syscall.SIGTERM
		lg.Info("stopping on signal", zap.String("signal", sig.String()), zap.Bool("hand-off", handOver))
		if handOver {
			handOff(lg, rn)
		}
	case <-rn.Done():
	case <-r.applyDone:
		if r.applyErr != nil {
			lg.Error("state machine failed", zap.Error(r.applyErr))
			code = 1
		}
	case err := <-httpErrC:
		lg.Error("HTTP server failed", zap.Error(err))
		code = 1
	}

	// Stop taking requests, and let those in flight finish while raft still
	// runs: a write already proposed commits under the new leader and answers
	// 204; none waits longer than its request timeout. Then stop raft.
	ctx, cancel := context.WithTimeout(context.Background(), o.requestTimeout+time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	rn.Stop()
	if err := rn.Err(); err != nil && !errors.Is(err, errRemoved) {
		code = 1
	}
	lg.Info("stopped", zap.Int("exit-code", code))
	return code
}

// handOff moves leadership to another member before a leader stops, so writes
// pause for a round trip instead of an election timeout.
func handOff(lg *zap.Logger, rn *raftNode) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*electionTimeout)
	defer cancel()
	start := time.Now()
	to, err := rn.HandOff(ctx)
	switch {
	case err != nil:
		lg.Warn("could not hand leadership over before stopping", zap.Uint64("to", to), zap.Error(err))
	case to != 0:
		lg.Info("handed leadership over before stopping", zap.Uint64("to", to), zap.Duration("took", time.Since(start)))
	}
}

// clientIdleTimeout closes a keep-alive connection a client stopped using.
const clientIdleTimeout = 90 * time.Second

// clientConnLimit is how many HTTP API connections may be open at once: at
// most max, and always leaving most of the process's descriptors to the WAL,
// snapshots and peers. Go raises the soft descriptor limit to the hard one
// when it starts; this raises it too, for runtimes that do not.
func clientConnLimit(lg *zap.Logger, most int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return most
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			rl = raised
		}
	}
	const reserved = 1024                                        // storage, peers (maxPeerConns and our own dials), the runtime
	limit := min(uint64(most), max(rl.Cur, 2*reserved)-reserved) // at least reserved
	if limit < uint64(most) {
		lg.Warn("the descriptor limit leaves room for fewer HTTP connections than --max-client-conns",
			zap.Uint64("limit", limit), zap.Uint64("RLIMIT_NOFILE", rl.Cur))
	}
	return int(limit)
}

// listenClients opens the HTTP API's port, with TLS when --cert-file is set.
func listenClients(o options) (net.Listener, error) {
	addr := ":" + strconv.Itoa(o.port)
	if o.listenClientURL != "" {
		addr = strings.SplitN(o.listenClientURL, "://", 2)[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil || o.clientTLS.Empty() {
		return ln, err
	}
	cfg, err := o.clientTLS.ServerConfig()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return tls.NewListener(ln, cfg), nil
}
