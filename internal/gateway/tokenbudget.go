package gateway

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// minBudgetStep is the fewest tokens a stream's budget asks its limits
// for at a time, so that a small admission.default_max_tokens does not
// turn a long stream into a store call every few tokens.
const minBudgetStep = 64

// streamBudget is the proxy.TokenBudget of a stream charged to a token
// limit whose request set no max_tokens (nor max_completion_tokens): its
// reservation holds admission.default_max_tokens for the completion, an
// estimate the backend may pass many times over. Settled only at its
// end, such streams let a caller overrun its limit without bound: each
// admitted with a default reservation, each then generating as much as the
// backend will. So once the relayed count passes what was granted, the
// stream asks its limits for more (ratelimit.Result.Extend: from every
// limit alike, as admission takes), and is cut where they stop granting.
// A stream whose limits have room never notices; one that set max_tokens
// reserved its bound at admission and has no budget.
//
// It asks for a step at a time, or for what the read needs when that is
// more (a read that carries the count past several steps), and takes what
// the limits have left when it is less: the stream is cut only when the
// grant falls short of its text, at the grant, with no token left in the
// limit that ran out. (Asking for whole steps, all or nothing, cut streams
// up to a step early: at 512 or 768 tokens of a limit of 1,000.)
type streamBudget struct {
	ctx     context.Context
	rl      ratelimit.Result
	now     func() time.Time
	granted int64 // the completion tokens reserved so far
	step    int64
}

// newStreamBudget is the budget of a stream whose reservation held
// reserved completion tokens.
func newStreamBudget(ctx context.Context, rl ratelimit.Result, now func() time.Time, reserved int) *streamBudget {
	return &streamBudget{ctx: ctx, rl: rl, now: now, granted: int64(reserved), step: int64(max(reserved, minBudgetStep))}
}

// Allow implements proxy.TokenBudget: tokens within the grant pass at
// the cost of a comparison; past it, the limits are asked for more.
func (b *streamBudget) Allow(tokens int64) (int64, bool) {
	if tokens <= b.granted {
		return b.granted, true
	}
	need := tokens - b.granted
	got, _ := b.rl.Extend(b.ctx, max(need, b.step), b.now()) // a store failure grants: the end settles the use
	b.granted += got
	return b.granted, got >= need
}

// tokenBudget is the budget of x's call when it is a counted stream (its
// relay counts text for a token limit) whose request set no max_tokens;
// nil otherwise. A stale hit's refresh has none: it is charged to nobody.
func (x *exchange) tokenBudget(now func() time.Time) proxy.TokenBudget {
	if !x.call.countText || x.parsed.Peek.MaxTokens != 0 {
		return nil
	}
	// The steps are the stream's, not its client's: a coalesced stream
	// outlives its leader's client for its followers, and a step failing
	// on that client's cancelled context would be granted (a store
	// failure grants): the followers would run on unbounded.
	// Its reservation held the default for each choice (parseStage), and
	// the relay counts the text of every choice.
	return newStreamBudget(context.WithoutCancel(x.ctx()), x.rl, now, x.parsed.Peek.Completions()*x.rt.Config.Admission.DefaultMaxTokens)
}
