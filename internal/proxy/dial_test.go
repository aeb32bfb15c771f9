package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// The https handshake is dialTLS's, not net/http's: a backend that takes
// the connection and never answers the handshake still fails it at
// TLSHandshakeTimeout as a timeout, an upstream failure, not as the
// request's context ending (which would read as the client's deadline).
func TestTLSHandshakeTimeoutIsATimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() { // ends with ln
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}()
	tr := NewTransport(5 * time.Second)
	tr.TLSHandshakeTimeout = 100 * time.Millisecond // the backend never answers: any bound is reached
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handshake never answered: %v, want a timeout that is not the context's", err)
	}
	if got := classifyTransportError(err, nil); !errors.Is(got, ErrUpstream) {
		t.Fatalf("classified %v, want ErrUpstream as net/http's own handshake timeout was", got)
	}
}
