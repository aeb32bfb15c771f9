package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A non-streamed request whose slack has run out competes as one arriving
// then (admission/slackorder.go, rearrive): it does not take the next slot
// ahead of a stream that queued while it waited within its slack. Two
// slots (max_concurrency 2) are held by long streams; a non-streamed
// request of 20 tokens queues (slack 2 s: 20 x 100 ms), then a stream of
// the same size. On a frozen clock moved 2.5 s on (past the slack; the
// delay target is 5 s, so nothing is reviewed), one slot frees: the code
// before granted it to the non-stream by its older tags and the stream
// waited for the other slot; now the stream takes it and the non-stream
// the next one, both answered.
func TestStreamQueuedDuringAnswersSlackNotOvertakenAfterIt(t *testing.T) {
	_, be := simBackend(t, sim.Config{Model: "m1", Seed: 1, DecodeStepBase: 10 * time.Millisecond})
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	cfg.Admission.AnswerTokenWait = config.Duration(100 * time.Millisecond)
	cfg.Admission.MaxWait = config.Duration(30 * time.Second)
	cfg.Admission.DelayTarget = config.Duration(5 * time.Second)
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	t.Cleanup(cancel)
	backend := gw.Runtime().Backends()[0]
	queue := gw.Runtime().Pools["m1"].queue

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
		done   chan struct{}
	}
	send := func(stream bool) *result {
		r := &result{done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.status, r.retry, _ = answerWaitSend(t, ctx, srv.URL, stream, 20)
		}()
		return r
	}
	finished := func(r *result) bool {
		select {
		case <-r.done:
			return true
		default:
			return false
		}
	}
	answer := send(false)
	waitFor(t, func() bool { return queue.Stats().Queued == 1 })
	stream := send(true)
	waitFor(t, func() bool { return queue.Stats().Queued == 2 || finished(stream) })
	if finished(stream) {
		t.Fatalf("stream behind a non-stream within its slack: %d (Retry-After %q) at arrival; want queued", stream.status, stream.retry)
	}

	clk.Advance(2500 * time.Millisecond) // past the non-stream's slack
	holds[0]()
	waitFor(t, func() bool { return finished(stream) || finished(answer) })
	if !finished(stream) {
		t.Errorf("first slot freed after the non-stream's slack ran out went to the non-stream (%d); want the stream that queued during its slack", answer.status)
	}
	holds[1]()
	<-stream.done
	<-answer.done
	if stream.status != http.StatusOK || answer.status != http.StatusOK {
		t.Errorf("stream %d (Retry-After %q), non-stream %d (Retry-After %q); want both 200", stream.status, stream.retry, answer.status, answer.retry)
	}
}
