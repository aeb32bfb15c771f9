package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
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

// readTransport closes read when a Read of host's answer body starts
// after at least after bytes came: the relay has dealt with them.
type readTransport struct {
	http.RoundTripper
	host  string
	after int
	read  chan struct{}
	once  sync.Once
}

func (t *readTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err == nil && req.URL.Host == t.host {
		resp.Body = &readSignal{ReadCloser: resp.Body, t: t}
	}
	return resp, err
}

type readSignal struct {
	io.ReadCloser
	t   *readTransport
	got int
}

func (r *readSignal) Read(p []byte) (int, error) {
	if r.got >= r.t.after {
		r.t.once.Do(func() { close(r.t.read) })
	}
	n, err := r.ReadCloser.Read(p)
	r.got += n
	return n, err
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
	const events = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	const ping = ": ping\n\n"
	pinger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ping)
		w.(http.Flusher).Flush()
		select { // queued: no token until the gateway gives up
		case <-r.Context().Done():
		case <-time.After(time.Minute): // hang guard
		}
	}))
	t.Cleanup(pinger.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, events)
	}))
	t.Cleanup(good.Close)
	b1, err := endpoint.New(endpoint.Spec{URL: pinger.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := endpoint.New(endpoint.Spec{URL: good.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pinger.URL)
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	rt := &readTransport{RoundTripper: base, host: u.Host, after: len(ping), read: make(chan struct{})}
	timers := make(chan heldTimer, 4)
	f := proxy.NewForwarder(proxy.Options{Transport: rt, Attempts: 2,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute},
		AfterFunc: func(_ time.Duration, fn func()) proxy.Timer {
			tm := heldTimer{f: fn}
			timers <- tm
			return tm
		}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // first: ends the pinger's request on a failure
	var s starts
	w := &lockedWriter{h: http.Header{}}
	results := make(chan proxy.Result, 1)
	go func() {
		results <- f.Forward(ctx, w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: cutBody(t, true), Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m",
			FirstToken: 30 * time.Second, Started: &s}, listSelector{b1, b2})
	}()
	first := <-timers // the first attempt's watchdog
	<-rt.read         // the relay has the ping and reads on
	if code, body := w.got(); code != 0 || body != "" {
		t.Fatalf("the ping committed the stream (status %d, %q): no failover is left past the first-token bound", code, body)
	}
	first.f() // the first-token bound passes
	res := <-results
	code, body := w.got()
	if code != http.StatusOK || body != events || res.Err != nil || res.Backend != b2 {
		t.Fatalf("status %d body %q err %v backend %v; want the second backend's stream alone", code, body, res.Err, res.Backend)
	}
	if s.told.Load() != 1 {
		t.Fatalf("Started told %d first tokens; want 1 (the second backend's)", s.told.Load())
	}
}

// stepNow is a clock the test moves; safe to read from the relay.
type stepNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepNow) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepNow) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Without a first-token bound a keep-alive comment goes to the client as
// it comes (a client's idle timeout is then the only one), but the
// backend's time to first token is learnt at the first event with data:
// a backend that pings at once and starts 10 s later has a 10 s time to
// first token. Before, the ping fed it (about 0), so a queueing backend
// looked the fastest to p2c, the adaptive limit and the hedge delay.
func TestPingIsNoFirstTokenForTheLatency(t *testing.T) {
	const rest = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	clock := &stepNow{t: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	w := &pingWriter{ResponseRecorder: httptest.NewRecorder(), got: make(chan struct{})}
	start := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rw.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(rw, ": ping\n\n")
		rw.(http.Flusher).Flush()
		select {
		case <-start:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(rw, rest)
	}))
	t.Cleanup(srv.Close)
	b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport, Now: clock.Now,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Hour}})
	results := make(chan proxy.Result, 1)
	go func() {
		results <- f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: cutBody(t, true), Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
	}()
	select {
	case <-w.got: // the ping went out
	case res := <-results:
		t.Fatalf("the request ended before the ping reached the client: %v", res.Err)
	}
	clock.advance(10 * time.Second)
	close(start)
	if res := <-results; res.Err != nil || w.Body.String() != ": ping\n\n"+rest {
		t.Fatalf("err %v, relayed %q; want the ping and the stream", res.Err, w.Body.String())
	}
	if got := b.TypicalLatency(); got < 10*time.Second {
		t.Fatalf("time to first token learnt %v; want the 10 s to the first data, not the ping's", got)
	}
}
