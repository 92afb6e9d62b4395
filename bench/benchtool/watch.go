package main

// benchtool watch: PUT throughput with and without watchers, and how soon
// each watcher hears of each write.
//
// Three phases in one invocation, after a warm-up: PUTs without watchers,
// PUTs with W watchers, PUTs without watchers again. The PUTs are a closed
// loop at -conns connections to the leader, each value unique: "s<seq>-"
// then padding, seq counting every PUT of the invocation. The watchers
// (GET /v1/watch/?prefix=P, one HTTP/1.1 connection each) are spread over
// the members round-robin and all have delivered their first progress frame
// before the PUTs start. Each PUT's acknowledgement time (its answer's
// headers read) is kept by seq; each watcher stamps the bytes it reads as
// they arrive, parses the frames and takes delivery − acknowledgement for
// every put event. A delivery that comes before its acknowledgement (a
// watch may hear of a write before the writer does) is counted as early and
// as 0 in the percentiles; the most negative one is reported.
//
// After the PUTs stop, the watchers get -drain to receive every
// acknowledged write; then missed = acknowledged writes a watcher never
// delivered (summed over watchers; a stream the member closed, "cut",
// misses the rest). Members' CPU and the watch counters come from their
// /metrics, before and after each phase.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type watchBench struct {
	urls       []string
	leader     string
	conns      int
	keys       int
	valueBytes int
	prefix     string
	inProcess  bool     // the watchers in this process, not a child's
	watchURLs  []string // the members the watchers are spread over

	seq  atomic.Uint64 // next PUT's sequence number
	acks *ackTable
	put  *http.Client
}

// now is the wall clock in nanoseconds: the same in a child process, where
// the monotonic clock of time.Now is not.
func now() int64 { return time.Now().UnixNano() }

// ackTable holds each PUT's send and acknowledgement times by seq (0: not
// yet, or never), in memory that a child process may map too: a file of
// pairs of int64, grown as the file system needs (it is sparse).
type ackTable struct {
	t    []int64 // [2*seq] sent, [2*seq+1] acknowledged
	file string  // where the child maps it; "" when in this process only
}

const ackCapacity = 1 << 24 // PUTs per invocation

func newAckTable(shared bool) (*ackTable, error) {
	if !shared {
		return &ackTable{t: make([]int64, 2*ackCapacity)}, nil
	}
	f, err := os.CreateTemp("", "benchtool-acks-")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a, err := mapAcks(f)
	if err == nil {
		a.file = f.Name()
	}
	return a, err
}

func openAckTable(file string) (*ackTable, error) {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mapAcks(f)
}

func mapAcks(f *os.File) (*ackTable, error) {
	const size = 2 * ackCapacity * 8
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &ackTable{t: unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), 2*ackCapacity)}, nil
}

func (a *ackTable) close() {
	if a.file != "" {
		os.Remove(a.file)
	}
}

func (a *ackTable) slot(seq uint64, i uint64) *int64 {
	if seq >= ackCapacity {
		return nil
	}
	return &a.t[2*seq+i]
}

func (a *ackTable) set(seq, i uint64, at int64) {
	if p := a.slot(seq, i); p != nil {
		atomic.StoreInt64(p, at)
	}
}

func (a *ackTable) get(seq, i uint64) int64 {
	if p := a.slot(seq, i); p != nil {
		return atomic.LoadInt64(p)
	}
	return 0
}

func (a *ackTable) sent(seq uint64) int64  { return a.get(seq, 0) }
func (a *ackTable) acked(seq uint64) int64 { return a.get(seq, 1) }

type putResult struct {
	acked, failed, refused int64 // 2xx; no answer; an answer other than 2xx
	firstErr               string
	elapsed                time.Duration
	lat                    hist
	firstSeq, endSeq       uint64 // the seqs used: [firstSeq, endSeq)
}

// runPuts drives PUTs for d, closed loop, and returns once the last answer
// is in.
func (b *watchBench) runPuts(d time.Duration) *putResult {
	r := &putResult{firstSeq: b.seq.Load()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for range b.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat hist
			var acked, failed, refused int64
			var firstErr string
			value := make([]byte, 0, b.valueBytes+24)
			for time.Now().Before(stop) {
				seq := b.seq.Add(1) - 1
				key := b.prefix + strconv.FormatUint(seq%uint64(b.keys), 10)
				value = append(strconv.AppendUint(append(value[:0], 's'), seq, 10), '-')
				for len(value) < b.valueBytes {
					value = append(value, byte('a'+len(value)%26))
				}
				req, err := http.NewRequest(http.MethodPut, b.leader+"/"+key, bytes.NewReader(value))
				if err != nil {
					panic(err)
				}
				t0 := now()
				b.acks.set(seq, 0, t0)
				resp, err := b.put.Do(req)
				t1 := now()
				if err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					refused++
					if firstErr == "" {
						firstErr = resp.Status + ": " + string(bytes.TrimSpace(body))
					}
					continue
				}
				b.acks.set(seq, 1, t1)
				acked++
				lat.add(t1 - t0)
			}
			mu.Lock()
			defer mu.Unlock()
			r.lat.merge(&lat)
			r.acked += acked
			r.failed += failed
			r.refused += refused
			if r.firstErr == "" {
				r.firstErr = firstErr
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.endSeq = b.seq.Load()
	return r
}

// watcher is one watch stream. Its goroutine owns everything but the
// atomics.
type watcher struct {
	member   int // index into urls
	firstSeq uint64
	acks     *ackTable

	progressed chan struct{} // closed at the first progress frame
	done       chan struct{} // closed when the stream ended
	events     atomic.Int64  // put events with seq >= firstSeq delivered so far
	ended      atomic.Bool   // the stream ended
	closing    *atomic.Bool  // we are closing the streams: an end is not a cut

	lat      hist // delivery − acknowledgement
	fromSend hist // delivery − the PUT's start
	early    int64
	minLat   int64
	pending  []pendingEvent
	older    int64 // put events from before the phase
	badFrame int64 // frames that did not parse
	disorder int64 // ids not strictly increasing
	lastID   uint64
	cut      bool   // the member ended the stream
	err      string // why the stream ended, if not closed by us
}

type pendingEvent struct {
	seq uint64
	at  int64
}

// record takes one delivery of seq at time at, whose PUT was acknowledged
// at ack (not 0).
func (w *watcher) record(seq uint64, at, ack int64) {
	lat := at - ack
	if lat < 0 {
		w.early++
		w.minLat = min(w.minLat, lat)
	}
	w.lat.add(lat)
	w.fromSend.add(at - w.acks.sent(seq))
}

var (
	valueField = []byte(`"value":"s`)
	fieldID    = []byte("id:")
	fieldEvent = []byte("event:")
	fieldData  = []byte("data:")
)

// frame handles one SSE frame (without its blank line) read at time at.
func (w *watcher) frame(f []byte, at int64) {
	var id []byte
	var typ, data []byte
	for len(f) > 0 {
		line := f
		if i := bytes.IndexByte(f, '\n'); i >= 0 {
			line, f = f[:i], f[i+1:]
		} else {
			f = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case bytes.HasPrefix(line, fieldID):
			id = bytes.TrimPrefix(line[len(fieldID):], []byte(" "))
		case bytes.HasPrefix(line, fieldEvent):
			typ = bytes.TrimPrefix(line[len(fieldEvent):], []byte(" "))
		case bytes.HasPrefix(line, fieldData):
			data = line[len(fieldData):]
		}
	}
	if len(id) == 0 && len(typ) == 0 {
		return // a comment or keep-alive
	}
	n, err := strconv.ParseUint(string(id), 10, 64)
	if err != nil {
		w.badFrame++
		return
	}
	if string(typ) == "progress" {
		select {
		case <-w.progressed:
		default:
			close(w.progressed)
		}
		if n < w.lastID {
			w.disorder++
		}
		w.lastID = max(w.lastID, n)
		return
	}
	if n <= w.lastID {
		w.disorder++
	}
	w.lastID = max(w.lastID, n)
	if string(typ) != "put" {
		return
	}
	i := bytes.Index(data, valueField)
	if i < 0 {
		w.badFrame++
		return
	}
	digits := data[i+len(valueField):]
	j := bytes.IndexByte(digits, '-')
	if j < 0 {
		w.badFrame++
		return
	}
	seq, err := strconv.ParseUint(string(digits[:j]), 10, 64)
	if err != nil {
		w.badFrame++
		return
	}
	if seq < w.firstSeq {
		w.older++
		return
	}
	w.events.Add(1)
	if ack := w.acks.acked(seq); ack != 0 {
		w.record(seq, at, ack)
	} else {
		w.pending = append(w.pending, pendingEvent{seq, at})
	}
}

// read consumes the stream until it ends, stamping what each read returns
// with the time it returned.
func (w *watcher) read(body io.ReadCloser) {
	defer close(w.done)
	defer w.ended.Store(true)
	defer body.Close()
	buf := make([]byte, 64<<10)
	filled := 0
	for {
		n, err := body.Read(buf[filled:])
		at := now()
		filled += n
		start := 0
		for {
			i := bytes.Index(buf[start:filled], []byte("\n\n"))
			if i < 0 {
				break
			}
			w.frame(buf[start:start+i], at)
			start += i + 2
		}
		filled = copy(buf, buf[start:filled])
		if filled == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		if err != nil {
			if !w.closing.Load() {
				w.cut = true
				w.err = err.Error()
			}
			return
		}
	}
}

// watchTally is what a set of watchers found; a child process sends it to
// its parent as JSON.
type watchTally struct {
	Watchers, OpenFailed     int
	OpenErr                  string
	Opened                   time.Duration // until every stream had its first progress frame
	Events, EventsDuringPuts int64
	Missed, Unacked, Older   int64
	Cut, BadFrame, Disorder  int64
	Early, MinLat            int64
	Drained                  time.Duration // after the last PUT, until every live stream had every write
	DrainedAll               bool
	Lat, FromSend            wireHist
	PerMember                []wireHist
	CutErr                   string
	CPU                      float64 // the process's, when it is a child
}

// watchSet is the watchers of one phase.
type watchSet struct {
	urls    []string
	prefix  string
	acks    *ackTable
	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool
	ws      []*watcher
	tally   watchTally
}

// open opens n streams, spread over the members, and waits until each has
// had its first progress frame (or ended). Events of PUTs before firstSeq
// are not counted.
func openWatchers(urls []string, prefix string, acks *ackTable, n int, firstSeq uint64) (*watchSet, error) {
	s := &watchSet{urls: urls, prefix: prefix, acks: acks}
	s.tally.Watchers = n
	s.ctx, s.cancel = context.WithCancel(context.Background())
	tr := &http.Transport{
		MaxIdleConnsPerHost: -1, // a stream's connection is closed with it
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
	}
	c := &http.Client{Transport: tr}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		w := &watcher{member: i % len(urls), firstSeq: firstSeq, acks: acks, closing: &s.closing,
			progressed: make(chan struct{}), done: make(chan struct{})}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(s.ctx, http.MethodGet,
				urls[w.member]+"/v1/watch/?prefix="+url.QueryEscape(prefix), nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := c.Do(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.tally.OpenFailed++
				if s.tally.OpenErr == "" {
					s.tally.OpenErr = err.Error()
				}
				return
			}
			s.ws = append(s.ws, w)
			go w.read(resp.Body)
		}()
	}
	wg.Wait()
	deadline := time.After(60 * time.Second)
	for _, w := range s.ws {
		select {
		case <-w.progressed:
		case <-w.done:
		case <-deadline:
			s.close()
			return nil, fmt.Errorf("watch: %d streams open, not all had a progress frame within 60 s", len(s.ws))
		}
	}
	s.tally.Opened = time.Since(start)
	return s, nil
}

// putsDone notes the events delivered while the PUTs ran, then waits up to
// drain for every live stream to have delivered acked events.
func (s *watchSet) putsDone(acked int64, drain time.Duration) {
	for _, w := range s.ws {
		s.tally.EventsDuringPuts += w.events.Load()
	}
	start := time.Now()
	for {
		all := true
		for _, w := range s.ws {
			if !w.ended.Load() && w.events.Load() < acked {
				all = false
				break
			}
		}
		if all {
			s.tally.DrainedAll = true
			break
		}
		if time.Since(start) > drain {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.tally.Drained = time.Since(start)
}

func (s *watchSet) close() {
	s.closing.Store(true)
	s.cancel()
	for _, w := range s.ws {
		<-w.done
	}
}

// finish closes the streams and tallies them against acked PUTs.
func (s *watchSet) finish(acked int64) *watchTally {
	s.close()
	t := &s.tally
	var lat, fromSend hist
	per := make([]hist, len(s.urls))
	for _, w := range s.ws {
		resolved := int64(0)
		for _, p := range w.pending {
			if ack := s.acks.acked(p.seq); ack != 0 {
				w.record(p.seq, p.at, ack)
				resolved++
			} else {
				t.Unacked++
			}
		}
		delivered := w.events.Load()
		t.Events += delivered
		deliveredAcked := delivered - int64(len(w.pending)) + resolved
		t.Missed += max(0, acked-deliveredAcked)
		t.Older += w.older
		t.BadFrame += w.badFrame
		t.Disorder += w.disorder
		t.Early += w.early
		t.MinLat = min(t.MinLat, w.minLat)
		if w.cut {
			t.Cut++
			if t.CutErr == "" {
				t.CutErr = w.err
			}
		}
		lat.merge(&w.lat)
		fromSend.merge(&w.fromSend)
		per[w.member].merge(&w.lat)
	}
	t.Lat, t.FromSend = lat.wire(), fromSend.wire()
	for i := range per {
		t.PerMember = append(t.PerMember, per[i].wire())
	}
	return t
}

// watchersCmd is the child process of benchtool watch: it opens the
// watchers, prints "ready", reads "stop <acked PUTs>" once the PUTs are
// done, drains, and prints its tally as JSON.
func watchersCmd(args []string) error {
	fs := flag.NewFlagSet("watchers", flag.ExitOnError)
	urls := fs.String("urls", "", "comma-separated client URLs")
	prefix := fs.String("prefix", "watch-", "the watched prefix")
	n := fs.Int("watchers", 1000, "streams")
	first := fs.Uint64("first-seq", 0, "events of PUTs before this seq are not counted")
	acksFile := fs.String("acks", "", "the parent's table of PUT times")
	drain := fs.Duration("drain", 10*time.Second, "the most to wait for the streams to catch up")
	fs.Parse(args)
	acks, err := openAckTable(*acksFile)
	if err != nil {
		return err
	}
	s, err := openWatchers(strings.Split(*urls, ","), *prefix, acks, *n, *first)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	var acked int64
	if _, err := fmt.Scanf("stop %d\n", &acked); err != nil {
		s.close()
		return fmt.Errorf("watchers: reading the stop line: %v", err)
	}
	s.putsDone(acked, *drain)
	t := s.finish(acked)
	t.CPU = cpuSeconds()
	return json.NewEncoder(os.Stdout).Encode(t)
}

// childWatchers runs the watchers in a child process, so that its
// goroutines do not queue ahead of the PUTs' in this one's scheduler: the
// two share the machine's CPUs as two processes, as a server's clients on
// other hosts would not, but no more.
type childWatchers struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (b *watchBench) startChild(n int, drain time.Duration) (*childWatchers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "watchers", "-urls", strings.Join(b.watchURLs, ","), "-prefix", b.prefix,
		"-watchers", strconv.Itoa(n), "-first-seq", strconv.FormatUint(b.seq.Load(), 10),
		"-acks", b.acks.file, "-drain", drain.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childWatchers{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil || line != "ready\n" {
		in.Close()
		cmd.Wait()
		return nil, fmt.Errorf("watch: the watchers' process did not start: %q %v", line, err)
	}
	return c, nil
}

func (c *childWatchers) finish(acked int64) (*watchTally, error) {
	fmt.Fprintf(c.in, "stop %d\n", acked)
	c.in.Close()
	var t watchTally
	err := json.NewDecoder(c.out).Decode(&t)
	if werr := c.cmd.Wait(); err == nil {
		err = werr
	}
	return &t, err
}

type watchResult struct {
	put *putResult
	watchTally
	clientCPU                  float64
	machineBusy                float64 // of all the machine's CPUs, over the phase (/proc/stat)
	serverCPU                  []float64
	serverSent, serverWatchers []float64
	serverApplies              []float64
	serverClosed               []string
}

// phase runs the PUTs for d with n watchers open (n may be 0).
func (b *watchBench) phase(n int, d, drain time.Duration, profile string) (*watchResult, error) {
	res := &watchResult{}
	res.Watchers = n
	before := b.scrape()
	cpu0 := cpuSeconds()
	busy0, total0 := machineCPU()
	var set *watchSet
	var child *childWatchers
	if n > 0 {
		var err error
		if b.inProcess {
			set, err = openWatchers(b.watchURLs, b.prefix, b.acks, n, b.seq.Load())
		} else {
			child, err = b.startChild(n, drain)
		}
		if err != nil {
			return nil, err
		}
		for _, m := range b.scrape() {
			res.serverWatchers = append(res.serverWatchers, m.watchers)
		}
	}
	var prof chan error
	if profile != "" {
		prof = make(chan error, 1)
		secs := max(1, min(30, int(d.Seconds())))
		go func() { prof <- fetchProfile(b.leader, secs, profile) }()
		go func() {
			// Where the leader's goroutines wait, halfway through.
			time.Sleep(d / 2)
			if err := fetchGoroutines(b.leader, profile+".goroutines.txt"); err != nil {
				fmt.Fprintln(os.Stderr, "watch: goroutines:", err)
			}
		}()
	}
	res.put = b.runPuts(d)
	var t *watchTally
	switch {
	case set != nil:
		set.putsDone(res.put.acked, drain)
		t = set.finish(res.put.acked)
	case child != nil:
		var err error
		if t, err = child.finish(res.put.acked); err != nil {
			return nil, err
		}
	}
	if t != nil {
		res.watchTally = *t
	}
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "watch: profile:", err)
		}
	}
	res.clientCPU = cpuSeconds() - cpu0 + res.CPU
	if busy1, total1 := machineCPU(); total1 > total0 {
		res.machineBusy = (busy1 - busy0) / (total1 - total0)
	}
	if res.OpenFailed > 0 {
		fmt.Fprintf(os.Stderr, "watch: %d of %d streams refused, the first: %s\n", res.OpenFailed, n, res.OpenErr)
	}
	after := b.scrape()
	for i := range b.urls {
		res.serverCPU = append(res.serverCPU, after[i].cpu-before[i].cpu)
		res.serverSent = append(res.serverSent, after[i].sent-before[i].sent)
		res.serverApplies = append(res.serverApplies, after[i].applies-before[i].applies)
		var closed []string
		for reason, v := range after[i].closed {
			if d := v - before[i].closed[reason]; d > 0 {
				closed = append(closed, fmt.Sprintf("%s=%.0f", reason, d))
			}
		}
		res.serverClosed = append(res.serverClosed, strings.Join(closed, ","))
	}
	return res, nil
}

func fetchProfile(base string, secs int, file string) error {
	c := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/debug/pprof/profile: %s (is the member started with --pprof?)", base, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fetchGoroutines(base, file string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(base + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/debug/pprof/goroutine: %s", base, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, body, 0o644)
}

// machineCPU reads /proc/stat's first line: jiffies busy and in all (0, 0
// where there is none).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, x := range f[1:min(len(f), 9)] { // user .. steal; guest is in user already
		v, _ := strconv.ParseFloat(x, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// memberMetrics is what the watch benchmark reads from a member's /metrics.
type memberMetrics struct {
	cpu, sent, watchers float64
	applies             float64 // commits applied (each wakes the streams once)
	closed              map[string]float64
}

func (b *watchBench) scrape() []memberMetrics {
	c := &http.Client{Timeout: 5 * time.Second}
	out := make([]memberMetrics, len(b.urls))
	for i, u := range b.urls {
		out[i].closed = map[string]float64{}
		resp, err := c.Get(u + "/metrics")
		if err != nil {
			continue
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(text)) {
			name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				continue
			}
			switch {
			case name == "process_cpu_seconds_total":
				out[i].cpu = v
			case name == "raftexample_watch_events_sent_total":
				out[i].sent = v
			case name == "raftexample_watchers":
				out[i].watchers = v
			case name == "raftexample_apply_duration_seconds_count":
				out[i].applies = v
			case strings.HasPrefix(name, "raftexample_watch_streams_closed_total{"):
				reason := name
				if _, r, ok := strings.Cut(name, `reason="`); ok {
					reason, _, _ = strings.Cut(r, `"`)
				}
				out[i].closed[reason] += v
			}
		}
	}
	return out
}

func watchCmd(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	urls := fs.String("urls", "", "comma-separated client URLs of the members; the watchers are spread over them")
	leaderURL := fs.String("leader", "", "where the PUTs go (default: the member that leads)")
	watchers := fs.Int("watchers", 1000, "watch streams in the phase with watchers")
	conns := fs.Int("conns", 16, "PUT connections (closed loop)")
	duration := fs.Duration("duration", 10*time.Second, "PUTs per phase")
	warmup := fs.Duration("warmup", 2*time.Second, "PUTs before the first phase, not reported")
	drain := fs.Duration("drain", 10*time.Second, "after the PUTs stop, the most to wait for the watchers to catch up")
	prefix := fs.String("prefix", "watch-", "the watched prefix; the PUTs write keys under it")
	keys := fs.Int("keys", 1000, "the PUTs cycle over this many keys under the prefix")
	valueBytes := fs.Int("value-bytes", 256, "bytes per value (at least the sequence number's, about 10)")
	spread := fs.String("on", "all", "the members the watchers are spread over: all, followers or leader")
	inProcess := fs.Bool("in-process", false, "run the watchers in this process, beside the PUTs, not in a child process")
	profile := fs.String("profile", "", "write a CPU profile of the leader taken during the PUTs with watchers to this file (members need --pprof)")
	fs.Parse(args)
	if *urls == "" {
		return errors.New("watch: -urls is required")
	}
	if *conns < 1 || *keys < 1 || *watchers < 0 {
		return errors.New("watch: -conns and -keys must be positive, -watchers not negative")
	}
	b := &watchBench{urls: strings.Split(*urls, ","), leader: *leaderURL, conns: *conns,
		keys: *keys, valueBytes: *valueBytes, prefix: *prefix, inProcess: *inProcess}
	if b.leader == "" {
		c := client(1)
		for _, u := range b.urls {
			if ok, err := leads(c, "raftexample", u); err != nil {
				return err
			} else if ok {
				b.leader = u
			}
		}
		if b.leader == "" {
			return errors.New("watch: no member leads")
		}
	}
	for _, u := range b.urls {
		if *spread == "all" || (*spread == "leader") == (u == b.leader) {
			b.watchURLs = append(b.watchURLs, u)
		}
	}
	if len(b.watchURLs) == 0 || (*spread != "all" && *spread != "followers" && *spread != "leader") {
		return fmt.Errorf("watch: -on %q: no member to watch on (all, followers or leader)", *spread)
	}
	var err error
	if b.acks, err = newAckTable(!b.inProcess); err != nil {
		return err
	}
	defer b.acks.close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig // stopped (bench/run.sh on Ctrl-C): the child ends when its stdin closes
		b.acks.close()
		os.Exit(130)
	}()
	b.put = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: *conns, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}}

	where := "a child process"
	if b.inProcess {
		where = "this process"
	}
	fmt.Printf("watch: PUTs of %d B at %d connections to %s over %d keys under %q; phases of %s: without watchers, with %d (spread over %d members: %s; in %s), without\n",
		*valueBytes, *conns, b.leader, *keys, *prefix, *duration, *watchers, len(b.watchURLs), *spread, where)
	if *warmup > 0 {
		b.runPuts(*warmup)
	}
	var results []*watchResult
	for i, n := range []int{0, *watchers, 0} {
		prof := ""
		if n > 0 {
			prof = *profile
		}
		r, err := b.phase(n, *duration, *drain, prof)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("without-%d", i/2+1)
		if n > 0 {
			name = "with"
		}
		report(b, name, r)
		results = append(results, r)
	}
	base := (putRate(results[0]) + putRate(results[2])) / 2
	if base > 0 {
		fmt.Printf("watch: PUT/s with %d watchers / without (mean of the two) = %.3f (before %.0f, with %.0f, after %.0f)\n",
			*watchers, putRate(results[1])/base, putRate(results[0]), putRate(results[1]), putRate(results[2]))
	}
	return nil
}

func putRate(r *watchResult) float64 { return float64(r.put.acked) / r.put.elapsed.Seconds() }

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func report(b *watchBench, name string, r *watchResult) {
	p := r.put
	secs := p.elapsed.Seconds()
	rate := putRate(r)
	var sum float64
	for _, v := range r.serverCPU {
		sum += v
	}
	fmt.Printf("%-9s %6d PUTs in %.1f s = %.0f PUT/s (p50 %.2f ms, p99 %.2f ms, max %.1f ms), %d failed, %d refused",
		name, p.acked, secs, rate, ms(p.lat.quantile(.5)), ms(p.lat.quantile(.99)), ms(p.lat.max), p.failed, p.refused)
	if p.firstErr != "" {
		fmt.Printf(" (first: %s)", p.firstErr)
	}
	fmt.Printf("; CPU s: client %.1f, members %s; the machine's CPUs %.0f%% busy\n", r.clientCPU, joinFloats(r.serverCPU, "%.1f"), 100*r.machineBusy)
	lat, fromSend := r.Lat.hist(), r.FromSend.hist()
	live := r.Watchers - r.OpenFailed
	if r.Watchers > 0 {
		fmt.Printf("          %d watchers open in %.1f s (%d refused); delivered %d events, %.0f/s while the PUTs ran (%d live watchers × PUT/s = %.0f/s)\n",
			live, r.Opened.Seconds(), r.OpenFailed, r.Events, float64(r.EventsDuringPuts)/secs, live, float64(live)*rate)
		drained := "all caught up"
		if !r.DrainedAll {
			drained = "NOT all caught up"
		}
		fmt.Printf("          missed %d, streams cut by the member %d, drained %.2f s after the last PUT (%s); unacknowledged writes delivered %d, bad frames %d, out of order %d\n",
			r.Missed, r.Cut, r.Drained.Seconds(), drained, r.Unacked, r.BadFrame, r.Disorder)
		if r.CutErr != "" {
			fmt.Printf("          the first cut: %s\n", r.CutErr)
		}
		fmt.Printf("          notification latency (delivery − acknowledgement): p50 %.2f ms, p99 %.2f ms, max %.1f ms; early %d (%.1f%%, most %.2f ms before)\n",
			ms(lat.quantile(.5)), ms(lat.quantile(.99)), ms(lat.max), r.Early, pct(r.Early, lat.n), -ms(r.MinLat))
		var applies float64
		for _, a := range r.serverApplies {
			applies += a
		}
		fmt.Printf("          CPU (all of it, raft too) per event delivered: members %.1f µs, client %.1f µs; per stream wake-up (a commit × a watcher, %.0f): members %.1f µs\n",
			1e6*sum/float64(max(1, r.Events)), 1e6*r.clientCPU/float64(max(1, r.Events)),
			applies/float64(len(b.urls))*float64(live), 1e6*sum/max(1, applies/float64(len(b.urls))*float64(live)))
		fmt.Printf("          delivery − the PUT's start: p50 %.2f ms, p99 %.2f ms, max %.1f ms (the PUTs' own: p50 %.2f ms, p99 %.2f ms)\n",
			ms(fromSend.quantile(.5)), ms(fromSend.quantile(.99)), ms(fromSend.max), ms(p.lat.quantile(.5)), ms(p.lat.quantile(.99)))
		perURL := map[string]*hist{}
		for i, u := range b.watchURLs {
			if i < len(r.PerMember) {
				perURL[u] = r.PerMember[i].hist()
			}
		}
		for i, u := range b.urls {
			role := "follower"
			if u == b.leader {
				role = "leader"
			}
			lat := "no watchers"
			if h := perURL[u]; h != nil {
				lat = fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms", ms(h.quantile(.5)), ms(h.quantile(.99)), ms(h.max))
			}
			fmt.Printf("          member %d (%s): %s; its metrics: %.0f watchers, %.0f events sent, %.0f commits applied (%.1f PUTs each), streams closed: %s\n",
				i+1, role, lat, at(r.serverWatchers, i), at(r.serverSent, i), at(r.serverApplies, i),
				float64(p.acked)/max(1, at(r.serverApplies, i)), orNone(at(r.serverClosed, i)))
		}
	} else {
		fmt.Printf("          commits applied by the members: %s (%.1f PUTs each on the leader)\n",
			joinFloats(r.serverApplies, "%.0f"), float64(p.acked)/max(1, at(r.serverApplies, slices.Index(b.urls, b.leader))))
	}
	fmt.Printf("WATCH phase=%s watchers=%d refused=%d conns=%d puts=%d put_per_s=%.0f put_p50_us=%d put_p99_us=%d put_failed=%d put_refused=%d events=%d events_per_s=%.0f expected_per_s=%.0f missed=%d cut=%d lat_p50_us=%d lat_p99_us=%d lat_max_us=%d early=%d early_min_us=%d send_p50_us=%d send_p99_us=%d drain_ms=%d client_cpu_s=%.1f members_cpu_s=%.1f machine_busy_pct=%.0f\n",
		name, r.Watchers, r.OpenFailed, b.conns, p.acked, rate, p.lat.quantile(.5)/1000, p.lat.quantile(.99)/1000, p.failed, p.refused,
		r.Events, float64(r.EventsDuringPuts)/secs, float64(live)*rate, r.Missed, r.Cut,
		lat.quantile(.5)/1000, lat.quantile(.99)/1000, lat.max/1000, r.Early, r.MinLat/1000,
		fromSend.quantile(.5)/1000, fromSend.quantile(.99)/1000, r.Drained.Milliseconds(), r.clientCPU, sum, 100*r.machineBusy)
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func at[T any](s []T, i int) T {
	var zero T
	if i < len(s) {
		return s[i]
	}
	return zero
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func joinFloats(v []float64, f string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(s, "/")
}
