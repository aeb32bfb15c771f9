package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A newcomer's burst of long prompts is priced by the engine's queued
// prefill once its rate is learned (branch burstprefill). On a simulator
// prefilling 2,500 tokens/s, tenant a (after two lone 2,000-word prompts
// that teach the rate) runs two long streams; tenant b sends one
// 2,000-word prompt and, while it prefills (0.8 s), five more at once. The
// engine reports 13 free slots, so the code before sent all five with it
// (they started 4 s later, the tenant's next short stream refused in the
// binaries); now at most one more of them goes to the engine before the
// first has started, the others wait for the prefill ahead to fall within
// the delay target (500 ms) or are refused with Retry-After at their
// deadline, and a's next short stream is served. The assertions are
// counts, not times: the simulator's prefill is a real wait.
func TestBurstOfLongPromptsPricedByTheQueuedPrefill(t *testing.T) {
	rig := startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 2500,
		DecodeStepBase: 10 * time.Millisecond}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	type answer struct {
		status     int
		retryAfter string
		started    bool
	}
	// send sends a stream of words distinct words (no prefix-cache hit
	// shortens its prefill) and reads it to its end.
	var n atomic.Int64
	send := func(key string, words int) answer {
		id := strconv.FormatInt(n.Add(1), 10)
		body := `{"model":"m1","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"` +
			strings.Repeat("w"+id+" ", words) + `"}]}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return answer{}
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return answer{}
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		a.started = resp.StatusCode == http.StatusOK && strings.HasPrefix(line, "data: ")
		return a
	}
	for range 2 { // one at a time: each starts alone and teaches the rate
		if a := send("sk-a", 2000); !a.started {
			t.Fatalf("warm-up prompt: %+v", a)
		}
	}
	streams := rig.streams(t)
	<-streams.open("sk-a")
	<-streams.open("sk-a")
	backend := rig.gw.Runtime().Backends()[0]
	pool := rig.gw.Runtime().Pools["m1"]
	var wg sync.WaitGroup
	answers := make([]answer, 6)
	wg.Go(func() { answers[0] = send("sk-b", 2000) })
	waitFor(t, func() bool { return backend.Inflight() == 3 })
	// The engine's room, read now: 16 slots, 3 running.
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: time.Second, StaleAfter: 10 * time.Second,
		Timeout: time.Minute, CapConcurrency: true, Now: time.Now}, nil, nil)
	if err := sc.ScrapeOnce(ctx, rig.gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	for i := range 5 {
		wg.Go(func() {
			answers[1+i] = send("sk-b", 2000)
			if !answers[1+i].started {
				refused.Add(1)
			}
		})
	}
	// Every one of the five granted, queued, held or refused.
	waitFor(t, func() bool {
		s := pool.queue.Stats()
		return s.InUse+s.Queued+int(refused.Load()) >= 8
	})
	sent := int(backend.Inflight()) - 3
	a3 := send("sk-a", 10)
	wg.Wait()
	if sent > 1 {
		t.Errorf("%d of b's five long prompts sent beside its first, still prefilling (0.8 s each at 2,500 tokens/s); want at most 1", sent)
	}
	for i, a := range answers {
		if !a.started && (a.status != http.StatusServiceUnavailable && a.status != http.StatusTooManyRequests || a.retryAfter == "") {
			t.Errorf("b's stream %d: %+v; want started, or 503/429 with Retry-After", i, a)
		}
	}
	if !a3.started {
		t.Errorf("a's short stream after b's burst: %+v; want started", a3)
	}
}
