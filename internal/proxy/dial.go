package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// upstreamDialer makes every connection the gateway opens to a backend,
// the lean client's and net/http's alike: a bounded connect time, TCP
// keep-alive, and the receive buffer bound (UpstreamReceiveBuffer) on
// every connection that carries HTTP/1.1. There a relay that stops
// reading (its client stalled) leaves the backend's answer in the
// kernel's receive queue, which autotuning would grow up to
// net.ipv4.tcp_rmem's maximum (32 MiB on Linux 6.18). An HTTP/2
// connection keeps autotuning: its read loop drains the socket into the
// stream windows (MaxH2StreamWindow each, in the heap) whether or not
// anyone reads the streams, so its queue stays near empty, and a fixed
// buffer would cap all the streams multiplexed on it to one buffer per
// round trip together.
type upstreamDialer struct {
	bounded   net.Dialer // plain TCP, which carries HTTP/1.1: SO_RCVBUF before connect
	autotuned net.Dialer // TLS, whose protocol ALPN picks after the connect
	// count, when not nil, counts the connections (net/http's
	// transports; the lean client counts its own).
	count *connCount
	// deep, when not nil, runs the plain dials, which the lean client
	// makes on the request's goroutine, on a stack of their own
	// (deepcall.go): net's dial is ~2 KiB of frames under the chain's.
	// The Transport cache's pool, one for all its lean clients, closed
	// with it. nil for net/http's transports, which dial on goroutines of
	// their own: a worker would save them nothing and cost each new
	// connection a hand-off.
	deep *deepCalls
}

func newUpstreamDialer(connectTimeout time.Duration, count *connCount, deep *deepCalls) *upstreamDialer {
	d := &upstreamDialer{count: count, deep: deep}
	d.autotuned = net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	d.bounded = d.autotuned
	d.bounded.Control = receiveBufferBefore(UpstreamReceiveBuffer)
	return d
}

// DialPlain dials a plain TCP connection to addr (http://), its receive
// buffer bounded.
func (d *upstreamDialer) DialPlain(ctx context.Context, network, addr string) (net.Conn, error) {
	var nc net.Conn
	var err error
	if d.deep == nil {
		nc, err = d.bounded.DialContext(ctx, network, addr)
	} else {
		d.deep.run(newDeepCall(func() { nc, err = d.bounded.DialContext(ctx, network, addr) }))
	}
	if err != nil {
		return nil, err
	}
	return d.counted(nc), nil
}

func (d *upstreamDialer) counted(nc net.Conn) net.Conn {
	if d.count == nil {
		return nc
	}
	return d.count.track(nc)
}

// dialTLS is tr's DialTLSContext: it dials addr, runs the TLS handshake
// as net/http's own would (tr.TLSClientConfig, the server name from addr
// when the config has none, tr.TLSHandshakeTimeout), and bounds the
// receive buffer when ALPN did not pick h2: net/http offers no hook
// between its handshake and the connection's first read. tr's
// TLSClientConfig is read at each dial, after net/http has added the
// ALPN names to it.
func (d *upstreamDialer) dialTLS(tr *http.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		raw, err := d.autotuned.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := tr.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		tc := tls.Client(d.counted(raw), cfg)
		if err := handshake(ctx, tc, tr.TLSHandshakeTimeout); err != nil {
			tc.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol != "h2" {
			boundReceiveBuffer(raw, UpstreamReceiveBuffer)
		}
		return tc, nil
	}
}

// errTLSHandshakeTimeout is a handshake that outlived TLSHandshakeTimeout,
// as net/http's own reports it: a timeout, not the caller's context
// ending (classifyTransportError: an upstream failure, as before).
var errTLSHandshakeTimeout error = handshakeTimeoutError{}

type handshakeTimeoutError struct{}

func (handshakeTimeoutError) Error() string   { return "TLS handshake timeout" }
func (handshakeTimeoutError) Timeout() bool   { return true }
func (handshakeTimeoutError) Temporary() bool { return true }

// handshake runs tc's handshake within ctx and, when limit > 0, within
// limit.
func handshake(ctx context.Context, tc *tls.Conn, limit time.Duration) error {
	if limit <= 0 {
		return tc.HandshakeContext(ctx)
	}
	hctx, cancel := context.WithTimeoutCause(ctx, limit, errTLSHandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(hctx), errTLSHandshakeTimeout) {
		return errTLSHandshakeTimeout
	}
	return err
}
