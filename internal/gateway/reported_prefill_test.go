package gateway

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A healthy engine that prefills slowly (the simulator at 5,000 tokens/s)
// serving 4,000-token prompts one at a time starts each in about 0.8 s:
// its prefill, past the delay target (500 ms) but no queue. Once two such
// starts taught the backend's prefill rate, the late-start judge excuses
// them and the reported room stands (16 slots). The code before took every
// first token past the delay target as late and reported no room (0)
// for a reading's trust after each (docs/RELIABILITY.md, branch
// prefillpred).
func TestSlowPrefillLongPromptsKeepTheRoom(t *testing.T) {
	rig := startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 5000,
		DecodeStepBase: 10 * time.Millisecond}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	for i := range 3 { // one at a time: each starts alone
		// Distinct words: no prefix-cache hit shortens the prefill.
		body := `{"model":"m1","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"` +
			strings.Repeat("w"+strconv.Itoa(i)+" ", 4000) + `"}]}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(got), "[DONE]") {
			t.Fatalf("stream %d: %d %v %.200s", i, resp.StatusCode, err, got)
		}
	}
	backends := rig.gw.Runtime().Backends()
	ttft := backends[0].RecentTTFT(time.Now())
	if ttft.P50 <= 500*time.Millisecond {
		t.Fatalf("the long prompts started in %v (p50), within the delay target: the simulator's prefill was not paid", ttft.P50)
	}
	// A reading trusted for 10 s: the old code's late start stands in it.
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: time.Second, StaleAfter: 10 * time.Second,
		Timeout: time.Minute, CapConcurrency: true, Now: time.Now}, nil, nil)
	if err := sc.ScrapeOnce(ctx, backends); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(PoolParts{Model: &config.Model{Name: "m1"}, Backends: backends, Now: time.Now,
		LateStart: 500 * time.Millisecond})
	if got, _ := pool.ReportedCapacity(0); got != 16 {
		t.Errorf("reported capacity %d after three 4,000-token prompts started in about %v each; want 16: their prefill, no queue",
			got, ttft.P50)
	}
}
