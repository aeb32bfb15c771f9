package h1client

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// manualTimer is the reaper's timer, fired by the test.
type manualTimer struct {
	mu    sync.Mutex
	f     func()
	armed bool
	waits []time.Duration // every AfterFunc and Reset
}

func (m *manualTimer) afterFunc(d time.Duration, f func()) Timer {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.f, m.armed, m.waits = f, true, append(m.waits, d)
	return m
}

func (m *manualTimer) Reset(d time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.armed
	m.armed, m.waits = true, append(m.waits, d)
	return was
}

func (m *manualTimer) Stop() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.armed
	m.armed = false
	return was
}

// fire runs the timer's function as the runtime would, if armed.
func (m *manualTimer) fire(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	f, armed := m.f, m.armed
	m.armed = false
	m.mu.Unlock()
	if !armed {
		t.Fatal("the reaper's timer is not armed")
	}
	f()
}

func (m *manualTimer) state() (bool, []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.armed, append([]time.Duration(nil), m.waits...)
}

// closeWatch is a backend that reports each of its connections the client
// closes.
func closeWatch(t *testing.T) (*httptest.Server, chan net.Conn) {
	closed := make(chan net.Conn, 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- c
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, closed
}

// A pool that goes quiet gives its connections back at IdleTimeout, not
// at its next use: the reaper closes each connection once it has been idle
// that long, arms itself for the next one, and forgets a host left with
// none; Close stops it.
func TestIdleConnectionsReapedWhenThePoolGoesQuiet(t *testing.T) {
	a, aClosed := closeWatch(t)
	b, bClosed := closeWatch(t)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	timer := &manualTimer{}
	c := New(Options{IdleTimeout: time.Minute, Now: clock, AfterFunc: timer.afterFunc})
	do := func(url string) {
		t.Helper()
		resp, err := c.RoundTrip(get(t, context.Background(), url))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	do(a.URL)
	do(b.URL)
	if armed, waits := timer.state(); !armed || len(waits) != 1 || waits[0] != time.Minute {
		t.Fatalf("reaper armed %v with waits %v, want armed once for the idle timeout", armed, waits)
	}
	advance(30 * time.Second)
	do(b.URL) // b's connection is used again: idle from now
	advance(30 * time.Second)
	timer.fire(t) // a's connection has been idle a minute, b's 30 s
	if st := c.Stats(); st.Idle != 1 || st.Expired != 1 {
		t.Fatalf("after the first sweep: %+v, want 1 idle, 1 expired", st)
	}
	<-aClosed // the backend sees the close
	if armed, waits := timer.state(); !armed || waits[len(waits)-1] != 30*time.Second {
		t.Fatalf("reaper armed %v with waits %v, want re-armed for b's connection in 30 s", armed, waits)
	}
	advance(30 * time.Second)
	timer.fire(t)
	<-bClosed
	c.mu.Lock()
	hosts := len(c.idle)
	c.mu.Unlock()
	if st := c.Stats(); st.Idle != 0 || st.Expired != 2 || hosts != 0 {
		t.Fatalf("after the second sweep: %+v, %d hosts kept, want none idle, 2 expired, no host kept", st, hosts)
	}
	if armed, _ := timer.state(); armed {
		t.Fatal("reaper armed with nothing pooled")
	}
	do(a.URL) // pooled again: armed again
	if armed, _ := timer.state(); !armed {
		t.Fatal("reaper not armed for a connection pooled after an empty sweep")
	}
	c.Close()
	<-aClosed
	if armed, _ := timer.state(); armed {
		t.Fatal("reaper still armed after Close")
	}
	do(a.URL) // after Close a connection is not kept
	if st := c.Stats(); st.Idle != 0 {
		t.Fatalf("after Close: %+v, want nothing pooled", st)
	}
}

// Connections that went idle one after another are swept together: the
// reaper waits at least IdleTimeout/reapSlack between sweeps.
func TestReaperWaitsAtLeastASlice(t *testing.T) {
	a, _ := closeWatch(t)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	timer := &manualTimer{}
	c := New(Options{IdleTimeout: time.Minute, Now: clock, AfterFunc: timer.afterFunc})
	defer c.Close()
	resp, err := c.RoundTrip(get(t, context.Background(), a.URL))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	mu.Lock()
	now = now.Add(time.Minute - time.Millisecond) // a sweep just before it expires
	mu.Unlock()
	timer.fire(t)
	if _, waits := timer.state(); waits[len(waits)-1] != time.Minute/reapSlack {
		t.Fatalf("waits %v, want the last one %v", waits, time.Minute/reapSlack)
	}
	if st := c.Stats(); st.Idle != 1 {
		t.Fatalf("%+v: want the connection kept until it passes the timeout", st)
	}
}

// Stats.Open counts every connection until it is closed, whoever closes
// it: idle, cut mid-answer by the caller, closed at the end.
func TestOpenConnectionsCounted(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
		}
	}))
	defer srv.Close()
	c := New(Options{})
	resp, err := c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if st := c.Stats(); st.Open != 1 || st.Idle != 1 {
		t.Fatalf("after one answer: %+v, want 1 open, idle", st)
	}
	held, err := c.RoundTrip(get(t, context.Background(), srv.URL+"/big"))
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Open != 1 || st.Idle != 0 {
		t.Fatalf("during an answer: %+v, want 1 open, none idle", st)
	}
	io.ReadFull(held.Body, make([]byte, 10))
	held.Body.Close() // cut mid-answer: the connection cannot be reused
	if st := c.Stats(); st.Open != int64(st.Idle) {
		t.Fatalf("after a cut answer: %+v, want only idle connections open", st)
	}
	c.Close()
	if st := c.Stats(); st.Open != 0 {
		t.Fatalf("after Close: %+v, want none open", st)
	}
}
