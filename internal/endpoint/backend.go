// Package endpoint holds the live state of one upstream inference server:
// its identity, outstanding requests, latency estimate and health.
//
// Routing policies only read a Backend (Inflight, Latency, Weight, Usable);
// the proxy (passive outcomes) and the active prober are the only writers.
// This split keeps every policy tiny and free of status handling.
package endpoint

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/outcome"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Spec is the static description of a backend, taken from config or discovery.
type Spec struct {
	URL            string
	Weight         int    // relative share for weighted policies; >= 1
	MaxConcurrency int    // hard cap on outstanding requests; 0 = unlimited
	APIKey         string // injected as "Authorization: Bearer ..." upstream
	UpstreamModel  string // model name the backend expects; "" = same as requested
	// PassClientAuth forwards the client's own Authorization to a backend
	// without APIKey (clients bringing their own provider keys); otherwise
	// the client's credentials never leave the gateway.
	PassClientAuth bool
	// Engine names what serves it (config.Engines; "" unknown): it decides
	// how the active health check probes it.
	Engine string
	// TLS names the config block of this backend's own TLS to an https
	// URL (models[0].backends[1].tls, models[0].discovery[0].tls); ""
	// is upstream_tls, the default. The build resolves it (app).
	TLS string
}

// Key identifies a backend across config reloads so its counters survive.
func (s Spec) Key() string {
	return s.URL + "|" + s.APIKey + "|" + s.UpstreamModel
}

// State is the health state shown on /status and in metrics.
type State int

const (
	StateHealthy   State = iota
	StateBusy            // recently answered 429/503; deprioritised, not ejected
	StateEjected         // passive: max_fails within fail_timeout
	StateProbeDown       // active health check failing
	StateOpen            // circuit breaker open (or half-open with no probe slot)
)

func (s State) String() string {
	switch s {
	case StateBusy:
		return "busy"
	case StateEjected:
		return "ejected"
	case StateProbeDown:
		return "down"
	case StateOpen:
		return "open"
	}
	return "healthy"
}

// HealthPolicy carries nginx's passive health semantics: MaxFails failures
// within FailTimeout take the backend out of rotation for FailTimeout.
// MaxFails 0 disables passive ejection (as in nginx).
type HealthPolicy struct {
	MaxFails    int
	FailTimeout time.Duration
	// BusyPenalty is how long a backend that said 429/503 without a
	// Retry-After is deprioritised.
	BusyPenalty time.Duration
	// MaxEjectionTime, above FailTimeout, lengthens the ejections of a
	// backend that keeps failing after each return: the nth in a row
	// lasts n × FailTimeout, up to MaxEjectionTime (Envoy's outlier
	// detection, base_ejection_time and max_ejection_time). 0, or at most
	// FailTimeout: every ejection lasts FailTimeout (nginx).
	MaxEjectionTime time.Duration
}

// Backend is one upstream server's live state. Safe for concurrent use.
type Backend struct {
	spec   Spec
	target *url.URL
	name   string

	inflight atomic.Int64
	// cpuInflight counts CPU-side calls outstanding (AcquireCPU), apart
	// from inflight, which models the engine's batch.
	cpuInflight atomic.Int64
	// freed is closed (and dropped) when an in-flight request ends: what
	// a request granted by admission but finding every slot taken waits
	// on (Freed). nil while nobody waits.
	freed atomic.Pointer[chan struct{}]
	// work is the estimated tokens (prompt and answer) of the requests in
	// flight here: a long prompt holds a backend far longer than a short
	// one, so routing weighs outstanding work, not request counts.
	work     atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	load     atomic.Pointer[Load]       // last scraped telemetry; nil until the first scrape
	capRec   atomic.Pointer[scrapedCap] // what the scraped load allows; see ObserveLoad
	// localSlots is the batch size seen from a backlog before its metrics
	// showed one (backlogBound); 0 until then.
	localSlots atomic.Int64
	stalls     atomic.Pointer[StallWatch] // this process's own stalls; nil: none seen
	brk        atomic.Pointer[breaker.Breaker]
	limiter    atomic.Pointer[limiterBox]
	life       lifecycle
	// trialAt is when a last-resort trial was handed out (UnixNano; 0:
	// none outstanding): see lastresort.go.
	trialAt atomic.Int64

	mu         sync.Mutex
	policy     HealthPolicy
	failTimes  []time.Time // recent failures, fewer than MaxFails; sliding window
	ejectUntil time.Time
	// ejectRun counts the passive ejections since the backend last
	// answered (0: it has answered since, or was never ejected). Above 0
	// it is on probation: its next failure ejects it again at once, for
	// HealthPolicy.ejectionTime(ejectRun) (ejection.go).
	ejectRun  int
	ejections chan<- struct{} // sent a value on each ejection (SignalEjections); nil: none
	busyUntil time.Time
	// busyEpoch counts push-backs, written under mu, read without it by
	// calls starting (BusyEpoch, AnsweredSince).
	busyEpoch atomic.Uint64
	probeDown bool
	// probeCause is why the active probe marked it down ("connection
	// refused", "status 503"), for /status; "" while it is up.
	probeCause string
	ewma       latencyEWMA
	// Requests sent and still waiting for their first token (streams) or
	// their answer: how many, since when some have been, and when one last
	// got it. See Stalled.
	waiting   int
	waitSince time.Time
	// waitJoined: the prompt tokens of the streams that began waiting
	// since none was (one of unknown size as minPrefillTokens): a first
	// token's own prompt, and the others' it waited beside (prefillRate),
	// with the non-streamed ones queued ahead or sent meanwhile.
	waitJoined int64
	waitTokens int64 // the waiting streams' prompt tokens (PrefillRoom); 0 when none waits
	waitKV     int64 // the waiting streams' KV need (WaitingStreams); 0 when none waits
	lastAnswer time.Time
	lateAt     time.Time        // the recent first token latest beyond its prefill (StartsLate)
	lateTTFT   time.Duration    // its time to first token
	lateTokens int64            // its prompt's estimated tokens (0: unknown)
	prefill    prefillRate      // the prompt tokens a second its first tokens show (latestart.go)
	typical    float64          // nanoseconds; see TypicalLatency
	deviation  float64          // nanoseconds: moving mean |sample - typical|; see TailLatency
	ttft       ttftWindow       // recent samples, for RecentTTFT
	last       [3]time.Duration // the last latency samples, a ring; see RecentLatency
	lastN      int              // samples seen, for the ring's position

	// withdrawnAt: the last wait withdrawn (WithdrawnOf), whose prompt the
	// prefill before it went to, not the others' (PrefillRoom).
	withdrawnAt time.Time
	// answers: the non-streamed requests' prompts taken as still
	// prefilling (StartPrefillOf), counted in the queued prefill with the
	// waiting streams'; prefillSince: when some prompt began prefilling
	// since none was (PrefillRoom).
	answers      answerPrefill
	prefillSince time.Time
	// rateBits is the learned prefill rate (prefill.learned(), a float64's
	// bits; 0: not learned), stored under mu at each first token and read
	// without it, with rateAt, its last sample's time (Unix nanoseconds:
	// it is forgotten prefillRateTTL after): a short non-streamed prompt's
	// send and the gateway's "long prompt" test take no lock
	// (PrefillRate).
	rateBits atomic.Uint64
	rateAt   atomic.Int64
}

// New builds a Backend from its spec.
func New(spec Spec, policy HealthPolicy) (*Backend, error) {
	// The errors name the URL with its password hidden; url.Parse's own
	// error quotes it whole, so only its cause is kept.
	shown := telemetry.RedactURL(spec.URL)
	u, err := url.Parse(spec.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if shown != spec.URL {
			// The cause quotes a piece of the text too ("invalid port
			// \":pa\" after host" for the password "pa/ss"): with a password
			// in the URL, only what to do about it is said.
			err = telemetry.ErrURLPassword
		}
		return nil, fmt.Errorf("backend url %q: %w", shown, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("backend url %q: scheme must be http or https", shown)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("backend url %q: missing host", shown)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	b := &Backend{spec: spec.Normalized(), target: u, name: u.Host + u.Path, policy: policy}
	b.life.init()
	return b, nil
}

// DefaultWeight is a backend's weight when its spec sets none (0), as
// models[].backends[].weight unset; docs/CONFIG.md prints this value.
const DefaultWeight = 1

// Normalized is the spec as a Backend keeps it (Spec): an unset weight is
// DefaultWeight. Compare a configured spec with Spec in this form.
func (s Spec) Normalized() Spec {
	if s.Weight <= 0 {
		s.Weight = DefaultWeight
	}
	return s
}

// Name is a short label for logs and metrics (host:port[/path]).
func (b *Backend) Name() string { return b.name }

// Spec returns the static description.
func (b *Backend) Spec() Spec { return b.spec }

// Target is the parsed base URL; callers must not modify it.
func (b *Backend) Target() *url.URL { return b.target }

// Weight is the configured relative weight (>= 1).
// During slow start it is ramped (RampFactor).
func (b *Backend) Weight() int { return b.ramped(b.spec.Weight) }

// ShareWeight is the configured weight scaled by the slow-start ramp
// without rounding: a weight of 1 starts at 0.1, where Weight, an integer
// never below 1, gives it its full weight from the start. What smooth
// weighted round robin shares turns by.
func (b *Backend) ShareWeight() float64 {
	return float64(b.spec.Weight) * b.RampFactor()
}

// Inflight is the number of requests this gateway has outstanding on it.
func (b *Backend) Inflight() int64 { return b.inflight.Load() }

// Work is the estimated tokens of the requests outstanding on it (AddWork).
func (b *Backend) Work() int64 { return b.work.Load() }

// AddWork adds (or, negative, removes) the estimated tokens of a request
// sent to this backend; the forwarder pairs every add with a removal.
func (b *Backend) AddWork(tokens int64) { b.work.Add(tokens) }

// WaitingStreams is this gateway's streams here waiting for their first
// token (StartWaitingOf) and their KV need (Wait.KV), read together for a
// scrape: the requests an engine reports waiting are partly these, whose
// sizes the gateway knows (kvTokenRoom).
func (b *Backend) WaitingStreams() (streams int64, kvNeed int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(b.waiting), b.waitKV
}

// Requests and Failures are lifetime counters for /status.
func (b *Backend) Requests() uint64 { return b.requests.Load() }
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// SetHealthPolicy replaces the passive-health policy (config reload).
func (b *Backend) SetHealthPolicy(p HealthPolicy) {
	b.mu.Lock()
	b.policy = p
	b.mu.Unlock()
}

// HealthPolicy returns the passive-health policy in force.
func (b *Backend) HealthPolicy() HealthPolicy {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.policy
}

type limiterBox struct{ l admission.Limiter }

// SetLimiter attaches a dynamic limit, used when the spec has no static
// MaxConcurrency. nil detaches it.
func (b *Backend) SetLimiter(l admission.Limiter) {
	if l == nil {
		b.limiter.Store(nil)
		return
	}
	b.limiter.Store(&limiterBox{l})
}

// Limiter returns the attached dynamic limit, or nil.
func (b *Backend) Limiter() admission.Limiter {
	if box := b.limiter.Load(); box != nil {
		return box.l
	}
	return nil
}

// Limit is the backend's current concurrency limit: the static
// max_concurrency when set, else the adaptive limit, in both cases no more
// than its scraped metrics say it can start (ObserveLoad); 0 means
// unlimited.
func (b *Backend) Limit() int {
	if b.spec.MaxConcurrency > 0 {
		return b.capped(b.ramped(b.spec.MaxConcurrency))
	}
	if box := b.limiter.Load(); box != nil {
		return b.capped(b.ramped(box.l.Limit()))
	}
	return b.capped(0)
}

// FullLimit is Limit without a slow start's ramp: the slots the backend
// has once ramped up, which scaling plans with; 0 means unlimited. The
// scraped cap applies as in Limit: an adaptive limit above the engine's
// batch counts its waiting room as slots, and a service rate planned with
// it (slots × completions per slot-second) would read the backend 2–3×
// faster than it is (BENCHMARKS §11, "Forecasting on by default").
func (b *Backend) FullLimit() int {
	if b.spec.MaxConcurrency > 0 {
		return b.capped(b.spec.MaxConcurrency)
	}
	if box := b.limiter.Load(); box != nil {
		return b.capped(box.l.Limit())
	}
	return b.capped(0)
}

// Acquire counts a request as outstanding. It fails when the limit is
// reached. Every successful Acquire must be paired with Release.
func (b *Backend) Acquire() bool { return b.AcquireAmong(0) }

// AcquireAmong is Acquire within LimitAmong(peer): the bound a pick that
// read peer (routing.Select's PeerLimit) checked, claimed in the same
// compare-and-swap. Claimed against Limit instead, two requests picked
// while the backend was one below its peer bound both took a slot, past
// the bound (TestPickAndClaimShareTheBound). Every successful
// AcquireAmong must be paired with Release.
func (b *Backend) AcquireAmong(peer float64) bool {
	limit := int64(b.LimitAmong(peer))
	for {
		cur := b.inflight.Load()
		if limit > 0 && cur >= limit {
			return false
		}
		if b.inflight.CompareAndSwap(cur, cur+1) {
			b.requests.Add(1)
			return true
		}
	}
}

// HasCapacity reports whether Acquire would currently succeed.
func (b *Backend) HasCapacity() bool {
	limit := b.Limit()
	return limit <= 0 || b.inflight.Load() < int64(limit)
}

// Release ends an outstanding request and records its outcome. latency is the
// time to the first response byte (the signal latency-aware policies want);
// retryAfter is the backend's Retry-After hint for Busy outcomes (0 = none).
func (b *Backend) Release(now time.Time, out outcome.Outcome, latency, retryAfter time.Duration) {
	inflight := b.inflight.Add(-1)
	b.signalFreed()
	if box := b.limiter.Load(); box != nil {
		box.l.Observe(now, latency, int(inflight)+1, out)
	}
	b.limiterEnded()
	b.Observe(now, out, latency, retryAfter)
}

// ReleaseAnswer is Release for a non-streamed answer, whose first byte
// came with its whole generation (whole) of outputTokens tokens. The
// concurrency limit learns whole, as before. The latency estimates, which
// steer routing, outlier ejection, hedge delays and queue deadlines as a
// time to first token, learn the time per output token instead
// (AnswerLatency): a whole generation of 256 tokens (5.8 s on the chaos
// pool) taken as a first token made a backend serving long non-streamed
// answers look a hundred times slower than its peers, an outlier to eject.
//
// Where the engine's batch is known (ScrapedCap: a cap in force), the
// limit learns the per-token figure too: the cap already bounds the batch,
// and a whole generation in a window of first tokens reads as congestion
// what is only the answer's length. In the mix (BENCHMARKS §8, "Idle
// slots"), 30% non-streamed answers of 1-3 s against first tokens of
// 50-400 ms held the adaptive limits at 6-12 of 16 slots while requests
// queued in the gateway. Without a known batch the whole generation
// stays the limit's only congestion signal for non-streams, as before.
func (b *Backend) ReleaseAnswer(now time.Time, out outcome.Outcome, whole time.Duration, outputTokens int) {
	inflight := b.inflight.Add(-1)
	b.signalFreed()
	if box := b.limiter.Load(); box != nil {
		learned := whole
		if capLimit, _ := b.ScrapedCap(); capLimit > 0 && out == outcome.Success {
			learned = AnswerLatency(whole, outputTokens)
		}
		box.l.Observe(now, learned, int(inflight)+1, out)
	}
	b.limiterEnded()
	b.Observe(now, out, AnswerLatency(whole, outputTokens), 0)
}

// AnswerLatency is the first-token figure of a non-streamed answer that
// took whole for outputTokens tokens: whole / outputTokens, which is the
// time to first token for a one-token answer and, for longer ones, a
// decode step plus the wait and prefill spread over the tokens: a lower
// bound of the time to first token, near it for short prompts (the wait
// and prefill are then a step or two), below it for long prompts. A
// backend ten times slower per token still reads ten times slower. An
// answer without completion tokens (an embedding, a backend that reports
// no usage) is taken whole: its first byte is all there is to time.
func AnswerLatency(whole time.Duration, outputTokens int) time.Duration {
	if outputTokens <= 1 {
		return whole
	}
	return whole / time.Duration(outputTokens)
}

// ReleaseFed is Release for a request whose first token already fed the
// limit and the latency estimates (FirstTokenOf): a Success is not fed again;
// Busy and Failure are.
func (b *Backend) ReleaseFed(now time.Time, out outcome.Outcome, latency, retryAfter time.Duration) {
	if out == outcome.Success {
		b.inflight.Add(-1)
		b.limiterEnded()
		b.signalFreed()
		b.endTrial()
		return
	}
	b.Release(now, out, latency, retryAfter)
}

// Abandon ends an outstanding request that never reached the backend (its
// breaker refused it after Acquire): no outcome, no latency to learn from.
func (b *Backend) Abandon() {
	b.inflight.Add(-1)
	b.endTrial()
	b.limiterEnded()
	b.signalFreed()
}

// endCounter is a limit that counts the requests that end
// (admission.AdaptiveLimit.Ended): each frees a slot, and a long stream
// gives no sample at its end.
type endCounter interface{ Ended() }

// limiterEnded tells the dynamic limit, if it counts ends, that a request
// ended. Called after the request's Observe, if any.
func (b *Backend) limiterEnded() {
	if box := b.limiter.Load(); box != nil {
		if e, ok := box.l.(endCounter); ok {
			e.Ended()
		}
	}
}

// Freed returns a channel closed when the next in-flight request here
// ends. Ask for it before checking HasCapacity, so no release between the
// two is missed.
func (b *Backend) Freed() <-chan struct{} {
	for {
		if ch := b.freed.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if b.freed.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// Awaited reports whether a request waits on Freed now.
func (b *Backend) Awaited() bool { return b.freed.Load() != nil }

// signalFreed wakes whoever waits on Freed.
func (b *Backend) signalFreed() {
	if ch := b.freed.Swap(nil); ch != nil {
		close(*ch)
	}
}

// Observe records an outcome without touching the in-flight count.
func (b *Backend) Observe(now time.Time, out outcome.Outcome, latency, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.endTrial()
	switch out {
	case outcome.Success:
		b.learnLatencyLocked(now, latency)
		b.answeredLocked()
		// nginx resets the failure count once a request succeeds after the
		// backend came back; we keep the window semantics instead, which is
		// what max_fails/fail_timeout promise.
	case outcome.Busy:
		b.busyEpoch.Add(1)
		d := retryAfter
		if d <= 0 {
			d = b.policy.BusyPenalty
		}
		if until := now.Add(d); until.After(b.busyUntil) {
			b.busyUntil = until
		}
	case outcome.Failure:
		b.failures.Add(1)
		if b.policy.MaxFails <= 0 {
			return
		}
		if b.ejectRun > 0 {
			b.ejectAgainLocked(now)
			return
		}
		// A sliding window: a burst that straddles the start of an earlier
		// window must still count, or MaxFails failures within FailTimeout
		// would go unpunished.
		kept := b.failTimes[:0]
		for _, t := range b.failTimes {
			if now.Sub(t) <= b.policy.FailTimeout {
				kept = append(kept, t)
			}
		}
		b.failTimes = append(kept, now)
		if len(b.failTimes) >= b.policy.MaxFails {
			b.ejectUntil = now.Add(b.policy.FailTimeout)
			b.failTimes = b.failTimes[:0]
			b.ejectRun = 1
			b.signalEjectionLocked()
		}
	}
}

// SetStallWatch makes the backlog bound (backlogBound) ignore the time
// this process itself stalled, as w sees it; nil: it sees no such stalls.
func (b *Backend) SetStallWatch(w *StallWatch) { b.stalls.Store(w) }

// SetBreaker attaches the backend's circuit breaker (nil detaches it).
func (b *Backend) SetBreaker(br *breaker.Breaker) { b.brk.Store(br) }

// Breaker returns the attached circuit breaker, or nil.
func (b *Backend) Breaker() *breaker.Breaker { return b.brk.Load() }

// AllowCall asks the circuit breaker to admit one call. done (nil when no
// breaker is attached) must be called exactly once with the call's outcome.
func (b *Backend) AllowCall(now time.Time) (done breaker.Done, ok bool) {
	br := b.brk.Load()
	if br == nil {
		return nil, true
	}
	return br.Allow(now)
}
