package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// rateLimit is the rate limit stage: take the request and its estimated
// tokens from every applicable limit, wait out an nginx-style delay, and
// set the x-ratelimit-* headers. The returned Result reconciles the token
// estimate with the backend's usage later.
// codeStoreUnavailable refuses a request the shared rate limit store could
// not count (fail closed).
const codeStoreUnavailable = "rate_limit_store_unavailable"

func (rt *Runtime) rateLimit(ctx context.Context, w http.ResponseWriter, subject ratelimit.Subject, tokens float64, now time.Time) (ratelimit.Result, error) {
	if rt.limiter == nil {
		return ratelimit.Result{Allowed: true}, nil
	}
	res, err := rt.limiter.Check(ctx, subject, int64(tokens), now)
	res.WriteHeaders(w.Header())
	switch {
	case res.Allowed:
	case res.Scope == "store" || errors.Is(err, ratelimit.ErrStoreUnavailable):
		return res, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: codeStoreUnavailable,
			Message: "the shared rate limit store is unavailable and the gateway is configured to fail closed", RetryAfter: res.RetryAfter}
	case res.NeverFits:
		// Not retryable: SDKs retry 429s on their own, so this must not be one.
		// n choices (best_of) each reserve max_tokens: n is the third knob.
		return res, openai.BadRequest("exceeds_rate_limit_capacity", res.Reason()+"; reduce the prompt, max_tokens or n")
	default:
		return res, &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded",
			Message: res.Reason(), RetryAfter: res.RetryAfter}
	}
	if res.Delay > 0 { // nginx limit_req without nodelay: pace the excess
		t := time.NewTimer(res.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			// The client left before its turn: no backend will spend a
			// token on it, so its reservation goes back (its request
			// count stays, as nginx counts it).
			res.Reconcile(context.WithoutCancel(ctx), 0, now)
			return res, context.Canceled
		}
	}
	return res, nil
}

// limitSubject is who a request's rate limits count, its client address
// key being ipKey. A caller with no key of its own (anonymous: no
// credential, or any in open mode; or a token naming no subject) is
// counted by the per-key limits as its tenant, for an anonymous caller
// its address ("ip:<address>"), so it cannot dodge them by sending no key
// or inventing one; its refusals name what was counted, not an API key.
func limitSubject(id *identity, ipKey string) ratelimit.Subject {
	s := ratelimit.Subject{Key: id.key, Tenant: id.tenant, IP: ipKey, KeyRule: id.keyRule}
	if s.Key == "" {
		s.Key, s.KeyName = id.tenant, "client address (no verified key)"
		if !strings.HasPrefix(id.tenant, "ip:") {
			// A token with no subject: its tenant ("jwt:acme", or "acme"
			// when shared) is also the key of the token whose subject is
			// "acme" (or of an API key "acme"), so its bucket is named in
			// a namespace no key or subject can take ("key:" is refused
			// of an API key; subjects are "jwt:<sub>").
			s.KeyName, s.KeyBucket = "tenant (token without a subject)", "key:"+id.tenant
		}
	}
	return s
}
