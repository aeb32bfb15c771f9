package proxy

import (
	"context"
	"errors"
	"net/http"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Outcome is how the request ended as a whole, after its retries, for
// what counts only an answer a backend gave in full (the admission
// ticket's tenant ramp: admission.Ticket.Ended). Success: a 2xx answer
// relayed whole. Ignored: the client left, the gateway cut the answer
// (shutdown, a revoked key, a token limit), or the answer was the
// client's own error (a 4xx other than 429): none says anything of the
// engines. Busy: the last word was 429 or 503, or every backend was full.
// Failure: anything else (a 5xx, a timeout, a broken or malformed answer,
// no backend). The attempts' own outcomes, which feed health, breakers
// and limits, are decided per attempt, not here.
func (r *Result) Outcome() outcome.Outcome {
	if r.Err == nil && r.Status/100 == 2 {
		return outcome.Success // the hot path: one comparison, no allocation
	}
	switch {
	case errors.Is(r.Err, context.Canceled), errors.Is(r.Err, ErrShuttingDown),
		errors.Is(r.Err, ErrKeyRevoked), errors.Is(r.Err, ErrTokenBudget):
		return outcome.Ignored
	case r.Status == http.StatusTooManyRequests, r.Status == http.StatusServiceUnavailable, errors.Is(r.Err, ErrSaturated):
		return outcome.Busy
	case r.Err == nil && r.Status/100 == 4:
		return outcome.Ignored
	}
	return outcome.Failure
}
