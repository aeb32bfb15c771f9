package admission

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// LimitConfig tunes an AdaptiveLimit. The zero value is usable: every zero
// field takes the default in its comment, and out-of-range values are
// clamped into range (they are not errors, so a config typo degrades to a
// sane controller instead of an outage).
type LimitConfig struct {
	// Initial is the starting limit, default 4. Keep it at or below the
	// knee: the first windows measure the no-load latency the whole
	// controller steers against. Slow start finds the knee quickly from there.
	Initial int
	Min     int // lowest limit, default 1
	Max     int // highest limit, default 1024

	// A window closes once it has lasted Window (default 1s) and holds at
	// least MinSamples (default 10) Success or Busy samples. The limit moves
	// once per window. For LLM backends, size the window to hold several
	// completions, or feed time-to-first-token as the latency.
	Window     time.Duration
	MinSamples int

	// Tolerance is the ratio of a window's average latency to the no-load
	// baseline that is accepted before the limit shrinks, default 1.5 (at
	// least 1). It must exceed the backend's own latency growth up to its
	// knee (for a batching engine, step time at a full batch over step time
	// at batch 1), or the limit settles below the knee.
	Tolerance float64
	// Smoothing is the weight of each window's target in the new limit, in
	// (0, 1], default 0.2. Lower is steadier and slower.
	Smoothing float64
	// Backoff multiplies the limit on back-pressure (a Busy outcome), in
	// (0, 1), default 0.8. At most one cut per congestion event: Busy
	// answers to requests sent before the last cut do not cut again.
	Backoff float64

	// BaselineWindows bounds the no-load baseline's memory: it is the lowest
	// window average among the last BaselineWindows windows, default 100, and
	// each probe (every BaselineWindows/2 windows) replaces that history.
	BaselineWindows int
	// Every BaselineWindows/2 windows, or early after five windows in a row
	// above tolerance, the limit drops to a quarter for one probe window
	// whose samples (only those sent at that concurrency) replace the
	// baseline. Without probes a backend kept saturated never shows its
	// no-load latency again: when the old minimum expires the baseline jumps
	// to the loaded latency and the limit creeps up toward Max; and a backend
	// that really became slower is not tracked until the old minimum expires.
	// NoProbe turns probes off (tests, or a caller that resets baselines).
	NoProbe bool

	// LatencyFloor is a latency the limit may always grow to, whatever the
	// baseline (default 0: none). The tolerance is then applied to at least
	// LatencyFloor/Tolerance. A backend whose no-load latency is tiny next
	// to the client's objective (an LLM server's time to first token next
	// to a 2s objective) reaches its tolerance with one or two requests
	// queued; a few more, starting well inside the objective, keep its
	// batch slots from idling between one request's end and the next one's
	// arrival. The gateway sets a tenth of the pool's objective.
	LatencyFloor time.Duration

	// ReportsEnds says the caller calls Ended for every request that ends
	// (the gateway does). A window then needs no more samples than the
	// requests the limit let start in it (adaptive_starts.go): long streams
	// fed at their first token give a sample only when one starts, and one
	// starts only when the limit rises or a stream ends.
	ReportsEnds bool
	// Clock, when set, lets Limit close a window that holds its samples and
	// waits only for its time, and end a probe that gets no samples: with
	// long streams no sample may come for a minute. The gateway reads
	// Limit a few times a second while requests wait (the queue's kick).
	Clock func() time.Time
}

// Defaults for LimitConfig's zero fields.
const (
	DefaultLimitInitial     = 4
	DefaultLimitMin         = 1
	DefaultLimitMax         = 1024
	DefaultLimitWindow      = time.Second
	DefaultLimitMinSamples  = 10
	DefaultLimitTolerance   = 1.5
	DefaultLimitSmoothing   = 0.2
	DefaultLimitBackoff     = 0.8
	DefaultBaselineWindows  = 100
	slowStartGrowth         = 1.5 // per window, until latency rises or a Busy
	minGradient             = 0.5 // at most halve the target per window
	probeDivisor            = 4   // a probe runs at a quarter of the limit
	earlyProbeStreak        = 5   // windows above tolerance in a row that call a probe early
	earlyProbeGap           = 10  // ... but not sooner than this many windows after the last
	probeTimeoutWindows     = 4   // a probe that gathers too few samples gives up
	probeTimeoutLatencies   = 4   // ... after this many windows plus this many latencies
	endRateWeight           = 0.1 // of each window's end rate in the average a probe is judged on
	minimumBaselineInterval = 2
)

func (c LimitConfig) withDefaults() LimitConfig {
	if c.Min <= 0 {
		c.Min = DefaultLimitMin
	}
	if c.Max <= 0 {
		c.Max = DefaultLimitMax
	}
	c.Max = max(c.Max, c.Min)
	if c.Initial <= 0 {
		c.Initial = DefaultLimitInitial
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	if c.Window <= 0 {
		c.Window = DefaultLimitWindow
	}
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultLimitMinSamples
	}
	if !(c.Tolerance > 0) { // also catches NaN
		c.Tolerance = DefaultLimitTolerance
	}
	c.Tolerance = max(c.Tolerance, 1)
	if !(c.Smoothing > 0) {
		c.Smoothing = DefaultLimitSmoothing
	}
	c.Smoothing = min(c.Smoothing, 1)
	if !(c.Backoff > 0 && c.Backoff < 1) {
		c.Backoff = DefaultLimitBackoff
	}
	if c.BaselineWindows <= 0 {
		c.BaselineWindows = DefaultBaselineWindows
	}
	c.BaselineWindows = max(c.BaselineWindows, minimumBaselineInterval)
	return c
}

// AdaptiveLimit is a latency-gradient concurrency limit in the style of
// Netflix concurrency-limits' Gradient2, with a windowed-minimum baseline,
// probe windows and slow start. Once per window:
//
//	short    = average latency of the window's Success samples
//	baseline = lowest window average since the last probe (the probe included)
//	ratio    = short / baseline
//	target   = limit × max(Tolerance / ratio, 0.5)               if ratio > Tolerance
//	         = limit + √limit × (Tolerance − ratio)/(Tolerance − 1)  otherwise
//	limit    = limit × (1 − Smoothing) + target × Smoothing, clamped to [Min, Max]
//
// Below the knee latency stays near the baseline and the limit grows by up to
// Smoothing×√limit per window. Past the knee the backend queues, latency grows
// in proportion to the excess, and the gradient pulls the limit back: it
// settles where latency is Tolerance × the baseline. The growth term tapers to
// zero at the tolerance, so windows landing just under it do not bias the
// limit upward (Gradient2 adds a constant queue allowance instead, which
// settles further past the knee).
//
// Slow start: until a window shows latency halfway to the tolerance, or a
// Busy answer arrives, the limit grows 1.5× per window (and steps back once
// if the window that ends it is already past the tolerance), and windows last
// only as long as their samples and a feedback delay take (windowLength). A window whose peak
// in-flight count stayed below half the limit is app-limited and never grows
// the limit: there is no evidence the backend could take more. Busy samples
// cut the limit at once (× Backoff, once per congestion event) and block
// growth in their window; Failure samples are ignored.
//
// Probes: every BaselineWindows/2 windows, or after five windows in a row
// well above tolerance, the limit drops to a quarter until a window of
// samples sent at that concurrency is in; their average replaces the
// baseline. This keeps the baseline a no-load latency under sustained load,
// and finds the new one when the backend itself became slower. With
// ReportsEnds, a probe that cannot measure (long streams in flight that
// will not end in time) is skipped or cut short (adaptive_probe.go).
//
// AdaptiveLimit is safe for concurrent use. Limit is one atomic load.
type AdaptiveLimit struct {
	cfg   LimitConfig
	limit atomic.Int64 // the published limit; everything below is under mu

	ends atomic.Int64 // requests ended (Ended)
	due  atomic.Int64 // UnixNano when Limit should look at the window again; 0: never

	mu           sync.Mutex
	lastInflight int     // the in-flight count of the latest sample
	endsAtLast   int64   // ends when it came
	est          float64 // the limit before rounding and probing
	slowStart    bool
	win          window
	hist         []float64 // ring of window averages (seconds) for the baseline
	histNext     int
	baseline     float64 // seconds; 0 until the first window closes
	short        float64 // last window's average, seconds
	windows      uint64
	sinceProbe   int
	highStreak   int // consecutive windows above tolerance
	probing      bool
	probeLimit   int
	probeStart   time.Time
	probe        window
	lastCut      time.Time
	// The end rate a probe is judged by (adaptive_probe.go): ends counted
	// by rateEnds at rateAt.
	rateAt       time.Time
	rateEnds     int64
	endRate      float64 // ends per second, averaged over windows (noteEnds)
	probesRun    uint64
	probesMissed uint64 // skipped or cut short: they could not measure

}

// window accumulates the samples of one adjustment (or probe) window.
type window struct {
	start       time.Time
	n           int     // Success samples
	sum         float64 // their latencies, seconds
	busy        int
	maxInflight int
	// grant is how many requests the published limit let start beyond
	// those in flight at the latest sample before the window opened, and
	// ends0 the ends counted by then: grant plus the ends since is every
	// start, so every sample, the window can get (possible).
	grant     int
	ends0     int64
	inflight0 int
}

func (w *window) add(latency time.Duration, inflight int) {
	w.n++
	w.sum += latency.Seconds()
	w.maxInflight = max(w.maxInflight, inflight)
}

// NewAdaptiveLimit returns a limit at cfg.Initial (after defaults).
func NewAdaptiveLimit(cfg LimitConfig) *AdaptiveLimit {
	cfg = cfg.withDefaults()
	a := &AdaptiveLimit{cfg: cfg, est: float64(cfg.Initial), slowStart: true,
		hist: make([]float64, 0, cfg.BaselineWindows)}
	a.publish()
	return a
}

// Limit is the number of requests the backend may have outstanding now.
// It is one atomic load, plus a look at the window when one waits only for
// its time to pass and Clock says it has (see LimitConfig.Clock).
func (a *AdaptiveLimit) Limit() int {
	if d := a.due.Load(); d != 0 {
		a.tick(d)
	}
	return int(a.limit.Load())
}

// Observe feeds one completed request; see Limiter for the arguments.
func (a *AdaptiveLimit) Observe(now time.Time, latency time.Duration, inflight int, out outcome.Outcome) {
	latency = max(latency, 0)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.win.start.IsZero() {
		a.win.start = now
		a.win.grant = int(a.limit.Load()) // not Limit: it may lock mu
	}
	a.lastInflight, a.endsAtLast = inflight, a.ends.Load()
	switch out {
	case outcome.Failure, outcome.Ignored: // Ignored: a stale keep-alive connection, no latency to learn
		return
	case outcome.Busy:
		a.onBusy(now, latency)
	default:
		if !a.probing {
			a.win.add(latency, inflight)
		} else if inflight <= a.probeLimit {
			// Only requests sent at the probe's concurrency show the
			// no-load latency; earlier ones queued behind the full limit.
			if a.probe.n == 0 {
				a.probe.start = now
			}
			a.probe.add(latency, inflight)
		}
	}
	if a.probing {
		a.maybeEndProbe(now)
	} else {
		a.maybeCloseWindow(now)
	}
	a.setDue(now)
}

// onBusy cuts the limit once per congestion event, like TCP's one cut per
// round trip: a Busy answer to a request sent before the last cut reports the
// congestion that cut already answered.
func (a *AdaptiveLimit) onBusy(now time.Time, latency time.Duration) {
	a.win.busy++
	a.slowStart = false
	sent := now.Add(-latency)
	if !a.lastCut.IsZero() && sent.Before(a.lastCut) {
		return
	}
	a.est = max(float64(a.cfg.Min), a.est*a.cfg.Backoff)
	a.lastCut = now
	a.publish()
}

func (a *AdaptiveLimit) maybeCloseWindow(now time.Time) {
	w := a.win
	if now.Sub(w.start) < a.windowLength() {
		return
	}
	idle := a.nothingCouldStart(&w)
	if w.n+w.busy < a.need(&w) && !idle {
		return
	}
	a.windows++
	a.noteEnds(now, w)
	switch {
	case w.n > 0:
		a.short = w.sum / float64(w.n)
		a.remember(a.short)
		if w.busy == 0 {
			a.adjust(w)
		}
	case idle && w.busy == 0 && a.short > 0 && a.ratio() <= a.cfg.Tolerance:
		// The backend holds what it held at the last sample (nothing
		// started), whose latency stands; the limit may grow on by it.
		// Only grow: a cut was that sample's, made when it came, and
		// making it again (or counting it toward an early probe) would
		// count one observation many times.
		w.maxInflight = w.inflight0
		a.adjust(w)
	}
	a.sinceProbe++
	due := a.sinceProbe >= a.cfg.BaselineWindows/2 ||
		a.highStreak >= earlyProbeStreak && a.sinceProbe >= earlyProbeGap
	if !a.cfg.NoProbe && due {
		a.startProbe(now, w)
	}
	a.publish()
	a.openWindow(now)
}

// windowLength is how long a window lasts at least: Window, except in slow
// start, where a window closes once its samples are in and twice the last
// window's average latency (one feedback delay with margin) has passed. A
// cold gateway in front of a busy pool must find the knee in a few
// round trips, not one Window per 1.5x step: each second spent below the
// knee leaves slots idle while requests are refused.
func (a *AdaptiveLimit) windowLength() time.Duration {
	if !a.slowStart {
		return a.cfg.Window
	}
	// At least a quarter Window: the first samples after a step up are the
	// requests that found a free slot; those queued behind them at the
	// backend need a little longer to show.
	return min(a.cfg.Window, max(time.Duration(2*a.short*float64(time.Second)), a.cfg.Window/4))
}

// minSamples is how many samples a window needs: MinSamples, except in
// slow start, where a window at a limit below it needs only as many as the
// limit (one round of requests). Samples arrive at about limit / service
// time, so at a low starting limit MinSamples of them would take several
// service times per step.
func (a *AdaptiveLimit) minSamples() int {
	if !a.slowStart {
		return a.cfg.MinSamples
	}
	return max(min(a.cfg.MinSamples, int(a.est)), 1)
}

// adjust moves the estimate after a window with latency samples and no
// back-pressure.
func (a *AdaptiveLimit) adjust(w window) {
	ratio := a.ratio()
	appLimited := float64(w.maxInflight) < a.est/2
	if a.slowStart {
		// Leave slow start halfway to the tolerance, so the steps do not
		// overshoot far past the knee.
		if ratio < 1+(a.cfg.Tolerance-1)/2 {
			if !appLimited {
				a.est = min(a.est*slowStartGrowth, float64(a.cfg.Max))
			}
			return
		}
		a.slowStart = false
		if ratio > a.cfg.Tolerance && !appLimited {
			// Past the knee already: the last step up overshot. Cut at
			// once to where the gradient points (latency falls about in
			// proportion to the excess), but not below the step before
			// (TCP's ssthresh), which was still under the tolerance.
			a.est = max(a.est*a.cfg.Tolerance/ratio, a.est/slowStartGrowth, float64(a.cfg.Min))
			return
		}
	}
	// Latency well above tolerance window after window, while the limit
	// falls, is either overload (a probe confirms the baseline) or a slower
	// backend (a probe finds the new one).
	a.highStreak++
	if ratio <= a.cfg.Tolerance+(a.cfg.Tolerance-1)/2 {
		a.highStreak = 0
	}
	var target float64
	switch {
	case ratio > a.cfg.Tolerance:
		target = a.est * max(a.cfg.Tolerance/ratio, minGradient)
	case appLimited:
		target = a.est
	default:
		// Grow by √limit at the baseline, tapering to nothing at the
		// tolerance, so the controller is continuous around ratio =
		// Tolerance: a full step up on every window that happens to land a
		// little under it would bias the limit upward.
		room := 1.0
		if a.cfg.Tolerance > 1 {
			room = min((a.cfg.Tolerance-ratio)/(a.cfg.Tolerance-1), 1)
		}
		target = a.est + math.Sqrt(a.est)*room
	}
	a.est = a.est*(1-a.cfg.Smoothing) + target*a.cfg.Smoothing
	a.est = min(max(a.est, float64(a.cfg.Min)), float64(a.cfg.Max))
}

// ratio is the last window's average over the baseline (at least
// LatencyFloor/Tolerance); 1 before there is a baseline.
func (a *AdaptiveLimit) ratio() float64 {
	if a.baseline <= 0 {
		return 1
	}
	return a.short / max(a.baseline, a.cfg.LatencyFloor.Seconds()/a.cfg.Tolerance)
}

// remember adds a window average to the baseline ring and recomputes the
// baseline as the ring's minimum.
func (a *AdaptiveLimit) remember(avg float64) {
	if len(a.hist) < cap(a.hist) {
		a.hist = append(a.hist, avg)
	} else {
		a.hist[a.histNext] = avg
		a.histNext = (a.histNext + 1) % len(a.hist)
	}
	a.baseline = a.hist[0]
	for _, v := range a.hist[1:] {
		a.baseline = min(a.baseline, v)
	}
}

func (a *AdaptiveLimit) publish() {
	n := int(a.est)
	if a.probing {
		n = min(n, a.probeLimit)
	}
	a.limit.Store(int64(min(max(n, a.cfg.Min), a.cfg.Max)))
}

// LimitStats is an AdaptiveLimit's state for /status and tests.
type LimitStats struct {
	Limit     int           `json:"limit"`
	Estimate  float64       `json:"estimate"` // the unrounded limit outside probes
	Baseline  time.Duration `json:"baseline"` // no-load latency estimate
	Short     time.Duration `json:"short"`    // last window's average latency
	Windows   uint64        `json:"windows"`  // windows closed so far
	SlowStart bool          `json:"slow_start"`
	Probing   bool          `json:"probing"`
	// Probes counts the probes run; ProbesMissed those skipped or ended
	// early because in-flight requests could not fall to the probe's
	// limit in time (long streams).
	Probes       uint64 `json:"probes"`
	ProbesMissed uint64 `json:"probes_missed"`
}

// Stats returns a consistent snapshot.
func (a *AdaptiveLimit) Stats() LimitStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return LimitStats{
		Limit: int(a.limit.Load()), Estimate: a.est, Windows: a.windows,
		Baseline:  time.Duration(a.baseline * float64(time.Second)),
		Short:     time.Duration(a.short * float64(time.Second)),
		SlowStart: a.slowStart, Probing: a.probing,
		Probes: a.probesRun, ProbesMissed: a.probesMissed,
	}
}
