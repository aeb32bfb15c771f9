package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// deadlineRecorder is a response writer that records the write deadlines
// set on it.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

func (d *deadlineRecorder) FlushError() error { return nil }

// An answer dated at arrival takes its send deadline from the arrival's
// clock reading: its write reads no clock of its own (which would give a
// deadline an hour later than this arrival's, and a second move). A later
// write moves the deadline from the clock, as before.
func TestDatedAnswerSendDeadlineStartsAtArrival(t *testing.T) {
	rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	var sw sendWriter
	sw.init(rec, 10*time.Second, nil)
	arrival := time.Now().Add(-time.Hour)
	vals := answerValues{date: []string{"Mon, 02 Jan 2006 15:04:05 GMT"}, send: &sw, start: arrival}
	vals.stampDate(sw.Header())
	sw.Write([]byte("a"))
	if len(rec.deadlines) != 1 || !rec.deadlines[0].Equal(arrival.Add(10*time.Second)) {
		t.Fatalf("deadlines %v, want one, the arrival's %v plus 10s", rec.deadlines, arrival)
	}
	sw.Write([]byte("b"))
	if len(rec.deadlines) != 2 || !rec.deadlines[1].After(time.Now().Add(9*time.Second)) {
		t.Fatalf("deadlines %v, want a second from the clock at the later write", rec.deadlines)
	}
}

// An injected clock never sets a socket deadline: with the gateway's clock
// years in the past, hits and refusals dated by it are still sent (a send
// deadline from it would have passed before the write). With the wall
// clock (Options.Now nil, as Run has it) they are sent too.
func TestInjectedClockSetsNoSendDeadline(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for name, now := range map[string]func() time.Time{"past": func() time.Time { return past }, "wall": nil} {
		url := startFramedGateway(t, now, be.URL)
		for i, want := range []string{"MISS", "HIT", "HIT"} {
			resp := post(t, url, dateHitBody)
			if readAll(t, resp) == "" || resp.Header.Get("X-Cache") != want {
				t.Fatalf("%s clock, request %d: %d X-Cache %q, want %s", name, i, resp.StatusCode, resp.Header.Get("X-Cache"), want)
			}
		}
		resp := post(t, url, `{"model":"nope","messages":[]}`)
		if readAll(t, resp) == "" || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s clock, unknown model: %d", name, resp.StatusCode)
		}
	}
}

// slowRecorder is a deadlineRecorder whose every write takes over
// rearmAfter, as writes to a client slower than the kernel's queue do.
type slowRecorder struct {
	deadlineRecorder
	writes []int
}

func (s *slowRecorder) Write(p []byte) (int, error) {
	for start := time.Now(); time.Since(start) <= rearmAfter; {
	}
	s.writes = append(s.writes, len(p))
	return s.ResponseRecorder.Write(p)
}

// A write larger than maxArmedWrite (a 1 MiB cache hit written at once)
// leaves in pieces, each under a send deadline of its own: send_timeout
// bounds a stall, not the time the whole answer takes to reach a slow
// client.
func TestLargeWriteArmedPerPiece(t *testing.T) {
	rec := &slowRecorder{deadlineRecorder: deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}}
	var sw sendWriter
	sw.init(rec, 10*time.Second, nil)
	body := make([]byte, 1<<20+1)
	if n, err := sw.Write(body); n != len(body) || err != nil {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if len(rec.deadlines) != 5 || rec.Body.Len() != len(body) || sw.sent != int64(len(body)) {
		t.Fatalf("%d deadlines over writes %v (%d bytes, %d counted), want 5 pieces of at most %d, each with its deadline",
			len(rec.deadlines), rec.writes, rec.Body.Len(), sw.sent, maxArmedWrite)
	}
	for i := 1; i < len(rec.deadlines); i++ {
		if !rec.deadlines[i].After(rec.deadlines[i-1]) {
			t.Fatalf("deadlines %v: each piece's later than the last", rec.deadlines)
		}
	}
}
