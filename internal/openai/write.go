package openai

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ReadOnly answers a method other than GET or HEAD on r's path with 405,
// Allow: GET, HEAD and the OpenAI error, and reports whether the method is
// one of those two: the one check of every route that only reads.
func ReadOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	WriteError(w, MethodNotAllowed(r, http.MethodGet))
	return false
}

// MethodNotAllowed is the 405 of r on a route that takes only allowed
// (the caller sets Allow: it may list HEAD, which the message leaves
// implied): one wording on every route, public, Batch API and admin,
// naming the method sent, the path and what to use.
func MethodNotAllowed(r *http.Request, allowed ...string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Type: TypeInvalidRequest, Code: "method_not_allowed",
		Message: Echo(r.Method) + " is not allowed for " + Echo(r.URL.Path) + "; use " + strings.Join(allowed, " or ")}
}

// WriteError answers with e in the OpenAI shape, with Retry-After (seconds)
// and Retry-After-Ms (milliseconds), both rounded up, when e.RetryAfter is
// positive: the official SDKs read both to time their retries, and wait
// exactly what retry-after-ms says, so a value rounded down would bring
// them back before the wait is over (a wait under 1 ms as "0": at once). When retrying within
// seconds is futile (RetryFutile), x-should-retry: false stops them. An
// error is for this request only: Cache-Control no-store, unless the
// caller set one (a negatively cached error carries its own).
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		h.Set("Retry-After-Ms", strconv.FormatInt(RetryAfterMs(e.RetryAfter), 10))
	}
	if RetryFutile(e.Status, e.RetryAfter, e.Final) {
		h.Set(ShouldRetryHeader, "false")
	}
	// The length declared: an answer given before the request body was
	// read goes out before its rest is dropped only with one
	// (netguard.TimedBody.Restore), which keeps the connection.
	body := e.JSON()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
}

// RetryAfterMs is d as the Retry-After-Ms header states it: whole
// milliseconds, rounded up (ratelimit.Result.WriteHeaders writes the same
// figure, which WriteError then sets again).
func RetryAfterMs(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
