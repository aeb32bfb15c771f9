package proxy

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/h1client"
)

// Transport hands out one *http.Transport per connect timeout and TLS
// profile so a config reload that keeps both keeps its warm keep-alive
// connections; the same for the lean HTTP/1.1 clients (Upstream).
type Transport struct {
	mu   sync.Mutex
	by   map[transportKey]*http.Transport
	lean map[leanKey]*h1client.Client
	// conns counts the net/http transports' connections (all of them).
	conns connCount
	// current is the serving runtime's router (SetCurrent), for the
	// health checks and load scrapes, which outlive a runtime.
	current atomic.Pointer[Router]
	// retired are the TLS profiles' transports the serving router
	// stopped using (a CA or client certificate file changed): out of
	// by, their idle connections closed at once and again by CloseIdle
	// or CloseRetired, for the requests that were still running on them.
	retired []*http.Transport
	// retiredLean are the lean clients (one per connect timeout and send
	// bound, so per timeouts.stream_idle) the serving router stopped
	// using: their idle connections were closed at the swap and are
	// again by CloseIdle or CloseRetired, as retired's, which also drops
	// them from lean (unless a reload back serves them again), so reloads
	// between values leave no client behind each.
	retiredLean []leanClient
	// leaving are the lean clients dropped from lean that still have
	// connections open (requests that outlived the drain): the metrics
	// still count them until their last closes, then their counters are
	// added to leanGone and they are forgotten.
	leaving  []*h1client.Client
	leanGone h1client.Stats // Dials, Reuses, PoolFull, Expired only
	// certAsked is the https hosts whose last handshake asked for a
	// client certificate the gateway has none of and which have answered
	// nothing since (clientcert.go).
	certAsked sync.Map
	// relayBuffers counts relayed streams' large read buffers
	// (Options.RelayBuffers) across the forwarders of every runtime.
	relayBuffers atomic.Int64
	// workers counts the call workers (deepcall.go) of every runtime's
	// Forwarder (Options.Workers) and of dials, the lean clients' plain
	// dials, one pool for all of them (at most deepWorkers), closed by
	// Close.
	workers Workers
	dials   *deepCalls
}

// Workers counts and joins the call workers of the forwarders built with
// it (Options.Workers) and of the lean clients' dials; nil for a nil
// Transport.
func (t *Transport) Workers() *Workers {
	if t == nil {
		return nil
	}
	return &t.workers
}

// RelayBuffers is the count a Forwarder keeps of its streams' large read
// buffers (Options.RelayBuffers): one for every runtime, so streams still
// running on a reloaded one are counted; nil for a nil Transport.
func (t *Transport) RelayBuffers() *atomic.Int64 {
	if t == nil {
		return nil
	}
	return &t.relayBuffers
}

// transportKey names a transport: its connect timeout and the
// fingerprint of its TLS profile ("" = Go's defaults).
type transportKey struct {
	connect time.Duration
	tls     string
}

// TLSProfile is the client TLS of a group of https backends: the
// tls.Config (roots, client certificate, server name, min version) and a
// fingerprint of what it was made from; a new fingerprint is a new
// transport, so connections made under an old CA are not reused.
type TLSProfile struct {
	Config      *tls.Config
	Fingerprint string
}

// NewTransportCache builds an empty cache.
func NewTransportCache() *Transport {
	t := &Transport{by: map[transportKey]*http.Transport{}, lean: map[leanKey]*h1client.Client{}}
	t.dials = newDeepCalls(&t.workers)
	return t
}

// For returns the transport for connectTimeout with Go's default TLS,
// creating it on first use.
func (t *Transport) For(connectTimeout time.Duration) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.forLocked(connectTimeout, nil)
}

// keyOf is the key of the transport for connectTimeout and profile p.
func keyOf(connectTimeout time.Duration, p *TLSProfile) transportKey {
	k := transportKey{connect: connectTimeout}
	if p != nil {
		k.tls = p.Fingerprint
	}
	return k
}

func (t *Transport) forLocked(connectTimeout time.Duration, p *TLSProfile) *http.Transport {
	k := keyOf(connectTimeout, p)
	tr := t.by[k]
	if tr == nil {
		tr = newTransport(connectTimeout, &t.conns)
		// With ForceAttemptHTTP2 (NewTransport) a custom config still
		// negotiates h2; net/http adds the ALPN names to its copy. Every
		// transport has one, for noClientCertificate (clientcert.go).
		var base *tls.Config
		if p != nil {
			base = p.Config
		}
		tr.TLSClientConfig = clientTLS(base)
		t.by[k] = tr
	}
	return tr
}

// leanKey names a lean client: its connect timeout and its send bound.
type leanKey struct{ connect, sendIdle time.Duration }

// leanClient is a lean client and its key in lean.
type leanClient struct {
	c   *h1client.Client
	key leanKey
}

// Upstream returns the round tripper requests to backends take: with
// lean, an h1client.Client for plain http:// backends that hands every
// other request (https, so HTTP/2 over TLS) to the transport For
// returns; without, that transport alone. The lean client keeps
// NewTransport's settings: connect timeout, TCP keep-alive, idle pool
// sizes and idle timeout, no compression, no proxy, the dialer
// (upstreamDialer: the receive buffer bound). sendIdle bounds its body
// writes that the backend stops taking (h1client.Options.SendIdleTimeout:
// the gateway's timeouts.stream_idle; 0 none); net/http's has none.
func (t *Transport) Upstream(connectTimeout, sendIdle time.Duration, lean bool) http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upstreamLocked(connectTimeout, sendIdle, lean)
}

func (t *Transport) upstreamLocked(connectTimeout, sendIdle time.Duration, lean bool) http.RoundTripper {
	tr := t.forLocked(connectTimeout, nil)
	if !lean {
		return tr
	}
	k := leanKey{connect: connectTimeout, sendIdle: sendIdle}
	c := t.lean[k]
	if c == nil {
		c = h1client.New(h1client.Options{
			SendIdleTimeout: sendIdle,
			ConnectTimeout:  connectTimeout,
			KeepAlive:       30 * time.Second,
			MaxIdlePerHost:  tr.MaxIdleConnsPerHost,
			MaxIdle:         tr.MaxIdleConns,
			IdleTimeout:     tr.IdleConnTimeout,
			// Bounds, not sizes: h1client's read buffer starts at 4 KiB
			// and grows only for a longer head line, its write buffer
			// starts at 1 KiB and grows with the request.
			ReadBufferSize:  32 << 10,
			WriteBufferSize: 32 << 10,
			Dial:            newUpstreamDialer(connectTimeout, nil, t.dials).DialPlain,
			Fallback:        tr,
		})
		t.lean[k] = c
	} else {
		// A reload back to a retired client's values builds on it: it is
		// no longer retired, so an earlier drain's CloseRetired, which may
		// come before this router's commit, neither closes its
		// connections nor drops it from the cache (which would leave the
		// router serving on a client the metrics no longer count).
		t.retiredLean = slices.DeleteFunc(t.retiredLean, func(rc leanClient) bool { return rc.c == c })
	}
	return c
}

// LeanStats sums the lean clients' pool counters (metrics). MaxIdle is
// the bound of the pool the serving router's requests take (SetCurrent),
// not the sum over every client made: after a reload that changed
// timeouts.stream_idle (a new client) the limit read twice the bound any
// pool keeps. Before a router is set, the largest client's; 0 while the
// serving one takes none (upstream_client: net/http).
func (t *Transport) LeanStats() h1client.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLeavingLocked()
	s := t.leanGone
	r := t.current.Load()
	if r != nil {
		if c, ok := r.plain.(*h1client.Client); ok { // else upstream_client: net/http, no lean pool: 0
			s.MaxIdle = c.Stats().MaxIdle
		}
	}
	for _, c := range t.allLeanLocked() {
		st := c.Stats()
		s.Idle += st.Idle
		s.Dials += st.Dials
		s.Reuses += st.Reuses
		s.PoolFull += st.PoolFull
		s.Expired += st.Expired
		s.Open += st.Open
		if r == nil {
			s.MaxIdle = max(s.MaxIdle, st.MaxIdle)
		}
		s.ReadBufferBytes += st.ReadBufferBytes
	}
	return s
}

// TransportConns is the connections net/http's transports hold open now
// (idle or busy) and have opened: https backends (HTTP/2 over TLS),
// http:// ones with upstream_client: net/http, and the health checks and
// load scrapes that take For's transport.
func (t *Transport) TransportConns() (open int64, opened uint64) {
	return t.conns.open.Load(), t.conns.opened.Load()
}

// CloseIdle closes idle connections of every transport (shutdown), the
// retired ones' included (CloseRetired).
func (t *Transport) CloseIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.by {
		tr.CloseIdleConnections()
	}
	for _, c := range t.allLeanLocked() {
		c.CloseIdleConnections()
	}
	t.closeRetiredLocked()
}

// Close closes every idle connection, as CloseIdle, and stops the lean
// clients' idle reapers (shutdown): a connection handed back later is
// closed, not kept. The dials' workers stop (Workers joins them); a dial
// after Close runs on its caller's stack.
func (t *Transport) Close() {
	t.dials.close()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.allLeanLocked() {
		c.Close()
	}
	for _, tr := range t.by {
		tr.CloseIdleConnections()
	}
	t.closeRetiredLocked()
}

// CloseIdleTo closes the idle connections to the backend at rawURL once
// it has left every pool and drained: the lean clients' to its host:port
// only, so the warm connections to the backends that stay are kept (all
// of them were closed at every removal); net/http's transports, which
// cannot close one host's, all of theirs (https backends, health checks
// and load scrapes). An unparsable rawURL closes every idle connection.
func (t *Transport) CloseIdleTo(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" {
		t.CloseIdle()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.by {
		tr.CloseIdleConnections()
	}
	for _, c := range t.allLeanLocked() {
		c.CloseIdleTo(u)
	}
	t.closeRetiredLocked()
}

// CloseRetired closes the idle connections of the transports a router
// change retired (SetCurrent), which the requests that were running on
// them have handed back since, and forgets them: call it once those
// requests had their time (the drain's shutdown_grace). It reports
// whether there were any.
func (t *Transport) CloseRetired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeRetiredLocked()
}

func (t *Transport) closeRetiredLocked() bool {
	for _, tr := range t.retired {
		tr.CloseIdleConnections()
	}
	var live http.RoundTripper
	if r := t.current.Load(); r != nil {
		live = r.plain
	}
	for _, rc := range t.retiredLean {
		if rc.c == live { // a reload back to its timeouts took it again
			continue
		}
		rc.c.CloseOwnIdle()
		// Dropped, so a reload back to its timeouts makes a new client
		// and a client per value ever configured is not kept for the
		// life of the process. A request that outlived the drain still
		// holds it (and hands its connection back, closed by its reaper
		// at IdleTimeout); leaving counts it until then.
		if t.lean[rc.key] == rc.c {
			delete(t.lean, rc.key)
			t.leaving = append(t.leaving, rc.c)
		}
	}
	t.pruneLeavingLocked()
	had := len(t.retired) > 0 || len(t.retiredLean) > 0
	t.retired, t.retiredLean = nil, nil
	return had
}

// allLeanLocked is every lean client the metrics count: the cache's and
// the leaving ones.
func (t *Transport) allLeanLocked() []*h1client.Client {
	all := make([]*h1client.Client, 0, len(t.lean)+len(t.leaving))
	for _, c := range t.lean {
		all = append(all, c)
	}
	return append(all, t.leaving...)
}

// pruneLeavingLocked forgets the leaving clients with no connection
// open, their counters kept in leanGone so the metrics never go down.
func (t *Transport) pruneLeavingLocked() {
	t.leaving = slices.DeleteFunc(t.leaving, func(c *h1client.Client) bool {
		st := c.Stats()
		if st.Open > 0 {
			return false
		}
		t.leanGone.Dials += st.Dials
		t.leanGone.Reuses += st.Reuses
		t.leanGone.PoolFull += st.PoolFull
		t.leanGone.Expired += st.Expired
		return true
	})
}

// retire drops from the cache the TLS profiles' transports old used and
// next does not (a profile's fingerprint changes with its files), closing
// their idle connections now, where they were kept until their idle
// timeout (90 s), still made under the old CA or client certificate, and
// the transports themselves for the life of the process. Requests still
// running on them finish; CloseRetired closes what they hand back.
// Transports without a profile are left alone: For hands them out to
// other callers too.
func (t *Transport) retire(old, next *Router) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var any bool
	// A lean client the next router does not take (timeouts.stream_idle
	// or timeouts.connect changed): its idle connections are closed now,
	// where they were kept until their idle timeout (90 s) on a pool no
	// new request takes; the requests running on it hand theirs back to
	// it, closed by CloseRetired. Its own connections only: its fallback
	// is the net/http transport for the connect timeout with Go's TLS,
	// which next takes too (https backends, health checks, load scrapes).
	if c, ok := old.plain.(*h1client.Client); ok && old.plain != next.plain {
		c.CloseOwnIdle()
		t.retiredLean = append(t.retiredLean, leanClient{c: c, key: old.leanKey})
		any = true
	}
	for _, k := range old.keys {
		if k.tls == "" || slices.Contains(next.keys, k) {
			continue
		}
		if tr := t.by[k]; tr != nil {
			delete(t.by, k)
			tr.CloseIdleConnections()
			t.retired = append(t.retired, tr)
			any = true
		}
	}
	return any
}
