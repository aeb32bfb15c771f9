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

	"github.com/sluice-gw/sluice/internal/endpoint"
	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// prefillAnswer is how a request of a prefill test ended: its status, its
// Retry-After, and whether it started (a 200 and, for a stream, a first
// event; for a non-stream, its whole answer).
type prefillAnswer struct {
	status     int
	retryAfter string
	started    bool
}

// prefillSender sends requests of distinct words (no prefix-cache hit
// shortens their prefill) to a rampRig and reads each to its first line.
type prefillSender struct {
	t   *testing.T
	ctx context.Context
	url string
	n   atomic.Int64
}

func (p *prefillSender) send(key string, words int, stream bool) prefillAnswer {
	id := strconv.FormatInt(p.n.Add(1), 10)
	body := `{"model":"m1","stream":` + strconv.FormatBool(stream) + `,"max_tokens":5,"messages":[{"role":"user","content":"` +
		strings.Repeat("w"+id+" ", words) + `"}]}`
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, p.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		p.t.Error(err)
		return prefillAnswer{}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Error(err)
		return prefillAnswer{}
	}
	defer resp.Body.Close()
	a := prefillAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	a.started = resp.StatusCode == http.StatusOK && (!stream || strings.HasPrefix(line, "data: "))
	return a
}

// heldOrAnswered fails for an answer neither started nor refused 503/429
// with Retry-After (a held request's refusal at its deadline).
func heldOrAnswered(t *testing.T, what string, answers []prefillAnswer) {
	t.Helper()
	for i, a := range answers {
		if !a.started && (a.status != http.StatusServiceUnavailable && a.status != http.StatusTooManyRequests || a.retryAfter == "") {
			t.Errorf("%s %d: %+v; want started, or 503/429 with Retry-After", what, i, a)
		}
	}
}

// A newcomer's burst of long NON-streamed prompts is priced by the
// engine's queued prefill as a stream burst is (branch prefill2): the
// engine prefills a non-streamed prompt first come, first served like a
// stream's, but it has no first token, so the code before counted none of
// them (each sent only raised the in-flight term by one) and all five
// went in beside the first while it prefilled. Now each counts until the
// learned rate says its prefill ended: at most one more of them goes
// before the first's prefill falls within the delay target. The scenario
// of TestBurstOfLongPromptsPricedByTheQueuedPrefill with b not streaming.
func TestBurstOfLongNonStreamedPromptsPricedByTheQueuedPrefill(t *testing.T) {
	rig, p := startWarmPrefillRig(t)
	streams := rig.streams(t)
	<-streams.open("sk-a")
	<-streams.open("sk-a")
	backend := rig.gw.Runtime().Backends()[0]
	pool := rig.gw.Runtime().Pools["m1"]
	var wg sync.WaitGroup
	answers := make([]prefillAnswer, 6)
	wg.Go(func() { answers[0] = p.send("sk-b", 2000, false) })
	waitFor(t, func() bool { return backend.Inflight() == 3 })
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: time.Second, StaleAfter: 10 * time.Second,
		Timeout: time.Minute, CapConcurrency: true, Now: time.Now}, nil, nil)
	if err := sc.ScrapeOnce(p.ctx, rig.gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	sent := p.sendFiveLong(&wg, answers, "sk-b", false, pool, backend, 8) - 3
	a3 := p.send("sk-a", 10, true)
	wg.Wait()
	if sent > 1 {
		t.Errorf("%d of b's five long non-streamed prompts sent beside its first, still prefilling (0.8 s each at 2,500 tokens/s); want at most 1", sent)
	}
	heldOrAnswered(t, "b's request", answers)
	if !a3.started {
		t.Errorf("a's short stream after b's burst: %+v; want started", a3)
	}
}

// An ESTABLISHED tenant's own burst of long prompts is priced by the
// engine's queued prefill too (branch prefill2): tenant a, alone on the
// pool (it never ramps), sends one 2,000-word stream and, while it
// prefills (0.8 s at 2,500 tokens/s), five more at once. The code before
// sent all five on the free slots (the engine prefilled them one after
// another, the last starting 4 s later); now at most one more goes before
// the first's prefill falls within the delay target, the others are held
// and go as the engine starts what it was sent, or are refused with
// Retry-After at their deadline. A short stream sent meanwhile is not
// held (its own prefill delays nobody), and the tenant's next long prompt
// after the burst starts: its steady traffic is not starved.
func TestEstablishedTenantsBurstOfLongPromptsPricedByTheQueuedPrefill(t *testing.T) {
	rig, p := startWarmPrefillRig(t)
	backend := rig.gw.Runtime().Backends()[0]
	pool := rig.gw.Runtime().Pools["m1"]
	var wg sync.WaitGroup
	answers := make([]prefillAnswer, 6)
	wg.Go(func() { answers[0] = p.send("sk-a", 2000, true) })
	waitFor(t, func() bool { return backend.Inflight() == 1 })
	sent := p.sendFiveLong(&wg, answers, "sk-a", true, pool, backend, 6) - 1
	short := p.send("sk-a", 10, true)
	wg.Wait()
	if sent > 1 {
		t.Errorf("%d of a's five long prompts sent beside its first, still prefilling (0.8 s each at 2,500 tokens/s); want at most 1", sent)
	}
	heldOrAnswered(t, "a's long stream", answers)
	if !short.started {
		t.Errorf("a's short stream during its burst: %+v; want started", short)
	}
	if a := p.send("sk-a", 2000, true); !a.started {
		t.Errorf("a's next long prompt after the burst: %+v; want started", a)
	}
}

// sendFiveLong sends five long prompts of key at once beside the first
// (answers[0], still prefilling), waits until the pool's queue holds,
// runs or has refused counted requests in all, and returns the backend's
// requests in flight then.
func (p *prefillSender) sendFiveLong(wg *sync.WaitGroup, answers []prefillAnswer, key string, stream bool, pool *Pool, backend *endpoint.Backend, counted int) int {
	return p.sendFive(wg, answers, key, 2000, stream, pool, backend, counted)
}

// sendFive is sendFiveLong with prompts of words words.
func (p *prefillSender) sendFive(wg *sync.WaitGroup, answers []prefillAnswer, key string, words int, stream bool, pool *Pool, backend *endpoint.Backend, counted int) int {
	var refused atomic.Int64
	for i := range 5 {
		wg.Go(func() {
			answers[1+i] = p.send(key, words, stream)
			if !answers[1+i].started {
				refused.Add(1)
			}
		})
	}
	waitFor(p.t, func() bool {
		s := pool.queue.Stats()
		return s.InUse+s.Queued+int(refused.Load()) >= counted
	})
	return int(backend.Inflight())
}

// startWarmPrefillRig starts a ramp rig on one simulator prefilling 2,500
// tokens/s and has tenant a send two long streams one at a time, each
// starting alone, so the gateway has learned the prefill rate.
func startWarmPrefillRig(t *testing.T) (rampRig, *prefillSender) {
	t.Helper()
	rig := startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, PrefillTokensPerSec: 2500,
		DecodeStepBase: 10 * time.Millisecond}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	t.Cleanup(cancel)
	p := &prefillSender{t: t, ctx: ctx, url: rig.srv.URL}
	for range 2 {
		if a := p.send("sk-a", 2000, true); !a.started {
			t.Fatalf("warm-up prompt: %+v", a)
		}
	}
	return rig, p
}
