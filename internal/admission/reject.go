package admission

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Reason says why the queue refused a request.
type Reason int

const (
	// TenantOverShare: the request could not be served before its deadline
	// and its tenant's work in the pool (queued and in service, this request
	// included) is above the tenant's weighted fair share of all the pool's
	// work: the tenant, not the pool, is the problem. HTTP 429. Counting work
	// in service too makes a tenant alone in the queue while others are being
	// served the one to blame, as it should be.
	TenantOverShare Reason = iota
	// Saturated: the request could not be served before its deadline and its
	// tenant is within its share: the pool as a whole is full. HTTP 503.
	Saturated
	// QueueFull: the queue's total bound (requests or cost) is reached and no
	// tenant over its share could be pushed out to make room. HTTP 503.
	QueueFull
	// TenantQueueFull: the tenant's own bound (requests or cost) is reached,
	// or it was pushed out of a full queue because it held more than its
	// share. HTTP 429.
	TenantQueueFull
	// Deadline: the request waited and could not be granted before its
	// deadline after all (the wait estimate was too optimistic): refused
	// when the deadline passed or, earlier, when a re-estimate at the delay
	// target showed it would. HTTP 503.
	Deadline
	// Shed: the request waited as long as its class's delay target while
	// the queue was congested (waits above the target for a whole
	// interval): shed from the head so that waits converge to the target
	// (codel.go). HTTP 503.
	Shed

	numReasons = int(Shed) + 1
)

// String is the reason's stable code, used as a metric label and as the
// OpenAI error "code" suffix.
func (r Reason) String() string {
	switch r {
	case TenantOverShare:
		return "tenant_over_share"
	case Saturated:
		return "saturated"
	case QueueFull:
		return "queue_full"
	case TenantQueueFull:
		return "tenant_queue_full"
	case Deadline:
		return "deadline"
	case Shed:
		return "shed"
	}
	return fmt.Sprintf("reason_%d", int(r))
}

// HTTPStatus is the status a gateway answers with: 429 when the tenant is
// the cause (it should slow down), 503 when the pool is (anyone may retry).
func (r Reason) HTTPStatus() int {
	if r == TenantOverShare || r == TenantQueueFull {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// Rejection is the error Acquire returns when it refuses a request. Use
// errors.As to get it; RetryAfter is always positive.
type Rejection struct {
	Reason     Reason
	RetryAfter time.Duration // estimated from the measured drain rate
	Message    string        // says which of tenant or pool is the cause
	// Waited is how long the request queued before the refusal: 0 for a
	// refusal at arrival.
	Waited time.Duration
}

func (e *Rejection) Error() string { return e.Message }

// rejectionMessage words a refusal for the client. pool is the queue's name
// (the model) or empty.
func rejectionMessage(reason Reason, pool, tenant string, wait, left time.Duration) string {
	of := "model capacity"
	if pool != "" {
		of = "the capacity of model '" + pool + "'"
	}
	backends := "all backends"
	if pool != "" {
		backends = "all backends for model '" + pool + "'"
	}
	switch reason {
	case TenantOverShare:
		return fmt.Sprintf("tenant '%s' is over its fair share of %s: estimated wait %s exceeds the %s left to the request's deadline",
			tenant, of, waitText(wait), roundDur(left))
	case Saturated:
		return fmt.Sprintf("%s are saturated: estimated wait %s exceeds the %s left to the request's deadline",
			backends, waitText(wait), roundDur(left))
	case QueueFull:
		return fmt.Sprintf("%s are saturated and the gateway queue is full", backends)
	case TenantQueueFull:
		return fmt.Sprintf("tenant '%s' has too much work queued for %s", tenant, of)
	}
	if reason == Shed {
		return fmt.Sprintf("%s are overloaded: the request was shed after waiting %s, the queue's delay target", backends, roundDur(wait))
	}
	return fmt.Sprintf("the request could not start before its deadline after waiting %s for %s", roundDur(wait), of)
}

// targetReviewMessage words the refusal of a waiter at its delay target
// review (targetReviewRejection): ahead is the wait re-estimated there,
// left the time to the request's deadline.
func targetReviewMessage(pool string, target, ahead, left time.Duration) string {
	backends := "all backends"
	if pool != "" {
		backends = "all backends for model '" + pool + "'"
	}
	est := waitText(ahead)
	if ahead < maxWait {
		est += fmt.Sprintf(" (%s with the estimate's margin)", roundDur(withMargin(ahead)))
	}
	return fmt.Sprintf("%s are saturated: at the queue's %s delay target the request's wait still ahead was re-estimated at %s, more than the %s left for it to start before its deadline",
		backends, roundDur(target), est, roundDur(left))
}

// congestedMessage words an arrival refused by the queue's delay target
// rather than by the request's own deadline.
func congestedMessage(reason Reason, pool, tenant string, wait, target time.Duration) string {
	m := rejectionMessage(reason, pool, tenant, wait, target)
	if i := strings.Index(m, ": estimated wait"); i >= 0 {
		m = m[:i]
	}
	return fmt.Sprintf("%s: estimated wait %s exceeds the queue's %s delay target", m, waitText(wait), roundDur(target))
}

func waitText(d time.Duration) string {
	if d >= maxWait {
		return "unbounded (no capacity)"
	}
	return roundDur(d).String()
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Second:
		return d.Round(time.Second)
	case d > time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
