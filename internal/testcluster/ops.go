package testcluster

// Helpers for the operations endpoints (/v1/status, /metrics) and for
// per-node flags.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// GET /v1/status

// Status is GET /v1/status as the server answers it.
type Status struct {
	ID            uint64     `json:"id"`
	ClusterID     string     `json:"clusterID"` // hex, as rafthttp's X-Etcd-Cluster-ID header carries it
	State         string     `json:"state"`
	Leader        uint64     `json:"leader"`
	Term          uint64     `json:"term"`
	Commit        uint64     `json:"commit"`
	SnapshotIndex uint64     `json:"snapshotIndex"`
	Members       []Member   `json:"members"`
	Followers     []Follower `json:"followers"`
	Applied       uint64     `json:"applied"`
	Keys          int        `json:"keys"`
	Digest        string     `json:"digest"`
}

// Member is one entry of Status.Members.
type Member struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peerURL"`
}

// Follower is the leader's view of one follower, in Status.Followers.
type Follower struct {
	ID           uint64 `json:"id"`
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recentActive"`
}

// GetJSON sends GET path to n and decodes a 200 answer's JSON body into v.
// It returns the status code; an answer other than 200 is an error.
func (n *Node) GetJSON(path string, v any) (int, error) {
	code, body, err := n.Do(http.MethodGet, path, "")
	if err != nil {
		return code, fmt.Errorf("GET %s on %v: %w", path, n, err)
	}
	if code != http.StatusOK {
		return code, fmt.Errorf("GET %s on %v: status %d: %s", path, n, code, strings.TrimSpace(body))
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return code, fmt.Errorf("GET %s on %v: %v in %q", path, n, err, body)
	}
	return code, nil
}

// Status returns n's GET /v1/status.
func (n *Node) Status() (Status, error) {
	var st Status
	_, err := n.GetJSON("/v1/status", &st)
	return st, err
}

// Statuses returns the GET /v1/status of every node, in order.
func Statuses(nodes ...*Node) ([]Status, error) {
	out := make([]Status, len(nodes))
	for i, n := range nodes {
		st, err := n.Status()
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// Agreement checks that the statuses show one settled leadership: exactly
// one of them is the leader, and all name it as leader in the same term.
// It returns the leader's id.
func Agreement(sts []Status) (uint64, error) {
	if len(sts) == 0 {
		return 0, errors.New("no statuses")
	}
	var leaders []uint64
	for _, st := range sts {
		if st.State == "leader" {
			leaders = append(leaders, st.ID)
		}
	}
	if len(leaders) != 1 {
		return 0, fmt.Errorf("%d nodes report state leader (%v): %s", len(leaders), leaders, Summary(sts))
	}
	for _, st := range sts {
		if st.Leader != leaders[0] || st.Term != sts[0].Term {
			return 0, fmt.Errorf("nodes disagree on leader or term: %s", Summary(sts))
		}
	}
	return leaders[0], nil
}

// Summary is a one-line view of statuses for error messages.
func Summary(sts []Status) string {
	parts := make([]string, len(sts))
	for i, st := range sts {
		parts[i] = fmt.Sprintf("[id %d %s leader %d term %d commit %d applied %d keys %d digest %s]",
			st.ID, st.State, st.Leader, st.Term, st.Commit, st.Applied, st.Keys, st.Digest)
	}
	return strings.Join(parts, " ")
}

// WaitLeader polls the nodes' statuses until they agree on a leader that is
// one of them (see Agreement), and returns the leader's node and the
// statuses that showed it.
func WaitLeader(t testing.TB, timeout time.Duration, nodes ...*Node) (*Node, []Status) {
	t.Helper()
	var (
		leader *Node
		sts    []Status
	)
	Eventually(t, timeout, func() error {
		var err error
		if sts, err = Statuses(nodes...); err != nil {
			return err
		}
		id, err := Agreement(sts)
		if err != nil {
			return err
		}
		if leader = nodeWithID(nodes, id); leader == nil {
			return fmt.Errorf("leader %d is not one of the polled nodes: %s", id, Summary(sts))
		}
		return nil
	})
	return leader, sts
}

// ---------------------------------------------------------------------------
// GET /metrics

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a parsed GET /metrics answer.
type Metrics struct {
	Types   map[string]string // metric family name -> type, from # TYPE lines
	Samples []Sample
}

// Metrics fetches and parses n's GET /metrics.
func (n *Node) Metrics() (Metrics, error) {
	code, body, err := n.Do(http.MethodGet, "/metrics", "")
	if err != nil {
		return Metrics{}, fmt.Errorf("GET /metrics on %v: %w", n, err)
	}
	if code != http.StatusOK {
		return Metrics{}, fmt.Errorf("GET /metrics on %v: status %d: %s", n, code, Tail(body, 5))
	}
	m, err := ParseMetrics(body)
	if err != nil {
		return Metrics{}, fmt.Errorf("GET /metrics on %v: %w", n, err)
	}
	return m, nil
}

// Metric fetches n's metrics and returns the value of the first sample
// called name whose labels include all of labels.
func (n *Node) Metric(name string, labels map[string]string) (float64, error) {
	m, err := n.Metrics()
	if err != nil {
		return 0, err
	}
	v, ok := m.Value(name, labels)
	if !ok {
		return 0, fmt.Errorf("%v's /metrics has no sample %s%v", n, name, labels)
	}
	return v, nil
}

// ParseMetrics parses the Prometheus text exposition format (as served by
// client_golang: no timestamps, no escaped quotes in names).
func ParseMetrics(text string) (Metrics, error) {
	m := Metrics{Types: map[string]string{}}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[1] == "TYPE" {
				m.Types[f[2]] = f[3]
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return m, fmt.Errorf("line %d %q: %v", i+1, line, err)
		}
		m.Samples = append(m.Samples, s)
	}
	return m, nil
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(rest, "{ "); i < 0 {
		return s, errors.New("no value")
	} else {
		s.Name, rest = rest[:i], rest[i:]
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, "=\"")
			if eq < 0 {
				return s, errors.New("bad label")
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			for {
				if rest == "" {
					return s, errors.New("unterminated label value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '\\' && rest != "" {
					switch rest[0] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[0])
					}
					rest = rest[1:]
					continue
				}
				if c == '"' {
					break
				}
				val.WriteByte(c)
			}
			s.Labels[name] = val.String()
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return s, errors.New("no value")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// Has reports whether a metric family called name was exposed (a # TYPE line
// or a sample of that name).
func (m Metrics) Has(name string) bool {
	if _, ok := m.Types[name]; ok {
		return true
	}
	for _, s := range m.Samples {
		if s.Name == name {
			return true
		}
	}
	return false
}

// Value returns the value of the first sample called name whose labels
// include all of labels.
func (m Metrics) Value(name string, labels map[string]string) (float64, bool) {
	for _, s := range m.Samples {
		if s.Name == name && hasLabels(s, labels) {
			return s.Value, true
		}
	}
	return 0, false
}

func hasLabels(s Sample, labels map[string]string) bool {
	for k, v := range labels {
		if s.Labels[k] != v {
			return false
		}
	}
	return true
}

// Find returns every sample called name whose labels include all of labels.
func (m Metrics) Find(name string, labels map[string]string) []Sample {
	var out []Sample
	for _, s := range m.Samples {
		if s.Name == name && hasLabels(s, labels) {
			out = append(out, s)
		}
	}
	return out
}

// Names returns the family names from # TYPE lines that start with prefix.
func (m Metrics) Names(prefix string) []string {
	var out []string
	for name := range m.Types {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Command lines

// SetFlag sets --name to value on n's command line (for its next start),
// replacing every earlier occurrence of the flag.
func (n *Node) SetFlag(name, value string) {
	flag := "--" + name
	var args []string
	for i := 0; i < len(n.Args); i++ {
		a := n.Args[i]
		switch {
		case a == flag || a == "-"+name:
			i++ // skip its value
		case strings.HasPrefix(a, flag+"=") || strings.HasPrefix(a, "-"+name+"="):
		default:
			args = append(args, a)
		}
	}
	n.Args = append(args, flag, value)
}

// nodeWithID returns the node among nodes with raft id id, or nil.
func nodeWithID(nodes []*Node, id uint64) *Node {
	for _, n := range nodes {
		if uint64(n.ID) == id {
			return n
		}
	}
	return nil
}
