package proxy

import (
	"net"
	"net/http"
	"time"
)

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
		// WriteBufferSize and ReadBufferSize stay net/http's 4 KiB: each
		// HTTP/1.1 connection holds both for its life (a held stream, an
		// idle keep-alive connection), and 32 KiB ones cost a held stream
		// to an https HTTP/1.1 backend ~87 KiB of heap more; a large body
		// is read past the buffer (bufio hands a read of a larger slice
		// straight to the connection), so throughput does not need them
		// (BenchmarkHTTPS1LargeAnswer).
	}
}
