package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// WriteHeaders writes OpenAI's rate limit headers for the binding limits:
// x-ratelimit-limit-requests / -remaining-requests / -reset-requests and
// the -tokens trio, each trio only when such a limit applied. limit is the
// bucket capacity (Burst+1, a minute's tokens for tokens_per_minute),
// remaining what could pass right now, reset the time until the bucket is
// full again, formatted as OpenAI does ("1s", "6m0s", "120ms").
//
// A refusal with a retry time also gets Retry-After (whole seconds, rounded
// up) and retry-after-ms, both of which the official OpenAI SDKs honour. A
// NeverFits refusal gets neither: retrying cannot help.
func (r Result) WriteHeaders(h http.Header) {
	trio := func(kind string, d Decision) {
		if d.Limit == 0 {
			return
		}
		h.Set("x-ratelimit-limit-"+kind, strconv.FormatInt(d.Limit, 10))
		h.Set("x-ratelimit-remaining-"+kind, strconv.FormatInt(d.Remaining, 10))
		h.Set("x-ratelimit-reset-"+kind, FormatReset(d.Reset))
	}
	trio("requests", r.Requests)
	trio("tokens", r.Tokens)
	if !r.Allowed && !r.NeverFits && r.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilDiv(r.RetryAfter, time.Second), 10))
		h.Set("retry-after-ms", strconv.FormatInt(ceilDiv(r.RetryAfter, time.Millisecond), 10))
	}
}

// FormatReset writes a duration the way OpenAI's x-ratelimit-reset-*
// headers do: Go duration syntax rounded up to the millisecond ("120ms",
// "1s", "6m0s", "1.5s"), so a client never retries a moment too early.
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return (time.Duration(ceilDiv(d, time.Millisecond)) * time.Millisecond).String()
}

func ceilDiv(d, unit time.Duration) int64 { return int64((d + unit - 1) / unit) }
