package h1client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// rawServer is a loopback TCP server whose connections a test answers
// byte by byte (malformed answers, closes at chosen points). serve runs
// per connection with its index (0, 1, ...) and a reader over it.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
	// open is the connections not yet closed by their serve, closed by the
	// cleanup of a test that failed (closeOpen).
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

func newRawServer(t testing.TB, serve func(i int, c net.Conn, r *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, open: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			i := int(s.conns.Add(1) - 1)
			s.mu.Lock()
			s.open[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.forget(c)
				serve(i, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if t.Failed() {
			s.closeOpen()
		}
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

// closeOpen closes the connections whose serve is still running, which
// then ends at its next read or write. A test that failed (a hang guard
// that fired, say) ends at once: before, its cleanup waited for each
// serve to finish on its own, and TestInterimAnswerDoesNotStopTheWrite,
// its one-minute guard fired, ran 290 s on while its server read the
// megabytes of body still in the socket's buffers at a starved
// process's pace (flakes12). A test that passed waits as before: its
// serves' own end is part of what it checks.
func (s *rawServer) closeOpen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.open {
		c.Close()
	}
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

// readRequest reads one request (head and Content-Length body) off r.
func readRequest(r *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(r)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

func post(t *testing.T, ctx context.Context, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func get(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// readAll reads a response's body and closes it.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

// newClient is a client whose idle connections are closed at cleanup.
func newClient(t *testing.T, opt Options) *Client {
	c := New(opt)
	t.Cleanup(c.CloseIdleConnections)
	return c
}
