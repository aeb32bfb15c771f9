package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
)

// The cold case on adaptive limits (no max_concurrency): tenant A on two
// long streams, B newly busy beside it with one, then five more at once,
// on a fresh gateway that has proven nothing. The ramp reckoned from the
// pool's recent peak (3) and A's margin held all five, refused 503 at their
// deadline with 3 of the engine's 16 slots in use. The engine reports its
// slots in its metrics (sluice_sim_slots), which the scraper reads: 16,
// less A's margin, is the ceiling B may ramp into, and its five start at
// once within the adaptive limit's start of 8.
func TestColdNewcomerGrowsIntoReportedSlots(t *testing.T) {
	srv, gw := startTwoTenantRampGateway(t, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The app's scraper (App.syncScraper), here owned by the test. Its
	// readings are trusted for a minute and a scrape may take that long
	// (hang guards): with the defaults for a 200 ms interval (a 200 ms
	// timeout, stale after 600 ms) a starved scrape (a loaded machine,
	// -race) left no fresh reading, so no reported room, and the ramp
	// held B's five to their deadline: the test measured the machine.
	var scraping sync.WaitGroup
	defer scraping.Wait()
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: 200 * time.Millisecond, Timeout: time.Minute, StaleAfter: time.Minute,
		CapConcurrency: true}, nil, nil)
	if err := sc.ScrapeOnce(ctx, gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	scraping.Go(func() { sc.Run(ctx, gw.Runtime().Backends) })

	hold := make(chan struct{})
	var started, refused atomic.Int64
	var streams sync.WaitGroup
	// open starts a long stream for key and returns once its first token
	// came (or it was refused); the stream then holds its slot until hold
	// closes.
	open := func(key string) {
		first := make(chan struct{})
		signal := sync.OnceFunc(func() { close(first) })
		streams.Go(func() {
			defer signal()
			body := `{"model":"m1","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"hello"}]}`
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				refused.Add(1)
				return
			}
			defer resp.Body.Close()
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "data: ") {
				t.Logf("%s: %d %s", key, resp.StatusCode, line)
				refused.Add(1)
				return
			}
			started.Add(1)
			signal()
			select {
			case <-hold:
			case <-ctx.Done():
			}
		})
		<-first
	}
	open("sk-a")
	open("sk-a")
	open("sk-b")
	var burst sync.WaitGroup
	for range 5 {
		burst.Go(func() { open("sk-b") })
	}
	burst.Wait()
	s := gw.Runtime().Queues()["m1"].Stats()
	close(hold)
	cancel()
	streams.Wait()
	if started.Load() != 8 || refused.Load() != 0 {
		t.Fatalf("streams started %d, refused %d (ramp held total %d, ceiling %d); want all 8: the engine reports 16 slots, A's margin is 2",
			started.Load(), refused.Load(), s.RampHeldTotal, s.RampCeiling)
	}
	if s.RampCeiling != 16 {
		t.Fatalf("ramp ceiling %d; want 16 (the sim's slots, nothing run by others)", s.RampCeiling)
	}
}
