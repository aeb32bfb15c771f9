package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// listSelector picks the first backend of the list not yet tried.
type listSelector []*endpoint.Backend

func (s listSelector) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	for _, b := range s {
		seen := false
		for _, x := range tried {
			seen = seen || x == b
		}
		if !seen {
			return b, nil
		}
	}
	return nil, proxy.ErrSaturated
}

// lockedWriter is a client's ResponseWriter the test reads while the
// relay writes.
type lockedWriter struct {
	mu   sync.Mutex
	h    http.Header
	code int
	body strings.Builder
}

func (w *lockedWriter) Header() http.Header { return w.h }
func (w *lockedWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = code
	}
}
func (w *lockedWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(p)
}
func (w *lockedWriter) Flush() {}
func (w *lockedWriter) got() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.code, w.body.String()
}

// heldTimer is a watchdog timer that fires only when the test calls f.
type heldTimer struct{ f func() }

func (heldTimer) Stop() bool               { return true }
func (heldTimer) Reset(time.Duration) bool { return true }

// A backend that sends keep-alive comments (": ping", as OpenRouter does
// while a request queues) and no token is held to the first-token bound
// (timeouts.first_token_factor) as a silent one is: the ping commits
// nothing, the bound's timer cuts the attempt, and the request goes to
// another backend; the client gets that backend's stream alone. Before,
// the ping committed the stream and ended the first-token phase: the
// request waited on to the stream-idle bound and ended in an error event.
func TestPingIsNoFirstTokenWithinTheBound(t *testing.T) {
	var s starts
	res, code, body, good := pingThenFailover(t, chatStream(t, &s), doneEvents)
	if code != http.StatusOK || body != doneEvents || res.Err != nil || res.Backend != good {
		t.Fatalf("status %d body %q err %v backend %v; want the second backend's stream alone", code, body, res.Err, res.Backend)
	}
	if s.told.Load() != 1 {
		t.Fatalf("Started told %d first tokens; want 1 (the second backend's)", s.told.Load())
	}
}

// pingThenFailover forwards req, held to a 30 s first-token bound, first to
// a backend that sends a ping and then no token (queued until the gateway
// gives up), with one serving goodBody behind it. Once the relay has the
// ping and reads on, it fails the test if the ping committed the stream;
// then the first attempt's bound passes (its timer fires). It returns the
// result, what the client got, and the second backend.
func pingThenFailover(t *testing.T, req *proxy.Request, goodBody string) (res proxy.Result, code int, body string, good *endpoint.Backend) {
	t.Helper()
	pinger := sseBackend(t, ping, gate(nil))
	good = sseBackend(t, goodBody)
	var rt *proxy.ReadPast
	timers := make(chan heldTimer, 4)
	f := forwarder(t, func(o *proxy.Options) {
		rt = proxy.NewReadPast(o.Transport, pinger.Target().Host, len(ping))
		o.Transport, o.Attempts = rt, 2
		o.AfterFunc = func(_ time.Duration, fn func()) proxy.Timer {
			tm := heldTimer{f: fn}
			timers <- tm
			return tm
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // first: ends the pinger's request on a failure
	req.FirstToken = 30 * time.Second
	w := &lockedWriter{h: http.Header{}}
	results := forwardAsync(ctx, f, w, req, listSelector{pinger, good})
	first := <-timers // the first attempt's watchdog
	<-rt.Passed()     // the relay has the ping and reads on
	if code, body := w.got(); code != 0 || body != "" {
		t.Fatalf("the ping committed the stream (status %d, %q): no failover is left past the first-token bound", code, body)
	}
	first.f() // the first-token bound passes
	res = <-results
	code, body = w.got()
	return res, code, body, good
}

// Without a first-token bound a keep-alive comment goes to the client as
// it comes (a client's idle timeout is then the only one), but the
// backend's time to first token is learnt at the first event with data:
// a backend that pings at once and starts 10 s later has a 10 s time to
// first token. Before, the ping fed it (about 0), so a queueing backend
// looked the fastest to p2c, the adaptive limit and the hedge delay.
func TestPingIsNoFirstTokenForTheLatency(t *testing.T) {
	clock := newClock()
	start := make(chan struct{})
	b := sseBackend(t, ping, gate(start), doneEvents)
	w := newPingWriter()
	results := forwardAsync(context.Background(), forwarder(t, clocked(clock)), w, chatStream(t, nil), fixedSelector{b})
	w.awaitFirstBytes(t, results) // the ping went out
	clock.Advance(10 * time.Second)
	close(start)
	if res := <-results; res.Err != nil || w.Body.String() != ping+doneEvents {
		t.Fatalf("err %v, relayed %q; want the ping and the stream", res.Err, w.Body.String())
	}
	if got := b.TypicalLatency(); got < 10*time.Second {
		t.Fatalf("time to first token learnt %v; want the 10 s to the first data, not the ping's", got)
	}
}
