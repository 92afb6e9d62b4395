// Package faultproxy is a fault-injecting TCP proxy for raft peer traffic on
// loopback. Every member's peer port sits behind one proxy, and every member
// reaches the others through their proxies. rafthttp names the sending member
// in the X-Server-From header of each request, so the proxy knows, for every
// connection, which member opened it and to whom: bytes the opener sends flow
// from it to the target, bytes coming back (a stream's messages, a response)
// flow the other way. Faults are set per direction between two members:
// cutting, delaying, or dropping connections.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Link is traffic from one member to another.
type Link struct{ From, To uint64 }

// Fault describes what happens to a link's traffic.
type Fault struct {
	Cut    bool          // nothing gets through
	Delay  time.Duration // every chunk waits this long ...
	Jitter time.Duration // ... plus or minus up to this
	// DropRate is the chance, per chunk forwarded, that the connection is
	// broken instead. TCP itself never loses a message; a raft message is lost
	// when the connection carrying it breaks, which this emulates.
	DropRate float64
}

// Network holds the faults in force and the proxies that apply them.
type Network struct {
	mu      sync.Mutex
	faults  map[Link]Fault
	conns   map[*conn]struct{}
	proxies []*Proxy
	rng     *rand.Rand
}

// NewNetwork returns a network without faults. seed drives the random
// choices (jitter, drops), so a run can be replayed.
func NewNetwork(seed int64) *Network {
	return &Network{faults: make(map[Link]Fault), conns: make(map[*conn]struct{}), rng: rand.New(rand.NewSource(seed))}
}

// Set puts fault f on the traffic from member from to member to. Connections
// between the two are broken, so that everything after obeys f.
func (n *Network) Set(from, to uint64, f Fault) {
	n.mu.Lock()
	if f == (Fault{}) {
		delete(n.faults, Link{from, to})
	} else {
		n.faults[Link{from, to}] = f
	}
	n.mu.Unlock()
	n.breakBetween(from, to)
}

// Isolate cuts every link to and from member id.
func (n *Network) Isolate(id uint64, members []uint64) {
	for _, m := range members {
		if m != id {
			n.Set(id, m, Fault{Cut: true})
			n.Set(m, id, Fault{Cut: true})
		}
	}
}

// Heal removes every fault.
func (n *Network) Heal() {
	n.mu.Lock()
	links := make([]Link, 0, len(n.faults))
	for l := range n.faults {
		links = append(links, l)
	}
	n.faults = make(map[Link]Fault)
	n.mu.Unlock()
	for _, l := range links {
		n.breakBetween(l.From, l.To)
	}
}

func (n *Network) fault(l Link) Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.faults[l]
}

func (n *Network) chance() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64()
}

func (n *Network) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Duration(n.rng.Int63n(int64(2*d))) - d
}

func (n *Network) breakBetween(a, b uint64) {
	n.mu.Lock()
	var victims []*conn
	for c := range n.conns {
		if from := c.from.Load(); (from == a && c.to == b) || (from == b && c.to == a) {
			victims = append(victims, c)
		}
	}
	n.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
}

// Close stops every proxy and breaks every connection.
func (n *Network) Close() {
	n.mu.Lock()
	proxies := n.proxies
	var all []*conn
	for c := range n.conns {
		all = append(all, c)
	}
	n.mu.Unlock()
	for _, p := range proxies {
		p.ln.Close()
	}
	for _, c := range all {
		c.close()
	}
}

// Proxy accepts connections for one member and forwards them to its peer port.
type Proxy struct {
	net    *Network
	to     uint64
	target string
	ln     net.Listener
}

// Listen starts a proxy on listenAddr for member to, whose peer port is target.
func (n *Network) Listen(to uint64, listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{net: n, to: to, target: target, ln: ln}
	n.mu.Lock()
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	go p.serve()
	return p, nil
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

// conn is one proxied connection, opened by member from to member to.
type conn struct {
	from           atomic.Uint64 // 0 until a request names its sender
	to             uint64
	client, server net.Conn
	once           sync.Once
}

// link is the direction of traffic: forward is from the opener to the target.
func (c *conn) link(forward bool) Link {
	if forward {
		return Link{c.from.Load(), c.to}
	}
	return Link{c.to, c.from.Load()}
}

func (c *conn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
	})
}

func (p *Proxy) handle(client net.Conn) {
	// Peek at the first request's head to learn who is calling; the bytes
	// stay in the reader and are forwarded as they came.
	br := bufio.NewReaderSize(client, 64*1024)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, from, err := peekHead(br)
	client.SetReadDeadline(time.Time{})
	if err != nil {
		client.Close()
		return
	}
	if p.net.fault(Link{from, p.to}).Cut {
		client.Close() // the caller cannot get a byte through
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &conn{to: p.to, client: client, server: server}
	c.from.Store(from)
	p.net.mu.Lock()
	p.net.conns[c] = struct{}{}
	p.net.mu.Unlock()
	defer func() {
		p.net.mu.Lock()
		delete(p.net.conns, c)
		p.net.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() {
		if p.learnSender(c, br) {
			p.pump(c, true, br, server)
		}
		done <- struct{}{}
	}()
	go func() {
		p.pump(c, false, server, client)
		done <- struct{}{}
	}()
	<-done
	c.close()
	<-done
}

// learnSender forwards the requests of a connection that has not named its
// sender yet, until one does. rafthttp's prober shares a connection pool with
// the pipeline and sends no X-Server-From, so a connection it opened may
// carry raft messages later: they must not slip past the faults. It reports
// whether forwarding may go on.
func (p *Proxy) learnSender(c *conn, br *bufio.Reader) bool {
	for c.from.Load() == 0 {
		n, from, err := peekHead(br)
		if err != nil {
			return false
		}
		if from != 0 {
			c.from.Store(from)
			if p.net.fault(c.link(true)).Cut {
				c.close()
				return false
			}
			return true
		}
		// A request without a sender (a probe): a bare head, no body.
		if _, err := io.CopyN(c.server, br, int64(n)); err != nil {
			return false
		}
	}
	return true
}

// peekHead returns the length of the request head at the front of br and the
// member id in its X-Server-From header (0 if none), consuming nothing.
func peekHead(br *bufio.Reader) (int, uint64, error) {
	want := 1
	for {
		// Peek blocks until want bytes are buffered; asking for one more than
		// we have waits for the next arrival without overshooting the head.
		if _, err := br.Peek(want); err != nil {
			return 0, 0, err
		}
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:i+4])))
			if err != nil {
				return 0, 0, err
			}
			from, _ := strconv.ParseUint(req.Header.Get("X-Server-From"), 16, 64)
			return i + 4, from, nil
		}
		if len(b) == br.Size() {
			return 0, 0, errors.New("request head too large")
		}
		want = len(b) + 1
	}
}

// pump forwards one direction of c under the link's faults. Chunks keep their
// order; a delayed chunk holds back the ones after it.
func (p *Proxy) pump(c *conn, forward bool, src io.Reader, dst net.Conn) {
	type chunk struct {
		data []byte
		at   time.Time
	}
	queue := make(chan chunk, 256)
	go func() {
		defer close(queue)
		var last time.Time
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				f := p.net.fault(c.link(forward))
				if f.Cut {
					continue // black-holed: read and thrown away
				}
				if f.DropRate > 0 && p.net.chance() < f.DropRate {
					c.close()
					return
				}
				at := time.Now().Add(f.Delay + p.net.jitter(f.Jitter))
				if at.Before(last) {
					at = last
				}
				last = at
				queue <- chunk{buf[:n], at}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range queue {
		if d := time.Until(ch.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close()
			return
		}
	}
	// The source ended: pass the half-close on if the connection allows it.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
