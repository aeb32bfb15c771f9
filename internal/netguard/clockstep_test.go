package netguard

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deadlines are held as wall-clock nanoseconds, and so is the listener's
// start, below which a deadline has passed (readDeadline.past). When the
// wall clock is stepped back past the start (NTP correcting a clock that
// ran ahead at boot, a VM restored from a snapshot), a deadline set from
// now lies before the start without having passed: a read under it must
// go on, not fail at once, or every request's head, body and idle wait
// times out at once until the clock catches up. The step is simulated by
// a listener started when the wall clock read an hour later than now.
func TestReadAfterTheWallClockSteppedBack(t *testing.T) {
	c, _, client := guardedPair(t)
	c.rd.past = nanos(time.Now().Add(time.Hour))
	if _, err := client.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read under a deadline 10 s ahead, after a clock step back: %d bytes, %v", n, err)
	}
	// net/http's end of its background read (aLongTimeAgo) still fails
	// the next read at once, "y" waiting or not.
	c.SetReadDeadline(time.Unix(1, 0))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read under net/http's passed deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	// As does one that has passed by the clock, though after the start.
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read under a deadline a second ago: %v, want os.ErrDeadlineExceeded", err)
	}
}

// The same through net/http: after the clock step, a request is answered
// by the handler, not with the header timeout's 408.
func TestServesAfterTheWallClockSteppedBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ConnLimits{Total: 10}, NewConnMetrics(prometheus.NewRegistry()))
	l.start = nanos(time.Now().Add(time.Hour))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, ConnState: l.ConnState,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 { // the second on the kept connection: the idle wait's deadline too
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after a clock step back: status %d, want 200", i+1, resp.StatusCode)
		}
	}
}
