package admission

import (
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Limiter is the concurrency limit of one backend. Limit is read on every
// request and must be cheap; Observe is called once per completed request.
//
// Observe's arguments: now is the completion time, latency the signal the
// limit steers on (end-to-end time or, better for long LLM answers, time to
// first token), inflight the number of requests outstanding on the backend
// when this one was sent, itself included; out Ignored is an attempt that
// says nothing of the backend (its pooled connection closed under it).
type Limiter interface {
	Limit() int
	Observe(now time.Time, latency time.Duration, inflight int, out outcome.Outcome)
}

// Static is a fixed limit, for backends whose capacity is known from config.
// Static(0) admits nothing; callers that mean "unlimited" should not gate.
type Static int

// Limit returns n.
func (s Static) Limit() int { return int(s) }

// Observe does nothing: a static limit does not learn.
func (Static) Observe(time.Time, time.Duration, int, outcome.Outcome) {}
