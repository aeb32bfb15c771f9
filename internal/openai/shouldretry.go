package openai

import (
	"net/http"
	"time"
)

// The official SDKs decide a retry by the answer alone (openai-node
// client.ts shouldRetry and retryRequest, openai-python _base_client.py
// _should_retry and _calculate_retry_timeout, openai-go
// internal/requestconfig retryDelay): without an x-should-retry header
// they retry 408, 409, 429 and every status >= 500, up to max_retries (2)
// times, waiting retry-after-ms, else Retry-After, when it is within their
// bound, else their own backoff (0.5 s doubling to 8 s, jittered). Their
// bounds differ: Node (7.60.0) waits up to 60 s and past it retries on its
// backoff; Python (since 2.52) and Go (openai-go v3) wait up to 2 minutes
// and past it do not retry at all, raising the answer at once, whatever
// x-should-retry says.

// SDKMaxRetryAfter is the longest Retry-After the gateway leaves to the
// SDKs: the Python and Go SDKs' bound. Up to it they wait and retry, and
// the retry can be served; the Node SDK (and Python before 2.52), whose
// bound is 60 s, retries a wait in (60 s, 2 min] twice on its backoff in
// vain: two cheap refusals, the price of not turning away the clients
// that wait. Past it only Node (and old Python) would retry, seconds
// after an answer that named minutes; x-should-retry: false stops them,
// and Python and Go stop there on their own anyway.
const SDKMaxRetryAfter = 2 * time.Minute

// SDKRetries reports whether the official SDKs retry an answer with this
// status that carries no x-should-retry header.
func SDKRetries(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// RetryFutile reports whether an answer must carry x-should-retry: false:
// the SDKs would retry it within seconds (SDKRetries), but the same
// request would get the same answer then, because it is final (the
// request or the object's state is the cause, or only the operator can
// make room) or because the answer's own Retry-After (retryAfter, as its
// retry-after-ms is written: whole milliseconds, rounded up) is longer than
// SDKMaxRetryAfter. The header is not sent where it would not change their decision:
// on statuses they do not retry, nor on the answers that a retry can
// fix. The Retry-After stays, for a client that waits as long as it says.
func RetryFutile(status int, retryAfter time.Duration, final bool) bool {
	if !SDKRetries(status) {
		return false
	}
	return final || RetryAfterMs(retryAfter) > SDKMaxRetryAfter.Milliseconds()
}

// ShouldRetryHeader is the header RetryFutile's answers carry, with the
// value "false"; the SDKs compare the value exactly, the name in any case.
const ShouldRetryHeader = "X-Should-Retry"
