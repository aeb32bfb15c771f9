package proxy

import (
	"net"
	"sync"
	"sync/atomic"
)

// connCount counts the connections a net/http Transport dials and still
// holds open, idle or busy: net/http exposes neither its idle pool nor its
// connections, and an HTTP/2 backend's requests share one connection, so
// the open connections are what there is to see. Counted per connection
// (at dial and close), never per request.
type connCount struct {
	open   atomic.Int64
	opened atomic.Uint64
}

// track counts nc until its first Close.
func (c *connCount) track(nc net.Conn) net.Conn {
	c.opened.Add(1)
	c.open.Add(1)
	return &countedConn{Conn: nc, c: c}
}

// countedConn takes itself off the count on its first Close.
type countedConn struct {
	net.Conn
	c    *connCount
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() { cc.c.open.Add(-1) })
	return cc.Conn.Close()
}
