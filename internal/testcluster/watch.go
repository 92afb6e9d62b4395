package testcluster

// A client for watches (GET /v1/watch/...): a Server-Sent Events stream,
// read one event at a time.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// WatchEvent is one event of a watch stream. Key and Value are decoded
// (from base64 when Encoding says so); Data is the data line as sent.
type WatchEvent struct {
	// ID is the event's SSE id, which the member sends only on the last
	// frame of a revision (a transaction's writes share one), so that a
	// resume from Last-Event-ID never skips the rest of a revision; for the
	// frames before it, ID is the event's revision and CarriesID is false.
	ID             uint64
	CarriesID      bool
	Type           string // put, delete or progress
	Key, Value     string
	Revision       uint64
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
	Expired        bool
	Encoding       string
	Data           string
}

// WatchRefused is a watch the member answered with something other than a
// stream.
type WatchRefused struct {
	Code int
	Body string
}

func (e *WatchRefused) Error() string { return fmt.Sprintf("watch refused: %d %s", e.Code, e.Body) }

// WatchStream is an open watch.
type WatchStream struct {
	Header http.Header
	body   io.ReadCloser
	r      *bufio.Reader
	cancel context.CancelFunc
}

// Watch opens a watch at path (e.g. "/v1/watch/?prefix=a") with extra
// headers (may be nil; e.g. Last-Event-ID). The stream lasts until ctx ends,
// Close, or the member ends it.
func (n *Node) Watch(ctx context.Context, path string, header http.Header) (*WatchStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL(path), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	// No client timeout: a watch is meant to last.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: n.clientTLS}}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		cancel()
		return nil, &WatchRefused{Code: resp.StatusCode, Body: string(b)}
	}
	return &WatchStream{Header: resp.Header, body: resp.Body, r: bufio.NewReaderSize(resp.Body, 1<<16), cancel: cancel}, nil
}

// Next reads the next event. An error ends the stream (io.EOF when the
// member closed it).
func (s *WatchStream) Next() (WatchEvent, error) {
	var ev WatchEvent
	var haveID, any bool
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if err == io.EOF && line != "" {
				err = io.ErrUnexpectedEOF
			}
			return WatchEvent{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if !any {
				continue
			}
			if ev.Type == "" || (!haveID && ev.Type == "progress") {
				return WatchEvent{}, fmt.Errorf("event without id or type: %+v", ev)
			}
			err := decodeEventData(&ev)
			if ev.CarriesID = haveID; !haveID {
				ev.ID = ev.Revision
			}
			return ev, err
		}
		any = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return WatchEvent{}, fmt.Errorf("bad id %q", value)
			}
			ev.ID, haveID = id, true
		case "event":
			ev.Type = value
		case "data":
			ev.Data += value
		case "":
			// a comment
		default:
			return WatchEvent{}, fmt.Errorf("unknown field %q", field)
		}
	}
}

func decodeEventData(ev *WatchEvent) error {
	var d struct {
		Key            string `json:"key"`
		Value          string `json:"value"`
		Revision       uint64 `json:"revision"`
		CreateRevision uint64 `json:"createRevision"`
		ModRevision    uint64 `json:"modRevision"`
		Version        uint64 `json:"version"`
		Expired        bool   `json:"expired"`
		Encoding       string `json:"encoding"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		return fmt.Errorf("event %d data %q: %w", ev.ID, ev.Data, err)
	}
	ev.Key, ev.Value, ev.Revision, ev.CreateRevision, ev.ModRevision, ev.Version, ev.Expired, ev.Encoding =
		d.Key, d.Value, d.Revision, d.CreateRevision, d.ModRevision, d.Version, d.Expired, d.Encoding
	if d.Encoding == "base64" {
		k, err := base64.StdEncoding.DecodeString(d.Key)
		if err != nil {
			return fmt.Errorf("event %d key: %w", ev.ID, err)
		}
		v, err := base64.StdEncoding.DecodeString(d.Value)
		if err != nil {
			return fmt.Errorf("event %d value: %w", ev.ID, err)
		}
		ev.Key, ev.Value = string(k), string(v)
	}
	return nil
}

// Close ends the stream.
func (s *WatchStream) Close() {
	s.cancel()
	s.body.Close()
}
