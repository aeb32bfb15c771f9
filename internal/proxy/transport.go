package proxy

import (
	"net"
	"net/http"
	"time"
)

// MaxH2StreamWindow is the most of one HTTP/2 stream's answer a backend
// may send ahead of the relay's reads (the stream's flow-control window),
// which net/http holds in memory until read.
const MaxH2StreamWindow = 1 << 20

// UpstreamReceiveBuffer is the SO_RCVBUF of the lean client's connections
// to http:// backends (Linux): the kernel keeps twice it, 1 MiB, for what
// a backend sends ahead of the relay's reads, the same as an HTTP/2
// stream's window, where autotuning let a stream whose client stopped
// reading queue up to net.ipv4.tcp_rmem's maximum (32 MiB on Linux 6.18)
// after a fast start. About 0.6-0.9 MiB of it is window (the rest is the kernel's
// per-packet overhead), so a connection moves at most that per round
// trip: over 500 MB/s within 1 ms (a backend in the same zone or host),
// 60 MB/s at 10 ms, 6 MB/s at 100 ms (plain http:// to a backend that far
// is rare; https:// backends go through net/http and keep autotuning).
// A host with net.core.rmem_max below it gets less (twice rmem_max).
const UpstreamReceiveBuffer = MaxH2StreamWindow / 2

// NewTransport builds the upstream transport: keep-alive pools sized for
// many concurrent streams, a bounded connect time, HTTP/2 where the backend
// offers it over TLS, and no transparent compression (bytes are relayed
// exactly as the backend sent them).
func NewTransport(connectTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never route backend traffic through an env proxy
		DialContext:           dialer.DialContext,
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
}
