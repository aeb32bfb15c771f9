// Package h1client is a lean HTTP/1.1 client for plain http:// backends.
//
// net/http's Transport hands every request to two goroutines per
// connection (persistConn's writeLoop and readLoop) through channels: per
// request that is a transportRequest, channel sends and two goroutine
// hand-offs, i.e. extra wake-ups and context switches on a busy core.
// This client writes the request and reads the response in the caller's
// goroutine on a pooled keep-alive connection; nothing runs between
// requests. Only a body whose write is still running after 50 ms has the
// response read alongside on a goroutine of the exchange's, so that a
// backend's early answer is not left unread behind a write it blocks
// (bodyWriter). Requests it does not take (https, so HTTP/2 over TLS) go
// to Options.Fallback.
//
// What it does not do, by design: proxies from the environment,
// transparent compression, Expect: 100-continue, protocol upgrades (101),
// response trailers (read and discarded), obs-fold header lines (rejected).
package h1client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Client. Zero values take the defaults noted.
type Options struct {
	ConnectTimeout time.Duration // dial bound; 0: none beyond the request's context
	KeepAlive      time.Duration // TCP keep-alive period; 0: 30 s
	MaxIdlePerHost int           // idle connections kept per host:port; 0: 1024
	MaxIdle        int           // idle connections kept in all; 0: 4096
	IdleTimeout    time.Duration // an idle connection older than this is closed, not reused; 0: 90 s
	// ReadBufferSize bounds a connection's read buffer and one response
	// header or chunk-size line (CRLF included); 0: 32 KiB. The buffer
	// starts at 4 KiB and grows to the bound when a read fills it or a
	// line needs it; a body read leaving at most 4 KiB buffered and a
	// connection going idle give the grown one back (Stats.ReadBufferBytes
	// counts those held).
	ReadBufferSize  int
	WriteBufferSize int // request head and in-memory body up to this leave in one write; 0: 32 KiB
	// SendIdleTimeout bounds a body's write that the backend stops
	// taking: once the write has run for 50 ms (the read alongside it
	// started), the backend must take some of the body within it (a
	// stall is found up to a quarter of it late; on a connection whose
	// write cannot go on past a deadline, TLS, each piece of at most
	// 32 KiB must be taken whole within it), or the exchange fails with
	// ErrSendStalled and its connection is reset
	// (a backend that answered a 2xx head early and then reads nothing,
	// or one that hangs without reading, holds the exchange no longer;
	// nginx's proxy_send_timeout). 0: no bound but the request's context.
	// A body that fits the request's first write is not watched.
	SendIdleTimeout time.Duration
	// Now is the clock for idle ages (tests inject one); nil: time.Now.
	Now func() time.Time
	// AfterFunc starts the idle reaper's timer (tests inject one that
	// they fire themselves); nil: time.AfterFunc.
	AfterFunc func(d time.Duration, f func()) Timer
	// Fallback takes every request that is not plain http:// (https,
	// so HTTP/2 over TLS). nil: such requests fail.
	Fallback http.RoundTripper
	// Dial replaces the TCP dialer (nil: net.Dialer with ConnectTimeout
	// and KeepAlive). The gateway passes its upstream dialer, which
	// bounds each connection's receive buffer (proxy.upstreamDialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Timer is the idle reaper's timer (*time.Timer).
type Timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// reapSlack divides IdleTimeout into the reaper's shortest wait: a sweep
// closes every connection past IdleTimeout and waits for the next one to
// pass it, but at least IdleTimeout/reapSlack (about 5.6 s of 90 s), so
// connections that went idle one after another are closed a few at a
// sweep, not one timer each.
const reapSlack = 16

// Client is an http.RoundTripper for HTTP/1.1 over plain TCP with a
// bounded pool of idle keep-alive connections per host:port.
type Client struct {
	opt  Options
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	bigBufs   sync.Pool // grown read buffers (*[]byte of ReadBufferSize bytes)
	smallBufs sync.Pool // connections' small read buffers (*[]byte of smallReadBuffer bytes), lent while they wait on their tiny one
	// msgBufs holds request messages' buffers (*[]byte): a message (its
	// head and a body up to WriteBufferSize) is written before the
	// response's head is read, so its buffer goes back as RoundTrip
	// returns. Kept by its connection instead, every held stream kept a
	// copy of its prompt for the stream's life, and every idle
	// connection the last one it sent (up to 4x WriteBufferSize each).
	msgBufs sync.Pool

	mu sync.Mutex
	// idle holds per host:port the pooled connections, most recently
	// used last; a list is held by pointer so taking and returning a
	// connection (twice per request) look the host up once and never
	// assign to the map.
	idle  map[string]*[]*conn
	nIdle int
	// reaper closes idle connections once they pass IdleTimeout, so a
	// pool that goes quiet (a backend that gets no traffic, a gateway
	// between bursts) gives its sockets back instead of holding them
	// until its next use; armed while anything is pooled (reaping), made
	// at the first put, stopped by Close (closed: nothing pooled since).
	reaper  Timer
	reaping bool
	closed  bool

	dials    atomic.Uint64 // connections opened
	reuses   atomic.Uint64 // requests sent on a pooled connection
	poolFull atomic.Uint64 // reusable connections closed because the idle pool was full
	expired  atomic.Uint64 // idle connections closed for IdleTimeout
	open     atomic.Int64  // connections dialled and not yet closed (Stats.Open)
	// grownBytes is the grown read buffers open connections hold
	// (Stats.ReadBufferBytes).
	grownBytes atomic.Int64

	// readAlongAfter: a body's write that runs this long has the response
	// read alongside it (bodyWriter); tests shorten it.
	readAlongAfter time.Duration
}

// New builds a Client.
func New(opt Options) *Client {
	if opt.KeepAlive == 0 {
		opt.KeepAlive = 30 * time.Second
	}
	if opt.MaxIdlePerHost <= 0 {
		opt.MaxIdlePerHost = 1024
	}
	if opt.MaxIdle <= 0 {
		opt.MaxIdle = 4096
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 90 * time.Second
	}
	if opt.ReadBufferSize <= 0 {
		opt.ReadBufferSize = 32 << 10
	}
	if opt.WriteBufferSize <= 0 {
		opt.WriteBufferSize = 32 << 10
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AfterFunc == nil {
		opt.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	c := &Client{opt: opt, idle: map[string]*[]*conn{}, dial: opt.Dial, readAlongAfter: readAlongAfter}
	c.bigBufs.New = func() any { b := make([]byte, opt.ReadBufferSize); return &b }
	c.smallBufs.New = func() any { b := make([]byte, smallReadBuffer); return &b }
	c.msgBufs.New = func() any { b := make([]byte, 0, msgBuffer); return &b }
	if c.dial == nil {
		d := &net.Dialer{Timeout: opt.ConnectTimeout, KeepAlive: opt.KeepAlive}
		c.dial = d.DialContext
	}
	return c
}

// Stats are the pool's counters, for metrics.
type Stats struct {
	Idle   int    // idle connections held now
	Dials  uint64 // connections opened
	Reuses uint64 // requests sent on a pooled connection
	// PoolFull counts connections that ended a response cleanly and
	// were closed instead of kept because MaxIdlePerHost or MaxIdle was
	// reached: more connections in flight than the pool keeps, each
	// a dial (and a TCP handshake) later.
	PoolFull uint64
	// MaxIdle is the bound on Idle (Options.MaxIdle).
	MaxIdle int
	// Open is the connections open now, idle or carrying a request: a
	// count that stays above Idle with no request in flight is a leak.
	Open int64
	// Expired counts idle connections closed because they passed
	// IdleTimeout (by the reaper, or when next taken).
	Expired uint64
	// ReadBufferBytes is the bytes of read buffer grown past the 4 KiB
	// each connection starts with (ReadBufferSize each) that connections
	// hold now: during a read of a backend that is ahead, and between
	// reads while more than 4 KiB is still buffered. An idle connection
	// holds none.
	ReadBufferBytes int64
}

// Stats reads the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	n := c.nIdle
	c.mu.Unlock()
	return Stats{Idle: n, Dials: c.dials.Load(), Reuses: c.reuses.Load(), PoolFull: c.poolFull.Load(), MaxIdle: c.opt.MaxIdle,
		Expired: c.expired.Load(), Open: c.open.Load(), ReadBufferBytes: c.grownBytes.Load()}
}

// ErrUnsupported: a request this client cannot send and no Fallback.
var ErrUnsupported = errors.New("h1client: unsupported request")

// RoundTrip sends req and returns the response head; the body streams
// from the connection, which returns to the pool after a clean end of
// body and is closed otherwise. It always closes req.Body.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" {
		if c.opt.Fallback != nil {
			return c.opt.Fallback.RoundTrip(req)
		}
		closeBody(req)
		return nil, fmt.Errorf("%w: scheme of %v", ErrUnsupported, req.URL)
	}
	defer closeBody(req) // read whole into the message, or streamed by exchange
	ctx := req.Context()
	key := hostPort(req.URL)
	cn := c.getIdle(key)
	mp := c.msgBufs.Get().(*[]byte)
	out, err := encode((*mp)[:0], req, c.opt.WriteBufferSize)
	if err != nil {
		c.putMsg(mp, out.msg)
		if cn != nil {
			c.put(cn) // nothing was sent on it
		}
		return nil, err
	}
	if cn == nil {
		if cn, err = c.dialConn(ctx, key); err != nil {
			c.putMsg(mp, out.msg)
			return nil, err
		}
	}
	resp, err := c.exchange(ctx, cn, req, out)
	if err != nil && cn.reused && retryable(ctx, req, err, out) {
		// A pooled connection the server had closed: once more, on a
		// connection of our own.
		if fresh, derr := c.dialConn(ctx, key); derr == nil {
			resp, err = c.exchange(ctx, fresh, req, out)
		}
	}
	c.putMsg(mp, out.msg) // written: exchange returns after the message's write
	return resp, err
}

// msgBuffer is a pooled request message buffer's first size: a usual
// head and a small body.
const msgBuffer = 1024

// putMsg pools a message's buffer (msg, grown from *mp) for the next
// request, unless it grew past 4x WriteBufferSize (a head that large is
// rare; its buffer is dropped rather than kept by the pool).
func (c *Client) putMsg(mp *[]byte, msg []byte) {
	if msg != nil && cap(msg) > 4*c.opt.WriteBufferSize {
		return
	}
	if msg != nil {
		*mp = msg[:0]
	}
	c.msgBufs.Put(mp)
}

// CloseIdleConnections closes every idle connection (and the fallback's).
func (c *Client) CloseIdleConnections() {
	c.CloseOwnIdle()
	if f, ok := c.opt.Fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}

// CloseOwnIdle closes this client's idle connections only, not its
// fallback's: a retired client's (proxy's retire) shares its fallback
// with the client that replaced it, whose warm connections stay.
func (c *Client) CloseOwnIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.nIdle = map[string]*[]*conn{}, 0
	c.mu.Unlock()
	for _, list := range idle {
		for _, cn := range *list {
			cn.close()
		}
	}
}

// CloseIdleTo closes the idle connections to u's host:port only (a
// backend that left its pool), keeping the warm ones to every other.
func (c *Client) CloseIdleTo(u *url.URL) {
	key := hostPort(u)
	c.mu.Lock()
	var list []*conn
	if lp := c.idle[key]; lp != nil {
		list = *lp
	}
	delete(c.idle, key)
	c.nIdle -= len(list)
	c.mu.Unlock()
	for _, cn := range list {
		cn.close()
	}
}

// getIdle takes the most recently used live idle connection to key, if
// any.
func (c *Client) getIdle(key string) *conn {
	for {
		c.mu.Lock()
		lp := c.idle[key]
		if lp == nil || len(*lp) == 0 {
			c.mu.Unlock()
			return nil
		}
		list := *lp
		cn := list[len(list)-1]
		list[len(list)-1] = nil
		*lp = list[:len(list)-1]
		c.nIdle--
		c.mu.Unlock()
		fresh := c.opt.Now().Sub(cn.idleSince) < c.opt.IdleTimeout
		if fresh && cn.alive() {
			cn.reused = true
			c.reuses.Add(1)
			return cn
		}
		if !fresh {
			c.expired.Add(1)
		}
		cn.close()
	}
}

// put returns a connection whose last response ended cleanly, or closes
// it when the pool is full. The oldest idle connection to the same key
// is closed if it outlived IdleTimeout (so expiry needs no timer).
func (c *Client) put(cn *conn) {
	now := c.opt.Now()
	cn.idleSince = now
	var expired *conn
	c.mu.Lock()
	lp := c.idle[cn.key]
	if lp == nil {
		lp = new([]*conn)
		c.idle[cn.key] = lp
	}
	list := *lp
	if len(list) > 0 && now.Sub(list[0].idleSince) >= c.opt.IdleTimeout {
		expired = list[0]
		copy(list, list[1:])
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		c.nIdle--
	}
	full := c.closed || len(list) >= c.opt.MaxIdlePerHost || c.nIdle >= c.opt.MaxIdle
	if !full {
		*lp = append(list, cn)
		c.nIdle++
		if !c.reaping {
			c.armLocked(c.opt.IdleTimeout)
		}
	} else {
		*lp = list
	}
	c.mu.Unlock()
	if expired != nil {
		c.expired.Add(1)
		expired.close()
	}
	if full {
		c.poolFull.Add(1) // only where a connection is thrown away anyway
		cn.close()
	}
}

// armLocked has the reaper sweep after d. c.mu held.
func (c *Client) armLocked(d time.Duration) {
	if c.reaper == nil {
		c.reaper = c.opt.AfterFunc(d, c.reap)
	} else {
		c.reaper.Reset(d)
	}
	c.reaping = true
}

// reap closes the idle connections past IdleTimeout, forgets the hosts
// left with none (a backend discovery replaced keeps no entry), and arms
// itself for the oldest connection left, if any.
func (c *Client) reap() {
	now := c.opt.Now()
	var expired []*conn
	c.mu.Lock()
	c.reaping = false
	var next time.Time
	for key, lp := range c.idle {
		list := *lp
		n := 0 // each list is oldest first: put appends
		for n < len(list) && now.Sub(list[n].idleSince) >= c.opt.IdleTimeout {
			n++
		}
		if n > 0 {
			expired = append(expired, list[:n]...)
			k := copy(list, list[n:])
			clear(list[k:])
			list = list[:k]
			c.nIdle -= n
		}
		if len(list) == 0 {
			delete(c.idle, key)
			continue
		}
		*lp = list
		if due := list[0].idleSince.Add(c.opt.IdleTimeout); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	if !next.IsZero() && !c.closed {
		c.armLocked(max(next.Sub(now), c.opt.IdleTimeout/reapSlack))
	}
	c.mu.Unlock()
	c.expired.Add(uint64(len(expired)))
	for _, cn := range expired {
		cn.close()
	}
}

// Close stops the reaper and closes every idle connection; a connection
// handed back after it is closed, not pooled. Requests may still be sent
// (each on a connection of its own).
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	if c.reaper != nil {
		c.reaper.Stop()
	}
	c.reaping = false
	c.mu.Unlock()
	c.CloseIdleConnections()
}

// dialConn opens a new connection to key.
func (c *Client) dialConn(ctx context.Context, key string) (*conn, error) {
	nc, err := c.dial(ctx, "tcp", key)
	if err != nil {
		return nil, err // a *net.OpError with Op "dial": callers classify it as a connect failure
	}
	c.dials.Add(1)
	c.open.Add(1)
	return newConn(c, nc, key), nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
