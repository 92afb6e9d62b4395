package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore is the smallest server the watch benchmark can run against:
// root PUTs, and watch streams on a prefix that get every PUT after their
// start, or are cut when they fall behind.
type fakeStore struct {
	mu   sync.Mutex
	rev  uint64
	subs map[chan string]bool
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

func TestWatchPhase(t *testing.T) {
	srv := httptest.NewServer(&fakeStore{subs: map[chan string]bool{}})
	defer srv.Close()
	b := &watchBench{urls: []string{srv.URL, srv.URL}, leader: srv.URL, conns: 4, keys: 10,
		valueBytes: 64, prefix: "w-", epoch: time.Now(), put: client(4)}
	b.runPuts(50 * time.Millisecond) // earlier writes, which no watcher may see
	r, err := b.phase(20, 300*time.Millisecond, 5*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.put.acked == 0 || r.put.failed+r.put.refused != 0 {
		t.Fatalf("PUTs: %+v", r.put)
	}
	if r.openFailed != 0 || r.cut != 0 || r.missed != 0 || r.badFrame != 0 || r.disorder != 0 || r.older != 0 || r.unacked != 0 {
		t.Errorf("refused %d (%s), cut %d (%s), missed %d, bad %d, disorder %d, older %d, unacked %d",
			r.openFailed, r.openErr, r.cut, r.cutErr, r.missed, r.badFrame, r.disorder, r.older, r.unacked)
	}
	if want := 20 * r.put.acked; r.events != want || r.lat.n != want {
		t.Errorf("%d events, %d latencies, want %d", r.events, r.lat.n, want)
	}
	if r.perMember[0].n+r.perMember[1].n != r.lat.n {
		t.Errorf("per member %d + %d != %d", r.perMember[0].n, r.perMember[1].n, r.lat.n)
	}
	if !r.drainedAll {
		t.Error("not drained")
	}
}

// A stream the member ends is a cut, and the writes after it are missed.
func TestWatchCut(t *testing.T) {
	store := &fakeStore{subs: map[chan string]bool{}}
	srv := httptest.NewServer(store)
	defer srv.Close()
	b := &watchBench{urls: []string{srv.URL}, leader: srv.URL, conns: 2, keys: 10,
		valueBytes: 16, prefix: "w-", epoch: time.Now(), put: client(2)}
	go func() {
		time.Sleep(100 * time.Millisecond)
		store.mu.Lock()
		for c := range store.subs {
			close(c)
			delete(store.subs, c)
		}
		store.mu.Unlock()
	}()
	r, err := b.phase(3, 300*time.Millisecond, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.cut != 3 || r.missed == 0 || r.events+r.missed != 3*r.put.acked {
		t.Errorf("cut %d, missed %d, events %d, acked %d", r.cut, r.missed, r.events, r.put.acked)
	}
}
