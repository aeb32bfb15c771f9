package proxy

import (
	"errors"
	"math"
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
	d, _ := readRetryAfter(v, now)
	return min(d, maxRetryAfter)
}

// readRetryAfter reads a Retry-After value (delta seconds or HTTP date):
// ok false when absent, unreadable, negative or a date already past. A
// value past maxRetryAfter is returned as maxRetryAfter + 1 ns with ok, so
// a caller can tell it from the bound itself.
func readRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if !(secs >= 0) { // negative or NaN
			return 0, false
		}
		if secs > maxRetryAfter.Seconds() {
			return maxRetryAfter + 1, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter+1), true
	}
	return 0, false
}

// pushBackWait is how long a backend's 429/503 (its head h) asks to be
// left alone, read as the official SDKs read it: retry-after-ms first
// (Azure OpenAI and others send it beside Retry-After, and the SDKs wait
// what it says), else Retry-After. said is false when the answer says
// nothing the gateway can stand behind: neither header, neither readable,
// negative, a date already past, or a wait past maxRetryAfter (a day: no
// backoff a server means, rather a broken header or a clock years
// ahead). Such an answer is a blind push-back (blindBusyWait), told the
// client and acted on as the gateway's own estimate; a client sent away
// for a day on it would wait for a backend the gateway asks again at the
// next request, and takes back at its next answer (AnsweredSince). The
// value "0" is a delay (retry at once).
func pushBackWait(h http.Header, now time.Time) (wait time.Duration, said bool) {
	if v := headerGet(h, "Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); (err == nil || errors.Is(err, strconv.ErrRange)) && ms >= 0 && !math.IsInf(ms, 1) {
			if ms <= float64(maxRetryAfter.Milliseconds()) {
				return time.Duration(math.Ceil(ms * float64(time.Millisecond))), true
			}
			return 0, false
		}
	}
	d, ok := readRetryAfter(headerGet(h, "Retry-After"), now)
	if !ok || d > maxRetryAfter {
		return 0, false
	}
	return d, true
}
