package proxy

import (
	"net/http"
	"sync"
	"time"
)

// Transport hands out one *http.Transport per connect timeout so a config
// reload that keeps the timeout keeps its warm keep-alive connections.
type Transport struct {
	mu sync.Mutex
	by map[time.Duration]*http.Transport
}

// NewTransportCache builds an empty cache.
func NewTransportCache() *Transport { return &Transport{by: map[time.Duration]*http.Transport{}} }

// For returns the transport for connectTimeout, creating it on first use.
func (t *Transport) For(connectTimeout time.Duration) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.by[connectTimeout]
	if tr == nil {
		tr = NewTransport(connectTimeout)
		t.by[connectTimeout] = tr
	}
	return tr
}

// CloseIdle closes idle connections of every transport (shutdown).
func (t *Transport) CloseIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.by {
		tr.CloseIdleConnections()
	}
}
