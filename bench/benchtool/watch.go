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
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type watchBench struct {
	urls       []string
	leader     string
	conns      int
	keys       int
	valueBytes int
	prefix     string

	epoch time.Time
	seq   atomic.Uint64 // next PUT's sequence number
	acks  ackTable
	put   *http.Client
}

// now is nanoseconds since the epoch, monotonic; never 0 after the start.
func (b *watchBench) now() int64 { return int64(time.Since(b.epoch)) }

// ackTable maps a PUT's seq to its acknowledgement time (0: not yet, or
// never), in chunks allocated as the seqs grow.
type ackTable struct {
	chunks [1 << 14]atomic.Pointer[[ackChunk]atomic.Int64]
}

const ackChunk = 1 << 16

func (t *ackTable) chunk(seq uint64, alloc bool) *[ackChunk]atomic.Int64 {
	i := seq / ackChunk
	if i >= uint64(len(t.chunks)) {
		return nil
	}
	c := t.chunks[i].Load()
	if c == nil && alloc {
		t.chunks[i].CompareAndSwap(nil, new([ackChunk]atomic.Int64))
		c = t.chunks[i].Load()
	}
	return c
}

func (t *ackTable) set(seq uint64, at int64) {
	if c := t.chunk(seq, true); c != nil {
		c[seq%ackChunk].Store(at)
	}
}

func (t *ackTable) get(seq uint64) int64 {
	if c := t.chunk(seq, false); c != nil {
		return c[seq%ackChunk].Load()
	}
	return 0
}

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
				t0 := b.now()
				resp, err := b.put.Do(req)
				t1 := b.now()
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
				b.acks.set(seq, t1)
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

	progressed chan struct{} // closed at the first progress frame
	done       chan struct{} // closed when the stream ended
	events     atomic.Int64  // put events with seq >= firstSeq delivered so far
	ended      atomic.Bool   // the stream ended
	closing    *atomic.Bool  // we are closing the streams: an end is not a cut

	lat      hist
	early    int64 // delivered before acknowledged
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

func (w *watcher) record(lat int64) {
	if lat < 0 {
		w.early++
		w.minLat = min(w.minLat, lat)
	}
	w.lat.add(lat)
}

var (
	valueField = []byte(`"value":"s`)
	fieldID    = []byte("id:")
	fieldEvent = []byte("event:")
	fieldData  = []byte("data:")
)

// frame handles one SSE frame (without its blank line) read at time at.
func (w *watcher) frame(b *watchBench, f []byte, at int64) {
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
	if ack := b.acks.get(seq); ack != 0 {
		w.record(at - ack)
	} else {
		w.pending = append(w.pending, pendingEvent{seq, at})
	}
}

// read consumes the stream until it ends.
func (w *watcher) read(b *watchBench, body io.ReadCloser) {
	defer close(w.done)
	defer w.ended.Store(true)
	defer body.Close()
	buf := make([]byte, 64<<10)
	filled := 0
	for {
		n, err := body.Read(buf[filled:])
		at := b.now()
		filled += n
		start := 0
		for {
			i := bytes.Index(buf[start:filled], []byte("\n\n"))
			if i < 0 {
				break
			}
			w.frame(b, buf[start:start+i], at)
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

type watchResult struct {
	put                        *putResult
	watchers, openFailed       int
	openErr                    string
	opened                     time.Duration // until every stream had its first progress frame
	events, eventsDuringPuts   int64
	missed, unacked, older     int64
	cut, badFrame, disorder    int64
	early, minLat              int64
	drained                    time.Duration // after the last PUT, until every live stream had every write
	drainedAll                 bool
	lat                        hist
	perMember                  []hist
	cutErr                     string
	clientCPU                  float64
	serverCPU                  []float64
	serverSent, serverWatchers []float64
	serverClosed               []string
}

// phase runs the PUTs for d with n watchers open (n may be 0).
func (b *watchBench) phase(n int, d, drain time.Duration, profile string) (*watchResult, error) {
	res := &watchResult{watchers: n, minLat: 0, perMember: make([]hist, len(b.urls))}
	before := b.scrape()
	cpu0 := cpuSeconds()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var closing atomic.Bool
	ws := make([]*watcher, 0, n)
	if n > 0 {
		tr := &http.Transport{
			MaxIdleConnsPerHost: -1, // a stream's connection is closed with it
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
			ForceAttemptHTTP2:   false,
		}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		first := b.seq.Load()
		start := time.Now()
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range n {
			w := &watcher{member: i % len(b.urls), firstSeq: first, closing: &closing,
				progressed: make(chan struct{}), done: make(chan struct{})}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
					b.urls[w.member]+"/v1/watch/?prefix="+b.prefix, nil)
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
					res.openFailed++
					if res.openErr == "" {
						res.openErr = err.Error()
					}
					return
				}
				ws = append(ws, w)
				go w.read(b, resp.Body)
			}()
		}
		wg.Wait()
		deadline := time.After(60 * time.Second)
		for _, w := range ws {
			select {
			case <-w.progressed:
			case <-w.done:
			case <-deadline:
				closing.Store(true)
				cancel()
				return nil, fmt.Errorf("watch: %d streams open, not all had a progress frame within 60 s", len(ws))
			}
		}
		res.opened = time.Since(start)
		for _, m := range b.scrape() {
			res.serverWatchers = append(res.serverWatchers, m.watchers)
		}
		if res.openFailed > 0 {
			fmt.Fprintf(os.Stderr, "watch: %d of %d streams refused, the first: %s\n", res.openFailed, n, res.openErr)
		}
	}

	var prof chan error
	if profile != "" {
		prof = make(chan error, 1)
		secs := max(1, min(30, int(d.Seconds())))
		go func() { prof <- fetchProfile(b.leader, secs, profile) }()
	}
	res.put = b.runPuts(d)
	for _, w := range ws {
		res.eventsDuringPuts += w.events.Load()
	}
	if n > 0 {
		start := time.Now()
		for {
			all := true
			for _, w := range ws {
				if !w.ended.Load() && w.events.Load() < res.put.acked {
					all = false
					break
				}
			}
			if all {
				res.drainedAll = true
				break
			}
			if time.Since(start) > drain {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		res.drained = time.Since(start)
	}
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "watch: profile:", err)
		}
	}
	closing.Store(true)
	cancel()
	for _, w := range ws {
		<-w.done
	}
	res.clientCPU = cpuSeconds() - cpu0
	after := b.scrape()
	for i := range b.urls {
		res.serverCPU = append(res.serverCPU, after[i].cpu-before[i].cpu)
		res.serverSent = append(res.serverSent, after[i].sent-before[i].sent)
		var closed []string
		for reason, v := range after[i].closed {
			if d := v - before[i].closed[reason]; d > 0 {
				closed = append(closed, fmt.Sprintf("%s=%.0f", reason, d))
			}
		}
		res.serverClosed = append(res.serverClosed, strings.Join(closed, ","))
	}

	// Tally, now that the streams are done.
	for _, w := range ws {
		for _, p := range w.pending {
			if ack := b.acks.get(p.seq); ack != 0 {
				w.record(p.at - ack)
			} else {
				res.unacked++
			}
		}
		delivered := w.events.Load()
		res.events += delivered
		acked := delivered - int64(len(w.pending))
		for _, p := range w.pending {
			if b.acks.get(p.seq) != 0 {
				acked++
			}
		}
		res.missed += max(0, res.put.acked-acked)
		res.older += w.older
		res.badFrame += w.badFrame
		res.disorder += w.disorder
		res.early += w.early
		res.minLat = min(res.minLat, w.minLat)
		if w.cut {
			res.cut++
			if res.cutErr == "" {
				res.cutErr = w.err
			}
		}
		res.lat.merge(&w.lat)
		res.perMember[w.member].merge(&w.lat)
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
	profile := fs.String("profile", "", "write a CPU profile of the leader taken during the PUTs with watchers to this file (members need --pprof)")
	fs.Parse(args)
	if *urls == "" {
		return errors.New("watch: -urls is required")
	}
	if *conns < 1 || *keys < 1 || *watchers < 0 {
		return errors.New("watch: -conns and -keys must be positive, -watchers not negative")
	}
	b := &watchBench{urls: strings.Split(*urls, ","), leader: *leaderURL, conns: *conns,
		keys: *keys, valueBytes: *valueBytes, prefix: *prefix, epoch: time.Now()}
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
	b.put = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: *conns, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}}

	fmt.Printf("watch: PUTs of %d B at %d connections to %s over %d keys under %q; phases of %s: without watchers, with %d (spread over %d members), without\n",
		*valueBytes, *conns, b.leader, *keys, *prefix, *duration, *watchers, len(b.urls))
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
		fmt.Printf("WATCHRATIO ratio=%.3f\n", putRate(results[1])/base)
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
	fmt.Printf("; CPU s: client %.1f, members %s\n", r.clientCPU, joinFloats(r.serverCPU, "%.1f"))
	if r.watchers > 0 {
		live := r.watchers - r.openFailed
		fmt.Printf("          %d watchers open in %.1f s (%d refused); delivered %d events, %.0f/s while the PUTs ran (%d live watchers × PUT/s = %.0f/s)\n",
			live, r.opened.Seconds(), r.openFailed, r.events, float64(r.eventsDuringPuts)/secs, live, float64(live)*rate)
		drained := "all caught up"
		if !r.drainedAll {
			drained = "NOT all caught up"
		}
		fmt.Printf("          missed %d, streams cut by the member %d, drained %.2f s after the last PUT (%s); unacknowledged writes delivered %d, bad frames %d, out of order %d\n",
			r.missed, r.cut, r.drained.Seconds(), drained, r.unacked, r.badFrame, r.disorder)
		if r.cutErr != "" {
			fmt.Printf("          the first cut: %s\n", r.cutErr)
		}
		fmt.Printf("          notification latency (delivery − acknowledgement): p50 %.2f ms, p99 %.2f ms, max %.1f ms; early %d (%.1f%%, most %.2f ms before)\n",
			ms(r.lat.quantile(.5)), ms(r.lat.quantile(.99)), ms(r.lat.max), r.early, pct(r.early, r.lat.n), -ms(r.minLat))
		for i := range r.perMember {
			role := "follower"
			if b.urls[i] == b.leader {
				role = "leader"
			}
			h := &r.perMember[i]
			fmt.Printf("          member %d (%s): p50 %.2f ms, p99 %.2f ms, max %.1f ms; its metrics: %.0f watchers, %.0f events sent, streams closed: %s\n",
				i+1, role, ms(h.quantile(.5)), ms(h.quantile(.99)), ms(h.max), at(r.serverWatchers, i), at(r.serverSent, i), orNone(at(r.serverClosed, i)))
		}
	}
	fmt.Printf("WATCH phase=%s watchers=%d refused=%d conns=%d puts=%d put_per_s=%.0f put_p50_us=%d put_p99_us=%d put_failed=%d put_refused=%d events=%d events_per_s=%.0f expected_per_s=%.0f missed=%d cut=%d lat_p50_us=%d lat_p99_us=%d lat_max_us=%d early=%d early_min_us=%d drain_ms=%d client_cpu_s=%.1f members_cpu_s=%.1f\n",
		name, r.watchers, r.openFailed, b.conns, p.acked, rate, p.lat.quantile(.5)/1000, p.lat.quantile(.99)/1000, p.failed, p.refused,
		r.events, float64(r.eventsDuringPuts)/secs, float64(r.watchers-r.openFailed)*rate, r.missed, r.cut,
		r.lat.quantile(.5)/1000, r.lat.quantile(.99)/1000, r.lat.max/1000, r.early, r.minLat/1000, r.drained.Milliseconds(), r.clientCPU, sum)
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
