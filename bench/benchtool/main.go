// Command benchtool helps bench/run.sh with what is awkward in bash:
//
//	benchtool load -kind raftexample|etcd -url URL -keys N -value-bytes B
//	    writes keys bench-0 .. bench-(N-1) once each, in parallel, so that the
//	    GET runs hit; fails if any write is not acknowledged.
//	benchtool leader -kind raftexample|etcd URL...
//	    prints the 1-based position of the URL whose member leads.
//	benchtool status URL
//	    prints a raftexample member's /v1/status as one line of name=value
//	    pairs: id state leader term commit applied snapshotIndex keys revision.
//	benchtool catchup -url URL -applied N -since UNIXNANO [-poll D] [-deadline D]
//	    polls a (re)starting raftexample member until GET /health answers 200
//	    and its /v1/status applied index is at least N; prints the seconds
//	    since -since at which each became true; fails at the deadline.
//	benchtool watch -urls URL,URL,URL [-watchers 1000] [-conns 16] [-duration D] ...
//	    PUT throughput without watchers, with W watch streams on one prefix
//	    spread over the members, and without again; delivered events and
//	    notification latency (see watch.go).
//	benchtool revs -url URL -prefix P -out FILE
//	    writes "key modRevision" for every key under P, for bench/put-if.lua.
//	benchtool codes -url URL [-method PUT] [-route R]
//	    prints the member's count of its answers to the method (on route R
//	    only, if given: /v1/txn, say) by status code (from /metrics):
//	    "204=N 412=N".
//	benchtool fsync -dir DIR, benchtool rtt [-proto tcp|http]
//	    the disk's and the loopback's own latency (see probe.go).
//	benchtool null -addr HOST:PORT
//	    a do-nothing net/http server, the ceiling for a GET (see null.go).
//	benchtool report -dir DIR -section header|etcd|put-if
//	    the table's lines that judge the run against its targets (report.go).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool load|leader|status|catchup|watch|revs|codes|fsync|rtt|null|report ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "leader":
		err = leader(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "catchup":
		err = catchup(os.Args[2:])
	case "watch":
		err = watchCmd(os.Args[2:])
	case "watchers": // benchtool watch's child process
		err = watchersCmd(os.Args[2:])
	case "revs":
		err = revs(os.Args[2:])
	case "codes":
		err = codes(os.Args[2:])
	case "fsync":
		err = fsyncCmd(os.Args[2:])
	case "rtt":
		err = rttCmd(os.Args[2:])
	case "null":
		err = nullCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func client(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
		},
	}
}

// put builds the request that stores key=value on the given kind of server.
func put(kind, base, key string, value []byte) (*http.Request, error) {
	switch kind {
	case "raftexample":
		return http.NewRequest(http.MethodPut, base+"/"+key, bytes.NewReader(value))
	case "etcd":
		// []byte fields marshal as base64, which is what the gateway wants.
		body, err := json.Marshal(struct {
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
		}{[]byte(key), value})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequest(http.MethodPost, base+"/v3/kv/put", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	kind := fs.String("kind", "raftexample", "raftexample or etcd")
	base := fs.String("url", "", "client URL of one member")
	keys := fs.Int("keys", 100000, "keys to write: bench-0 .. bench-(keys-1)")
	valueBytes := fs.Int("value-bytes", 256, "bytes per value")
	workers := fs.Int("workers", 64, "parallel connections")
	verify := fs.Int("verify", 100, "read back this many random keys afterwards")
	fs.Parse(args)
	if *base == "" {
		return errors.New("load: -url is required")
	}
	c := client(*workers)
	var next, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			value := make([]byte, *valueBytes)
			for i := range value {
				value[i] = byte(33 + rand.IntN(94))
			}
			for {
				i := next.Add(1) - 1
				if i >= int64(*keys) {
					return
				}
				key := "bench-" + strconv.FormatInt(i, 10)
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					if err = putOnce(c, *kind, *base, key, value); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("loaded %d keys of %d bytes in %.1f s (%.0f/s, %d connections)\n",
		int64(*keys)-failed.Load(), *valueBytes, elapsed.Seconds(),
		float64(*keys)/elapsed.Seconds(), *workers)
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d writes failed, the first: %v", n, firstErr)
	}
	// The GET runs count only non-2xx answers, and etcd answers a range of a
	// missing key with 200; so check here that the keys read back.
	for i := 0; i < *verify && *keys > 0; i++ {
		key := "bench-" + strconv.Itoa(rand.IntN(*keys))
		if err := getOnce(c, *kind, *base, key, *valueBytes); err != nil {
			return fmt.Errorf("reading back: %v", err)
		}
	}
	fmt.Printf("read back %d random keys: all present\n", *verify)
	return nil
}

// getOnce reads key back and checks that its value has the expected size.
func getOnce(c *http.Client, kind, base, key string, valueBytes int) error {
	var resp *http.Response
	var err error
	if kind == "raftexample" {
		resp, err = c.Get(base + "/" + key)
	} else {
		body, _ := json.Marshal(struct {
			Key []byte `json:"key"`
		}{[]byte(key)})
		resp, err = c.Post(base+"/v3/kv/range", "application/json", bytes.NewReader(body))
	}
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", key, resp.Status, bytes.TrimSpace(body))
	}
	if kind == "etcd" {
		var r struct {
			Kvs []struct {
				Value []byte `json:"value"`
			} `json:"kvs"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("GET %s: %v", key, err)
		}
		if len(r.Kvs) != 1 {
			return fmt.Errorf("GET %s: %d values, want 1", key, len(r.Kvs))
		}
		body = r.Kvs[0].Value
	}
	if len(body) != valueBytes {
		return fmt.Errorf("GET %s: %d bytes, want %d", key, len(body), valueBytes)
	}
	return nil
}

func putOnce(c *http.Client, kind, base, key string, value []byte) error {
	req, err := put(kind, base, key, value)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s: %s", key, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func leader(args []string) error {
	fs := flag.NewFlagSet("leader", flag.ExitOnError)
	kind := fs.String("kind", "raftexample", "raftexample or etcd")
	fs.Parse(args)
	c := client(1)
	for i, base := range fs.Args() {
		isLeader, err := leads(c, *kind, base)
		if err != nil {
			return err
		}
		if isLeader {
			fmt.Println(i + 1)
			return nil
		}
	}
	return errors.New("no member leads")
}

func leads(c *http.Client, kind, base string) (bool, error) {
	var resp *http.Response
	var err error
	switch kind {
	case "raftexample":
		resp, err = c.Get(base + "/v1/status")
	case "etcd":
		resp, err = c.Post(base+"/v3/maintenance/status", "application/json", bytes.NewReader([]byte("{}")))
	default:
		return false, fmt.Errorf("unknown kind %q", kind)
	}
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s status: %s", base, resp.Status)
	}
	if kind == "raftexample" {
		var st struct {
			State string `json:"state"`
		}
		err := json.NewDecoder(resp.Body).Decode(&st)
		return st.State == "leader", err
	}
	// The gateway writes uint64 fields as JSON strings.
	var st struct {
		Header struct {
			MemberID json.RawMessage `json:"member_id"`
		} `json:"header"`
		Leader json.RawMessage `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return false, err
	}
	return len(st.Leader) > 0 && bytes.Equal(st.Header.MemberID, st.Leader), nil
}

// memberStatus is the part of raftexample's GET /v1/status that bench
// scripts use.
type memberStatus struct {
	ID            uint64 `json:"id"`
	State         string `json:"state"`
	Leader        uint64 `json:"leader"`
	Term          uint64 `json:"term"`
	Commit        uint64 `json:"commit"`
	Applied       uint64 `json:"applied"`
	SnapshotIndex uint64 `json:"snapshotIndex"`
	Keys          int    `json:"keys"`
	Revision      uint64 `json:"revision"`
}

func getStatus(c *http.Client, base string) (memberStatus, error) {
	var st memberStatus
	resp, err := c.Get(base + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s/v1/status: %s", base, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("status: want one URL")
	}
	st, err := getStatus(client(1), fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("id=%d state=%s leader=%d term=%d commit=%d applied=%d snapshotIndex=%d keys=%d revision=%d\n",
		st.ID, st.State, st.Leader, st.Term, st.Commit, st.Applied, st.SnapshotIndex, st.Keys, st.Revision)
	return nil
}

func catchup(args []string) error {
	fs := flag.NewFlagSet("catchup", flag.ExitOnError)
	base := fs.String("url", "", "client URL of the member")
	applied := fs.Uint64("applied", 0, "applied index to wait for")
	since := fs.Int64("since", 0, "start of the measurement, Unix nanoseconds (default: now)")
	poll := fs.Duration("poll", 50*time.Millisecond, "time between polls")
	deadline := fs.Duration("deadline", 120*time.Second, "give up this long after -since")
	fs.Parse(args)
	if *base == "" {
		return errors.New("catchup: -url is required")
	}
	start := time.Now()
	if *since != 0 {
		start = time.Unix(0, *since)
	}
	// A short timeout: a member busy loading its snapshot must not hold a
	// poll longer than the deadline allows.
	c := &http.Client{Timeout: time.Second}
	var healthAt, appliedAt time.Duration
	var last memberStatus
	for {
		if healthAt == 0 {
			if resp, err := c.Get(*base + "/health"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					healthAt = time.Since(start)
				}
			}
		}
		if healthAt != 0 {
			if st, err := getStatus(c, *base); err == nil {
				last = st
				if st.Applied >= *applied {
					appliedAt = time.Since(start)
					break
				}
			}
		}
		if time.Since(start) > *deadline {
			return fmt.Errorf("catchup: after %s: health 200 at %s, applied %d of %d",
				*deadline, fmtSeconds(healthAt), last.Applied, *applied)
		}
		time.Sleep(*poll)
	}
	fmt.Printf("health_s=%.2f applied_s=%.2f applied=%d\n", healthAt.Seconds(), appliedAt.Seconds(), last.Applied)
	return nil
}

func fmtSeconds(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
