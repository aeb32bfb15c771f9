package ratelimit

import (
	"math"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/rate"
)

// Decision is the outcome of one operation on one bucket.
type Decision struct {
	// Allowed says the units were taken. A denied operation takes nothing.
	Allowed bool
	// Delay is how long an allowed request should wait before proceeding so
	// the traffic conforms to the rate (nginx's delayed excess). Zero for
	// nodelay limits and for requests within the rate.
	Delay time.Duration
	// RetryAfter is, for a denied request, how long until the same request
	// would be allowed if nothing else arrived. Zero when Allowed or NeverFits.
	RetryAfter time.Duration
	// Limit is the bucket's capacity (Burst+1): units that pass at once from
	// idle. Zero means no limit applied.
	Limit int64
	// Rate is the limit's refill in units per second, which the
	// x-ratelimit-* headers state per minute (WriteHeaders).
	Rate float64
	// Remaining is how many unit-cost requests would be allowed right after
	// this decision.
	Remaining int64
	// Reset is how long until the bucket is full (idle) again.
	Reset time.Duration
	// NeverFits says the cost exceeds the capacity, so no amount of waiting
	// helps: a distinct, non-retryable refusal.
	NeverFits bool
}

// givenBack is d after n of the units it took are refunded: n more
// remaining (at most the capacity) and the bucket full again n emission
// intervals sooner.
func (d Decision) givenBack(n int64) Decision {
	if n <= 0 || d.Rate <= 0 {
		return d
	}
	used := d.Limit - d.Remaining
	if d.Remaining <= 0 {
		// In debt: the refill time says how far (as headline reads it).
		used = max(used, int64(math.Ceil(d.Reset.Seconds()*d.Rate-0.001)))
	}
	d.Remaining = min(max(d.Limit-used+n, 0), d.Limit)
	d.Reset = max(d.Reset-time.Duration(float64(n)/d.Rate*float64(time.Second)), 0)
	return d
}

// Op is one operation on one bucket, for Store.Apply.
type Op struct {
	Key   string
	Limit Limit
	// Cost is the units taken. A Take (Force false) needs 0 <= Cost; it is
	// allowed only if the bucket has room (a take of 0 always is: it takes
	// nothing). A charge (Force true) always applies, may be negative (a
	// refund), and may push the bucket into debt, which later takes then
	// wait out: all of it (usage reported past the estimate is owed in
	// full), up to maxDebt of refill beyond empty.
	Cost  int64
	Force bool
}

// epochMicros is the algorithm's time origin (2025-01-01 UTC). Counting from
// it instead of 1970 keeps float64 microsecond clock values small, so their
// resolution stays below 0.1 µs for decades.
const epochMicros = 1735689600 * 1_000_000

// micros is now on the algorithm's clock.
func micros(now time.Time) float64 { return float64(now.UnixMicro() - epochMicros) }

// params are a Limit as the algorithm and the Lua script consume it.
type params struct {
	interval float64 // emission interval T: microseconds per unit
	capacity int64   // Burst+1
	delay    int64   // excess units served undelayed; -1 = all
}

func paramsOf(l Limit) params {
	return params{interval: 1e6 / l.Rate, capacity: l.Capacity(), delay: l.Delay}
}

// intervalArg is T as the script receives it: the shortest text that parses
// back to the same float64, so both implementations compute with one value.
func (p params) intervalArg() string { return strconv.FormatFloat(p.interval, 'g', -1, 64) }

// outcome is a decision in the integers the script returns (microseconds).
type outcome struct {
	allowed, neverFits          bool
	delay, retry, remain, reset int64
}

func (o outcome) decision(l Limit) Decision {
	return Decision{
		Rate:       l.Rate,
		Allowed:    o.allowed,
		NeverFits:  o.neverFits,
		Delay:      microsDuration(o.delay),
		RetryAfter: microsDuration(o.retry),
		Limit:      l.Capacity(),
		Remaining:  o.remain,
		Reset:      microsDuration(o.reset),
	}
}

// microsDuration converts microseconds to a Duration, saturating instead of
// wrapping past about 292 years.
func microsDuration(us int64) time.Duration {
	const limit = math.MaxInt64 / int64(time.Microsecond)
	return time.Duration(min(max(us, -limit), limit)) * time.Microsecond
}

// gcra is the Generic Cell Rate Algorithm, the virtual-scheduling form of a
// leaky bucket, stated so it reproduces nginx limit_req exactly. The bucket
// state is one number, the theoretical arrival time tat: when the bucket
// will be idle again if nothing more arrives. A missing bucket (has=false)
// is an idle one. It returns the new tat and whether to store it (an allowed
// operation) — a new tat at or before now means idle, which the stores keep
// by deleting the bucket.
//
// gcra.lua is this function line by line. Every floating-point step is
// written the same way in both and rounded once (float64(x*y) stops Go from
// fusing a multiply-add, which Lua never does), so the local and the Redis
// store give identical decisions for identical inputs; a test holds them to
// it.
//
// nginx's "excess" after a request is (new tat - now - T) in units of T: the
// first request on an idle bucket has excess 0, each further one at the
// same instant 1 more, and a request is refused when its excess would pass
// burst, i.e. when new tat - now > capacity*T. That test is made on whole
// units, as the bucket's room (left): a take is refused when it costs more
// than the units left, counted as Remaining counts them. A decision's
// Remaining is then exactly what a take at that instant gets. Comparing the
// clock values instead refused a take of all that was left by a rounding
// hair (now + 36T - now > 36T), the count forgiving what the test did not.
func gcra(tat float64, has bool, now float64, p params, cost int64, force bool) (newTat float64, store bool, o outcome) {
	if !has || tat < now {
		tat = now
	}
	t := p.interval
	span := float64(float64(p.capacity) * t)
	newTat = tat
	o.allowed = true
	switch {
	case !force && cost > p.capacity:
		o.allowed, o.neverFits = false, true
	case !force && cost == 0:
		// Takes nothing, so it conforms even in debt: a state query, or a
		// request with nothing to charge (a follow-up's tokens), is never
		// refused for units it does not ask for.
	default:
		newTat = tat + float64(float64(cost)*t)
		if !force && cost > left(tat, now, t, p.capacity) {
			o.allowed = false
			// Once newTat - now is within span the take fits, with a
			// thousandth of a unit to spare for the rounding; at least a
			// microsecond, so a refusal never says "now".
			o.retry = max(int64(math.Ceil(newTat-now-span)), 1)
			newTat = tat
		}
	}
	if newTat < now {
		newTat = now // a refund cannot fill the bucket beyond full
	}
	if force && newTat-now > span+maxDebt {
		newTat = now + span + maxDebt // a guard against absurd usage reports, not a discount
	}
	if o.allowed {
		store = true
		if p.delay >= 0 && !force {
			ex := newTat - now - t - float64(float64(p.delay)*t)
			if ex > 0 {
				o.delay = int64(math.Ceil(ex))
			}
		}
	}
	o.remain = max(left(newTat, now, t, p.capacity), 0)
	o.reset = int64(math.Ceil(newTat - now))
	return newTat, store, o
}

// maxDebt bounds a bucket's debt, in microseconds of refill beyond empty:
// rate.MaxRefill, the longest refill a limit may have, so every duration
// stays exact. It used to be one capacity, which forgave the rest: usage
// reported far past its estimate (a JSON answer without max_tokens) was
// charged at most the limit twice over, whatever it was. gcra.lua states
// the same figure (31622400000000).
const maxDebt = float64(rate.MaxRefill / time.Microsecond)

// left is the whole units a bucket of capacity has room for at now, its
// tat at or after now; negative in debt. Units in use are counted less a
// thousandth: the clock value's rounding must not turn exactly one unit in
// use into two. Both the refusal and Remaining are this one expression, so
// they agree to the unit.
func left(tat, now, t float64, capacity int64) int64 {
	return capacity - int64(math.Ceil((tat-now)/t-0.001))
}
