package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestForwardsBodyUnchangedAndInjectsBackendKey(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].APIKey = "backend-secret"
	srv, _ := startGateway(t, cfg)

	body := `{ "messages":[{"role":"user","content":"héllo  "}],  "model" : "m1","max_tokens":4,"x":{"y":[1,2]} }`
	resp := post(t, srv.URL+"/v1/chat/completions", body, "Authorization", "Bearer client-key", "X-Request-Id", "req-123")
	got := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if seen := string(<-be.bodies); seen != body {
		t.Fatalf("backend saw %q, want the original bytes %q", seen, body)
	}
	h := <-be.headers
	if h.Get("Authorization") != "Bearer backend-secret" {
		t.Fatalf("upstream Authorization = %q, want the backend's key (client key must not leak)", h.Get("Authorization"))
	}
	if h.Get("X-Request-Id") != "req-123" || resp.Header.Get("X-Request-Id") != "req-123" {
		t.Fatalf("request id not propagated: upstream %q, response %q", h.Get("X-Request-Id"), resp.Header.Get("X-Request-Id"))
	}
	if !strings.Contains(got, `"completion_tokens":4`) {
		t.Fatalf("response not relayed: %s", got)
	}
}

func TestGeneratesRequestID(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	readAll(t, resp)
	if id := resp.Header.Get("X-Request-Id"); len(id) != 32 {
		t.Fatalf("generated request id %q, want 32 hex chars", id)
	}
}

func TestUpstreamModelRewrite(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].UpstreamModel = "meta/llama-3"
	srv, _ := startGateway(t, cfg)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	if seen := string(<-be.bodies); !strings.Contains(seen, `"model":"meta/llama-3"`) || !strings.Contains(seen, `"max_tokens":4`) {
		t.Fatalf("backend saw %s, want model rewritten and other fields kept", seen)
	}
}

func TestBadRequestsGetOpenAIErrors(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.MaxBodyBytes = 1024
	srv, _ := startGateway(t, cfg)
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed", "POST", "/v1/chat/completions", `{"model":"m1",`, 400, "invalid_json"},
		{"not object", "POST", "/v1/chat/completions", `[1,2]`, 400, "invalid_json"},
		{"wrong type", "POST", "/v1/chat/completions", `{"model":"m1","stream":"yes"}`, 400, "invalid_type"},
		{"no model", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "missing_model"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"nope"}`, 404, "model_not_found"},
		{"too large", "POST", "/v1/completions", `{"model":"m1","prompt":"` + strings.Repeat("a", 2000) + `"}`, 413, "request_too_large"},
		{"wrong method", "GET", "/v1/chat/completions", ``, 405, "method_not_allowed"},
		{"unknown path", "POST", "/v1/nothing", `{}`, 404, "unknown_url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content-type %q", ct)
			}
			if _, code, _ := apiErr(t, body); code != c.code {
				t.Fatalf("code %q, want %q", code, c.code)
			}
		})
	}
	select {
	case b := <-be.bodies:
		t.Fatalf("a bad request reached the backend: %s", b)
	default:
	}
}

// TestStreamFlushesEachEvent proves every SSE event reaches the client,
// byte for byte, before the backend sends the next one, with \n, \r\n or
// lone \r line ends (the SSE grammar allows all three). An event ended by
// \r\r ends the backend's write on a \r that might be half of a \r\n cut
// across reads; the relay still lets it go at once (it was held until the
// backend's next write, here never, as the backend waits for the client).
func TestStreamFlushesEachEvent(t *testing.T) {
	for _, nl := range []string{"\n", "\r\n", "\r"} {
		t.Run(fmt.Sprintf("%q", nl), func(t *testing.T) { testStreamFlushesEachEvent(t, nl) })
	}
}

func testStreamFlushesEachEvent(t *testing.T, nl string) {
	next := make(chan struct{})
	event := func(i int) string {
		return fmt.Sprintf(`data: {"i":%d,"pad":"%s"}`, i, strings.Repeat("p", 40*i)) + nl + nl
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			io.WriteString(w, event(i))
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(30 * time.Second): // a hang guard: the client signals each event it saw
				return // the client never saw the event: the test fails below
			}
		}
		io.WriteString(w, "data: [DONE]"+nl+nl)
	}))
	defer be.Close()
	srv, _ := startGateway(t, testConfig(be.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true}`)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content-type %q", ct)
	}
	for i := 0; i < 3; i++ {
		want := event(i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if string(got) != want {
			t.Fatalf("event %d = %q, want %q", i, got, want)
		}
		select {
		case next <- struct{}{}:
		case <-time.After(30 * time.Second): // a hang guard: the backend gave up waiting
			t.Fatalf("event %d came only after the backend stopped waiting for the client to see it", i)
		}
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "data: [DONE]"+nl+nl {
		t.Fatalf("stream tail %q", rest)
	}
}

// TestClientDisconnectCancelsBackend proves a client that goes away cancels
// the upstream request promptly.
func TestClientDisconnectCancelsBackend(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}))
	defer be.Close()
	srv, gw := startGateway(t, testConfig(be.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true}`)
	<-started
	bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close() // the client leaves mid-stream
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second): // a hang guard, not the measure of "promptly"
		t.Fatal("backend request was not cancelled after the client disconnected")
	}
	waitFor(t, func() bool { return gw.Runtime().Pools["m1"].Backends[0].Inflight() == 0 })
	if b := gw.Runtime().Pools["m1"].Backends[0]; b.Failures() != 0 {
		t.Fatalf("a client disconnect counted as a backend failure")
	}
}

func TestRetriesBusyAndUnreachableOnAnotherBackend(t *testing.T) {
	for _, first := range []string{"503", "429", "502", "refused"} {
		t.Run(first, func(t *testing.T) {
			var bad string
			switch first {
			case "503":
				bad = statusBackend(t, 503).URL
			case "429":
				bad = statusBackend(t, 429, "Retry-After", "2").URL
			case "502":
				bad = statusBackend(t, 502).URL
			default:
				bad = closedURL(t)
			}
			good := newOKBackend(t)
			cfg := testConfig(bad, good.URL)
			cfg.Retry.MinPerSecond = 100
			srv, gw := startGateway(t, cfg)
			for i := 0; i < 4; i++ { // round robin: half start on the bad backend
				resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
				body := readAll(t, resp)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
				}
				if resp.Header.Get("X-Sluice-Backend") != gw.Runtime().Pools["m1"].Backends[1].Name() {
					t.Fatalf("answered by %q", resp.Header.Get("X-Sluice-Backend"))
				}
			}
		})
	}
}

// A blind 503 (a drowning vLLM sends no Retry-After) reaches the client
// with one: every refusal tells the client when to come back.
func TestAllBusyWithoutRetryAfterGetsOne(t *testing.T) {
	for _, ra := range []string{"", "soon"} {
		var hdr []string
		if ra != "" {
			hdr = []string{"Retry-After", ra}
		}
		srv, _ := startGateway(t, testConfig(statusBackend(t, 503, hdr...).URL))
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("backend Retry-After %q: status %d, Retry-After %q; want the 503 with Retry-After 1", ra, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

func TestAllBusyRelaysRetryAfterWithoutEjecting(t *testing.T) {
	a := statusBackend(t, 429, "Retry-After", "3")
	b := statusBackend(t, 503, "Retry-After", "3")
	cfg := testConfig(a.URL, b.URL)
	cfg.Health.MaxFails = 1
	srv, gw := startGateway(t, cfg)
	for i := 0; i < 3; i++ {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if resp.StatusCode != 429 && resp.StatusCode != 503 {
			t.Fatalf("status %d, want the backends' 429/503", resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("Retry-After lost")
		}
	}
	for _, be := range gw.Runtime().Pools["m1"].Backends {
		if be.Failures() != 0 || !be.Usable(time.Now()) {
			t.Fatalf("backend %s: busy answers must not count as failures or eject", be.Name())
		}
	}
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	hits := make(chan struct{}, 100)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- struct{}{}
		w.WriteHeader(503)
	}))
	defer busy.Close()
	cfg := testConfig(busy.URL, busy.URL+"/", busy.URL+"//")
	cfg.Retry.Attempts = 3
	cfg.Retry.BudgetRatio = 0
	cfg.Retry.MinPerSecond = 0
	srv, _ := startGateway(t, cfg)
	for i := 0; i < 5; i++ {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	if n := len(hits); n != 5 {
		t.Fatalf("backend hit %d times for 5 requests with an empty retry budget, want 5", n)
	}
}

func TestNoRetryOnceStreamingStarted(t *testing.T) {
	hits := make(chan struct{}, 10)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- struct{}{}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"a\":1}\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection mid-stream
	}))
	defer broken.Close()
	good := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(broken.URL, good.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true}`)
	body := readAll(t, resp)
	if !strings.HasPrefix(body, "data: {\"a\":1}\n\n") || !strings.Contains(body, `"code":"upstream_error"`) {
		t.Fatalf("want the partial stream then an SSE error event, got %q", body)
	}
	if len(hits) != 1 || len(good.bodies) != 0 {
		t.Fatal("a stream that had started was retried")
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	slowStart := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the gateway hanging up
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slowStart.Close()
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release) // runs before the servers' Close, which waits for handlers

	t.Run("first byte", func(t *testing.T) {
		cfg := testConfig(slowStart.URL)
		cfg.Timeouts.FirstByte = config.Duration(100 * time.Millisecond)
		srv, _ := startGateway(t, cfg)
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		body := readAll(t, resp)
		if _, code, _ := apiErr(t, body); resp.StatusCode != 504 || code != "upstream_timeout" {
			t.Fatalf("status %d code %s", resp.StatusCode, code)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			t.Fatalf("a 504 carries Retry-After %q: the gateway has no estimate of when the backend is faster", ra)
		}
	})
	t.Run("stream idle", func(t *testing.T) {
		cfg := testConfig(stall.URL)
		cfg.Timeouts.StreamIdle = config.Duration(100 * time.Millisecond)
		srv, _ := startGateway(t, cfg)
		resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true}`)
		body := readAll(t, resp)
		if !strings.Contains(body, "idle") || !strings.HasPrefix(body, "data: {}\n\n") {
			t.Fatalf("want the event then an idle-timeout SSE error, got %q", body)
		}
	})
	t.Run("total", func(t *testing.T) {
		cfg := testConfig(slowStart.URL)
		cfg.Timeouts.Total = config.Duration(100 * time.Millisecond)
		srv, _ := startGateway(t, cfg)
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		body := readAll(t, resp)
		if _, code, _ := apiErr(t, body); resp.StatusCode != 504 || code != "request_timeout" {
			t.Fatalf("status %d code %s", resp.StatusCode, code)
		}
	})
}

func TestPassiveHealthEjectsAfterMaxFails(t *testing.T) {
	failing := statusBackend(t, 500)
	good := newOKBackend(t)
	cfg := testConfig(failing.URL, good.URL)
	cfg.Health.MaxFails = 2
	cfg.Health.FailTimeout = config.Duration(time.Minute)
	srv, gw := startGateway(t, cfg)
	var fromFailing int
	for i := 0; i < 10; i++ {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if resp.StatusCode == 500 {
			fromFailing++
		}
	}
	if fromFailing != 2 {
		t.Fatalf("%d requests reached the failing backend, want exactly max_fails=2", fromFailing)
	}
	if st := gw.Runtime().Pools["m1"].Backends[0].State(time.Now()).String(); st != "ejected" {
		t.Fatalf("state %s, want ejected", st)
	}
}

func TestNoBackendGives503WithRetryAfter(t *testing.T) {
	cfg := testConfig(closedURL(t))
	cfg.Health.MaxFails = 1
	cfg.Retry.Attempts = 1
	srv, gw := startGateway(t, cfg)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody)) // ejects it
	// Ejected alone it would be tried as a last resort (lastresort.go);
	// held down by the active health check too, it is not.
	gw.Runtime().Pools["m1"].Backends[0].SetProbeHealthy(false)
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != 503 || code != "no_healthy_backend" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d code %s retry-after %q", resp.StatusCode, code, resp.Header.Get("Retry-After"))
	}
	ready, _ := http.Get(srv.URL + "/readyz")
	if readAll(t, ready); ready.StatusCode != 503 {
		t.Fatalf("/readyz = %d with no usable backend", ready.StatusCode)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	be := newOKBackend(t)
	srv, gw := startGateway(t, testConfig(be.URL))
	admin := adminServer(t, gw)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	checks := map[string][]string{
		"/healthz":      {"ok"},
		"/readyz":       {`"ready": true`},
		"/v1/models":    {`"object": "list"`, `"id": "m1"`, `"object": "model"`},
		"/v1/models/m1": {`"id": "m1"`},
		"/status":       {`"model": "m1"`, `"state": "healthy"`, `"inflight": 0`, `"ewma_latency_ms"`},
		"/metrics": {`sluice_requests_total{backend="` + strings.TrimPrefix(be.URL, "http://") + `",code="200",model="m1"} 1`,
			`sluice_tokens_total{direction="out",model="m1"} 4`, `sluice_backend_state{`, `sluice_ttft_seconds_bucket`},
	}
	for path, wants := range checks {
		base := srv.URL
		if path == "/status" || path == "/metrics" {
			base = admin.URL
		}
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s: missing %q in\n%s", path, w, body)
			}
		}
	}
}

// waitFor polls cond; the bound only turns a hang into a failure, so it
// is generous for a loaded machine.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = bytes.NewReader

func TestModelsCacheHeadersAndETag(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	resp, err := http.Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	etag := resp.Header.Get("ETag")
	if etag == "" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age") {
		t.Fatalf("headers %v", resp.Header)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/models", nil)
	req.Header.Set("If-None-Match", `"other", `+etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 304 || body != "" {
		t.Fatalf("revalidation: %d %q", resp.StatusCode, body)
	}
}

// TestStatusShowsLearnedSlotsAndCappedLimit: once a backend's metrics
// show it queueing behind a full batch of 8 (two readings), /status shows
// the 8 slots and a limit capped to them.
func TestStatusShowsLearnedSlotsAndCappedLimit(t *testing.T) {
	be := newOKBackend(t)
	srv, gw := startGateway(t, testConfig(be.URL))
	admin := adminServer(t, gw)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	b := gw.Runtime().Backends()[0]
	now := time.Now()
	clock := func() time.Time { return now }
	for range 2 {
		b.ObserveLoad(endpoint.Load{Running: 8, Waiting: 4, At: now, Expires: now.Add(time.Hour), InflightAtScrape: 12}, clock)
	}
	resp, err := http.Get(admin.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	for _, w := range []string{`"slots": 8`, `"limit": 8`} {
		if !strings.Contains(body, w) {
			t.Errorf("/status: missing %q in\n%s", w, body)
		}
	}
}
