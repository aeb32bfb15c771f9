package netguard

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func discards(m *ConnMetrics, end string) float64 {
	return testutil.ToFloat64(m.discards.WithLabelValues(end))
}

// Every read of a refused body's rest after its answer is seen while it
// runs (sluice_connections_discarding) and counted by how it ended
// (sluice_connection_discards_total): the rest arrived and the connection
// was kept, the byte bound ran out, the client stalled past read_timeout,
// or it went away. Before, only the lingering close after a failed
// discard was counted: a discard holding a handler's goroutine for up to
// total_timeout showed in no metric.
func TestDiscardsAreCountedByTheirEnd(t *testing.T) {
	m, addr, _ := serveRefusals(t, Discard{Bytes: 8 << 10, Gap: 200 * time.Millisecond, Total: time.Hour})
	send := func(head, rest string) (*bufio.Reader, func()) {
		c := dialFrom(t, "127.0.0.1", addr)
		c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", head)
		readAnswer(t, br, http.StatusUnauthorized)
		io.WriteString(c, rest)
		return br, func() { c.Close() }
	}
	// The rest arrives: kept.
	_, done := send("Content-Length: 2000\r\n\r\n"+strings.Repeat("a", 1000), strings.Repeat("a", 1000))
	waitFor(t, "a kept discard", func() bool { return discards(m, DiscardKept) == 1 })
	done()
	// A chunked rest past the 8 KiB bound: bytes.
	br, done := send("Transfer-Encoding: chunked\r\n\r\n10000\r\n"+strings.Repeat("a", 1000), strings.Repeat("a", 16<<10))
	waitFor(t, "a discard past its bytes", func() bool { return discards(m, DiscardBytes) == 1 })
	br.ReadByte() // to the server's close
	done()
	// A stalled client: timeout after the 200 ms gap.
	_, done = send("Content-Length: 2000\r\n\r\n"+strings.Repeat("a", 1000), "")
	waitFor(t, "a stalled discard", func() bool { return discards(m, DiscardTimeout) == 1 })
	done()
	if g := testutil.ToFloat64(m.discarding); g != 0 {
		t.Errorf("sluice_connections_discarding %v after every discard ended", g)
	}
	if n := discards(m, DiscardError) + discards(m, DiscardShutdown); n != 0 {
		t.Errorf("%v discards ended in error or shutdown", n)
	}
}

// A discard under way shows in the gauge until the client goes away
// (error), a server with a gap that cannot run out.
func TestDiscardUnderWayIsSeen(t *testing.T) {
	m, addr, _ := serveRefusals(t, Discard{Gap: time.Hour, Total: time.Hour})
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n%s", strings.Repeat("a", 1000))
	readAnswer(t, bufio.NewReader(c), http.StatusUnauthorized)
	waitFor(t, "the discard under way", func() bool { return testutil.ToFloat64(m.discarding) == 1 })
	c.Close()
	waitFor(t, "the discard's end", func() bool { return discards(m, DiscardError) == 1 })
	if g := testutil.ToFloat64(m.discarding); g != 0 {
		t.Errorf("sluice_connections_discarding %v after the client went away", g)
	}
}
