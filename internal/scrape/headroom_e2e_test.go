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
// the engine queue, neither replica's limit exceeds the slots, and the two
// together stay within them.
func TestScrapedCapKeepsLimitWithinSimSlots(t *testing.T) {
	const slots = 4
	s := sim.New(sim.Config{Seed: 1, Slots: slots, MaxWaiting: 100})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // runs first: ends the streams before the sim closes

	replicas := make([]*endpoint.Backend, 2)
	for i := range replicas {
		b, err := endpoint.New(endpoint.Spec{URL: ts.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		b.SetLimiter(admission.Static(18))
		replicas[i] = b
	}
	send := func(b *endpoint.Backend) {
		if !b.Acquire() {
			t.Fatal("Acquire refused below the limit")
		}
		body := `{"model":"sim-model","messages":[{"role":"user","content":"tell me a long story"}],"max_tokens":5000,"stream":true}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if resp, err := client.Do(req); err == nil {
				<-ctx.Done()
				resp.Body.Close()
			}
		}()
	}
	for range 4 {
		send(replicas[0])
	}
	for range 2 {
		send(replicas[1])
	}
	// Wait (on the engine's own state, not on time) until 4 run and 2 wait.
	deadline := time.Now().Add(30 * time.Second)
	for st := s.Stats(); st.Running != slots || st.Waiting != 2; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("engine at running %d, waiting %d; want %d and 2", st.Running, st.Waiting, slots)
		}
		time.Sleep(time.Millisecond)
	}

	now := time.Now()
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Now: func() time.Time { return now }}, client, nil)
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
		if got := b.Limit(); got > slots || got != limit {
			t.Errorf("replica %d: Limit %d (scraped cap %d), want the cap, at most %d slots", i, got, limit, slots)
		}
		if b.HasCapacity() {
			t.Errorf("replica %d may send more to an engine that queues", i)
		}
		total += b.Limit()
	}
	if total > slots {
		t.Errorf("replicas' limits add up to %d, more than the engine's %d slots", total, slots)
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
	s := sim.New(sim.Config{Seed: 1, Slots: 64, MaxWaiting: 100, DecodeStepBase: time.Second})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // runs first: ends the streams before the sim closes

	b, err := endpoint.New(endpoint.Spec{URL: ts.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b.SetLimiter(admission.Static(40)) // the adaptive limit, stepping up
	send := func(n int) {
		for range n {
			if !b.Acquire() {
				t.Fatal("Acquire refused below the limit")
			}
			body := `{"model":"sim-model","messages":[{"role":"user","content":"tell me a long story"}],"max_tokens":5000,"stream":true}`
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				if resp, err := client.Do(req); err == nil {
					<-ctx.Done()
					resp.Body.Close()
				}
			}()
		}
	}
	// Wait (on the engine's own state) for running and waiting; the step
	// is long enough that streams just sent are still waiting when seen.
	await := func(running, waiting int) {
		deadline := time.Now().Add(30 * time.Second)
		for st := s.Stats(); st.Running != running || st.Waiting != waiting; st = s.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("engine at running %d, waiting %d; want %d and %d", st.Running, st.Waiting, running, waiting)
			}
			time.Sleep(time.Millisecond)
		}
	}
	now := time.Now()
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Now: func() time.Time { return now }}, client, nil)
	read := func() {
		if err := sc.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
			t.Fatal(err)
		}
	}
	send(2)
	await(2, 0)
	send(2) // a step up: they wait for the next step
	await(2, 2)
	read()
	await(4, 0) // they joined: the batch was not full
	send(4)     // the next step up
	await(4, 4)
	read()
	if limit, slots := b.ScrapedCap(); slots != 0 || limit != 0 {
		t.Errorf("scraped cap %d, %d slots learned from streams waiting for the next step of a 64-slot engine", limit, slots)
	}
	if got := b.Limit(); got != 40 {
		t.Errorf("Limit = %d, want the adaptive 40 uncapped", got)
	}
}
