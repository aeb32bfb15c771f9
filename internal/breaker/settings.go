package breaker

import "time"

// Defaults applied by New to zero (or invalid) Settings fields.
const (
	DefaultWindow       = 30 * time.Second
	DefaultBuckets      = 10
	DefaultMinRequests  = 20
	DefaultFailureRatio = 0.5
	DefaultSlowRatio    = 1.0
	DefaultOpenFor      = 10 * time.Second
	// DefaultMaxOpenFactor: with MaxOpenFor zero, back-off grows up to
	// OpenFor × 8 (10 s → 80 s with the defaults), Envoy's growing
	// base_ejection_time in spirit.
	DefaultMaxOpenFactor  = 8
	DefaultHalfOpenProbes = 1
)

// Settings configures a Breaker. The zero value is usable: every zero field
// takes the default written next to it. Negative values are treated as zero.
type Settings struct {
	// Window is the span of the sliding window the ratios are computed over.
	// Default 30 s: LLM calls last seconds, so a shorter window rarely
	// reaches MinRequests on a lightly used backend.
	Window time.Duration
	// Buckets is how many slices Window is cut into; data leaves the window
	// one slice at a time. Default 10.
	Buckets int
	// MinRequests is how many counted calls (Success or Failure, never Busy)
	// the window must hold before either ratio may trip the breaker, so two
	// failures out of three calls do not eject a backend. Default 20.
	MinRequests int
	// FailureRatio trips the breaker when Failures/Calls >= it. Default 0.5.
	// A value above 1 disables the error-ratio trip.
	FailureRatio float64
	// SlowCall is the latency above which a call counts as slow. Zero (the
	// default) disables slow-call detection. Pass the latency the caller
	// measures against this threshold; for streams, time to first byte is
	// the sensible choice, since total duration grows with output length.
	SlowCall time.Duration
	// SlowRatio trips the breaker when Slow/Calls >= it (only with SlowCall
	// set). Default 1.0 (every call in the window slow), resilience4j's
	// default. A value above 1 disables the slow-call trip.
	SlowRatio float64
	// OpenFor is how long the breaker stays open after its first trip.
	// Default 10 s.
	OpenFor time.Duration
	// MaxOpenFor caps the back-off: each consecutive trip without a close
	// in between doubles the open time, up to MaxOpenFor. Default
	// OpenFor × DefaultMaxOpenFactor; set it equal to OpenFor (or below)
	// for a fixed open time.
	MaxOpenFor time.Duration
	// HalfOpenProbes is how many trial calls a half-open breaker admits;
	// at most that many are in flight at once, and that many must succeed
	// to close. Default 1 (as in gobreaker and Sentinel).
	HalfOpenProbes int
	// OnStateChange, if set, is called on every transition, synchronously
	// and while the breaker's lock is held (so calls arrive in order). It
	// must be quick and must not call this Breaker's methods.
	OnStateChange func(from, to State)
}

// withDefaults returns s with every zero or invalid field defaulted.
func (s Settings) withDefaults() Settings {
	if s.Window <= 0 {
		s.Window = DefaultWindow
	}
	if s.Buckets <= 0 {
		s.Buckets = DefaultBuckets
	}
	if s.MinRequests <= 0 {
		s.MinRequests = DefaultMinRequests
	}
	if s.FailureRatio <= 0 {
		s.FailureRatio = DefaultFailureRatio
	}
	if s.SlowCall < 0 {
		s.SlowCall = 0
	}
	if s.SlowRatio <= 0 {
		s.SlowRatio = DefaultSlowRatio
	}
	if s.OpenFor <= 0 {
		s.OpenFor = DefaultOpenFor
	}
	if s.MaxOpenFor <= 0 {
		s.MaxOpenFor = s.OpenFor * DefaultMaxOpenFactor
	}
	if s.MaxOpenFor < s.OpenFor {
		s.MaxOpenFor = s.OpenFor
	}
	if s.HalfOpenProbes <= 0 {
		s.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return s
}

// openFor is the open time after the trips-th consecutive trip (1-based):
// OpenFor, 2×OpenFor, 4×OpenFor, ... capped at MaxOpenFor.
func (s Settings) openFor(trips int) time.Duration {
	d := s.OpenFor
	for i := 1; i < trips && d < s.MaxOpenFor; i++ {
		if d > s.MaxOpenFor/2 {
			return s.MaxOpenFor // doubling would pass the cap (or overflow)
		}
		d *= 2
	}
	return min(d, s.MaxOpenFor)
}
