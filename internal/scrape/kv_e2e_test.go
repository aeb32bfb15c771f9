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
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// startPromptStream starts a stream of maxTokens whose prompt is words
// words long (the simulator counts a word as a token) and waits for its
// first event, so the engine holds the prompt's KV.
func startPromptStream(t *testing.T, ctx context.Context, client *http.Client, url string, words, maxTokens int) {
	t.Helper()
	prompt := strings.Repeat("word ", words)
	body := `{"model":"sim-model","messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":` +
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

// scrapeSim scrapes one backend once, on a fixed clock.
func scrapeSim(t *testing.T, client *http.Client, b *endpoint.Backend, now time.Time, names scrape.Names) {
	t.Helper()
	// A minute's timeout is a hang guard (see TestSimBatchBoundIsReportedRoom).
	sc := scrape.NewScraper(scrape.Config{Now: func() time.Time { return now }, Timeout: time.Minute, Names: names}, client, nil)
	if err := sc.ScrapeOnce(context.Background(), []*endpoint.Backend{b}); err != nil {
		t.Fatal(err)
	}
}

// A real simulator whose KV cache fills before its slots: 16 slots, 4,096
// KV tokens, two streams of another client with prompts of 1,970 tokens
// hold 96% of it, so nothing more fits. The engine reports 14 free slots;
// the room is none (its KV cache is full). The code before kvhead took the
// 14 slots as room. (kvhead's 1,500-token prompts, 73% used, are room by
// the bound since branch kvfix: a cache not full says nothing of the
// newcomer's size.)
func TestSimFullKVIsNoRoom(t *testing.T) {
	s := sim.New(sim.Config{Seed: 1, Slots: 16, KVTokens: 4096})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // ends the streams before the sim closes
	for range 2 {
		startPromptStream(t, ctx, client, ts.URL, 1970, 50)
	}
	b, err := endpoint.New(endpoint.Spec{URL: ts.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	scrapeSim(t, client, b, now, scrape.Names{})
	l, _ := b.Load()
	if l.BatchBound != 16 || l.Running != 2 || l.KVCacheUsage < 0.96 {
		t.Fatalf("scraped bound %v, running %v, KV usage %v; want 16, 2, at least 0.96", l.BatchBound, l.Running, l.KVCacheUsage)
	}
	if room, ok := b.ReportedRoom(now); !ok || room != 0 {
		t.Fatalf("reported room %d (ok %v); want 0: 14 slots free but the KV cache %.0f%% full", room, ok, 100*l.KVCacheUsage)
	}
}

// A simulator read as vLLM (no batch bound: batch_bound_metrics []) with
// two streams of another client running in a cache of 65,536 tokens has
// KV room for many more sequences like them: the room is the KV estimate,
// where the old code gave none (vLLM reports no bound). Idle, it has none:
// no running sequence to take a footprint from.
func TestSimKVRoomWithoutBound(t *testing.T) {
	s := sim.New(sim.Config{Seed: 1, Slots: 16})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	b, err := endpoint.New(endpoint.Spec{URL: ts.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	vllm := scrape.Names{BatchBound: []string{}}
	now := time.Now()
	scrapeSim(t, client, b, now, vllm)
	if room, ok := b.ReportedRoom(now); ok {
		t.Fatalf("idle engine without a bound: room %d; want none", room)
	}

	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // ends the streams before the sim closes
	for range 2 {
		startPromptStream(t, ctx, client, ts.URL, 100, 5000)
	}
	now = now.Add(time.Second)
	scrapeSim(t, client, b, now, vllm)
	l, _ := b.Load()
	if l.BatchBound != 0 || l.Running != 2 || l.KVCacheUsage <= 0 {
		t.Fatalf("scraped bound %v, running %v, KV usage %v; want 0, 2, above 0", l.BatchBound, l.Running, l.KVCacheUsage)
	}
	// Two sequences of at least 100 tokens each in 65,536: u is at most a
	// few percent, so the estimate is far above the 14 more slots the
	// engine has (its bound, unread here, is no part of it).
	if room, ok := b.ReportedRoom(now); !ok || room < 14 {
		t.Fatalf("reported room %d (ok %v) at KV usage %v with 2 running; want at least 14", room, ok, l.KVCacheUsage)
	}
}
