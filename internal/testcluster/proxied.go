package testcluster

// A cluster whose peer traffic goes through a faultproxy.Network: every
// member listens for peers on a real port (--listen-peer-url) while
// --cluster advertises the address of its proxy, so faults can be set per
// direction between members.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"raftexample/internal/faultproxy"
)

// ProxiedCluster is a cluster behind a fault-injecting proxy.
type ProxiedCluster struct {
	t     testing.TB
	bin   string
	dir   string
	Extra []string // flags given to every node
	Net   *faultproxy.Network

	mu      sync.Mutex
	urls    []string // proxy URLs; urls[i] is the advertised URL of id i+1
	nodes   map[int]*Node
	listen  map[int]string // id -> --listen-peer-url
	members []int          // ids of the current members, sorted
}

// NewProxied prepares size members (not started) behind a network whose
// random choices come from seed.
func NewProxied(t testing.TB, size int, seed int64, extra ...string) *ProxiedCluster {
	t.Helper()
	c := &ProxiedCluster{t: t, bin: Build(t), dir: t.TempDir(), Extra: extra,
		Net: faultproxy.NewNetwork(seed), nodes: map[int]*Node{}, listen: map[int]string{}}
	t.Cleanup(c.Net.Close)
	for id := 1; id <= size; id++ {
		c.newMember(id)
	}
	for id := 1; id <= size; id++ {
		c.nodes[id].Args = c.args(c.nodes[id], false)
	}
	return c
}

// newMember creates node id with a proxy and fresh ports (not started).
func (c *ProxiedCluster) newMember(id int) *Node {
	c.t.Helper()
	// Real peer port, HTTP port, proxy port: all from FreePorts, which
	// never hands out a port twice, so a proxy cannot take a port meant for
	// a member.
	ports, err := FreePorts(3)
	if err != nil {
		c.t.Fatal(err)
	}
	real := fmt.Sprintf("127.0.0.1:%d", ports[0])
	p, err := c.Net.Listen(uint64(id), fmt.Sprintf("127.0.0.1:%d", ports[2]), real)
	if err != nil {
		c.t.Fatal(err)
	}
	n := NewNode(c.t, c.bin,
		filepath.Join(c.dir, fmt.Sprintf("node%d", id)),
		filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)), ports[1], nil)
	n.ID = id
	n.PeerURL = "http://" + p.Addr()
	c.mu.Lock()
	c.listen[id] = "http://" + real
	for len(c.urls) < id {
		c.urls = append(c.urls, "")
	}
	c.urls[id-1] = n.PeerURL
	c.nodes[id] = n
	c.members = append(c.members, id)
	sort.Ints(c.members)
	c.mu.Unlock()
	return n
}

func (c *ProxiedCluster) args(n *Node, join bool) []string {
	c.mu.Lock()
	urls := strings.Join(c.urls, ",")
	listen := c.listen[n.ID]
	c.mu.Unlock()
	a := []string{
		"--id", strconv.Itoa(n.ID),
		"--cluster", urls,
		"--port", strconv.Itoa(n.HTTPPort),
		"--data-dir", n.DataDir,
		"--listen-peer-url", listen,
	}
	if join {
		a = append(a, "--join")
	}
	return append(a, c.Extra...)
}

// Start starts every member and waits until all serve HTTP. If a port was
// taken meanwhile by another process, the error wraps ErrPortInUse; the
// caller may Close this cluster and try a new one.
func (c *ProxiedCluster) Start() error {
	for _, n := range c.Members() {
		n.Start()
	}
	for _, n := range c.Members() {
		if err := n.WaitServing(30 * time.Second); err != nil {
			return fmt.Errorf("starting proxied cluster: %w", err)
		}
	}
	return nil
}

// Close kills every node and stops the proxies.
func (c *ProxiedCluster) Close() {
	c.mu.Lock()
	var nodes []*Node
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	c.mu.Unlock()
	for _, n := range nodes {
		if n.Running() {
			n.Kill()
		}
	}
	c.Net.Close()
}

// Node returns the node with id (a member or a former one).
func (c *ProxiedCluster) Node(id int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// IDs returns the ids of the current members.
func (c *ProxiedCluster) IDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, len(c.members))
	for i, id := range c.members {
		ids[i] = uint64(id)
	}
	return ids
}

// Members returns the nodes of the current members, by id.
func (c *ProxiedCluster) Members() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Node, len(c.members))
	for i, id := range c.members {
		out[i] = c.nodes[id]
	}
	return out
}

// Isolate cuts every link to and from member id.
func (c *ProxiedCluster) Isolate(id int) { c.Net.Isolate(uint64(id), c.IDs()) }

// Leader polls the members' statuses until they agree on a leader and
// returns it.
func (c *ProxiedCluster) Leader(timeout time.Duration) (*Node, error) {
	var leader *Node
	err := Poll(timeout, func() error {
		nodes := c.Members()
		sts, err := Statuses(nodes...)
		if err != nil {
			return err
		}
		id, err := Agreement(sts)
		if err != nil {
			return err
		}
		if leader = nodeWithID(nodes, id); leader == nil {
			return fmt.Errorf("leader %d is not a member", id)
		}
		return nil
	})
	return leader, err
}

// RemoveMember asks through via to remove member id, and forgets it as a
// member once that succeeded. A 404 (not a member) counts as success: an
// earlier attempt whose answer was lost went through.
func (c *ProxiedCluster) RemoveMember(via *Node, id int) error {
	code, body, err := via.RemoveMember(strconv.Itoa(id))
	if err != nil {
		return err
	}
	if code != 204 && code != 404 {
		return fmt.Errorf("DELETE /%d on %v: status %d: %s", id, via, code, strings.TrimSpace(body))
	}
	c.mu.Lock()
	for i, m := range c.members {
		if m == id {
			c.members = append(c.members[:i], c.members[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return nil
}

// AddMember gives the next id a proxy and fresh ports, asks through via to
// add it, and starts it with --join and the list of all URLs. It returns the
// new node once it serves HTTP.
func (c *ProxiedCluster) AddMember(via *Node) (*Node, error) {
	c.mu.Lock()
	id := len(c.urls) + 1
	c.mu.Unlock()
	n := c.newMember(id)
	n.Args = c.args(n, true)
	code, body, err := via.AddMember(strconv.Itoa(id), n.PeerURL)
	if err == nil && code != 204 {
		err = fmt.Errorf("POST /%d on %v: status %d: %s", id, via, code, strings.TrimSpace(body))
	}
	if err != nil {
		// The outcome may be unknown: the member may have been added after all.
		Poll(10*time.Second, func() error {
			var ms []Member
			if _, err2 := via.GetJSON("/v1/members", &ms); err2 != nil {
				return err2
			}
			for _, m := range ms {
				if m.ID == uint64(id) {
					err = nil
				}
			}
			return nil
		})
	}
	if err != nil {
		c.mu.Lock()
		for i, m := range c.members {
			if m == id {
				c.members = append(c.members[:i], c.members[i+1:]...)
			}
		}
		c.mu.Unlock()
		return nil, err
	}
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return n, err
	}
	return n, nil
}

// Wipe deletes a stopped node's data directory.
func (c *ProxiedCluster) Wipe(n *Node) error {
	if n.Running() {
		return errors.New("wiping a running node")
	}
	return os.RemoveAll(n.DataDir)
}
