package main

// Watches: GET /v1/watch/{key} and GET /v1/watch/?prefix=P, answered with a
// stream of Server-Sent Events (the WHATWG EventSource format), one per
// change, read from the member's history of changes (watchhub.go).

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// watchProgressInterval is how long a stream may go without an event
	// before it sends a progress event.
	watchProgressInterval = 5 * time.Second
	// watchWriteTimeout is how long a client may take to accept an event.
	watchWriteTimeout = 10 * time.Second
	// watchReadLimit bounds the events a stream takes from the history at
	// once.
	watchReadLimit = 512
)

// watchStart reads where a watch starts: the first revision it may
// deliver. Last-Event-ID (sent by a reconnecting EventSource) wins over
// fromRevision; with neither, the stream starts after the member's current
// revision.
func watchStart(r *http.Request, current uint64) (uint64, error) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n == 1<<64-1 {
			return 0, apiErr(http.StatusBadRequest, "Last-Event-ID must be a revision (a decimal number), not "+strconv.Quote(id))
		}
		return n + 1, nil
	}
	if s := r.URL.Query().Get("fromRevision"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, apiErr(http.StatusBadRequest, "fromRevision must be a revision (a decimal number), not "+strconv.Quote(s))
		}
		return max(n, 1), nil
	}
	return current + 1, nil
}

// watchFilter is which keys a stream reports: one key, or every key under a
// prefix.
type watchFilter struct {
	key    string
	prefix bool
}

func (f watchFilter) matches(key string) bool {
	if f.prefix {
		return strings.HasPrefix(key, f.key)
	}
	return key == f.key
}

func (h *httpAPI) watch(w http.ResponseWriter, r *http.Request) error {
	filter := watchFilter{key: pathTail(r)}
	if filter.key == "" {
		filter = watchFilter{key: r.URL.Query().Get("prefix"), prefix: true}
		if len(filter.key) > maxKeyBytes {
			return apiErr(http.StatusBadRequest, "prefix is longer than 4096 bytes")
		}
	} else if err := validKey(filter.key); err != nil {
		return err
	}
	hub := h.svc.watches
	oldest, current := hub.state()
	from, err := watchStart(r, current)
	if err != nil {
		return err
	}
	if from < oldest {
		writeJSON(w, http.StatusGone, map[string]any{
			"error":          fmt.Sprintf("revision %d is no longer in this member's history, which starts at %d: list the keys, then watch from the listing's X-Revision + 1", from, oldest),
			"oldestRevision": oldest, "revision": current,
		})
		return nil
	}

	rc := http.NewResponseController(w)
	// A watch lasts as long as its client wants: no read deadline (the
	// server reads only to notice the client leaving), and a write deadline
	// per event instead of per request.
	rc.SetReadDeadline(time.Time{})
	metricWatchers.Inc()
	defer metricWatchers.Dec()
	defer hub.streamOpened()()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	setRevision(w, current)
	w.WriteHeader(http.StatusOK)

	s := &watchStream{w: w, rc: rc, filter: filter, next: from, through: from - 1}
	if !s.progress() {
		return nil
	}
	progress := time.NewTimer(watchProgressInterval)
	defer progress.Stop()
	var buf []*watchEvent
	for first := true; ; first = false {
		view := hub.read(s.next, watchReadLimit, buf[:0])
		buf = view.events
		var lag uint64 // how far the newest change is ahead of the stream
		if view.newest >= s.next {
			lag = view.newest - s.next
		}
		if first {
			// A stream replaying the history starts far behind, and may
			// lag that much; one that loses ground beyond half the history
			// is closed while it can still resume.
			s.maxLag = max(uint64(hub.maxEvents/2), lag)
		}
		switch {
		case s.next <= view.compacted:
			metricWatchClosed.WithLabelValues("compacted").Inc()
			return nil
		case lag > s.maxLag:
			metricWatchClosed.WithLabelValues("behind").Inc()
			return nil
		}
		sent, ok := s.send(view.events)
		clear(buf)
		if !ok {
			return nil
		}
		if !view.more {
			s.through = max(s.through, view.revision)
			s.next = max(s.next, view.revision+1)
		}
		if sent {
			progress.Reset(watchProgressInterval)
		}
		if view.more {
			continue
		}
		select {
		case <-view.changed:
		case <-progress.C:
			if !s.progress() {
				return nil
			}
			progress.Reset(watchProgressInterval)
		case <-r.Context().Done():
			return nil
		case <-h.stopping():
			return nil
		}
	}
}

// watchStream is one watch's position: the next revision it may deliver,
// and the revision it is complete through. Owned by its handler.
type watchStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	filter  watchFilter
	next    uint64
	through uint64
	maxLag  uint64 // the most it may fall behind the newest change
	out     []byte
}

// send writes the events that match, and moves the stream past all of
// them. It reports whether it wrote any, and false for ok when the client
// is gone.
func (s *watchStream) send(events []*watchEvent) (wrote, ok bool) {
	var n int
	s.out, n = appendEvents(s.out[:0], events, s.filter)
	if len(events) > 0 {
		last := events[len(events)-1].revision
		s.next, s.through = last+1, last
	}
	if n == 0 {
		return false, true
	}
	metricWatchEventsSent.Add(float64(n))
	return true, s.flush()
}

// appendEvents appends to out the frames of the events (whole revisions)
// that match filter, and says how many. Only the last frame of a revision
// carries its id: a client that resumes from the last id it received
// (Last-Event-ID) then never skips the rest of a revision a transaction
// wrote several keys in, whatever frame its connection broke after.
func appendEvents(out []byte, events []*watchEvent, filter watchFilter) ([]byte, int) {
	n := 0
	for i, e := range events {
		if !filter.matches(e.key) {
			continue
		}
		lastOfRevision := true
		for _, f := range events[i+1:] {
			if f.revision != e.revision {
				break
			}
			if filter.matches(f.key) {
				lastOfRevision = false
				break
			}
		}
		if lastOfRevision {
			out = fmt.Appendf(out, "id: %d\n", e.revision)
		}
		out = append(out, e.encoded()...)
		n++
	}
	return out, n
}

// progress writes a progress event: the stream is complete through
// s.through.
func (s *watchStream) progress() bool {
	s.out = fmt.Appendf(s.out[:0], "id: %d\nevent: progress\ndata: {\"revision\":%d}\n\n", s.through, s.through)
	return s.flush()
}

func (s *watchStream) flush() bool {
	s.rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
	_, err := s.w.Write(s.out)
	if err == nil {
		err = s.rc.Flush()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		metricWatchClosed.WithLabelValues("stalled").Inc() // the client took nothing for watchWriteTimeout
	}
	return err == nil
}

// watchEventData is an event's data line. JSON strings must be UTF-8, so a
// key or value that is not is sent, with the other, in base64, as the
// listing does.
type watchEventData struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"` // nil for a delete
	Revision       uint64  `json:"revision"`
	CreateRevision uint64  `json:"createRevision,omitempty"`
	ModRevision    uint64  `json:"modRevision,omitempty"`
	Version        uint64  `json:"version,omitempty"`
	TTL            string  `json:"ttl,omitempty"`     // for a put that set a time to live
	Expired        bool    `json:"expired,omitempty"` // for a delete because the key's TTL ran out
	Encoding       string  `json:"encoding,omitempty"`
}

// encoded is the event as a stream sends it, encoded once, but its id
// (see appendEvents).
func (e *watchEvent) encoded() []byte {
	e.once.Do(func() {
		d := watchEventData{Key: e.key, Revision: e.revision, Expired: e.expired}
		value, kind := e.value, "delete"
		if !e.deleted {
			kind, d.Value = "put", &value
			d.CreateRevision, d.ModRevision, d.Version = e.meta.createRevision, e.meta.modRevision, e.meta.version
			if e.meta.ttl != 0 {
				d.TTL = e.meta.ttl.String()
			}
		}
		if !utf8.ValidString(e.key) || !utf8.ValidString(e.value) {
			d.Key = base64.StdEncoding.EncodeToString([]byte(e.key))
			value = base64.StdEncoding.EncodeToString([]byte(e.value))
			d.Encoding = "base64"
		}
		var data bytes.Buffer
		enc := json.NewEncoder(&data)
		enc.SetEscapeHTML(false)
		enc.Encode(d) // of strings and numbers: cannot fail
		e.frame = fmt.Appendf(nil, "event: %s\ndata: %s\n\n", kind, bytes.TrimSuffix(data.Bytes(), []byte("\n")))
	})
	return e.frame
}
