package admission

import (
	"math"
	"time"
)

// QueueConfig tunes a Queue. Every zero field takes the default in its
// comment, except Fair.
type QueueConfig struct {
	// Name is the pool (model) the queue guards; refusal messages name it.
	Name string
	// Fair turns on weighted fair queuing by cost across tenants. Off, each
	// class is one FIFO: only for comparison and tests, since one tenant's
	// flood then delays everyone. Production callers set it.
	Fair bool

	MaxQueued              int     // requests waiting in total, default 1024
	MaxQueuedPerTenant     int     // requests one tenant may have waiting, default MaxQueued
	MaxQueuedCost          float64 // cost waiting in total, default 0 = no cost bound
	MaxQueuedCostPerTenant float64 // cost one tenant may have waiting, default 0 = no cost bound

	// MinShare is the starvation guard: while a class has waiters it gets at
	// least this fraction of the cost granted to it and the classes above it,
	// default 0.1. Negative means strict priority. At most 0.5.
	MinShare float64

	// PriorSlotRate is the drain rate assumed per slot, in cost units per
	// second, before completions are measured, default 100 (a sequence of a
	// few hundred tokens in a few seconds). DrainSamples is how many
	// completions the measured rate averages over, default 64.
	PriorSlotRate float64
	DrainSamples  int

	// QueueUnmeasured: until the first completion is measured, arrivals are
	// not refused on the wait the prior predicts; they queue (bounded by
	// MaxQueued and by their deadlines) and the first completions set the
	// estimate. The prior is a guess: against a fast backend a cold burst
	// (64 clients on an initial limit of 4) would otherwise be refused for a
	// wait that never comes. Default false: the prior refuses like a
	// measurement.
	QueueUnmeasured bool

	// Retry-After estimates are clamped to [MinRetryAfter, MaxRetryAfter],
	// default 1s and 5m: clients retrying sooner than a second only add load.
	MinRetryAfter time.Duration
	MaxRetryAfter time.Duration

	// Grace is how long past its Deadline an admitted waiter is still
	// served rather than refused. The promise is that refusals come at once:
	// the deadline decides admission, and a waiter the estimate let in is not
	// refused later for the estimate's error unless it overruns by Grace.
	// Default 0: a waiter is refused as soon as its deadline passes.
	Grace time.Duration

	// Targets is the controlled-delay target of each priority class (see
	// codel.go): once a class's waits have stayed above it for twice as
	// long, arrivals that would wait longer are refused and waiters that
	// reach it are shed. 0 (the default) leaves the class bounded by
	// deadlines only.
	Targets [MaxClass + 1]time.Duration

	// ShortFirst turns on size-aware order within each tenant's share:
	// an arriving request goes ahead of its tenant's longer (costlier)
	// waiters that have waited less than ShortFirst, so short prompts are
	// served first and a long one is overtaken only during its first
	// ShortFirst of waiting. Other tenants' shares are unchanged (the
	// tenant's tags are re-dealt, not added to). 0 (the default): FIFO
	// within a tenant.
	ShortFirst time.Duration

	// SpareReserve is the share of capacity (rounded up to whole slots)
	// spare requests leave free while live requests are in flight, so
	// that a live request arriving finds a slot without preempting
	// (default 0). With no live request in flight spare work may fill
	// the pool: the next live arrival preempts.
	SpareReserve float64

	// RampWindow turns on the ramp of newly busy tenants (ramp.go): a
	// tenant counts as active while it holds or waits for a slot and for
	// RampWindow after; one that becomes busy while another is active
	// may not take the slots the active ones are using until its own
	// requests come back. 0 (the default): off.
	RampWindow time.Duration
	// KnownCapacity, when set, is how many of capacity()'s slots the
	// backends are known to have (static max_concurrency limits, which
	// the operator states, not adaptive ones, which can stand above what
	// the backends have). The ramp reckons from at least these: a held
	// request never waits while known slots stand free that no active
	// tenant used recently (ramp.go). Called under the queue's mutex,
	// like capacity. nil: none known. Kept from NewQueue by SetConfig.
	KnownCapacity func() int
	// SpareCapacity, when set, is how many of capacity()'s slots the
	// engines run at once: capacity less the handover the limits allow
	// past each engine's batch bound, whose requests wait in the engine's
	// own queue. Spare requests other than hedges (queued jobs, batch
	// requests) fill no more than these, less the reserve (SpareReserve,
	// sized against them), and a live request granted past them preempts
	// the youngest job at once, as one that found the pool full does:
	// otherwise jobs held the engines' queues and live requests waited
	// there behind them (spare.go, docs/BENCHMARKS.md §7h, §7i). Hedges
	// (Request.Hedge) keep the whole capacity less the reserve. Called
	// under the queue's mutex, like capacity. nil: capacity. Kept from
	// NewQueue by SetConfig.
	SpareCapacity func() int
	// ReportedCapacity, when set, is how many requests of this pool the
	// backends' engines say they can run at once now: the batch bound
	// they report in their metrics, less what other clients run there,
	// from fresh readings with nothing queued (ok false: none reported;
	// a room of 0 reported is a ceiling of 0). It is
	// a ceiling, not known capacity: a ramping tenant's free slots may
	// reach it less the other active tenants' margins (rampceiling.go),
	// and no probe goes past it. need is the request's KV need
	// (Request.KVNeed): engines that report their KV
	// cache's size have room for as many newcomers of that size as their
	// free tokens hold; 0 asks for newcomers like the running ones.
	// Called under the queue's mutex, like capacity. nil: none reported.
	// Kept from NewQueue by SetConfig.
	ReportedCapacity func(need float64) (room int, ok bool)
	// PrefillCapacity, when set, is what the engines' queued prefill
	// leaves one more request of prompt estimated tokens (0: unknown)
	// with left to its objective (NoDue: none): how many requests of this
	// pool the backends can run with it starting within the interactive
	// delay target and left, beyond its own prefill (what they run plus
	// as many more as their queued prefill at their learned rates leaves
	// time for), and whether none can start it within left at all
	// (PrefillFit, rampprefill.go). Slots 0: not priced (a backend's rate
	// not learned). A ceiling on a ramping tenant's base like
	// ReportedCapacity, but not less the others' margins: it is time, not
	// slots. Called under the queue's mutex. nil: none. Kept from
	// NewQueue by SetConfig.
	PrefillCapacity func(prompt float64, left time.Duration) PrefillFit

	// Wake, when set, is sent a value (never blocking) by the first
	// Acquire after Rest found the queue at rest, and by the first Acquire
	// of a new queue: the caller that runs Kick can then sleep while every
	// queue rests (rest.go). nil: no signal.
	Wake chan<- struct{}
}

// Defaults for QueueConfig's zero fields.
const (
	DefaultMaxQueued     = 1024
	DefaultMinShare      = 0.1
	DefaultPriorSlotRate = 100.0
	DefaultDrainSamples  = 64
	DefaultMinRetryAfter = time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
	priorHold            = time.Second // the prior's mean slot hold
	maxMinShare          = 0.5
)

func (c QueueConfig) withDefaults() QueueConfig {
	if c.MaxQueued <= 0 {
		c.MaxQueued = DefaultMaxQueued
	}
	if c.MaxQueuedPerTenant <= 0 {
		c.MaxQueuedPerTenant = c.MaxQueued
	}
	c.MaxQueuedCost = max(c.MaxQueuedCost, 0)
	c.MaxQueuedCostPerTenant = max(c.MaxQueuedCostPerTenant, 0)
	switch {
	case c.MinShare == 0 || math.IsNaN(c.MinShare):
		c.MinShare = DefaultMinShare
	case c.MinShare < 0:
		c.MinShare = 0
	}
	c.MinShare = min(c.MinShare, maxMinShare)
	if !(c.PriorSlotRate > 0) {
		c.PriorSlotRate = DefaultPriorSlotRate
	}
	if c.DrainSamples <= 0 {
		c.DrainSamples = DefaultDrainSamples
	}
	if c.MinRetryAfter <= 0 {
		c.MinRetryAfter = DefaultMinRetryAfter
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	c.MaxRetryAfter = max(c.MaxRetryAfter, c.MinRetryAfter)
	return c
}
