package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// WriteHeaders writes OpenAI's rate limit headers for the binding limits:
// x-ratelimit-limit-requests / -remaining-requests / -reset-requests and
// the -tokens trio, each trio only when such a limit applied, meaning what
// OpenAI's mean (Decision.headline): the units a minute allows, what is
// left of them, and the time until the bucket is full again, formatted as
// OpenAI does ("1s", "6m0s", "120ms").
//
// A refusal with a retry time also gets Retry-After (whole seconds, rounded
// up) and retry-after-ms, both of which the official OpenAI SDKs honour. A
// NeverFits refusal gets neither: retrying cannot help.
func (r Result) WriteHeaders(h http.Header) {
	trio := func(kind string, d Decision) {
		if d.Limit == 0 {
			return
		}
		limit, remaining := d.headline()
		h.Set("x-ratelimit-limit-"+kind, strconv.FormatInt(limit, 10))
		h.Set("x-ratelimit-remaining-"+kind, strconv.FormatInt(remaining, 10))
		h.Set("x-ratelimit-reset-"+kind, FormatReset(d.Reset))
	}
	trio("requests", r.Requests)
	trio("tokens", r.Tokens)
	if !r.Allowed && !r.NeverFits && r.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilDiv(r.RetryAfter, time.Second), 10))
		h.Set("retry-after-ms", strconv.FormatInt(ceilDiv(r.RetryAfter, time.Millisecond), 10))
	}
}

// headline is d as OpenAI's x-ratelimit-limit-* and -remaining-* state a
// limit (OpenAI: 5000 requests a minute, one used: limit 5000, remaining
// 4999, reset 12ms). limit is the units allowed per minute: the rate times
// 60 (a tokens_per_minute limit's own figure; 600 for rate=10r/s), or the
// bucket's capacity (burst+1) when that is more, since then more than a
// minute's rate passes at once. remaining is limit less the units in use,
// those the bucket must refill to be full, which it does by the reset
// (x-ratelimit-reset-*): remaining = limit - reset*rate, rounded down, so
// the three agree. With a burst below a minute's rate the bucket refuses
// while remaining is above 0 (as OpenAI's limits, enforced over shorter
// periods, do): a refusal says at most the room the bucket has now, so a
// requests limit that refused says 0, never room it does not have.
func (d Decision) headline() (limit, remaining int64) {
	limit = max(int64(math.Round(d.Rate*60)), d.Limit)
	used := d.Limit - d.Remaining // exact while the bucket has room
	if d.Remaining <= 0 {
		// Empty or in debt (a reconciled charge may exceed the capacity):
		// the refill time says how far.
		used = max(used, int64(math.Ceil(d.Reset.Seconds()*d.Rate-0.001)))
	}
	remaining = min(max(limit-used, 0), limit)
	if !d.Allowed && !d.NeverFits {
		remaining = min(remaining, d.Remaining)
	}
	return limit, remaining
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
