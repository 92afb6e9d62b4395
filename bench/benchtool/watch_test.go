package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The child process of benchtool watch is this test binary, started with
// "watchers" as its first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "watchers" {
		if err := watchersCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeStore is the smallest server the watch benchmark can run against:
// root PUTs, and watch streams on a prefix that get every PUT after their
// start, or are cut when they fall behind.
type fakeStore struct {
	mu    sync.Mutex
	rev   uint64
	subs  map[chan string]bool
	cutAt uint64 // at this revision, end every stream
}

func (s *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut:
		v, _ := io.ReadAll(r.Body)
		data, _ := json.Marshal(map[string]any{"key": r.URL.Path[1:], "value": string(v)})
		s.mu.Lock()
		s.rev++
		frame := fmt.Sprintf("id: %d\nevent: put\ndata: %s\n\n", s.rev, data)
		for c := range s.subs {
			if s.rev == s.cutAt {
				close(c)
				delete(s.subs, c)
				continue
			}
			select {
			case c <- frame:
			default: // behind: cut
				close(c)
				delete(s.subs, c)
			}
		}
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, s.rev))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(r.URL.Path, "/v1/watch/"):
		c := make(chan string, 1<<14)
		s.mu.Lock()
		s.subs[c] = true
		rev := s.rev
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.subs[c] {
				delete(s.subs, c)
			}
			s.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %d\nevent: progress\ndata: {\"revision\":%d}\n\n", rev, rev)
		w.(http.Flusher).Flush()
		for {
			select {
			case f, ok := <-c:
				if !ok {
					return
				}
				io.WriteString(w, f)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func newTestBench(t *testing.T, url string, urls int, conns int, inProcess bool) *watchBench {
	acks, err := newAckTable(!inProcess)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(acks.close)
	b := &watchBench{leader: url, conns: conns, keys: 10, valueBytes: 64, prefix: "w-",
		inProcess: inProcess, acks: acks, put: client(conns)}
	for range urls {
		b.urls = append(b.urls, url)
	}
	b.watchURLs = b.urls
	return b
}

func TestWatchPhase(t *testing.T) {
	for _, inProcess := range []bool{true, false} {
		t.Run(fmt.Sprintf("in-process=%v", inProcess), func(t *testing.T) {
			srv := httptest.NewServer(&fakeStore{subs: map[chan string]bool{}})
			defer srv.Close()
			b := newTestBench(t, srv.URL, 2, 4, inProcess)
			b.runPuts(50 * time.Millisecond) // earlier writes, which no watcher may see
			r, err := b.phase(20, 300*time.Millisecond, 5*time.Second, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.put.acked == 0 || r.put.failed+r.put.refused != 0 {
				t.Fatalf("PUTs: %+v", r.put)
			}
			if r.OpenFailed != 0 || r.Cut != 0 || r.Missed != 0 || r.BadFrame != 0 || r.Disorder != 0 || r.Older != 0 || r.Unacked != 0 {
				t.Errorf("refused %d (%s), cut %d (%s), missed %d, bad %d, disorder %d, older %d, unacked %d",
					r.OpenFailed, r.OpenErr, r.Cut, r.CutErr, r.Missed, r.BadFrame, r.Disorder, r.Older, r.Unacked)
			}
			if want := 20 * r.put.acked; r.Events != want || r.Lat.N != want || r.FromSend.N != want {
				t.Errorf("%d events, %d latencies, %d from the start, want %d", r.Events, r.Lat.N, r.FromSend.N, want)
			}
			if r.PerMember[0].N+r.PerMember[1].N != r.Lat.N {
				t.Errorf("per member %d + %d != %d", r.PerMember[0].N, r.PerMember[1].N, r.Lat.N)
			}
			if r.FromSend.hist().quantile(.5) <= 0 {
				t.Error("deliveries before their PUTs started")
			}
			if !r.DrainedAll {
				t.Error("not drained")
			}
		})
	}
}

// A stream the member ends is a cut, and the writes after it are missed.
func TestWatchCut(t *testing.T) {
	store := &fakeStore{subs: map[chan string]bool{}, cutAt: 5}
	srv := httptest.NewServer(store)
	defer srv.Close()
	b := newTestBench(t, srv.URL, 1, 2, true)
	r, err := b.phase(3, 300*time.Millisecond, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Cut != 3 || r.Missed == 0 || r.Events+r.Missed != 3*r.put.acked {
		t.Errorf("cut %d, missed %d, events %d, acked %d", r.Cut, r.Missed, r.Events, r.put.acked)
	}
}
