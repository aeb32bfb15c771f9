// Package discovery finds the backends of a model while the gateway runs.
// A Source reports the model's whole backend set each time it changes (never
// a diff, so a lost update heals with the next); a source that fails keeps
// quiet about the set and reports the failure instead, so the pool keeps
// the last set it knew: an outage of the registry never empties a pool.
// Sources: static (the config's list), file (a watched targets file, in
// the spirit of Prometheus file_sd), dns (A/AAAA or SRV at the TTL) and
// consul (a service's passing instances, with blocking queries). internal/app owns the sources (runs
// each until its context ends) and turns every new set into a rebuilt
// runtime: backends that stay keep their state, new ones slow-start,
// removed ones drain.
package discovery

import (
	"context"
	"slices"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Sink receives what a source finds. Update gets the full set (the
// source keeps no claim on the slice); Fail a failure to find it, after
// which the last set still stands. Both may be called from the source's
// goroutine at any time until Run returns.
type Sink interface {
	Update(set []endpoint.Spec)
	Fail(err error)
}

// Source finds one model's backends. Run reports the set to sink as soon
// as it is known and again each time it changes, until ctx ends; it
// returns then (its owner cancels ctx and waits for Run to return).
type Source interface {
	Run(ctx context.Context, sink Sink)
}

// Static is the config's fixed list of backends: reported once.
type Static []endpoint.Spec

// Run reports the list and waits for ctx to end.
func (s Static) Run(ctx context.Context, sink Sink) {
	sink.Update(slices.Clone(s))
	<-ctx.Done()
}
