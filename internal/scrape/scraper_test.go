package scrape

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeServer is a real loopback backend serving exposition text the test
// sets.
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	hang    atomic.Bool // block until the request is cancelled
	arrived chan *http.Request
}

func newFakeServer(t *testing.T, body string) *fakeServer {
	t.Helper()
	f := &fakeServer{body: body, status: http.StatusOK}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) set(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	if f.arrived != nil {
		select { // never block the handler: Close would wait on it
		case f.arrived <- r:
		default:
		}
	}
	if f.hang.Load() {
		<-r.Context().Done()
		return
	}
	f.mu.Lock()
	status, body := f.status, f.body
	f.mu.Unlock()
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// newClient gives each test its own transport so idle connections can be
// closed before checking for leaked goroutines.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func newBackend(t *testing.T, rawURL, apiKey string) *endpoint.Backend {
	t.Helper()
	b, err := endpoint.New(endpoint.Spec{URL: rawURL, APIKey: apiKey}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatalf("endpoint.New(%q): %v", rawURL, err)
	}
	return b
}

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func gauges(running, waiting, kv string) string {
	return "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} " + running +
		"\nvllm:num_requests_waiting{model_name=\"m\"} " + waiting +
		"\nvllm:gpu_cache_usage_perc{model_name=\"m\"} " + kv + "\n"
}

func TestPresetAndDefaults(t *testing.T) {
	for name, want := range map[string]Names{"vllm": VLLM(), "sglang": SGLang(), "llamacpp": LlamaCpp()} {
		n, err := Preset(name)
		if err != nil || n.Running[0] != want.Running[0] || n.KVCache[0] != want.KVCache[0] {
			t.Errorf("Preset(%q) = %+v, %v", name, n, err)
		}
	}
	if _, err := Preset("tgi"); err == nil || !strings.Contains(err.Error(), "sglang") {
		t.Errorf("Preset(tgi) error %v should list the presets", err)
	}
	c := Config{Interval: 2 * time.Second, Names: Names{Running: []string{"my_running"}}}.withDefaults()
	if c.Timeout != 2*time.Second || c.StaleAfter != 6*time.Second || c.Path != "/metrics" || c.MaxBody != 4<<20 {
		t.Errorf("defaults: %+v", c)
	}
	if !slices.Equal(c.Names.Running, []string{"my_running"}) ||
		!slices.Equal(c.Names.Waiting, []string{"vllm:num_requests_waiting", "llamacpp:requests_deferred"}) || len(c.Names.KVCache) != 3 {
		t.Errorf("names: each empty list takes vLLM's then llama.cpp's, set ones stay: %+v", c.Names)
	}
	if d := (Config{}).withDefaults(); d.Interval != time.Second || d.StaleAfter != 3*time.Second {
		t.Errorf("zero config: interval %v stale after %v", d.Interval, d.StaleAfter)
	}
}

func TestMetricsURL(t *testing.T) {
	tests := []struct{ base, path, want string }{
		{"http://h:8000", "/metrics", "http://h:8000/metrics"},
		{"http://h:8000/", "/metrics", "http://h:8000/metrics"},
		{"https://h/team/a/", "/metrics", "https://h/team/a/metrics"},
		{"http://h:8000", "/metrics?name[]=x", "http://h:8000/metrics?name[]=x"},
	}
	for _, tt := range tests {
		if got := metricsURL(newBackend(t, tt.base, ""), tt.path); got != tt.want {
			t.Errorf("metricsURL(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
		}
	}
}

func TestScrapeSendsPathAndHeaders(t *testing.T) {
	srv := newFakeServer(t, gauges("1", "0", "0"))
	srv.arrived = make(chan *http.Request, 1)
	s := NewScraper(Config{Path: "/stats"}, newClient(t), nil)
	if err := s.ScrapeOnce(t.Context(), []*endpoint.Backend{newBackend(t, srv.URL+"/v1", "sk-1")}); err != nil {
		t.Fatal(err)
	}
	r := <-srv.arrived
	if r.URL.Path != "/v1/stats" || r.Header.Get("Authorization") != "Bearer sk-1" ||
		!strings.HasPrefix(r.Header.Get("Accept"), "text/plain") {
		t.Errorf("scrape arrived as %s auth %q accept %q", r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Accept"))
	}
}

// TestScrapeStoresLoad: each backend gets its own reading, stamped with the
// injected clock, its expiry and the gateway's in-flight count.
func TestScrapeStoresLoad(t *testing.T) {
	a := newFakeServer(t, vllmSample)
	b := newFakeServer(t, sglangSample)
	c := newFakeServer(t, gauges("2", "1", "1.7")) // KV above 1 is clamped
	d := newFakeServer(t, "vllm:num_requests_waiting 4\n")
	ba, bb, bc, bd := newBackend(t, a.URL, ""), newBackend(t, b.URL, ""), newBackend(t, c.URL, ""), newBackend(t, d.URL, "")
	ba.Acquire()
	ba.Acquire()
	bs := []*endpoint.Backend{ba, bc, bd}

	clk := &clock{now: t0}
	s := NewScraper(Config{Interval: time.Second, Now: clk.Now}, newClient(t), nil)
	if err := s.ScrapeOnce(t.Context(), bs); err != nil {
		t.Fatal(err)
	}
	sg := NewScraper(Config{Names: SGLang(), StaleAfter: 10 * time.Second, Now: clk.Now}, newClient(t), nil)
	if err := sg.ScrapeOnce(t.Context(), []*endpoint.Backend{bb}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		b    *endpoint.Backend
		want endpoint.Load
	}{
		{ba, endpoint.Load{Running: 7, Waiting: 4, KVCacheUsage: 0.4375, At: t0, Expires: t0.Add(3 * time.Second), InflightAtScrape: 2}},
		{bb, endpoint.Load{Running: 12, Waiting: 7, KVCacheUsage: 0.28, At: t0, Expires: t0.Add(10 * time.Second)}},
		{bc, endpoint.Load{Running: 2, Waiting: 1, KVCacheUsage: 1, At: t0, Expires: t0.Add(3 * time.Second)}},
		{bd, endpoint.Load{Waiting: 4, At: t0, Expires: t0.Add(3 * time.Second)}}, // running and KV missing: 0
	}
	for _, tt := range tests {
		got, ok := tt.b.Load()
		if !ok || got != tt.want {
			t.Errorf("%s: Load() = %+v, %v; want %+v", tt.b.Name(), got, ok, tt.want)
		}
	}
}

// TestFailureKeepsOldLoad: every kind of failed scrape leaves the last good
// reading in place, so it goes stale at its expiry rather than at once.
func TestFailureKeepsOldLoad(t *testing.T) {
	tests := []struct {
		name string
		fail func(*fakeServer)
		is   error
	}{
		{"status 500", func(f *fakeServer) { f.set(500, gauges("0", "0", "0")) }, nil},
		{"status 404", func(f *fakeServer) { f.set(404, "not found") }, nil},
		{"not a metrics page", func(f *fakeServer) { f.set(200, "<html>hello</html>") }, ErrNoQueueMetrics},
		{"only garbage values", func(f *fakeServer) { f.set(200, gauges("NaN", "-1", "0.5")) }, ErrNoQueueMetrics},
		{"body too large", func(f *fakeServer) { f.set(200, gauges("0", "0", "0")+strings.Repeat("#", 2048)) }, nil},
		{"timeout", func(f *fakeServer) { f.hang.Store(true) }, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, gauges("3", "1", "0.5"))
			b := newBackend(t, srv.URL, "")
			clk := &clock{now: t0}
			// A healthy scrape gets all the time a loaded machine needs; only
			// the timeout case's scrape has a short bound, against a server
			// that never answers, so it fires whatever the machine's load.
			cfg := Config{Interval: time.Second, Timeout: time.Minute, MaxBody: 1024, Now: clk.Now}
			s := NewScraper(cfg, newClient(t), nil)
			if err := s.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
				t.Fatal(err)
			}
			before, _ := b.Load()
			tt.fail(srv)
			if srv.hang.Load() {
				cfg.Timeout = 50 * time.Millisecond
				s = NewScraper(cfg, newClient(t), nil)
			}
			clk.Set(t0.Add(time.Second))
			err := s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
			if err == nil {
				t.Fatal("failed scrape returned nil error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q does not name the backend", err)
			}
			after, ok := b.Load()
			if !ok || after != before {
				t.Errorf("Load after failure = %+v, want the old %+v", after, before)
			}
			if !after.Fresh(t0.Add(3*time.Second-1)) || after.Fresh(t0.Add(3*time.Second)) {
				t.Errorf("old reading should go stale exactly at %v", after.Expires)
			}
		})
	}
}

func TestFirstScrapeFailingStoresNothing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	b := newBackend(t, "http://"+addr, "")
	if err := NewScraper(Config{}, newClient(t), nil).ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err == nil {
		t.Fatal("connection refused returned nil error")
	}
	if l, ok := b.Load(); ok {
		t.Errorf("Load() = %+v after a failed first scrape, want none", l)
	}
}

// TestBodyDrainedConnectionReused: bodies are read to the end and closed,
// on success and on error statuses, so one keep-alive connection serves
// every scrape. Each body is checked as the scraper leaves it (read to
// its end, closed); the count of connections only when no net/http timer
// decided it: net/http pools a connection only if its write loop reported
// the request sent within 50 ms (maxWriteWaitBeforeConnReuse), which a
// starved machine missed with every body drained (flakes11: 2 connections
// in 1 of 6 runs under a CPU hog).
func TestBodyDrainedConnectionReused(t *testing.T) {
	var conns atomic.Int32
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(gauges("1", "2", "0.3") + strings.Repeat("# padding\n", 500)))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	rec := &bodyRecorder{next: newClient(t).Transport}
	// A minute's bound, not the default second: a scrape cut by its
	// timeout leaves its body unread; each scrape's error says so.
	s := NewScraper(Config{Timeout: time.Minute}, &http.Client{Transport: rec}, nil)
	for i := range 10 {
		err := s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
		if i%2 == 0 && err != nil {
			t.Errorf("scrape %d (a 200): %v", i, err)
		}
		if i%2 == 1 && (err == nil || !strings.Contains(err.Error(), "unexpected status 503")) {
			t.Errorf("scrape %d (a 503): %v, want its status", i, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bodies) != 10 {
		t.Fatalf("%d answers, want 10", len(rec.bodies))
	}
	for i, body := range rec.bodies {
		if !body.eof || !body.closed {
			t.Errorf("scrape %d: body read to its end %v, closed %v; want both", i, body.eof, body.closed)
		}
	}
	if c := conns.Load(); c != 1 {
		// Not a failure on its own: see above. Bodies all drained and
		// closed, a second connection is net/http's timer.
		t.Logf("10 scrapes opened %d connections (net/http's 50 ms write-report wait on a loaded machine)", c)
	}
}

// bodyRecorder is a RoundTripper recording how each answer's body was
// left: read to io.EOF, closed.
type bodyRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	bodies []*recordedBody
}

func (r *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body := &recordedBody{ReadCloser: resp.Body, mu: &r.mu}
	r.mu.Lock()
	r.bodies = append(r.bodies, body)
	r.mu.Unlock()
	resp.Body = body
	return resp, nil
}

type recordedBody struct {
	io.ReadCloser
	mu          *sync.Mutex
	eof, closed bool
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.mu.Lock()
		b.eof = true
		b.mu.Unlock()
	}
	return n, err
}

func (b *recordedBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.ReadCloser.Close()
}

func TestLogsTransitionsOnly(t *testing.T) {
	srv := newFakeServer(t, gauges("1", "0", "0"))
	b := newBackend(t, srv.URL, "")
	var buf logbuf.Buffer
	s := NewScraper(Config{}, newClient(t), slog.New(slog.NewTextHandler(&buf, nil)))
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
	srv.set(500, "")
	for range 3 {
		s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
	}
	srv.set(200, gauges("1", "0", "0"))
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
	out := buf.String()
	if strings.Count(out, "level=WARN") != 1 || strings.Count(out, "level=INFO") != 1 ||
		strings.Count(out, "backend="+b.Name()) != 2 {
		t.Errorf("want one failing and one recovered line naming %s:\n%s", b.Name(), out)
	}
}

func TestDuplicatesAndUnlistedBackends(t *testing.T) {
	srv := newFakeServer(t, "")
	srv.arrived = make(chan *http.Request, 8)
	a, b := newBackend(t, srv.URL, ""), newBackend(t, srv.URL, "")
	s := NewScraper(Config{}, newClient(t), nil)
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{a, b, b, nil})
	if n := len(srv.arrived); n != 2 {
		t.Errorf("%d scrapes, want 2 (duplicate scraped twice?)", n)
	}
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{a})
	s.mu.Lock()
	_, hasB := s.failing[b]
	s.mu.Unlock()
	if hasB {
		t.Error("state of an unlisted backend kept")
	}
}

// TestRunStopsOnCancel: cancelling ctx ends Run promptly even with a scrape
// hanging, leaks no goroutine, and stores nothing for the aborted scrape.
func TestRunStopsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv := newFakeServer(t, gauges("1", "0", "0"))
	srv.hang.Store(true)
	srv.arrived = make(chan *http.Request, 1)
	client := newClient(t)
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	s := NewScraper(Config{Interval: time.Hour, Timeout: time.Hour}, client, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, func() []*endpoint.Backend { return []*endpoint.Backend{b} }) }()
	<-srv.arrived // the scrape is now stuck on the server
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang guard, not the measure of "promptly"
		t.Fatal("Run did not return after cancel")
	}
	if _, ok := b.Load(); ok {
		t.Error("aborted scrape stored a Load")
	}
}

// TestRunScrapesEachInterval: Run keeps scraping, picks up the current
// backend list every round, and stores what it reads.
func TestRunScrapesEachInterval(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv := newFakeServer(t, gauges("5", "0", "0"))
	srv.arrived = make(chan *http.Request, 16)
	client := newClient(t)
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	var calls atomic.Int32
	s := NewScraper(Config{Interval: time.Millisecond, Timeout: time.Minute}, client, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, func() []*endpoint.Backend { calls.Add(1); return []*endpoint.Backend{b} })
	}()
	for range 3 {
		<-srv.arrived
	}
	cancel()
	<-done
	if n := calls.Load(); n < 3 {
		t.Errorf("backends() called %d times, want once per round (>= 3)", n)
	}
	if l, ok := b.Load(); !ok || l.Running != 5 {
		t.Errorf("Load() = %+v, %v; want running 5", l, ok)
	}
}

// The failing warning's stale_after is a duration string in the gateway's
// JSON log ("1.5s"), as the config writes it; slog's JSON handler writes a
// time.Duration as int64 nanoseconds, which the old code logged
// (1500000000).
func TestFailingWarningLogsStaleAfterAsADuration(t *testing.T) {
	srv := newFakeServer(t, gauges("1", "0", "0"))
	b := newBackend(t, srv.URL, "")
	var buf logbuf.Buffer
	s := NewScraper(Config{StaleAfter: 1500 * time.Millisecond}, newClient(t), slog.New(slog.NewJSONHandler(&buf, nil)))
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
	srv.set(500, "")
	s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
	var line struct {
		StaleAfter any `json:"stale_after"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.StaleAfter != "1.5s" {
		t.Errorf("stale_after logged as %#v, want \"1.5s\": %s", line.StaleAfter, buf.String())
	}
}
