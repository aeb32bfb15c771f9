package jobs

import (
	"bytes"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// relay is a loopback TCP proxy between NATS clients and a server, whose
// server-to-client direction the test can hold: what the server sends
// meanwhile is kept, in order, and passed on at release. So a test can
// have the server answer a client's request while the client hears
// nothing, and deliver that answer after the client stopped waiting,
// without depending on timing. It also counts the client's messages on
// one subject (a pull request: what a client sends once it is done with
// its previous one).
type relay struct {
	ln      net.Listener
	target  string
	pattern []byte // counted in the client's bytes

	mu      sync.Mutex
	holding bool
	closed  bool
	links   []*link
	sent    int           // occurrences of pattern seen
	changed chan struct{} // closed and replaced when sent grows
	wg      sync.WaitGroup
}

// link is one client connection through the relay.
type link struct {
	client, server net.Conn
	held           []byte // server bytes held for the client
}

// startRelay listens on a loopback port and relays each connection to the
// NATS server at serverURL, until the test ends.
func startRelay(t *testing.T, serverURL, pattern string) *relay {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: u.Host, pattern: []byte(pattern), changed: make(chan struct{})}
	r.wg.Go(r.accept)
	t.Cleanup(r.close)
	return r
}

// url is the address clients connect to instead of the server's.
func (r *relay) url() string { return "nats://" + r.ln.Addr().String() }

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			l.close()
			return
		}
		r.links = append(r.links, l)
		r.mu.Unlock()
		r.wg.Go(func() { r.toServer(l) })
		r.wg.Go(func() { r.toClient(l) })
	}
}

// toServer passes the client's bytes on, counting the pattern.
func (r *relay) toServer(l *link) {
	defer l.close()
	buf := make([]byte, 32<<10)
	var tail []byte // the last len(pattern)-1 bytes: a match may straddle reads
	for {
		n, err := l.client.Read(buf)
		if n > 0 {
			data := append(tail, buf[:n]...)
			if found := bytes.Count(data, r.pattern); found > 0 {
				r.mu.Lock()
				r.sent += found
				close(r.changed)
				r.changed = make(chan struct{})
				r.mu.Unlock()
			}
			tail = append([]byte(nil), data[max(0, len(data)-len(r.pattern)+1):]...)
			if _, err := l.server.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// toClient passes the server's bytes on, or keeps them while holding.
func (r *relay) toClient(l *link) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := l.server.Read(buf)
		if n > 0 {
			r.mu.Lock()
			var werr error
			if r.holding {
				l.held = append(l.held, buf[:n]...)
			} else {
				_, werr = l.client.Write(buf[:n])
			}
			r.mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold keeps what servers send from now on.
func (r *relay) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holding = true
}

// release passes on what was held, in order, and what comes after.
func (r *relay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holding = false
	for _, l := range r.links {
		_, _ = l.client.Write(l.held) // an error: the link is closing anyway
		l.held = nil
	}
}

// count is how many times clients have sent the pattern so far.
func (r *relay) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// waitCount waits until clients have sent the pattern more than n times.
func (r *relay) waitCount(t *testing.T, n int) {
	t.Helper()
	hang := time.After(30 * time.Second) // a bound on a hang, not a synchronisation
	for {
		r.mu.Lock()
		sent, changed := r.sent, r.changed
		r.mu.Unlock()
		if sent > n {
			return
		}
		select {
		case <-changed:
		case <-hang:
			t.Fatalf("the client sent %q %d times, want more than %d", r.pattern, sent, n)
		}
	}
}

func (r *relay) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for _, l := range r.links {
		l.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// close ends both pumps of the link; called by each, and by the relay.
func (l *link) close() {
	_ = l.client.Close()
	_ = l.server.Close()
}
