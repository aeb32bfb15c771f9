package gateway

import (
	"context"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// handSettle hands the settling of a flight leader's token reservation
// to its flight, when the leader leaves before the answer ends (its
// client gone, before the first byte or mid-answer) and its request took
// from a token limit; f.mu held, f not done. It reports whether it did.
//
// A leader that left used to be settled at once on what the flight had
// reported so far (nothing: unreached, its reservation given back) while
// the flight ran on for its followers, who are charged nothing as
// coalesced: what the flight then generated was charged to nobody (but
// for a stream budget's steps). So the reservation (and the steps a
// budget took on it) stays held while the flight runs, and the flight's
// goroutine settles it at the end (flight.finish) to what the answer
// cost, by settle's rules (flightTokens). One owner: the leader hands
// over under f.mu only while the flight is not done, and finish takes the
// hand-over under the same lock.
//
// Whoever follows, the leader's limits are charged what its own request
// generated, as they would have been had it stayed (and a request whose
// client leaves alone keeps its estimate), an answer max_tokens bounds
// when it set one. A budgeted stream's flight is keyed by its
// token scope (flightKey), so its followers take from the very limits
// charged; an unbudgeted flight's followers may be of other limits, and
// are charged nothing, as when the leader stays.
func (g *Gateway) handSettle(ctx context.Context, f *flight, c *upstreamCall, rl *ratelimit.Result) bool {
	if rl == nil || !rl.ChargesTokens() {
		return false
	}
	res, prompt := *rl, int64(admission.EstimateCost(int(c.body.Len()), 0, 0))
	ctx = context.WithoutCancel(ctx)
	f.settle = func(out proxy.Result) {
		if tokens, ok := flightTokens(&out, prompt); ok {
			res.Reconcile(ctx, tokens, g.now())
		}
	}
	return true
}

// flightTokens is what a flight's answer costs its leader's reservation,
// by Gateway.settle's rules: the usage the backend reported; nothing when
// no backend was sent it or the backend declined it; the prompt's
// estimate and the tokens relayed for a stream without usage; else (ok
// false) the estimate stays.
func flightTokens(res *proxy.Result, prompt int64) (tokens int64, ok bool) {
	switch {
	case res.UsageKnown:
		return int64(res.Usage.PromptTokens + res.Usage.CompletionTokens), true
	case res.Attempts == 0, declined(&record{result: *res, status: res.Status}):
		return 0, true
	case res.TextEvents > 0:
		return prompt + openai.CompletionTokens(res.TextEvents, res.TextBytes), true
	}
	return 0, false
}
