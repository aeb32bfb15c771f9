package proxy

import (
	"net/http"
	"time"
)

// MaxH2StreamWindow is the most of one HTTP/2 stream's answer a backend
// may send ahead of the relay's reads (the stream's flow-control window),
// which net/http holds in memory until read.
const MaxH2StreamWindow = 1 << 20

// UpstreamReceiveBuffer is the SO_RCVBUF of every upstream connection
// that carries HTTP/1.1 (Linux; upstreamDialer): plain http:// ones, the
// lean client's or net/http's, and https:// ones whose backend did not
// pick h2. The kernel keeps twice it, 1 MiB, for what a backend sends
// ahead of the relay's reads, the same as an HTTP/2 stream's window,
// where autotuning let a stream whose client stopped reading queue up to
// net.ipv4.tcp_rmem's maximum (32 MiB on Linux 6.18) after a fast start.
// About 0.6-0.9 MiB of it is window (the rest is the kernel's per-packet
// overhead), so a connection moves at most that per round trip: over
// 500 MB/s within 1 ms (a backend in the same zone or host), 60 MB/s at
// 10 ms, 6 MB/s at 100 ms. HTTP/2 connections keep autotuning
// (upstreamDialer). A host with net.core.rmem_max below it gets less
// (twice rmem_max).
const UpstreamReceiveBuffer = MaxH2StreamWindow / 2

// NewTransport builds the upstream transport: keep-alive pools sized for
// many concurrent streams, a bounded connect time, HTTP/2 where the backend
// offers it over TLS, and no transparent compression (bytes are relayed
// exactly as the backend sent them).
func NewTransport(connectTimeout time.Duration) *http.Transport {
	return newTransport(connectTimeout, nil)
}

// newTransport is NewTransport dialling through an upstreamDialer that
// counts its connections in count (nil: not counted).
func newTransport(connectTimeout time.Duration, count *connCount) *http.Transport {
	dialer := newUpstreamDialer(connectTimeout, count, nil)
	tr := &http.Transport{
		Proxy:                 nil, // never route backend traffic through an env proxy
		DialContext:           dialer.DialPlain,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		// An HTTP/2 backend may send as much of a stream as its window
		// allows before the relay reads it, and net/http buffers all of
		// it in the process; its default window of 4 MiB a stream made
		// each stream held by a client that reads nothing cost 4 MiB of
		// heap past the read-ahead's budget (100 such streams: 418 MB
		// after GC). 1 MiB is Go's HTTP/2 server's own default and about
		// what an HTTP/1.1 connection's kernel receive queue holds in the
		// same case; a backend far away still gets 1 MiB per round trip
		// per stream (10 MB/s at 100 ms). The connection's window stays
		// net/http's (1 GiB): smaller, streams held by slow clients would
		// stall the others multiplexed on the same connection.
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: MaxH2StreamWindow},
		// WriteBufferSize and ReadBufferSize stay net/http's 4 KiB: each
		// HTTP/1.1 connection holds both for its life (a held stream, an
		// idle keep-alive connection), and 32 KiB ones cost a held stream
		// to an https HTTP/1.1 backend ~87 KiB of heap more; a large body
		// is read past the buffer (bufio hands a read of a larger slice
		// straight to the connection), so throughput does not need them
		// (BenchmarkHTTPS1LargeAnswer).
	}
	// https: the handshake is dialTLS's, so the receive buffer is
	// bounded once ALPN has picked HTTP/1.1 (upstreamDialer).
	tr.DialTLSContext = dialer.dialTLS(tr)
	return tr
}
