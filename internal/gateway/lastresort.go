package gateway

import (
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
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
	return &noBackendError{retryAfter: max(wait, time.Second)}
}
