package testcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// URL returns the address of path (e.g. "/v1/status") on this node's HTTP
// API.
func (n *Node) URL(path string) string {
	scheme := "http"
	if n.clientTLS != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, n.HTTPPort, path)
}

// UseTLS makes every request of n's helpers (Do, Put, Get, Status, ...) go
// to its HTTP API over HTTPS with cfg, for a node started with --cert-file.
func (n *Node) UseTLS(cfg *tls.Config) {
	n.clientTLS = cfg
	n.client.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}
}

// Response is a complete HTTP answer.
type Response struct {
	Code   int
	Header http.Header
	Body   string
}

// DoRequest sends method to path with body and extra headers (may be nil)
// and returns the whole answer.
func (n *Node) DoRequest(method, path, body string, header http.Header) (Response, error) {
	req, err := http.NewRequest(method, n.URL(path), strings.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}, err
}

// Delete removes key through the JSON API (DELETE /v1/kv/{key}).
func (n *Node) Delete(key string) (int, string, error) {
	return n.Do(http.MethodDelete, "/v1/kv/"+url.PathEscape(key), "")
}

// GetSerializable reads key from this node's local state
// (?consistency=serializable).
func (n *Node) GetSerializable(key string) (int, string, error) {
	return n.Do(http.MethodGet, "/"+url.PathEscape(key)+"?consistency=serializable", "")
}

// FindLeader returns the running node that says it is the leader and that
// every other running node it could ask names as their leader too, polling
// until there is one or timeout passes. It does not fail the test, so it can
// be used from any goroutine.
func (c *Cluster) FindLeader(timeout time.Duration) (*Node, error) {
	var leader *Node
	err := Poll(timeout, func() error {
		leader = nil
		var candidates []*Node
		views := map[*Node]Status{}
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				continue // killed or restarting in the meantime
			}
			views[n] = st
			if st.State == "leader" && st.Leader == st.ID {
				candidates = append(candidates, n)
			}
		}
		if len(candidates) != 1 {
			return fmt.Errorf("%d nodes say they lead (%s)", len(candidates), c.describeViews(views))
		}
		cand := candidates[0]
		for n, st := range views {
			if st.Leader != views[cand].ID || st.Term != views[cand].Term {
				return fmt.Errorf("%v does not follow %v yet (%s)", n, cand, c.describeViews(views))
			}
		}
		leader = cand
		return nil
	})
	if err != nil {
		return nil, err
	}
	if leader == nil {
		return nil, errors.New("no leader")
	}
	return leader, nil
}

func (c *Cluster) describeViews(views map[*Node]Status) string {
	var parts []string
	for _, n := range c.Nodes {
		if st, ok := views[n]; ok {
			parts = append(parts, fmt.Sprintf("%v: %s, leader %d, term %d", n, st.State, st.Leader, st.Term))
		} else {
			parts = append(parts, fmt.Sprintf("%v: no answer", n))
		}
	}
	return strings.Join(parts, "; ")
}
