package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// holdStream sends a stream of maxTokens tokens to the gateway at url and
// returns once its first event has come: the slot it holds is freed by
// cancelling ctx (the client leaving), when the test decides.
func holdStream(t *testing.T, ctx context.Context, url string, maxTokens int) {
	t.Helper()
	body := `{"model":"m1","stream":true,"max_tokens":` + strconv.Itoa(maxTokens) +
		`,"messages":[{"role":"user","content":"hello there"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("stream holding a slot: %d; want 200", resp.StatusCode)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		resp.Body.Close()
		t.Fatalf("stream holding a slot: %v before its first event", err)
	}
	context.AfterFunc(ctx, func() { resp.Body.Close() })
}

// A stream is served ahead of the non-streamed requests still within their
// slack (admission/slackorder.go), and its estimate leaves their work out.
// Two slots (max_concurrency 2) are held by two long streams; three
// non-streamed requests of 200 tokens queue behind them (each may wait 10 s
// longer than a stream: 200 x 50 ms, answer_max_wait's 10 s; room for a
// loaded machine's slow decode). A stream of the same size (so the
// size-aware order does not put it ahead anyway) then arrives. The code
// before counted the non-streams' work ahead of it (about 2 s at the drain
// rate measured, past its 500 ms delay target) and refused it at once,
// 503; now it queues, and takes the first slot freed, before the
// non-streams, which are all still answered within their budget.
func TestStreamGoesAheadOfNonStreamsWithinTheirSlack(t *testing.T) {
	_, be := simBackend(t, sim.Config{Model: "m1", Seed: 1, DecodeStepBase: 10 * time.Millisecond})
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	cfg.Admission.AnswerTokenWait = config.Duration(50 * time.Millisecond)
	srv, gw := startGateway(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	t.Cleanup(cancel)
	backend := gw.Runtime().Backends()[0]
	queue := gw.Runtime().Pools["m1"].queue

	// Two short streams at once, alone on the pool: the queue measures how
	// long a slot is held (about 0.2 s) and how fast it drains.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if status, _, _ := answerWaitSend(t, ctx, srv.URL, true, 20); status != http.StatusOK {
				t.Errorf("warm-up stream: %d; want 200", status)
			}
		})
	}
	wg.Wait()

	holds := make([]context.CancelFunc, 2)
	for i := range holds {
		var hold context.Context
		hold, holds[i] = context.WithCancel(ctx)
		holdStream(t, hold, srv.URL, 5000)
	}
	waitFor(t, func() bool { return backend.Inflight() == 2 })

	type result struct {
		status int
		retry  string
		took   time.Duration
	}
	ns := make([]result, 3)
	for i := range ns {
		wg.Go(func() {
			ns[i].status, ns[i].retry, ns[i].took = answerWaitSend(t, ctx, srv.URL, false, 200)
		})
		waitFor(t, func() bool { return queue.Stats().Queued == i+1 })
	}

	var st result
	stDone := make(chan struct{})
	go func() {
		defer close(stDone)
		st.status, st.retry, st.took = answerWaitSend(t, ctx, srv.URL, true, 200)
	}()
	waitFor(t, func() bool { // queued, or refused at once (the code before)
		select {
		case <-stDone:
			return true
		default:
			return queue.Stats().Queued == 4
		}
	})
	holds[0]() // one slot frees: the stream's, not the oldest non-stream's
	waitFor(t, func() bool {
		select {
		case <-stDone:
			return true
		default:
			return false
		}
	})
	if st.status != http.StatusOK {
		// Served after a non-stream, it would wait for the other slot,
		// which frees only after it ends: past its deadline.
		t.Errorf("stream behind three non-streams within their slack: %d (Retry-After %q); want 200, served in the first slot freed", st.status, st.retry)
	}
	holds[1]()
	wg.Wait()
	for i, r := range ns {
		if r.status != http.StatusOK {
			t.Errorf("non-stream %d: %d (Retry-After %q); want 200", i, r.status, r.retry)
		} else if budget := 2*time.Second + 200*50*time.Millisecond; r.took > budget {
			t.Errorf("non-stream %d answered in %v; want within its budget %v", i, r.took, budget)
		}
	}
}
