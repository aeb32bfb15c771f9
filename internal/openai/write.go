package openai

import (
	"math"
	"net/http"
	"strconv"
)

// WriteError answers with e in the OpenAI shape, with Retry-After (seconds,
// rounded up) and Retry-After-Ms when e.RetryAfter is positive: the
// official SDKs read both to time their retries.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		h.Set("Retry-After-Ms", strconv.FormatInt(e.RetryAfter.Milliseconds(), 10))
	}
	w.WriteHeader(e.Status)
	w.Write(e.JSON())
}
