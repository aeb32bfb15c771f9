package netguard

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The lingering close after a failed discard counts what the discard
// waited: its whole (lingering_time) from when the answer went out, its
// first wait (lingering_timeout) from when the client last sent; never
// less than a read of what is already in (lingerFloor).
func TestLingerBoundsCountTheDiscardsWait(t *testing.T) {
	lim := Linger{Time: 30 * time.Second, Timeout: 5 * time.Second, Bytes: 1}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name              string
		now               time.Time
		w                 waited
		wantEnd, wantNext time.Time
	}{
		{"no discard", at(0), waited{}, at(30 * time.Second), at(5 * time.Second)},
		// A stalled client: quiet since the answer, the discard's 1 s gap ran out.
		{"stalled", at(time.Second), waited{since: at(0), quiet: at(0)}, at(30 * time.Second), at(5 * time.Second)},
		// A client still sending (the byte bound ran out): a whole timeout.
		{"sending", at(2 * time.Second), waited{since: at(0), quiet: at(2 * time.Second)}, at(30 * time.Second), at(7 * time.Second)},
		// Quiet longer than lingering_timeout already: one read of what is in.
		{"quiet past the timeout", at(6 * time.Second), waited{since: at(0), quiet: at(0)}, at(30 * time.Second), at(6*time.Second + lingerFloor)},
		// The discard took longer than lingering_time: the total is the longer of the two.
		{"past the total", at(40 * time.Second), waited{since: at(0), quiet: at(40 * time.Second)}, at(40*time.Second + lingerFloor), at(40*time.Second + lingerFloor)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end, next := lim.bounds(tc.now, tc.w)
			if !end.Equal(tc.wantEnd) || !next.Equal(tc.wantNext) {
				t.Fatalf("bounds = end %v, first %v; want %v, %v", end.Sub(t0), next.Sub(t0), tc.wantEnd.Sub(t0), tc.wantNext.Sub(t0))
			}
		})
	}
}

// A client that stalls mid-body after a refusal holds its connection for
// lingering_timeout from when it last sent, not for the discard's gap and
// then lingering_timeout again; and it still reads its whole answer and
// the server's half-close, no reset. Ordering, not a tight clock: the old
// close could not end before the gap plus the timeout had passed since
// the client's last bytes (both deadlines are set after them); the new
// one ends at the longer of the two (the timeout here, 3 s), so a
// scheduler's delay of up to 2 s on a loaded machine cannot fail it.
func TestStalledUploadsLingerCountsTheDiscardsWait(t *testing.T) {
	const gap, timeout = 2 * time.Second, 3 * time.Second
	m, addr, _, _ := serveRefusalsLinger(t, Discard{Gap: gap, Total: time.Hour},
		Linger{Time: time.Hour, Timeout: timeout, Bytes: 64 << 20})
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	br := bufio.NewReader(c)
	sent := time.Now()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", refusedBodies[0].head)
	readAnswer(t, br, http.StatusUnauthorized)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %v, want the server's close", err)
	}
	waitFor(t, "the lingering close's end", func() bool { return lingers(m, LingerTimeout) == 1 })
	if held := time.Since(sent); held >= gap+timeout {
		t.Fatalf("the connection was held %v after the client's last bytes: the discard's gap (%v) and lingering_timeout (%v) both waited", held, gap, timeout)
	}
}

// The discard and the lingering close after it share one byte budget
// (Linger.Bytes): a client whose rest runs past the discard's bound and
// then sends less than the lingering close's bound, but more than what the
// discard left of it, is closed at the budget, not after reading the
// discard's bytes and the whole bound again (before: it lingered on,
// reading all of it, until lingering_timeout).
func TestDiscardAndLingerShareOneByteBudget(t *testing.T) {
	const discard, budget = 64 << 10, 100 << 10
	m, addr, _, _ := serveRefusalsLinger(t, Discard{Bytes: discard, Gap: time.Hour, Total: time.Hour},
		Linger{Time: time.Hour, Timeout: time.Second, Bytes: budget})
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	br := bufio.NewReader(c)
	// One chunk far larger than both bounds, 4 KiB of it with the head.
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s", 1<<20, strings.Repeat("a", 4096))
	readAnswer(t, br, http.StatusUnauthorized)
	// The discard's bound and 60 KiB more: under the lingering close's
	// bound alone, over what the discard left of the budget (~36 KiB) by
	// more than net/http's 4 KiB read buffer, which the close never sees.
	if _, err := io.WriteString(c, strings.Repeat("a", discard-4096+1+60<<10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lingering close's end", func() bool {
		return lingers(m, LingerBytes)+lingers(m, LingerTimeout)+lingers(m, LingerError)+lingers(m, LingerEOF) == 1
	})
	if n := lingers(m, LingerBytes); n != 1 {
		t.Fatalf("the lingering close ended at bytes %v times, timeout %v: it did not count the discard's %d bytes",
			n, lingers(m, LingerTimeout), discard)
	}
}
