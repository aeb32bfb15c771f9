package admission

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// pipeNet serves an http.Handler over in-memory connections (net.Pipe), so a
// test can run real HTTP inside a testing/synctest bubble: a goroutine
// waiting on a pipe is durably blocked, one waiting on a socket is not, and
// the bubble's clock only moves while every goroutine is durably blocked.
type pipeNet struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	srv       *http.Server
	done      chan struct{}
}

// servePipe serves h until Close.
func servePipe(h http.Handler) *pipeNet {
	p := &pipeNet{conns: make(chan net.Conn), closed: make(chan struct{}), done: make(chan struct{}),
		srv: &http.Server{Handler: h}}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(p)
	}()
	return p
}

// Accept implements net.Listener.
func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (p *pipeNet) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Addr implements net.Listener.
func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

// Dial connects a client to the server, for http.Transport.DialContext.
func (p *pipeNet) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.closed:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, errors.New("pipe listener closed")
}

// Shutdown closes the listener and every connection and waits for Serve.
func (p *pipeNet) Shutdown() {
	_ = p.srv.Close()
	<-p.done
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
