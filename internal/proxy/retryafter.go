package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// maxRetryAfter bounds what a backend's Retry-After can ask for: a day is
// past any real backoff, and the bound keeps the Duration from overflowing
// (a float like 1e300 or +Inf would convert to a negative one).
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After value (delta seconds or HTTP date),
// in [0, 24h]; 0 when absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if !(secs >= 0) { // negative or NaN
			return 0
		}
		return time.Duration(min(secs, maxRetryAfter.Seconds()) * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}
