package testcluster

// Helpers for revisions and conditional requests (issue #13): reading the
// revision headers of an answer, the store revision in /v1/status, a key's
// revisions, and the listing with revisions.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ETag returns the revision in an answer's strong ETag header ("17" gives
// 17). ok is false when there is no ETag; an ETag that is not one quoted
// decimal number is an error.
func ETag(h http.Header) (rev uint64, ok bool, err error) {
	vs := h.Values("ETag")
	if len(vs) == 0 {
		return 0, false, nil
	}
	if len(vs) > 1 {
		return 0, true, fmt.Errorf("%d ETag headers: %q", len(vs), vs)
	}
	s := vs[0]
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, true, fmt.Errorf("ETag %q is not a strong quoted tag", s)
	}
	rev, err = strconv.ParseUint(s[1:len(s)-1], 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("ETag %q: %v", s, err)
	}
	return rev, true, nil
}

// HeaderUint returns the decimal number in header name, an error if it is
// missing or not a number.
func HeaderUint(h http.Header, name string) (uint64, error) {
	vs := h.Values(name)
	if len(vs) != 1 {
		return 0, fmt.Errorf("%d %s headers (%q), want one", len(vs), name, vs)
	}
	v, err := strconv.ParseUint(vs[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a decimal number", name, vs[0])
	}
	return v, nil
}

// Revision returns the store revision n reports in GET /v1/status.
func (n *Node) Revision() (uint64, error) {
	var st struct {
		Revision *uint64 `json:"revision"`
	}
	if _, err := n.GetJSON("/v1/status", &st); err != nil {
		return 0, err
	}
	if st.Revision == nil {
		return 0, fmt.Errorf("%v: /v1/status has no revision", n)
	}
	return *st.Revision, nil
}

// KeyRevs is what a GET of a key says about it: its value and the revision
// headers.
type KeyRevs struct {
	Code           int
	Value          string
	ModRevision    uint64 // from the ETag; 0 if none
	CreateRevision uint64 // X-Create-Revision; 0 if none
	Version        uint64 // X-Version; 0 if none
	Revision       uint64 // X-Revision
}

func (k KeyRevs) String() string {
	return fmt.Sprintf("%d value %q mod %d create %d version %d (store %d)",
		k.Code, Shorten(k.Value, 40), k.ModRevision, k.CreateRevision, k.Version, k.Revision)
}

// Revs returns key's value and revisions as a GET of path (e.g.
// "/v1/kv/color" or "/color?consistency=serializable") on n answers them.
// A 200 must carry ETag, X-Create-Revision, X-Version and X-Revision; a 404
// X-Revision and no ETag. Other answers are errors.
func (n *Node) Revs(path string) (KeyRevs, error) {
	resp, err := n.DoRequest(http.MethodGet, path, "", nil)
	if err != nil {
		return KeyRevs{}, fmt.Errorf("GET %s on %v: %v", path, n, err)
	}
	k, err := RevsOf(resp)
	if err != nil {
		return k, fmt.Errorf("GET %s on %v: %v", path, n, err)
	}
	return k, nil
}

// RevsOf reads the revisions of a GET's answer (see Revs).
func RevsOf(resp Response) (KeyRevs, error) {
	k := KeyRevs{Code: resp.Code}
	var err error
	if k.Revision, err = HeaderUint(resp.Header, "X-Revision"); err != nil {
		return k, fmt.Errorf("status %d: %v", resp.Code, err)
	}
	switch resp.Code {
	case http.StatusOK:
		k.Value = resp.Body
		mod, ok, err := ETag(resp.Header)
		if err != nil || !ok {
			return k, fmt.Errorf("200 without a good ETag (%v)", err)
		}
		k.ModRevision = mod
		if k.CreateRevision, err = HeaderUint(resp.Header, "X-Create-Revision"); err != nil {
			return k, err
		}
		if k.Version, err = HeaderUint(resp.Header, "X-Version"); err != nil {
			return k, err
		}
	case http.StatusNotFound:
		if e := resp.Header.Get("ETag"); e != "" {
			return k, fmt.Errorf("404 with ETag %q", e)
		}
	default:
		return k, fmt.Errorf("status %d: %s", resp.Code, strings.TrimSpace(resp.Body))
	}
	return k, nil
}

// RevItem is one pair of a listing, with its revisions; Key and Value are
// decoded from base64 when Encoding says so.
type RevItem struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"createRevision"`
	ModRevision    uint64 `json:"modRevision"`
	Version        uint64 `json:"version"`
	Encoding       string `json:"encoding"`
}

// ListRevs lists every key under prefix through n (all pages; query is
// added to every page's query string, e.g. "consistency=serializable"),
// and returns the items and the X-Revision of the first page.
func (n *Node) ListRevs(prefix, query string) ([]RevItem, uint64, error) {
	var (
		all   []RevItem
		first uint64
	)
	for start, page := "", 0; ; page++ {
		path := "/v1/kv/?prefix=" + url.QueryEscape(prefix) + "&limit=10000&start=" + url.QueryEscape(start)
		if query != "" {
			path += "&" + query
		}
		resp, err := n.DoRequest(http.MethodGet, path, "", nil)
		if err != nil {
			return nil, 0, fmt.Errorf("GET %s on %v: %v", path, n, err)
		}
		if resp.Code != http.StatusOK {
			return nil, 0, fmt.Errorf("GET %s on %v: status %d: %s", path, n, resp.Code, strings.TrimSpace(resp.Body))
		}
		rev, err := HeaderUint(resp.Header, "X-Revision")
		if err != nil {
			return nil, 0, fmt.Errorf("GET %s on %v: %v", path, n, err)
		}
		if page == 0 {
			first = rev
		}
		var items []RevItem
		if err := json.Unmarshal([]byte(resp.Body), &items); err != nil {
			return nil, 0, fmt.Errorf("GET %s on %v: %v", path, n, err)
		}
		for i, it := range items {
			if it.Encoding == "base64" {
				k, err1 := base64.StdEncoding.DecodeString(it.Key)
				v, err2 := base64.StdEncoding.DecodeString(it.Value)
				if err1 != nil || err2 != nil {
					return nil, 0, fmt.Errorf("GET %s on %v: bad base64 in %+v", path, n, it)
				}
				items[i].Key, items[i].Value = string(k), string(v)
			}
		}
		all = append(all, items...)
		next := resp.Header.Get("X-Next-Start")
		if next == "" {
			return all, first, nil
		}
		if start, err = url.QueryUnescape(next); err != nil {
			return nil, 0, err
		}
	}
}

// DoRequestContext is DoRequest with a context, e.g. for a shorter timeout.
func (n *Node) DoRequestContext(ctx context.Context, method, path, body string, header http.Header) (Response, error) {
	return n.send(ctx, method, path, body, header)
}
