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

	"github.com/sluice-gw/sluice/internal/admission"
	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// coldRamp is the cold case of TestColdNewcomerGrowsIntoReportedSlots on
// a given simulator and scraped names: A's two long streams and B's one
// started and scraped (by hand, on a frozen clock), then B's five at
// once. It returns the queue's decision on the five (granted or held),
// read as soon as all eight reached it, and how many the engine was
// running then.
type coldRamp struct {
	sim       sim.Config
	names     loadscrape.Names
	words     int // prompt length in words (the simulator's tokens)
	maxTokens int
	// newcomerWords, when above 0, is the prompt length of B's requests
	// (its one and its five); A's two have words.
	newcomerWords int
	// awaitStarts, when above 0, waits after the decision, if at least
	// that many were granted, until that many streams had their first
	// token (within the same hang guard).
	awaitStarts int64
	// newcomerMaxTokens, when above 0, is the max_tokens of B's requests.
	newcomerMaxTokens int
	// engine, when not nil, wraps the simulator's handler (startRampRigVia).
	engine func(*sim.Server) http.Handler
	// newcomerWord, when set, is the word B's prompts repeat ("word"
	// otherwise): the simulator counts a word a token, the gateway's
	// estimate its bytes / 4.
	newcomerWord string
}

// wantAllGranted fails t unless B's one and five and A's two, all 8, were
// granted at once (why: what leaves the room for them).
func wantAllGranted(t *testing.T, st admission.Stats, refused int64, why string) {
	t.Helper()
	if st.InUse != 8 || st.Queued != 0 || refused != 0 {
		t.Fatalf("in use %d, queued %d, refused %d (ramp held total %d, ceiling %d); want all 8 granted: %s",
			st.InUse, st.Queued, refused, st.RampHeldTotal, st.RampCeiling, why)
	}
}

// wantHeldAtThree fails t unless the three in the engine are all in use
// and B's five are held (queued or refused), the ceiling three (why: what
// leaves no room for them).
func wantHeldAtThree(t *testing.T, st admission.Stats, refused int64, why string) {
	t.Helper()
	if st.InUse != 3 || st.Queued+int(refused) != 5 || st.RampCeiling != 3 {
		t.Fatalf("in use %d, queued %d, refused %d (ramp held total %d, ceiling %d); want 3 in use, 5 held, ceiling 3: %s",
			st.InUse, st.Queued, refused, st.RampHeldTotal, st.RampCeiling, why)
	}
}

func (c coldRamp) run(t *testing.T) (st admission.Stats, refused int64) {
	t.Helper()
	// Frozen at the wall clock's now: the body's read deadline is set
	// from this clock on a real connection, and a long prompt needs more
	// than one read (a clock in the past cut it at once, 408).
	clk := &frozenClock{now: time.Now()}
	rig := startRampRigVia(t, c.sim, c.engine, nil, func(d *Deps) { d.Now = clk.Now })
	s, srv, gw := rig.sim, rig.srv, rig.gw

	var streams sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	// Every stream ends (cancel, then the wait) before the test does.
	t.Cleanup(streams.Wait)
	t.Cleanup(cancel)
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: time.Second, Timeout: time.Minute,
		CapConcurrency: true, Now: clk.Now, Names: c.names}, nil, nil)
	if err := sc.ScrapeOnce(ctx, gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	var started, refusedN atomic.Int64
	bodyOf := func(word string, words, maxTokens int) string {
		return `{"model":"m1","stream":true,"max_tokens":` + strconv.Itoa(maxTokens) +
			`,"messages":[{"role":"user","content":"` + strings.Repeat(word+" ", words) + `"}]}`
	}
	newcomerWords, newcomerMax := c.words, c.maxTokens
	if c.newcomerWords > 0 {
		newcomerWords = c.newcomerWords
	}
	if c.newcomerMaxTokens > 0 {
		newcomerMax = c.newcomerMaxTokens
	}
	newcomerWord := "word"
	if c.newcomerWord != "" {
		newcomerWord = c.newcomerWord
	}
	bodies := map[string]string{"sk-a": bodyOf("word", c.words, c.maxTokens), "sk-b": bodyOf(newcomerWord, newcomerWords, newcomerMax)}
	send := func(key string) (first chan struct{}) {
		body := bodies[key]
		first = make(chan struct{})
		signal := sync.OnceFunc(func() { close(first) })
		streams.Go(func() {
			defer signal()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					refusedN.Add(1)
				}
				return
			}
			defer resp.Body.Close()
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "data: ") {
				if ctx.Err() == nil {
					t.Logf("%s: %d %s", key, resp.StatusCode, line)
					refusedN.Add(1)
				}
				return
			}
			started.Add(1)
			signal()
			<-ctx.Done() // holds its slot until the test ends
		})
		return first
	}
	for _, key := range []string{"sk-a", "sk-a", "sk-b"} {
		<-send(key)
	}
	if started.Load() != 3 {
		t.Fatalf("the first three streams: %d started, %d refused", started.Load(), refusedN.Load())
	}
	if st := s.Stats(); st.Running != 3 || st.Waiting != 0 {
		t.Fatalf("sim runs %d, %d waiting before the scrape; want 3 and 0", st.Running, st.Waiting)
	}
	if err := sc.ScrapeOnce(ctx, gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	q := gw.Runtime().Queues()["m1"]
	for range 5 {
		send("sk-b")
	}
	// What the ramp decided on the five, read before anything can change
	// it (on the frozen clock a held request waits for ever).
	deadline := time.Now().Add(time.Minute) // a hang guard
	for {
		st = q.Stats()
		if int64(st.InUse+st.Queued)+refusedN.Load() >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's five never reached the queue: in use %d, queued %d, refused %d", st.InUse, st.Queued, refusedN.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// Granted ones start in the engine: wait for their first tokens.
	for c.awaitStarts > 0 && int64(st.InUse) >= c.awaitStarts && started.Load() < c.awaitStarts {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d granted streams had a first token", started.Load(), c.awaitStarts)
		}
		time.Sleep(time.Millisecond)
	}
	return st, refusedN.Load()
}

// An engine that reports no batch bound (vLLM; here the simulator read
// with batch_bound_metrics []) has a KV room once sequences run: three
// short-prompted streams in 65,536 KV tokens leave room for many more, so
// B's five are granted at once, as beside an engine reporting 16 slots.
// The old code had no ceiling without a bound and held all five (the
// ramp's recent base of 3 and A's margin).
func TestColdNewcomerGrowsIntoKVRoomWithoutBound(t *testing.T) {
	st, refused := coldRamp{
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, DecodeStepBase: 10 * time.Millisecond},
		names: loadscrape.Names{BatchBound: []string{}}, words: 1, maxTokens: 2000,
	}.run(t)
	wantAllGranted(t, st, refused, "the KV cache holds far more")
}

// An engine whose KV cache is full before its slots: 16 slots, 8,192 KV
// tokens, three streams of 2,650-token prompts hold 97% of it, so nothing
// more fits. B's five are held in the gateway's queue (its deadlines, its
// order) rather than sent to wait inside the engine; the ceiling is the
// three in the engine. The code before kvhead took the 13 free slots for
// room and granted all five. (kvhead's version, 1,800-token prompts with
// 500 to generate, two thirds used, is granted since branch kvfix: a cache
// not full says nothing of a newcomer's size, and the simulator reports
// the tokens held, not the prompts plus max_tokens it reserves.)
func TestColdNewcomerHeldByFullKV(t *testing.T) {
	st, refused := coldRamp{
		// A step of 100 ms keeps the three generating (80 tokens, 8 s)
		// until the queue has decided on the five.
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, KVTokens: 8192, DecodeStepBase: 100 * time.Millisecond},
		words: 2650, maxTokens: 80,
	}.run(t)
	wantHeldAtThree(t, st, refused, "the KV cache is full")
}

// Short newcomers beside a few long prompts on an engine with a batch
// bound (branch review17's harm): 16 slots, 16,384 KV tokens, A's two
// 6,500-token prompts and B's one-word one hold 79% of it. Sequences like
// the running ones would not fit, but B's one-word requests do (about 200
// tokens each of the 3,000 unreserved), and the engine has 13 free slots:
// B's five are granted at once, as before kvhead. kvhead's KV room made
// the ceiling the three in the engine and held them.
func TestColdShortNewcomerBesideLongPromptsGranted(t *testing.T) {
	st, refused := coldRamp{
		// A step of 50 ms keeps the streams generating (200 tokens, 10 s)
		// until the queue has decided on the five.
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, KVTokens: 16384, DecodeStepBase: 50 * time.Millisecond},
		words: 6500, maxTokens: 200, newcomerWords: 1,
	}.run(t)
	wantAllGranted(t, st, refused, "13 slots free and the cache holds B's short requests")
}
