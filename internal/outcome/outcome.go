// Package outcome is the one classification of how an upstream attempt
// ended. The proxy decides it once per attempt; passive health
// (endpoint), the circuit breaker (breaker) and the adaptive concurrency
// limit (admission) each read it their own way, so the three can never
// disagree about what a 503 or a client that went away means.
package outcome

// Outcome classifies the end of one upstream attempt. The zero value is
// Success.
type Outcome uint8

const (
	// Success: the backend answered (any status that is not a failure or
	// busy, including 4xx caused by the client). Its latency is a load
	// signal.
	Success Outcome = iota
	// Failure: connect error, timeout, a 5xx other than 503, a broken
	// stream. Counts toward max_fails and the breaker's error ratio; its
	// latency says nothing about load (a refused connection is fast), so
	// the adaptive limit ignores it.
	Failure
	// Busy: 429 or 503, with or without Retry-After: back-pressure from a
	// healthy but saturated backend. Never counts toward max_fails or the
	// breaker; it deprioritises the backend and shrinks the adaptive limit.
	Busy
	// Ignored: the attempt says nothing about the backend (the client went
	// away, the request was invalid before it was sent). The breaker does
	// not count it and frees a half-open trial slot it held.
	Ignored
)

// String is the outcome's name as logs and tests print it.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Busy:
		return "busy"
	case Ignored:
		return "ignored"
	}
	return "unknown"
}
