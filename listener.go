package main

import (
	"errors"
	"net"
	"sync"
)

var errListenerStopped = errors.New("listener stopped")

// stoppableListener is the peer port's listener. Stopping it makes Accept
// return errListenerStopped, which the peer server takes as a clean end rather
// than a failure, and is safe to do more than once.
type stoppableListener struct {
	net.Listener
	once  sync.Once
	stopc chan struct{}
}

func newStoppableListener(addr string) (*stoppableListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &stoppableListener{Listener: ln, stopc: make(chan struct{})}, nil
}

func (l *stoppableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		select {
		case <-l.stopc:
			return nil, errListenerStopped
		default:
		}
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// Peers hold long-lived streams; keepalives notice a vanished peer.
		tc.SetKeepAlive(true)
	}
	return c, nil
}

func (l *stoppableListener) stop() {
	l.once.Do(func() {
		close(l.stopc)
		l.Listener.Close()
	})
}
