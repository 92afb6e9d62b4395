package testcluster

// The HTTP client of a node: every request a test sends to a member's HTTP
// API goes through Node.send, over HTTP or, after UseTLS, HTTPS.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
// UseTLS(nil) goes back to plain HTTP.
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

// send is the one place requests to a node's HTTP API are made. The
// client never reuses connections (nodes are killed and restarted all the
// time) and gives up after 15 s; ctx may end a request sooner.
func (n *Node) send(ctx context.Context, method, path, body string, header http.Header) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.URL(path), strings.NewReader(body))
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

// DoRequest sends method to path with body and extra headers (may be nil)
// and returns the whole answer.
func (n *Node) DoRequest(method, path, body string, header http.Header) (Response, error) {
	return n.send(context.Background(), method, path, body, header)
}

// Do sends a request with method to path (e.g. "/key") and returns the
// status code and body.
func (n *Node) Do(method, path, body string) (int, string, error) {
	return n.DoContext(context.Background(), method, path, body)
}

// DoContext is Do with a context, e.g. for a shorter timeout.
func (n *Node) DoContext(ctx context.Context, method, path, body string) (int, string, error) {
	resp, err := n.send(ctx, method, path, body, nil)
	return resp.Code, resp.Body, err
}

// Put stores val under key through this node.
func (n *Node) Put(key, val string) (int, string, error) {
	return n.Do(http.MethodPut, "/"+url.PathEscape(key), val)
}

// Get reads key from this node.
func (n *Node) Get(key string) (int, string, error) {
	return n.Do(http.MethodGet, "/"+url.PathEscape(key), "")
}

// GetSerializable reads key from this node's local state
// (?consistency=serializable).
func (n *Node) GetSerializable(key string) (int, string, error) {
	return n.Do(http.MethodGet, "/"+url.PathEscape(key)+"?consistency=serializable", "")
}

// Delete removes key through the JSON API (DELETE /v1/kv/{key}).
func (n *Node) Delete(key string) (int, string, error) {
	return n.Do(http.MethodDelete, "/v1/kv/"+url.PathEscape(key), "")
}

// AddMember asks this node to add member id with the given peer URL.
func (n *Node) AddMember(id, peerURL string) (int, string, error) {
	return n.Do(http.MethodPost, "/"+id, peerURL)
}

// RemoveMember asks this node to remove member id.
func (n *Node) RemoveMember(id string) (int, string, error) {
	return n.Do(http.MethodDelete, "/"+id, "")
}
