package scrape_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
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
	s := sim.New(sim.Config{Seed: 1})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	return ts.URL
}

// startStream opens a long streaming completion and returns once its first
// token has arrived, so the simulator counts it as running. The request
// ends when ctx is cancelled. 5000 tokens outlast the test by far, and six
// such requests still fit the default KV budget (larger ones get a 400).
func startStream(t *testing.T, ctx context.Context, client *http.Client, url string) {
	t.Helper()
	body := `{"model":"sim-model","messages":[{"role":"user","content":"tell me a long story"}],"max_tokens":5000,"stream":true}`
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
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // runs first: ends the streams before the sims close
	const long = 6
	for range long {
		startStream(t, ctx, client, busyURL)
	}

	var bs []*endpoint.Backend
	for _, u := range []string{busyURL, idleURL} {
		b, err := endpoint.New(endpoint.Spec{URL: u}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
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
