package jobs

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// stallingProxy stands between the Store's in-process connections and the
// embedded server, forwarding both ways until stall: then it reads no
// more, as a nats-server looping under a stream's lock reads no more of
// its clients (the corrupt KV_sluice_jobs block of docs/RELIABILITY.md,
// kvwedge). Over a pipe, the client's next write then blocks holding the
// NATS connection's lock, and every call on the connection waits on it.
type stallingProxy struct {
	up       nats.InProcessConnProvider
	stalled  chan struct{} // closed by stall
	released chan struct{} // closed by release: the pipes close, the pumps end
	stallOne sync.Once
	pumps    sync.WaitGroup
}

func newStallingProxy(up nats.InProcessConnProvider) *stallingProxy {
	return &stallingProxy{up: up, stalled: make(chan struct{}), released: make(chan struct{})}
}

func (p *stallingProxy) InProcessConn() (net.Conn, error) {
	select {
	case <-p.released:
		return nil, errors.New("stalling proxy: closed")
	default:
	}
	server, err := p.up.InProcessConn()
	if err != nil {
		return nil, err
	}
	client, mine := net.Pipe()
	p.pumps.Add(2)
	go p.pump(server, mine)
	go p.pump(mine, server)
	return client, nil
}

// pump copies src to dst until stall (then waits for release) or an error.
func (p *stallingProxy) pump(dst, src net.Conn) {
	defer p.pumps.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-p.stalled:
			<-p.released
			return
		default:
		}
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *stallingProxy) stall() { p.stallOne.Do(func() { close(p.stalled) }) }

// release closes every pipe and waits for the pumps to end.
func (p *stallingProxy) release() {
	p.stall()
	close(p.released)
	p.pumps.Wait()
}

// A NATS that stops reading (a wedged nats-server) kept Store.Close
// waiting: the shutdown of a gateway on the damaged KV block never ended
// on SIGTERM. CloseWithin gives up when its context ends and leaves the
// close to finish in the background once NATS lets go.
func TestCloseWithinGivesUpOnAWedgedNATS(t *testing.T) {
	srv := startServer(t, t.TempDir())
	proxy := newStallingProxy(srv)
	o := testOptions(srv.ClientURL())
	o.WebhookSecret = []byte("whsec-test") // the heartbeat and the sweep lease, as a gateway has
	o.inProcess = proxy
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Job(t.Context(), "acme", "job_0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get through the proxy before the stall: %v, want ErrNotFound", err)
	}
	proxy.stall()

	bound, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown's bound has passed
	closed := make(chan error, 1)
	go func() { closed <- s.CloseWithin(bound) }()
	// A failure detector, not a synchronisation: the bound has passed, so
	// CloseWithin returns at once; before it waited on NATS for good.
	select {
	case err := <-closed:
		if !errors.Is(err, ErrCloseAbandoned) || !errors.Is(err, context.Canceled) {
			t.Fatalf("CloseWithin on a wedged NATS: %v, want ErrCloseAbandoned and the bound's cause", err)
		}
	case <-time.After(20 * time.Second):
		proxy.release()
		<-closed
		t.Fatal("CloseWithin still waiting on a wedged NATS 20 s after its bound ended")
	}
	select {
	case <-s.closeDone:
		t.Fatal("the close finished while NATS read nothing: the stall did not wedge the connection")
	default:
	}

	proxy.release() // NATS lets go: the close running in the background ends
	if err := s.Close(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Logf("the background close ended with %v", err)
	}
}
