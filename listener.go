package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter caps a server's open connections, so that clients can never
// use up the descriptors the WAL and snapshots need. At the cap, room is
// made by closing the connection that has been idle the longest (a
// keep-alive connection between requests, or one that has not sent a
// request yet); if every connection is in the middle of a request, the new
// one is closed at once. netutil.LimitListener would instead stop accepting,
// and idle connections holding every slot would lock everyone else out.
//
// Give the server's ConnState to track, and serve on the limiter itself (it
// must be the outermost listener, so that both see the same connections).
type connLimiter struct {
	net.Listener
	max  int
	port string // the metric label: client or peer

	mu   sync.Mutex
	open map[net.Conn]connUse
}

type connUse struct {
	idle  bool // between requests, or before the first
	since time.Time
}

func newConnLimiter(ln net.Listener, max int, port string) *connLimiter {
	return &connLimiter{Listener: ln, max: max, port: port, open: make(map[net.Conn]connUse)}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim net.Conn
		if len(l.open) >= l.max {
			if victim = l.longestIdleLocked(); victim != nil {
				delete(l.open, victim)
			}
		}
		full := len(l.open) >= l.max
		if !full {
			l.open[c] = connUse{idle: true, since: time.Now()}
		}
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
			metricConnsShed.WithLabelValues(l.port, "idle-closed").Inc()
		}
		if full {
			c.Close()
			metricConnsShed.WithLabelValues(l.port, "refused").Inc()
			continue
		}
		return c, nil
	}
}

func (l *connLimiter) longestIdleLocked() net.Conn {
	var victim net.Conn
	var oldest time.Time
	for c, u := range l.open {
		if u.idle && (victim == nil || u.since.Before(oldest)) {
			victim, oldest = c, u.since
		}
	}
	return victim
}

// track is the http.Server's ConnState hook.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.open[c]; !ok {
		return // closed to make room already
	}
	switch state {
	case http.StateActive:
		l.open[c] = connUse{since: time.Now()}
	case http.StateIdle:
		l.open[c] = connUse{idle: true, since: time.Now()}
	case http.StateClosed, http.StateHijacked:
		delete(l.open, c)
	}
}
