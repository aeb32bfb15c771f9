package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/sim"
)

// estTokens is the gateway's estimate of the prompt (admission.
// EstimateCost of its body) prefillSender sends as its id-th, of words
// words.
func estTokens(words int, id int64) float64 {
	body := `{"model":"m1","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"` +
		strings.Repeat("w"+strconv.FormatInt(id, 10)+" ", words) + `"}]}`
	return admission.EstimateCost(len(body), 0, 0)
}

// midBesideLong has tenant a send one bigWords prompt to backend and,
// while it prefills, a midWords one; it returns how the latter went and
// its X-Sluice-Queue-Time.
func midBesideLong(t *testing.T, p *prefillSender, backend *endpoint.Backend, bigWords, midWords int) (prefillAnswer, string) {
	t.Helper()
	var wg sync.WaitGroup
	var big prefillAnswer
	wg.Go(func() { big = p.send("sk-a", bigWords, true) })
	waitFor(t, func() bool { w, _ := backend.WaitingStreams(); return w == 1 }) // sent: its prompt is queued prefill
	mid, _, queue := p.sendWithin("sk-a", midWords, "2s")
	wg.Wait()
	if !big.started {
		t.Errorf("the %d-word prompt: %+v", bigWords, big)
	}
	return mid, queue
}

// A prompt is long by the slowest rate of the backends routing may send
// it to now, not of every backend of the pool (branch prefillrate). A
// pool of a slow engine (500 tokens/s) and a fast one (5,000), both
// rates learned; the slow one goes down and is ejected. A 400-word prompt
// (~0.1 s of prefill on the fast one) sent while a 6,000-word one
// prefills there was "long" by the ejected engine's rate: held until the
// fast one's queued prefill fell within the delay target (a second, and
// for every mid-sized prompt for as long as the slow one was out). Now
// it is short, and goes at once.
func TestMidSizedPromptNotLongByAnEjectedBackendsRate(t *testing.T) {
	slowSim := sim.New(sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 500, DecodeStepBase: 10 * time.Millisecond})
	t.Cleanup(slowSim.Close)
	fastSim := sim.New(sim.Config{Model: "m1", Seed: 2, Slots: 16, PrefillTokensPerSec: 5000, DecodeStepBase: 10 * time.Millisecond})
	t.Cleanup(fastSim.Close)
	slowSrv, fastSrv := httptest.NewServer(slowSim), httptest.NewServer(fastSim)
	t.Cleanup(slowSrv.Close)
	t.Cleanup(fastSrv.Close)
	cfg := testConfig(slowSrv.URL, fastSrv.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}}
	cfg.Health.MaxFails, cfg.Health.FailTimeout = 1, config.Duration(time.Hour) // out for the test once it fails
	srv, gw := startGatewayWith(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
	defer cancel()
	p := &prefillSender{t: t, ctx: ctx, url: srv.URL}
	pool := gw.Runtime().Pools["m1"]
	slow, fast := pool.Backends[0], pool.Backends[1]
	for i := 0; slow.PrefillRate(time.Now()) <= 0 || fast.PrefillRate(time.Now()) <= 0; i++ {
		if i == 6 {
			t.Fatalf("rates not learned from 6 lone 1,500-word starts: slow %.0f, fast %.0f tokens/s", slow.PrefillRate(time.Now()), fast.PrefillRate(time.Now()))
		}
		if a := p.send("sk-a", 1500, true); !a.started { // over 1,024 estimated tokens: each teaches its backend's rate
			t.Fatalf("warm-up prompt: %+v", a)
		}
	}
	const mid = 400
	slowSrv.Close() // the slow engine goes down: the next request sent there fails and ejects it
	for i := 0; slow.Usable(time.Now()); i++ {
		if i == 4 {
			t.Fatal("the slow backend, down, not ejected after 4 requests")
		}
		if a := p.send("sk-a", 10, true); !a.started {
			t.Fatalf("a short stream while the slow backend goes down: %+v", a)
		}
	}
	est, share := estTokens(mid, p.n.Load()+2), longPrefillShare*pool.LateStart.Seconds() // the 6,000-word one goes first
	if s, f := est/slow.PrefillRate(time.Now()), est/fast.PrefillRate(time.Now()); s < share || f >= share {
		t.Fatalf("a %d-word prompt's prefill: %.2fs on the slow backend, %.2fs on the fast; the test needs it long (>= %.3fs) on the slow only", mid, s, f, share)
	}
	a, queue := midBesideLong(t, p, fast, 6000, mid)
	if !a.started || queue != "0" {
		t.Errorf("a %d-word prompt beside a 6,000-word one prefilling on the fast backend, the slow one ejected: %+v, queue time %q ms; want sent at once (short by the fast backend's rate, 0 ms)", mid, a, queue)
	}
}

// A learned rate ages (branch prefillrate): a minute with no lone long
// start and it is forgotten. A rate learned once (here the engine's
// true 2,500 tokens/s, as it would be one learned slow under a burst)
// made every prompt of a few hundred tokens long for good, and such
// prompts teach no rate: after an idle minute a 700-word prompt (under
// the 1,024 tokens that are long without a rate) sent while a 6,000-word
// one prefilled was still priced by it and held or refused. Now the rate
// is forgotten and it goes at once; two lone long starts teach it again.
func TestLearnedPrefillRateForgottenAfterAMinuteWithoutSamples(t *testing.T) {
	var skew atomic.Int64 // the gateway's clock runs ahead of the wall clock by this
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	rig := startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 2500,
		DecodeStepBase: 10 * time.Millisecond}, nil, func(d *Deps) { d.Now = clock })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
	defer cancel()
	p := &prefillSender{t: t, ctx: ctx, url: rig.srv.URL}
	pool := rig.gw.Runtime().Pools["m1"]
	backend := pool.Backends[0]
	for range 2 {
		if a := p.send("sk-a", 2000, true); !a.started {
			t.Fatalf("warm-up prompt: %+v", a)
		}
	}
	const mid = 700
	est := estTokens(mid, p.n.Load()+2) // the 6,000-word one goes first
	if rate := backend.PrefillRate(clock()); rate <= 0 || est/rate < longPrefillShare*pool.LateStart.Seconds() || est >= longPromptPrior {
		t.Fatalf("rate %.0f tokens/s: the test needs a %d-word prompt (%.0f tokens) long by it and short without it", rate, mid, est)
	}
	skew.Add(int64(61 * time.Second)) // a minute and a second with no sample
	if got := backend.PrefillRate(clock()); got != 0 {
		t.Errorf("rate %.0f tokens/s a minute after its last sample; want forgotten", got)
	}
	a, queue := midBesideLong(t, p, backend, 6000, mid)
	if !a.started || queue != "0" {
		t.Errorf("a %d-word prompt beside a 6,000-word one prefilling, the rate a minute old: %+v, queue time %q ms; want sent at once (0 ms)", mid, a, queue)
	}
	for range 2 {
		if a := p.send("sk-a", 2000, true); !a.started {
			t.Fatalf("a lone 2,000-word prompt: %+v", a)
		}
	}
	if backend.PrefillRate(clock()) <= 0 {
		t.Error("no rate learned again from two lone starts after it was forgotten")
	}
}

// A late long prompt's Retry-After is when a backend can start one sent
// afresh by its objective (branch prefillrate), not when the queued
// prefill falls within the delay target: for a prompt whose objective
// less its own prefill is under the target, that was too soon, and its
// retry then was refused again. A pool with a 1.5 s delay target, its
// rate learned (2,500 tokens/s); while a 6,000-word prompt prefills
// (~3 s), a 2,000-word one (~1 s) whose client wants a first token within
// its own prefill and 300 ms is refused at once; its Retry-After must not
// come before the queued prefill is down to those 300 ms (prefill3's
// came ~1.2 s before: when it was down to 1.5 s).
func TestLatePromptRetryAfterWhenItCouldStartByItsObjective(t *testing.T) {
	rig := startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 2500,
		DecodeStepBase: 10 * time.Millisecond}, func(c *config.Config) {
		c.Admission.DelayTarget = config.Duration(1500 * time.Millisecond)
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
	defer cancel()
	p := &prefillSender{t: t, ctx: ctx, url: rig.srv.URL}
	pool := rig.gw.Runtime().Pools["m1"]
	backend := pool.Backends[0]
	for range 2 {
		if a := p.send("sk-a", 2000, true); !a.started {
			t.Fatalf("warm-up prompt: %+v", a)
		}
	}
	rate := backend.PrefillRate(time.Now())
	if rate <= 0 || pool.LateStart != 1500*time.Millisecond {
		t.Fatalf("rate %.0f tokens/s, delay target %v; the test needs a rate and 1.5s", rate, pool.LateStart)
	}
	const words, spare = 2000, 300 * time.Millisecond
	own := time.Duration(estTokens(words, p.n.Load()+2) / rate * float64(time.Second)) // the 6,000-word one goes first
	objective := (own + spare).Round(time.Millisecond)
	var wg sync.WaitGroup
	var big prefillAnswer
	wg.Go(func() { big = p.send("sk-a", 6000, true) })
	waitFor(t, func() bool { w, _ := backend.WaitingStreams(); return w == 1 }) // sent: its prompt is queued prefill
	_, before := backend.QueuedPrefill(time.Now())
	a, body, queue := p.sendWithin("sk-a", words, strconv.FormatInt(objective.Milliseconds(), 10)+"ms")
	_, after := backend.QueuedPrefill(time.Now())
	wg.Wait()
	if !big.started {
		t.Errorf("the 6,000-word prompt: %+v", big)
	}
	if a.status != http.StatusServiceUnavailable || queue != "0" || !strings.Contains(body, "queued to prefill") {
		t.Fatalf("a %d-word prompt wanting its first token within %v beside %v of queued prefill: %+v, queue time %q, %q; want refused at once", words, objective, before, a, queue, body)
	}
	retry, err := strconv.Atoi(a.retryAfter)
	if err != nil {
		t.Fatalf("Retry-After %q: %v", a.retryAfter, err)
	}
	// When one sent afresh could go: its queued prefill within what its
	// objective leaves beyond its own (spare), bounded by the queued
	// prefill read after the refusal and before the prompt was sent.
	least, most := after-spare, before-spare
	if got := time.Duration(retry) * time.Second; got < least || got > most+2*time.Second || retry < 1 {
		t.Errorf("Retry-After %ds with %v-%v of prefill queued and %v spare in its objective; want %v-%v rounded up, at least 1s",
			retry, after, before, spare, least, most)
	}
}
