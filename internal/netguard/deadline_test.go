package netguard

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// countingConn counts the read and write deadlines that reach the socket.
type countingConn struct {
	net.Conn
	sets, writeSets atomic.Int32
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.writeSets.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

type countingListener struct {
	net.Listener
	conns chan *countingConn
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	l.conns <- cc
	return cc, nil
}

// guardedPair is a netguard connection accepted on loopback, its socket's
// counter, and the client's end.
func guardedPair(t *testing.T) (*conn, *countingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := countingListener{Listener: ln, conns: make(chan *countingConn, 1)}
	l := NewListener(cl, ConnLimits{Total: 10}, NewConnMetrics(prometheus.NewRegistry()))
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	gc := c.(*conn)
	// As while a handler runs: a timeout here is not the header's (which
	// would answer 408 and move the write deadline).
	gc.phase.Store(phaseActive)
	return gc, <-cl.conns, client
}

func TestReadDeadlineReachesTheSocketOnlyForARead(t *testing.T) {
	c, sock, client := guardedPair(t)
	// Set and replaced with no read in between: the socket never sees them.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.SetReadDeadline(time.Time{})
	if n := sock.sets.Load(); n != 0 {
		t.Fatalf("socket read deadline set %d times before any read, want 0", n)
	}
	client.Write([]byte("ab"))
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if n := sock.sets.Load(); n != 0 {
		t.Fatalf("a read under no deadline, as the socket's, set it %d times, want 0", n)
	}
	// A deadline in place when a read starts is handed over, once.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	if _, err := c.Read(buf); err != nil { // the second byte is already here
		t.Fatal(err)
	}
	if n := sock.sets.Load(); n != 1 {
		t.Fatalf("socket read deadline set %d times, want 1", n)
	}
}

func TestReadDeadlinePassedFailsTheNextRead(t *testing.T) {
	c, _, client := guardedPair(t)
	client.Write([]byte("x"))
	c.SetReadDeadline(time.Unix(1, 0))
	// As on a socket: a read that starts after the deadline fails, even
	// with data waiting.
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a passed deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	// Lifting it lets the data through.
	c.SetReadDeadline(time.Time{})
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after the deadline was lifted: %v", err)
	}
}

func TestReadDeadlineCutsAReadAlreadyWaiting(t *testing.T) {
	c, _, _ := guardedPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1)) // the client sends nothing
		errc <- err
	}()
	// Wait until the read is under way (net/http's background read, which
	// it ends by setting a deadline in the past).
	waitReading(c)
	c.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting read: %v, want os.ErrDeadlineExceeded", err)
	}
}

// waitReading waits until a read of c is under way.
func waitReading(c *conn) {
	for {
		c.rd.mu.Lock()
		reading := c.rd.reading
		c.rd.mu.Unlock()
		if reading > 0 {
			return
		}
		runtime.Gosched()
	}
}

// As net/http does around a request: the idle wait's read under the idle
// deadline, the background read under none, ended by a deadline in the
// past. Lifting the deadline for the background read leaves the socket's
// (later than none is any deadline) in place: two socket moves, not three.
func TestLaterReadDeadlineLeavesTheSocketsEarlierOne(t *testing.T) {
	c, sock, client := guardedPair(t)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	client.Write([]byte("x"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1)) // the client sends nothing more
		errc <- err
	}()
	waitReading(c)
	c.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting read: %v, want os.ErrDeadlineExceeded", err)
	}
	if n := sock.sets.Load(); n != 2 {
		t.Fatalf("socket read deadline set %d times, want 2 (the hour, the past)", n)
	}
	// The passed deadline does not stand for the next one: lifted, the
	// next read waits for data.
	c.SetReadDeadline(time.Time{})
	client.Write([]byte("y"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after the passed deadline was lifted: %v", err)
	}
}

// A read cut by the socket's earlier deadline while the one set is later
// (none here) goes on under it, and gets the data that comes after.
func TestReadMeetingAnEarlierSocketDeadlineGoesOn(t *testing.T) {
	c, sock, client := guardedPair(t)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	client.Write([]byte("x"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{}) // the socket keeps its 100 ms
	type result struct {
		b   byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		buf := make([]byte, 1)
		_, err := c.Read(buf)
		res <- result{buf[0], err}
	}()
	// The read is cut when the socket's deadline passes and goes on under
	// none: the socket's deadline is moved a second time. A read that
	// returned instead fails here.
	for sock.sets.Load() < 2 {
		select {
		case r := <-res:
			t.Fatalf("the read returned %q, %v before any data; want it to go on", r.b, r.err)
		default:
			runtime.Gosched()
		}
	}
	client.Write([]byte("y"))
	if r := <-res; r.err != nil || r.b != 'y' {
		t.Fatalf("read %q, %v; want y", r.b, r.err)
	}
}

// As net/http does on one P: its background read's goroutine runs only
// after the handler returned and net/http ended the read with a deadline
// in the past. That read fails at once as on the socket, a timeout, and
// the socket keeps its deadline; the next, later one (the idle wait's)
// leaves it in place too: one socket move for the whole sequence, not 3.
func TestPassedReadDeadlineFailsAReadWithoutMovingTheSocket(t *testing.T) {
	c, sock, client := guardedPair(t)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	client.Write([]byte("xy"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	c.SetReadDeadline(time.Unix(1, 0))
	_, err := c.Read(make([]byte, 1)) // "y" is waiting: fails all the same
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read under a passed deadline: %v, want a net.Error timeout, os.ErrDeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Time{})
	c.SetReadDeadline(time.Now().Add(time.Hour + time.Second))
	if b := make([]byte, 1); func() error { _, err := c.Read(b); return err }() != nil || b[0] != 'y' {
		t.Fatalf("read after the deadline moved on: %q", b)
	}
	if n := sock.sets.Load(); n != 1 {
		t.Fatalf("socket read deadline set %d times, want 1 (the first hour)", n)
	}
}

func TestSetDeadlineAppliesBothAtOnce(t *testing.T) {
	c, _, client := guardedPair(t)
	client.Write([]byte("x"))
	c.SetDeadline(time.Unix(1, 0))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want os.ErrDeadlineExceeded", err)
	}
	if _, err := c.Write([]byte("y")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want os.ErrDeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after lifting: %v", err)
	}
}

func TestLaterWriteDeadlineLeavesTheSocketsEarlierOne(t *testing.T) {
	c, sock, client := guardedPair(t)
	// As on a keep-alive connection: the send timeout set before each
	// answer, lifted by net/http after it.
	for i := range 3 {
		if err := c.SetWriteDeadline(time.Now().Add(time.Hour + time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	if n := sock.writeSets.Load(); n != 1 {
		t.Fatalf("socket write deadline set %d times over 3 answers, want 1 (the first)", n)
	}
	if _, err := io.ReadFull(client, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestWriteMeetingAnEarlierSocketDeadlineGoesOn(t *testing.T) {
	c, sock, client := guardedPair(t)
	c.SetWriteDeadline(time.Unix(1, 0)) // passed: it reaches the socket
	// Later: the socket keeps the passed one, which the write meets.
	c.SetWriteDeadline(time.Now().Add(time.Hour))
	if n := sock.writeSets.Load(); n != 1 {
		t.Fatalf("socket write deadline set %d times, want 1", n)
	}
	if n, err := c.Write([]byte("ok")); n != 2 || err != nil {
		t.Fatalf("write under a deadline an hour away: %d, %v; want 2, nil", n, err)
	}
	// Lifted: the same, under no deadline.
	c.SetWriteDeadline(time.Unix(1, 0))
	c.SetWriteDeadline(time.Time{})
	if n, err := c.Write([]byte("!")); n != 1 || err != nil {
		t.Fatalf("write under no deadline: %d, %v; want 1, nil", n, err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ok!" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

func TestEarlierWriteDeadlineCutsAWrite(t *testing.T) {
	c, _, _ := guardedPair(t)
	c.SetWriteDeadline(time.Now().Add(time.Hour))
	errc := make(chan error, 1)
	go func() {
		// The client reads nothing: this write fills the socket buffers
		// and waits, unless the deadline below came first.
		_, err := c.Write(make([]byte, 64<<20))
		errc <- err
	}()
	// Earlier than the socket's: it reaches the socket at once and cuts
	// the write whether it is waiting already or starts after.
	c.SetWriteDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want os.ErrDeadlineExceeded", err)
	}
}

// Deadlines are held as Unix nanoseconds (nanos): one past the year 2262
// does not wrap into the past, one at the Unix epoch or before 1678 has
// passed, and neither is taken for "none".
func TestDeadlinesAtTheEdgesOfTheirRange(t *testing.T) {
	c, _, client := guardedPair(t)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := c.SetReadDeadline(far); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(far); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("read under a deadline in the year 3000: %d bytes, %v", n, err)
	}
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatalf("write under a deadline in the year 3000: %v", err)
	}
	for _, past := range []time.Time{time.Unix(0, 0), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := c.SetReadDeadline(past); err != nil {
			t.Fatal(err)
		}
		// Nothing is sent: a read that took the deadline for none would
		// wait; the bound only ends a failed run.
		done := make(chan error, 1)
		go func() { _, err := c.Read(buf); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read under a deadline at %v: %v, want a timeout", past, err)
			}
		case <-time.After(10 * time.Second):
			c.raw.Close()
			t.Fatalf("read under a deadline at %v still waits", past)
		}
	}
}
