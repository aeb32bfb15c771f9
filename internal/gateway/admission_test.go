package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// gatedBackend holds every request until release is closed and records the
// highest concurrency it saw.
type gatedBackend struct {
	*httptest.Server
	release  chan struct{}
	inflight atomic.Int64
	peak     atomic.Int64
	arrived  chan struct{}
	models   chan string
	once     sync.Once
}

// open lets every held request finish; idempotent.
func (g *gatedBackend) open() { g.once.Do(func() { close(g.release) }) }

func newGatedBackend(t *testing.T) *gatedBackend {
	g := &gatedBackend{release: make(chan struct{}), arrived: make(chan struct{}, 1000), models: make(chan string, 1000)}
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

func TestQueuesInsteadOfOverloadingBackend(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	srv, _ := startGateway(t, cfg)

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

func TestRefusesAtOnceWhenDeadlineCannotBeMet(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, _ := startGateway(t, cfg)
	t.Cleanup(be.open) // before the gateway's own cleanup waits for its handlers
	first := make(chan outcome, 1)
	postInBackground(srv.URL+"/v1/chat/completions", first)
	be.awaitArrival(t, first) // the only slot is taken

	start := time.Now()
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "X-Sluice-Max-Wait", "50ms")
	body := readAll(t, resp)
	took := time.Since(start)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, code, msg := apiErr(t, body); code != "pool_saturated" && code != "deadline" {
		t.Fatalf("code %s (%s)", code, msg)
	}
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After-Ms") == "" {
		t.Fatal("refusal without Retry-After / retry-after-ms")
	}
	// Refused at arrival (the estimate) or after waiting (its deadline):
	// the client can tell which.
	qt, err := strconv.Atoi(resp.Header.Get("X-Sluice-Queue-Time"))
	if _, code, _ := apiErr(t, body); err != nil || (code == "pool_saturated") != (qt == 0) {
		t.Fatalf("X-Sluice-Queue-Time %q for a %s refusal", resp.Header.Get("X-Sluice-Queue-Time"), code)
	}
	if took > 2*time.Second {
		t.Fatalf("refusal took %v", took)
	}
}

func TestClientLeavingTheQueueFreesIt(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
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

func TestTenantOverShareGets429(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	cfg.Admission.MaxQueuedPerTenant = 2
	cfg.Admission.MaxQueued = 100
	srv, gw := startGateway(t, cfg)
	t.Cleanup(be.open)
	flood := make(chan outcome, 3)
	for i := 0; i < 3; i++ { // one in service, two queued
		postInBackground(srv.URL+"/v1/chat/completions", flood, "Authorization", "Bearer flood")
	}
	be.awaitArrival(t, flood)
	q := gw.Runtime().Pools["m1"].queue
	waitFor(t, func() bool { return q.Stats().Queued == 2 }) // else the probe below could queue itself
	waitFor(t, func() bool {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer flood", "X-Sluice-Max-Wait", "20s")
		body := readAll(t, resp)
		if resp.StatusCode != 429 {
			return false
		}
		typ, _, _ := apiErr(t, body)
		return typ == "rate_limit_error" && resp.Header.Get("Retry-After") != ""
	})
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
	if resp.StatusCode != 503 {
		t.Fatalf("a no_fallback key was served by a fallback: %d", resp.StatusCode)
	}
}

func TestPriorityHeaderClampedToKey(t *testing.T) {
	tn := newTenants(config.Auth{Keys: []config.Tenant{{Key: "batchonly", MaxPriority: "batch"}, {Key: "vip"}}})
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
