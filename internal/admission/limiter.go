package admission

import "time"

// Outcome classifies one completed upstream request for a Limiter.
type Outcome int

const (
	// Success: the backend answered; the latency sample is meaningful.
	Success Outcome = iota
	// Failure: a connect error, a 5xx other than 503, a broken stream. Its
	// latency says nothing about load (a refused connection is fast), so the
	// adaptive limit ignores it; breakers deal with failures.
	Failure
	// Busy: 429 or 503 back-pressure from a saturated backend. It is a drop
	// signal: the adaptive limit shrinks and never grows on it.
	Busy
)

func (o Outcome) String() string {
	switch o {
	case Failure:
		return "failure"
	case Busy:
		return "busy"
	}
	return "success"
}

// Limiter is the concurrency limit of one backend. Limit is read on every
// request and must be cheap; Observe is called once per completed request.
//
// Observe's arguments: now is the completion time, latency the signal the
// limit steers on (end-to-end time or, better for long LLM answers, time to
// first token), inflight the number of requests outstanding on the backend
// when this one was sent, itself included.
type Limiter interface {
	Limit() int
	Observe(now time.Time, latency time.Duration, inflight int, outcome Outcome)
}

// Static is a fixed limit, for backends whose capacity is known from config.
// Static(0) admits nothing; callers that mean "unlimited" should not gate.
type Static int

// Limit returns n.
func (s Static) Limit() int { return int(s) }

// Observe does nothing: a static limit does not learn.
func (Static) Observe(time.Time, time.Duration, int, Outcome) {}
