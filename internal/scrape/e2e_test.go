package scrape_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// startSim serves a simulator on a real loopback listener. Cleanups run in
// reverse order: the simulator closes (failing its streams) before the HTTP
// server waits for its handlers.
func startSim(t *testing.T) string {
	t.Helper()
	return startSimWith(t, sim.Config{Seed: 1})
}

// startSimWith is startSim with a simulator of the given config (slots, KV
// budget).
func startSimWith(t *testing.T, cfg sim.Config) string {
	t.Helper()
	s := sim.New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	return ts.URL
}

// simClient is the client of another party sending to the simulators; its
// idle connections close when the test ends.
func simClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// newBackend is the gateway's view of the simulator at url.
func newBackend(t *testing.T, url string) *endpoint.Backend {
	t.Helper()
	b, err := endpoint.New(endpoint.Spec{URL: url}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startStream opens a long streaming completion and returns once its first
// token has arrived, so the simulator counts it as running. The request
// ends when ctx is cancelled. 5000 tokens outlast the test by far, and six
// such requests still fit the default KV budget (larger ones get a 400).
func startStream(t *testing.T, ctx context.Context, client *http.Client, url string) {
	t.Helper()
	openStream(t, ctx, client, url, "tell me a long story", 5000)
}

// openStream sends a streaming chat completion of content and maxTokens and
// waits for its first event; the response body closes when the test ends.
func openStream(t *testing.T, ctx context.Context, client *http.Client, url, content string, maxTokens int) {
	t.Helper()
	body := `{"model":"sim-model","messages":[{"role":"user","content":"` + content + `"}],"max_tokens":` +
		strconv.Itoa(maxTokens) + `,"stream":true}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first stream line %q, %v", line, err)
	}
}

// TestLeastLoadPicksIdleSim: two real simulators, one busy with long
// requests; after one scrape, least_load sends new requests to the idle one.
func TestLeastLoadPicksIdleSim(t *testing.T) {
	busyURL, idleURL := startSim(t), startSim(t)
	client := simClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // runs first: ends the streams before the sims close
	const long = 6
	for range long {
		startStream(t, ctx, client, busyURL)
	}

	var bs []*endpoint.Backend
	for _, u := range []string{busyURL, idleURL} {
		bs = append(bs, newBackend(t, u))
	}
	busy, idle := bs[0], bs[1]
	now := time.Now()
	s := scrape.NewScraper(scrape.Config{Now: func() time.Time { return now }}, client, nil)
	if err := s.ScrapeOnce(t.Context(), bs); err != nil {
		t.Fatal(err)
	}
	if l, _ := busy.Load(); l.Running != long || l.KVCacheUsage <= 0 {
		t.Errorf("busy sim read as %+v, want running %d and some KV in use", l, long)
	}
	if l, _ := idle.Load(); l.Running != 0 || l.Waiting != 0 || l.KVCacheUsage != 0 {
		t.Errorf("idle sim read as %+v, want nothing running", l)
	}

	p, err := routing.New("least_load", routing.NewRand(1), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if got := routing.Select(now, p, &routing.Request{Model: "sim-model"}, bs, nil); got != idle {
			t.Fatalf("pick %d went to %s, want the idle sim %s", i, got.Name(), idle.Name())
		}
	}
}
