package openai

import (
	"net/http"
	"time"
)

// The official SDKs decide a retry by the answer alone (openai-node
// client.ts shouldRetry and retryRequest, openai-python _base_client.py
// _should_retry and _calculate_retry_timeout): a header x-should-retry:
// true or false wins; without it they retry 408, 409, 429 and every
// status >= 500, up to max_retries (2) times, waiting retry-after-ms, else
// Retry-After, when it is within (0, 60 s], else their own backoff (0.5 s
// doubling to 8 s, jittered).

// SDKMaxRetryAfter is the longest Retry-After the official Node SDK waits
// (and the Python SDK's before 2.52, which since waits up to two minutes
// and does not retry beyond). Past it the Node SDK retries on its own
// 0.5–8 s backoff, seconds after an answer that named minutes.
const SDKMaxRetryAfter = time.Minute

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
// retry-after-ms is written: whole milliseconds) is longer than the SDKs
// wait. The header is not sent where it would not change their decision:
// on statuses they do not retry, nor on the answers that a retry can
// fix. The Retry-After stays, for a client that waits as long as it says.
func RetryFutile(status int, retryAfter time.Duration, final bool) bool {
	if !SDKRetries(status) {
		return false
	}
	return final || retryAfter/time.Millisecond > SDKMaxRetryAfter/time.Millisecond
}

// ShouldRetryHeader is the header RetryFutile's answers carry, with the
// value "false"; the SDKs compare the value exactly, the name in any case.
const ShouldRetryHeader = "X-Should-Retry"
