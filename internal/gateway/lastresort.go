package gateway

import (
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// noBackendWait is no_healthy_backend's Retry-After when no backend of the
// pool says when it may serve again (every one held down by the active
// health check).
const noBackendWait = 5 * time.Second

// noBackendError is proxy.ErrNoBackend with the wait until the earliest of
// the pool's backends may serve again: its Retry-After.
type noBackendError struct{ retryAfter time.Duration }

func (e *noBackendError) Error() string { return proxy.ErrNoBackend.Error() }
func (e *noBackendError) Unwrap() error { return proxy.ErrNoBackend }

// noBackend is the refusal of a pool none of whose backends can serve at
// now. Its wait is the time until the earliest passive ejection or open
// breaker ends, or a trial's answer is due (a second), rounded up to whole
// seconds, at least 1; no more than noBackendWait when a backend's return
// is unknown (probe-down: the next probe may pass sooner), noBackendWait
// when none is known.
func noBackend(now time.Time, backends []*endpoint.Backend) error {
	return &noBackendError{retryAfter: poolBackIn(now, backends)}
}

// poolBackIn is noBackend's wait: whole seconds, at least 1.
func poolBackIn(now time.Time, backends []*endpoint.Backend) time.Duration {
	wait := time.Duration(-1)
	unknown := false
	for _, b := range backends {
		at, ok := b.BackAt(now)
		if !ok {
			unknown = true
			continue
		}
		if d := at.Sub(now); wait < 0 || d < wait {
			wait = d
		}
	}
	switch {
	case wait < 0:
		wait = noBackendWait
	case unknown && wait > noBackendWait:
		wait = noBackendWait
	}
	wait = (wait + time.Second - 1).Truncate(time.Second)
	return max(wait, time.Second)
}

// failedPoolRetry is the Retry-After of a 502 the gateway answers itself
// (every attempt failed: unreachable, reset, a broken answer) on a pool
// of backends: upstreamRetry while one of them can serve at now, since a
// retry is routed to it; otherwise the wait no_healthy_backend would give
// (noBackend), as the failures just counted may have ejected the pool's
// last backend or opened its breaker. A flat second there sent the
// official SDKs (which honour a Retry-After up to 60 s) back twice within
// two seconds, each retry a trial on the same dead backend, and the
// client failed after 2 s of a 10 s ejection; told the ejection's end, it
// comes back when the gateway itself would try the pool again. A wait
// past what the SDKs honour gets x-should-retry: false (openai.WriteError).
// e is returned as it is when it is no such 502, or copied.
func failedPoolRetry(e *openai.Error, now time.Time, backends []*endpoint.Backend) *openai.Error {
	if e.Status != http.StatusBadGateway || e.RetryAfter != upstreamRetry || len(backends) == 0 {
		return e
	}
	for _, b := range backends {
		if b.Usable(now) {
			return e
		}
	}
	c := *e
	c.RetryAfter = poolBackIn(now, backends)
	return &c
}
