package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

// gatedBackend holds every request until release is closed (or, one at a
// time, until a send on next) and records the highest concurrency it saw.
type gatedBackend struct {
	*httptest.Server
	release  chan struct{}
	next     chan struct{}
	inflight atomic.Int64
	peak     atomic.Int64
	arrived  chan struct{}
	models   chan string
	once     sync.Once
}

// open lets every held request finish; idempotent.
func (g *gatedBackend) open() { g.once.Do(func() { close(g.release) }) }

func newGatedBackend(t *testing.T) *gatedBackend {
	g := &gatedBackend{release: make(chan struct{}), next: make(chan struct{}),
		arrived: make(chan struct{}, 1000), models: make(chan string, 1000)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.models <- string(b)
		n := g.inflight.Add(1)
		defer g.inflight.Add(-1)
		for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
		}
		g.arrived <- struct{}{}
		select {
		case <-g.release:
		case <-g.next:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	t.Cleanup(func() { g.open(); g.Close() })
	return g
}

// outcome is how a request sent from a goroutine ended: its status, or
// the error that stopped it.
type outcome struct {
	status int
	err    error
}

// postInBackground sends a chat request from a goroutine and reports how
// it ended on ended, whatever happens: a t.Fatal there (post, readAll)
// would be a Goexit, and a test waiting for the request to reach the
// backend would hang until the package timeout instead of failing.
func postInBackground(url string, ended chan<- outcome, hdr ...string) {
	go func() {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(chatBody))
		if err != nil {
			ended <- outcome{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ended <- outcome{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ended <- outcome{status: resp.StatusCode, err: err}
	}()
}

// probeUnqueued sends a chat request with the header pairs hdr and returns
// its answer, failing the test if the request fails or if q ever holds more
// than queued requests while it is out: the probe was queued instead of
// answered (why says what it should have been). On a frozen clock a queued
// probe's deadline never passes, so it is caught here, not hung on.
func probeUnqueued(t *testing.T, url string, q *admission.Queue, queued int, why string, hdr ...string) *http.Response {
	t.Helper()
	probe := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(chatBody))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			resp = nil
		}
		probe <- resp
	}()
	for {
		select {
		case resp := <-probe:
			if resp == nil {
				t.Fatal("the probe request failed")
			}
			return resp
		default:
			if s := q.Stats(); s.Queued > queued {
				t.Fatalf("the probe was queued (%d waiting) instead of %s", s.Queued, why)
			}
			time.Sleep(time.Millisecond) // polling the queue, not a deadline
		}
	}
}

// awaitArrival waits for a request to reach the backend and fails the test
// at once if a background request ends first: none may end before the
// backend lets it go.
func (g *gatedBackend) awaitArrival(t *testing.T, ended <-chan outcome) {
	t.Helper()
	select {
	case <-g.arrived:
	case o := <-ended:
		t.Fatalf("a request ended before reaching the backend: status %d, err %v", o.status, o.err)
	}
}

// startFullMeasuredGateway starts a gateway on a frozen clock in front of a
// one-slot gated backend, lets one completion hold the slot for 1 s of the
// clock (a cold queue does not refuse on its prior guess: it queues until
// the deadline, so the rate must be measured first), then takes the slot
// with a request held until the test ends. The next request finds the pool
// full with a measured wait of ~1 s. It returns the chat completions URL
// and the pool's queue.
func startFullMeasuredGateway(t *testing.T) (string, *admission.Queue) {
	t.Helper()
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })
	t.Cleanup(be.open) // before the gateway's own cleanup waits for its handlers
	url, q := srv.URL+"/v1/chat/completions", gw.Runtime().Pools["m1"].queue

	warm := make(chan outcome, 1)
	postInBackground(url, warm)
	be.awaitArrival(t, warm)
	clk.Advance(time.Second)
	be.next <- struct{}{}
	if o := <-warm; o.err != nil || o.status != 200 {
		t.Fatalf("warm-up request: status %d, err %v", o.status, o.err)
	}
	waitFor(t, func() bool { return q.Stats().InUse == 0 }) // its ticket is back, its hold measured

	holder := make(chan outcome, 1)
	postInBackground(url, holder)
	be.awaitArrival(t, holder) // the only slot is taken, for ~1s by the measured rate
	return url, q
}

// Requests past the backend's limit wait in the queue and are all served
// once it frees. The gateway runs on a frozen clock: on the wall clock a
// queued request's deadline (2/3 of max_wait's 2 s) passed whenever the
// machine stalled that long before the backend was let go, and it was
// refused 503 (7 of 140 runs beside two CPU hogs, RELIABILITY "Flake hunt,
// seventh round"): a race against the machine, not queueing behaviour.
func TestQueuesInsteadOfOverloadingBackend(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })

	const n = 8
	ended := make(chan outcome, n)
	for i := 0; i < n; i++ {
		postInBackground(srv.URL+"/v1/chat/completions", ended)
	}
	be.awaitArrival(t, ended)
	be.awaitArrival(t, ended)
	be.open()
	for i := 0; i < n; i++ {
		if o := <-ended; o.err != nil || o.status != 200 {
			t.Fatalf("status %d, err %v: queued requests must be served, not refused", o.status, o.err)
		}
	}
	if p := be.peak.Load(); p > 2 {
		t.Fatalf("backend saw %d concurrent requests, limit 2", p)
	}
}

// frozenClock moves only when the test moves it, so what the gateway
// decides from time cannot depend on how busy the machine is.
type frozenClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *frozenClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *frozenClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A request whose deadline the measured wait cannot meet is refused on
// arrival, never queued. "At once" is judged on the gateway's own clock and
// queue, not on the wall clock: the clock stands still while the refusal is
// decided, the request never shows up as queued, the queue counts one
// refusal at arrival (Saturated, not Deadline) and no grant, and the client
// is told it waited 0 ms.
func TestRefusesAtOnceWhenDeadlineCannotBeMet(t *testing.T) {
	url, q := startFullMeasuredGateway(t)
	before := q.Stats()

	resp := probeUnqueued(t, url, q, 0, "refused at once", "X-Sluice-Max-Wait", "50ms")
	body := readAll(t, resp)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, code, msg := apiErr(t, body); code != "pool_saturated" {
		t.Fatalf("code %s (%s); want pool_saturated, the refusal on arrival", code, msg)
	}
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After-Ms") == "" {
		t.Fatal("refusal without Retry-After / retry-after-ms")
	}
	if qt := resp.Header.Get("X-Sluice-Queue-Time"); qt != "0" {
		t.Fatalf("X-Sluice-Queue-Time %q for a refusal at arrival; want 0", qt)
	}
	after := q.Stats()
	if after.Rejected["saturated"] != before.Rejected["saturated"]+1 || after.Rejected["deadline"] != before.Rejected["deadline"] ||
		after.Granted != before.Granted {
		t.Fatalf("queue counters before %+v, after %+v: want one more Saturated refusal, no Deadline one, no grant", before, after)
	}
}

// A client that leaves the queue takes its place with it. On a frozen
// clock: on the wall clock the queued request's deadline (1.33 s) could
// pass under load before the wait for it to be queued saw it there.
func TestClientLeavingTheQueueFreesIt(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })
	t.Cleanup(be.open)
	first := make(chan outcome, 1)
	postInBackground(srv.URL+"/v1/chat/completions", first)
	be.awaitArrival(t, first)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(chatBody))
	done := make(chan struct{})
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		close(done)
	}()
	q := gw.Runtime().Pools["m1"].queue
	waitFor(t, func() bool { return q.Stats().Queued == 1 })
	cancel()
	<-done
	waitFor(t, func() bool { return q.Stats().Queued == 0 })
}

// A tenant with max_queued_per_tenant requests waiting is refused 429 on
// arrival. The gateway runs on a frozen clock: on the wall clock the two
// queued requests' deadlines (1.33 s) passed when the machine stalled, so
// the queue never held two at once, or the probe queued in their place
// and waited out its own (4 of 140 runs beside two CPU hogs).
func TestTenantOverShareGets429(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	cfg.Admission.MaxQueuedPerTenant = 2
	cfg.Admission.MaxQueued = 100
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })
	t.Cleanup(be.open)
	flood := make(chan outcome, 3)
	for i := 0; i < 3; i++ { // one in service, two queued
		postInBackground(srv.URL+"/v1/chat/completions", flood, "Authorization", "Bearer flood")
	}
	be.awaitArrival(t, flood)
	q := gw.Runtime().Pools["m1"].queue
	waitFor(t, func() bool { return q.Stats().Queued == 2 }) // else the probe below could queue itself

	resp := probeUnqueued(t, srv.URL+"/v1/chat/completions", q, 2, "refused for its tenant's share",
		"Authorization", "Bearer flood", "X-Sluice-Max-Wait", "20s")
	body := readAll(t, resp)
	if resp.StatusCode != 429 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if typ, code, msg := apiErr(t, body); typ != "rate_limit_error" {
		t.Fatalf("type %s code %s (%s); want rate_limit_error", typ, code, msg)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestRequireKey(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{RequireKey: true, Keys: []config.Tenant{{Key: "sk-good", Tenant: "team"}}}
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer sk-bad")
	if body := readAll(t, resp); resp.StatusCode != 401 {
		t.Fatalf("unknown key: %d %s", resp.StatusCode, body)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer sk-good")
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("known key: %d %s", resp.StatusCode, body)
	}
}

func TestFallbackModel(t *testing.T) {
	primary := closedURL(t)
	fb := newOKBackend(t)
	cfg := testConfig(primary)
	cfg.Health.MaxFails = 1
	cfg.Models[0].Fallbacks = []string{"m2"}
	cfg.Models = append(cfg.Models, config.Model{Name: "m2", Backends: []config.Backend{{URL: fb.URL}}})
	cfg.Auth.Keys = []config.Tenant{{Key: "strict", NoFallback: true}}
	srv, _ := startGateway(t, cfg)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody)) // ejects the primary's only backend

	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Model") != "m2" {
		t.Fatalf("status %d model %q: %s", resp.StatusCode, resp.Header.Get("X-Sluice-Model"), body)
	}
	if seen := string(<-fb.bodies); !strings.Contains(seen, `"model":"m2"`) {
		t.Fatalf("fallback backend saw %s, want model rewritten to m2", seen)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer strict")
	readAll(t, resp)
	// Its only backend ejected passively, the primary tries it as a last
	// resort: refused, 502 (lastresort.go), never the fallback.
	if resp.StatusCode != 502 || resp.Header.Get("X-Sluice-Model") == "m2" {
		t.Fatalf("a no_fallback key was served by a fallback: %d", resp.StatusCode)
	}
}

func TestPriorityHeaderClampedToKey(t *testing.T) {
	tn := newTenants(config.Auth{Keys: []config.Tenant{{Key: "batchonly", MaxPriority: "batch"}, {Key: "vip"}}}, nil)
	for _, c := range []struct {
		key, header string
		wantBatch   bool
	}{
		{"batchonly", "interactive", true},
		{"batchonly", "", true},
		{"vip", "batch", true},
		{"vip", "interactive", false},
		{"", "", false},
	} {
		r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
		if c.key != "" {
			r.Header.Set("Authorization", "Bearer "+c.key)
		}
		if c.header != "" {
			r.Header.Set("X-Sluice-Priority", c.header)
		}
		id, err := tn.identify(r, "1.2.3.4")
		if err != nil {
			t.Fatal(err)
		}
		if (id.class != 0) != c.wantBatch {
			t.Errorf("key %q header %q: class %v", c.key, c.header, id.class)
		}
	}
}
