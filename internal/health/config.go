// Package health runs active health checks: it probes every backend's health
// endpoint on an interval and marks a backend down after Fails consecutive
// failed probes and up again after Passes consecutive good ones (nginx's
// health_check fails/passes). It is, with passive outcome accounting in
// endpoint, the only writer of a backend's probe state; routing only reads it.
package health

import (
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Config configures a Checker. The zero value of every field means its
// default, so Config{} probes GET /health every 5s with a 2s timeout.
type Config struct {
	// Path is appended to the backend's base URL, keeping the base URL's own
	// path prefix (http://h/v1 + /health probes http://h/v1/health).
	// It may carry a query string. Default "/health".
	Path string
	// Interval between the starts of two probe rounds. Default 5s.
	Interval time.Duration
	// Timeout bounds one probe, connect to end of body. Default 2s. A
	// probe that ran out of it while the gateway itself was stalled is
	// counted neither way (see lateProbe).
	Timeout time.Duration
	// Passes is how many consecutive good probes bring a down backend back.
	// Default 2.
	Passes int
	// Fails is how many consecutive failed probes take a backend down.
	// Default 2: one missed probe (the gateway itself starved of CPU past
	// the probe's timeout, a lost packet) takes no backend out, where with
	// 1 a 2 s stall of the gateway took every backend of a pool down at
	// once and every client got no_healthy_backend for a fail_timeout with
	// nothing wrong upstream (HAProxy's fall is 3, Kubernetes' readiness
	// failureThreshold 3). A backend that stops answering is out after two
	// intervals; requests meanwhile fail over on its errors and the
	// first-token bound.
	Fails int
	// ExpectStatus is the one status code counted as healthy; 0 accepts any
	// 2xx.
	ExpectStatus int
	// Concurrency bounds the probes in flight during one round, so a large
	// pool does not open hundreds of connections at once. Default 8.
	Concurrency int
	// PlanFor, if set, says how each backend is probed (a Plan with an
	// empty Path skips it); nil probes every backend at Path.
	PlanFor func(b *endpoint.Backend) Plan
	// Now is the clock a probe's lateness is read from (monotonic); nil
	// means time.Now. Tests inject one to emulate a stalled gateway.
	Now func() time.Time
	// OnChange, if set, is called after a backend changes state (for
	// metrics). It runs on a probe goroutine and must not block.
	OnChange func(b *endpoint.Backend, healthy bool)
	// OnDiscount, if set, is called for each probe of b counted neither
	// way because it timed out while the gateway itself was stalled (for
	// metrics: the round's WARN says how many, not whose). It runs on a
	// probe goroutine and must not block.
	OnDiscount func(b *endpoint.Backend)
}

func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = "/health"
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Passes <= 0 {
		c.Passes = 2
	}
	if c.Fails <= 0 {
		c.Fails = 2
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// healthyStatus reports whether status counts as a passed probe.
func (c Config) healthyStatus(status int) bool {
	if c.ExpectStatus != 0 {
		return status == c.ExpectStatus
	}
	return status >= 200 && status <= 299
}
