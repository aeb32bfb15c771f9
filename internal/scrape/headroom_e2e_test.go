package scrape_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestScrapedCapKeepsLimitWithinSimSlots: a real simulator with 4 batch
// slots, sent 6 long streams by two gateway replicas (4 and 2), each with a
// concurrency limit of 18 (what the adaptive limit settled at in the chaos
// suite's slow-readers, past the engine's slots): once the scraper has seen
// the engine queue, neither replica's limit exceeds the slots and the
// handover (an eighth, here 1), and the two together stay within them.
func TestScrapedCapKeepsLimitWithinSimSlots(t *testing.T) {
	const slots = 4
	bed := newSimBed(t, sim.Config{Seed: 1, Slots: slots, MaxWaiting: 100})
	replicas := make([]*endpoint.Backend, 2)
	for i := range replicas {
		replicas[i] = bed.backend(18)
	}
	for range 4 {
		bed.stream(replicas[0])
	}
	for range 2 {
		bed.stream(replicas[1])
	}
	bed.await(slots, 2) // 4 run and 2 wait

	now := time.Now()
	// Its bound unread: the slots learned from its queue (an engine that
	// reports its bound: TestReportedBoundCapsAdaptiveLimit).
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Names: scrape.Names{BatchBound: []string{}},
		Now: func() time.Time { return now }}, bed.client, nil)
	for range 2 { // a queue in one reading proves nothing; two in a row do
		if err := sc.ScrapeOnce(t.Context(), replicas); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i, b := range replicas {
		limit, learned := b.ScrapedCap()
		if learned != slots {
			t.Errorf("replica %d learned %d slots, want %d", i, learned, slots)
		}
		if got := b.Limit(); got > slots+1 || got != limit {
			t.Errorf("replica %d: Limit %d (scraped cap %d), want the cap, at most %d slots + 1", i, got, limit, slots)
		}
		if b.HasCapacity() {
			t.Errorf("replica %d may send more to an engine that queues", i)
		}
		total += b.Limit()
	}
	if total > slots+1 {
		t.Errorf("replicas' limits add up to %d, more than the engine's %d slots + 1", total, slots)
	}
}

// TestScrapedCapIgnoresWaitingForTheNextStep: a real simulator at a 1 s
// decode step with 64 free slots takes new streams only at a step
// boundary, so streams sent since the last step read as waiting next to a
// batch at its largest yet. Two such readings in a row, with the batch
// grown between them by the streams the first saw waiting, read as a full
// batch before (4 slots learned, the gateway capped at 4 of 64); a batch
// that grew was not full, so nothing is learned or capped.
func TestScrapedCapIgnoresWaitingForTheNextStep(t *testing.T) {
	bed := newSimBed(t, sim.Config{Seed: 1, Slots: 64, MaxWaiting: 100, DecodeStepBase: time.Second})
	b := bed.backend(40) // the adaptive limit, stepping up
	send := func(n int) {
		for range n {
			bed.stream(b)
		}
	}
	now := time.Now()
	// Its bound unread (an engine that reports none, as vLLM): the slots
	// are learned from its queue or not at all.
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Names: scrape.Names{BatchBound: []string{}},
		Now: func() time.Time { return now }}, bed.client, nil)
	read := func() {
		if err := sc.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
			t.Fatal(err)
		}
	}
	// The step is long enough that streams just sent are still waiting
	// when seen.
	send(2)
	bed.await(2, 0)
	send(2) // a step up: they wait for the next step
	bed.await(2, 2)
	read()
	bed.await(4, 0) // they joined: the batch was not full
	send(4)         // the next step up
	bed.await(4, 4)
	read()
	if limit, slots := b.ScrapedCap(); slots != 0 || limit != 0 {
		t.Errorf("scraped cap %d, %d slots learned from streams waiting for the next step of a 64-slot engine", limit, slots)
	}
	if got := b.Limit(); got != 40 {
		t.Errorf("Limit = %d, want the adaptive 40 uncapped", got)
	}
}

// simBed is a simulator served over HTTP, with a client whose long streams
// to it stay open until the test ends.
type simBed struct {
	t      *testing.T
	sim    *sim.Server
	url    string
	client *http.Client
	ctx    context.Context
}

func newSimBed(t *testing.T, cfg sim.Config) *simBed {
	s := sim.New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // runs first: ends the streams before the sim closes
	return &simBed{t: t, sim: s, url: ts.URL, client: &http.Client{Transport: tr}, ctx: ctx}
}

// backend is a gateway's view of the simulator with a concurrency limit.
func (bed *simBed) backend(limit int) *endpoint.Backend {
	b, err := endpoint.New(endpoint.Spec{URL: bed.url}, endpoint.HealthPolicy{})
	if err != nil {
		bed.t.Fatal(err)
	}
	b.SetLimiter(admission.Static(limit))
	return b
}

// stream takes a slot on b and sends a long stream, held open until the
// test ends.
func (bed *simBed) stream(b *endpoint.Backend) {
	if !b.Acquire() {
		bed.t.Fatal("Acquire refused below the limit")
	}
	body := `{"model":"sim-model","messages":[{"role":"user","content":"tell me a long story"}],"max_tokens":5000,"stream":true}`
	req, err := http.NewRequestWithContext(bed.ctx, http.MethodPost, bed.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		bed.t.Fatal(err)
	}
	go func() {
		if resp, err := bed.client.Do(req); err == nil {
			<-bed.ctx.Done()
			resp.Body.Close()
		}
	}()
}

// await waits, on the engine's own state and not on time, until running
// streams run and waiting wait.
func (bed *simBed) await(running, waiting int) {
	bed.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for st := bed.sim.Stats(); st.Running != running || st.Waiting != waiting; st = bed.sim.Stats() {
		if time.Now().After(deadline) {
			bed.t.Fatalf("engine at running %d, waiting %d; want %d and %d", st.Running, st.Waiting, running, waiting)
		}
		time.Sleep(time.Millisecond)
	}
}
