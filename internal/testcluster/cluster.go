package testcluster

// Cluster: nodes started with --id/--cluster/--port/--data-dir, talking to
// each other directly (New) or through a fault-injecting proxy (NewProxied):
// then every member listens for peers on a real port (--listen-peer-url)
// while --cluster advertises the address of its proxy, so faults can be set
// per direction between members.

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"raftexample/internal/faultproxy"
)

// Cluster is a set of nodes sharing one --cluster list. Nodes[i] has id i+1.
//
// Nodes and URLs grow in the test's goroutine only (NewJoiner, AddMember);
// other goroutines use Members, IDs and Node, which are safe for concurrent
// use.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	Extra []string            // extra flags given to every node (e.g. --snap-count 50)
	Net   *faultproxy.Network // the proxies' network (NewProxied); nil for a direct cluster

	scheme    string                 // of the peer URLs: "http", or "https" (StartCustom)
	nodeFlags func(n *Node) []string // flags of each node's own (StartCustom), or nil
	prepare   []func(n *Node) error  // run on every node made from now on, before it starts (UsePowerFS)

	mu      sync.Mutex
	URLs    []string       // advertised peer URLs; URLs[i] belongs to id i+1 (the proxy's address with Net)
	Nodes   []*Node        // every node ever created, member or not
	listen  map[int]string // id -> --listen-peer-url (with Net)
	removed map[int]bool   // ids removed through RemoveMember or whose AddMember failed
}

// New prepares a cluster of size nodes (not started yet) with extra flags
// for every node.
func New(t testing.TB, size int, extra ...string) *Cluster {
	t.Helper()
	return newCluster(t, size, nil, extra)
}

// NewProxied prepares size members (not started) whose peer traffic goes
// through proxies of a network whose random choices come from seed.
func NewProxied(t testing.TB, size int, seed int64, extra ...string) *Cluster {
	t.Helper()
	network := faultproxy.NewNetwork(seed)
	t.Cleanup(network.Close)
	return newCluster(t, size, network, extra)
}

func newCluster(t testing.TB, size int, network *faultproxy.Network, extra []string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Build(t), dir: t.TempDir(), Extra: extra, Net: network, scheme: "http",
		listen: map[int]string{}, removed: map[int]bool{}}
	for range size {
		c.addNode()
	}
	for _, n := range c.Nodes {
		n.Args = c.args(n, false)
	}
	return c
}

// StartCluster prepares and starts a cluster of size nodes with extra flags
// for every node, and returns once a write through node 1 succeeded (it
// stores ReadyKey) and all nodes agree on the leader.
func StartCluster(t testing.TB, size int, extra ...string) *Cluster {
	t.Helper()
	c := New(t, size, extra...)
	c.Start()
	c.Node(1).MustPut(ReadyKey, ReadyKey)
	WaitLeader(t, Timeout, c.Nodes...)
	return c
}

// ReadyKey is the key StartCluster writes (with itself as the value).
const ReadyKey = "testcluster-ready"

// addNode creates the next node with fresh ports (and its proxy), not
// started and without a command line yet.
func (c *Cluster) addNode() *Node {
	c.t.Helper()
	c.mu.Lock()
	id := len(c.Nodes) + 1
	c.mu.Unlock()
	n := NewNode(c.t, c.bin,
		filepath.Join(c.dir, fmt.Sprintf("node%d", id)),
		filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)), 0, nil)
	n.ID = id
	c.mu.Lock()
	c.URLs = append(c.URLs, "")
	c.mu.Unlock()
	c.givePorts(n) // before other goroutines can see n
	c.mu.Lock()
	prepare := c.prepare
	c.mu.Unlock()
	for _, f := range prepare {
		if err := f(n); err != nil {
			c.t.Fatalf("preparing %v: %v", n, err)
		}
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n
}

// givePorts gives n fresh ports: its HTTP port and its peer URL, and with
// Net a real peer port behind a new proxy.
func (c *Cluster) givePorts(n *Node) {
	c.t.Helper()
	var peerURL, listen string
	if c.Net == nil {
		ports := FreePorts(c.t, 2)
		peerURL, n.HTTPPort = fmt.Sprintf("%s://127.0.0.1:%d", c.scheme, ports[0]), ports[1]
	} else {
		// Real peer port, HTTP port, proxy port: all from FreePorts, which
		// never hands out a port twice, so a proxy cannot take a port meant
		// for a member.
		ports := FreePorts(c.t, 3)
		real := fmt.Sprintf("127.0.0.1:%d", ports[0])
		p, err := c.Net.Listen(uint64(n.ID), fmt.Sprintf("127.0.0.1:%d", ports[2]), real)
		if err != nil {
			c.t.Fatal(err)
		}
		peerURL, listen, n.HTTPPort = "http://"+p.Addr(), "http://"+real, ports[1]
	}
	n.PeerURL = peerURL
	c.mu.Lock()
	c.URLs[n.ID-1] = peerURL
	if listen != "" {
		c.listen[n.ID] = listen
	}
	c.mu.Unlock()
}

// args is n's command line: the cluster's flags, --join for a node joining
// a running cluster, the Extra flags and the node's own (StartCustom).
func (c *Cluster) args(n *Node, join bool) []string {
	c.mu.Lock()
	urls := strings.Join(c.URLs, ",")
	listen := c.listen[n.ID]
	c.mu.Unlock()
	a := []string{
		"--id", strconv.Itoa(n.ID),
		"--cluster", urls,
		"--port", strconv.Itoa(n.HTTPPort),
		"--data-dir", n.DataDir,
	}
	if listen != "" {
		a = append(a, "--listen-peer-url", listen)
	}
	if join {
		a = append(a, "--join")
	}
	a = append(a, c.Extra...)
	if c.nodeFlags != nil {
		a = append(a, c.nodeFlags(n)...)
	}
	return a
}

// Start starts every member and waits until all serve HTTP. If a port
// turned out to be taken, it wipes the nodes, picks new ports and tries
// again.
func (c *Cluster) Start() {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		members := c.Members()
		for _, n := range members {
			n.Start()
		}
		var err error
		for _, n := range members {
			if err = n.WaitServing(30 * time.Second); err != nil {
				break
			}
		}
		if err == nil {
			return
		}
		if !errors.Is(err, ErrPortInUse) || attempt == 3 {
			c.t.Fatalf("starting cluster: %v", err)
		}
		c.t.Logf("starting cluster: %v; retrying with new ports", err)
		for _, n := range members {
			if n.Running() {
				n.Kill()
			}
			n.Wipe() // the directory may be a mount point
		}
		for _, n := range members {
			c.givePorts(n)
		}
		for _, n := range members {
			n.Args = c.args(n, false)
		}
	}
}

// StartCustom is Start for a cluster whose peer URLs use scheme ("http" or
// "https") and whose nodes get flags of their own: nodeFlags(n) is appended
// to n's command line after the cluster's Extra flags (nil for none). Nodes
// made later (NewJoiner) and new ports picked by a retry keep scheme and
// flags. A cluster behind the fault proxy speaks http only.
func (c *Cluster) StartCustom(scheme string, nodeFlags func(n *Node) []string) {
	c.t.Helper()
	if c.Net != nil && scheme != "http" {
		c.t.Fatalf("a cluster behind the fault proxy cannot use %s peer URLs", scheme)
	}
	c.scheme, c.nodeFlags = scheme, nodeFlags
	c.mu.Lock()
	for i, u := range c.URLs {
		if _, rest, ok := strings.Cut(u, "://"); ok {
			c.URLs[i] = scheme + "://" + rest
		}
	}
	c.mu.Unlock()
	for _, n := range c.Nodes {
		n.PeerURL = c.URLs[n.ID-1]
		n.Args = c.args(n, false)
	}
	c.Start()
}

// Node returns the node with raft id id (a member or a former one), or nil.
func (c *Cluster) Node(id int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id < 1 || id > len(c.Nodes) {
		return nil
	}
	return c.Nodes[id-1]
}

// Members returns the nodes of the current members, by id: every node but
// those removed with RemoveMember (or whose AddMember failed).
func (c *Cluster) Members() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if !c.removed[n.ID] {
			out = append(out, n)
		}
	}
	return out
}

// IDs returns the ids of the current members.
func (c *Cluster) IDs() []uint64 {
	var ids []uint64
	for _, n := range c.Members() {
		ids = append(ids, uint64(n.ID))
	}
	return ids
}

// Except returns the current members other than the given nodes.
func (c *Cluster) Except(not ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Members() {
		skip := false
		for _, x := range not {
			skip = skip || n == x
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// NewJoiner prepares (but neither announces nor starts) the next node: it
// gets the next id, fresh ports, and a command line with --join and the
// --cluster list of all URLs including its own. extra flags come after the
// cluster's Extra flags. Call AddMember on an existing node before Start, or
// use Cluster.AddMember.
func (c *Cluster) NewJoiner(extra ...string) *Node {
	c.t.Helper()
	n := c.addNode()
	n.Args = append(c.args(n, true), extra...)
	return n
}

// AddMember prepares the next node (NewJoiner), asks through via to add it,
// and starts it. It returns the new node once it serves HTTP. If the
// request fails, the node does not count as a member.
func (c *Cluster) AddMember(via *Node) (*Node, error) {
	n := c.NewJoiner()
	id := n.ID
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
		c.forget(id)
		return nil, err
	}
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return n, err
	}
	return n, nil
}

// RemoveMember asks through via to remove member id, and forgets it as a
// member once that succeeded. A 404 (not a member) counts as success: an
// earlier attempt whose answer was lost went through.
func (c *Cluster) RemoveMember(via *Node, id int) error {
	code, body, err := via.RemoveMember(strconv.Itoa(id))
	if err != nil {
		return err
	}
	if code != 204 && code != 404 {
		return fmt.Errorf("DELETE /%d on %v: status %d: %s", id, via, code, strings.TrimSpace(body))
	}
	c.forget(id)
	return nil
}

func (c *Cluster) forget(id int) {
	c.mu.Lock()
	c.removed[id] = true
	c.mu.Unlock()
}

// Isolate cuts every link to and from member id (a cluster behind the fault
// proxy only).
func (c *Cluster) Isolate(id int) { c.Net.Isolate(uint64(id), c.IDs()) }

// FindLeader returns the running member that says it is the leader and that
// every other running member it could ask names as their leader too,
// polling until there is one or timeout passes. It does not fail the test,
// so it can be used from any goroutine.
func (c *Cluster) FindLeader(timeout time.Duration) (*Node, error) {
	var leader *Node
	err := Poll(timeout, func() error {
		leader = nil
		members := c.Members()
		var candidates []*Node
		views := map[*Node]Status{}
		for _, n := range members {
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
			return fmt.Errorf("%d nodes say they lead (%s)", len(candidates), describeViews(members, views))
		}
		cand := candidates[0]
		for n, st := range views {
			if st.Leader != views[cand].ID || st.Term != views[cand].Term {
				return fmt.Errorf("%v does not follow %v yet (%s)", n, cand, describeViews(members, views))
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

func describeViews(nodes []*Node, views map[*Node]Status) string {
	var parts []string
	for _, n := range nodes {
		if st, ok := views[n]; ok {
			parts = append(parts, fmt.Sprintf("%v: %s, leader %d, term %d", n, st.State, st.Leader, st.Term))
		} else {
			parts = append(parts, fmt.Sprintf("%v: no answer", n))
		}
	}
	return strings.Join(parts, "; ")
}

// ---------------------------------------------------------------------------
// Starting and restarting sets of nodes

// StartAll starts every node and waits until each serves HTTP.
func StartAll(t testing.TB, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		n.Start()
	}
	for _, n := range nodes {
		if err := n.WaitServing(Timeout); err != nil {
			t.Fatal(err)
		}
	}
}

// RestartAll stops every node with SIGTERM (each must exit 0), then starts
// them all again and waits until each serves HTTP: with all of them down at
// once, every node rebuilds its state from its own data directory.
func RestartAll(t testing.TB, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		if code := n.Stop(); code != 0 {
			t.Fatalf("%v exited with code %d on SIGTERM, want 0; its last lines:\n%s", n, code, Tail(n.RunLog(), 30))
		}
	}
	StartAll(t, nodes...)
}
