package gateway

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// answerWaitSend sends one request of max_tokens tokens to the gateway at
// url and reads it whole: its status, its Retry-After and how long it took.
func answerWaitSend(t *testing.T, ctx context.Context, url string, stream bool, maxTokens int) (int, string, time.Duration) {
	t.Helper()
	body := `{"model":"m1","stream":` + strconv.FormatBool(stream) + `,"max_tokens":` + strconv.Itoa(maxTokens) +
		`,"messages":[{"role":"user","content":"hello there"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, "", 0
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, "", 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Error(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start)
}

// A NON-streamed request's client sees nothing before the whole answer, so
// it waits for the first-token objective plus the answer's decode, and the
// queue lets it wait that much longer (admission.answer_token_wait, opt-in,
// branch nonstream). Two slots (max_concurrency 2) run two streams of 200 tokens
// (about 2 s at 10 ms a step); a non-streamed request of 200 tokens then
// waits about a second for a slot, twice the delay target (500 ms). The
// code before priced it as a stream and refused it at arrival, 503; now it
// queues (its target is 4 s longer: 200 x 20 ms) and is answered within
// its client's budget (2 s + 200 x 50 ms). A stream sent beside it is
// still refused at once with Retry-After: streams' first-token pricing is
// unchanged, and the non-stream takes no stream's place beyond its fair one.
func TestNonStreamedRequestWaitsForItsAnswersBudget(t *testing.T) {
	_, be := simBackend(t, sim.Config{Model: "m1", Seed: 1, DecodeStepBase: 10 * time.Millisecond})
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	cfg.Admission.AnswerTokenWait = config.Duration(20 * time.Millisecond) // opt-in (default 0)
	srv, gw := startGateway(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	t.Cleanup(cancel)
	backend := gw.Runtime().Backends()[0]

	// Two streams at once, alone on the pool: the queue measures how long
	// a slot is held.
	var wg sync.WaitGroup
	fill := func() {
		for range 2 {
			wg.Go(func() {
				if status, _, _ := answerWaitSend(t, ctx, srv.URL, true, 200); status != http.StatusOK {
					t.Errorf("stream filling a slot: %d; want 200", status)
				}
			})
		}
		waitFor(t, func() bool { return backend.Inflight() == 2 })
	}
	fill()
	wg.Wait()

	fill()
	var nsStatus int
	var nsRetry string
	var nsTook time.Duration
	nsDone := make(chan struct{})
	wg.Go(func() {
		defer close(nsDone)
		nsStatus, nsRetry, nsTook = answerWaitSend(t, ctx, srv.URL, false, 200)
	})
	waitFor(t, func() bool { // queued, or refused at once (the code before)
		select {
		case <-nsDone:
			return true
		default:
			return gw.Runtime().Pools["m1"].queue.Stats().Queued == 1
		}
	})
	status, retry, _ := answerWaitSend(t, ctx, srv.URL, true, 5)
	wg.Wait()
	if nsStatus != http.StatusOK {
		t.Errorf("non-streamed request waiting about 1 s for a slot: %d (Retry-After %q); want 200, within what its client waits", nsStatus, nsRetry)
	} else if budget := 2*time.Second + 200*50*time.Millisecond; nsTook > budget {
		t.Errorf("non-streamed request answered in %v; want within its budget %v", nsTook, budget)
	}
	if status != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("stream sent while both slots are busy for about 1 s: %d (Retry-After %q); want 503 with Retry-After, as before", status, retry)
	}
	if status, _, _ := answerWaitSend(t, ctx, srv.URL, true, 5); status != http.StatusOK {
		t.Errorf("stream on the idle pool after: %d; want 200", status)
	}
}
