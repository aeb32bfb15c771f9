package redisconn

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// Bypass is one user's view of whether its Redis is worth calling: a
// circuit breaker for the calls on the request path (the rate limits'
// store, the cache's second level, the Responses API's ids), so that a
// Redis that is down or hung costs a request nothing rather than a
// timeout each.
//
// Threshold calls in a row that fail for Redis' sake (the caller says
// which: Call.Down) start a bypass: Admit then refuses calls at once,
// and the caller answers without Redis (its failure mode), until the
// back-off has passed. Then one call at a time is admitted as the probe;
// the first that Redis answers (Call.Up) ends the bypass, one that fails
// doubles the back-off, up to MaxBackoff. One line is logged when a
// bypass starts and one when it ends, never one per call. Time is the now
// passed in. Safe for concurrent use.
type Bypass struct {
	opt BypassOptions

	mu      sync.Mutex
	fails   int           // calls failed in a row for Redis' sake
	down    bool          // bypassing Redis
	retryAt time.Time     // when a call may try Redis again
	backoff time.Duration // the wait after the last failure
	probing bool          // the probe is under way
	warned  bool          // this bypass was logged
	lastLog time.Time     // when a bypass was last logged
	unlog   int           // bypasses ended at their first retry, not logged
}

// BypassOptions configure a Bypass. Zero values mean the defaults.
type BypassOptions struct {
	// Threshold is how many calls in a row must fail before the bypass
	// starts. Default 1.
	Threshold int
	// Backoff is the wait after the failure that starts a bypass; each
	// failed probe doubles it, up to MaxBackoff. Defaults 500ms, 10s.
	Backoff, MaxBackoff time.Duration
	// LogEvery spaces the log lines of bypasses that flap: one that starts
	// within LogEvery of the last one logged is logged only when its
	// first probe fails too (one ended by its first probe is counted in
	// the next line, short_bypasses_unlogged). 0 logs every bypass.
	LogEvery time.Duration
	// Logger gets the lines; default slog.Default(). DownMsg and UpMsg
	// are their messages (defaults "redis bypassed", "redis recovered");
	// Attrs are added to both (key, value pairs).
	Logger         *slog.Logger
	DownMsg, UpMsg string
	Attrs          []any
	// Gauge, when set, is 1 while bypassed, else 0. It is written under
	// the lock that changes the state: two calls changing it at once
	// cannot leave it saying the opposite of Down.
	Gauge prometheus.Gauge
	// OnRecover, when set, is called when a bypass ends (its probe found
	// Redis back), outside the lock and on the probing caller's goroutine:
	// a user that held back work while bypassed learns it may send it
	// without waiting for a call of its own. It must not block.
	OnRecover func()
}

// Defaults of BypassOptions' back-off (the rate limits' store, the cache's
// second level and the Responses ids all use them).
const (
	DefaultBypassBackoff    = 500 * time.Millisecond
	DefaultBypassMaxBackoff = 10 * time.Second
)

// NewBypass returns a Bypass that starts with Redis up.
func NewBypass(opt BypassOptions) *Bypass {
	if opt.Threshold < 1 {
		opt.Threshold = 1
	}
	if opt.Backoff <= 0 {
		opt.Backoff = DefaultBypassBackoff
	}
	if opt.MaxBackoff < opt.Backoff {
		opt.MaxBackoff = max(DefaultBypassMaxBackoff, opt.Backoff)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.DownMsg == "" {
		opt.DownMsg = "redis bypassed"
	}
	if opt.UpMsg == "" {
		opt.UpMsg = "redis recovered"
	}
	return &Bypass{opt: opt}
}

// Call is one call Admit let through; report its outcome with exactly one
// of Up, Down or Abandon.
type Call struct {
	b     *Bypass
	probe bool // the bypass' retry

	nb     *NodeBypass    // the NodeBypass that admitted it; nil: a Bypass alone
	client rueidis.Client // the client the call goes through (NodeBypass)
}

// Admit says whether a call may go to Redis at now. When not (ok false:
// bypassed, or the probe is under way), retry is the wait before the next
// probe may start (0 while one is under way).
func (b *Bypass) Admit(now time.Time) (c Call, retry time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down {
		return Call{b: b}, 0, true
	}
	if b.probing || now.Before(b.retryAt) {
		return Call{}, max(b.retryAt.Sub(now), 0), false
	}
	b.probing = true
	return Call{b: b, probe: true}, 0, true
}

// Probe reports whether c is the bypass' retry.
func (c Call) Probe() bool { return c.probe }

// Up records that Redis answered (a value, or an error reply about the
// call: it is reachable). It ends the failure run and, for the probe,
// the bypass.
func (c Call) Up() {
	b := c.b
	b.mu.Lock()
	b.fails = 0
	if !c.probe || !b.down {
		b.mu.Unlock()
		return
	}
	b.down, b.probing, b.backoff = false, false, 0
	b.setGauge(false)
	warned := b.warned
	if !warned {
		b.unlog++
	}
	b.mu.Unlock()
	if warned {
		b.opt.Logger.Info(b.opt.UpMsg, b.opt.Attrs...)
	}
	if c.nb != nil {
		c.nb.countDown()
	}
	if b.opt.OnRecover != nil {
		b.opt.OnRecover()
	}
}

// Abandon records a call that says nothing about Redis (the caller gave
// up, the request was invalid): only the probe's turn is given back.
func (c Call) Abandon() {
	if !c.probe {
		return
	}
	c.b.mu.Lock()
	c.b.probing = false
	c.b.mu.Unlock()
}

// Down records a call that failed for Redis' sake (unreachable, closed,
// slower than the caller's timeout, unusable) at now. bypassed says
// whether Redis is bypassed now (this failure reached the threshold, or
// one before it did); retry is then the wait before the next probe.
func (c Call) Down(now time.Time, err error) (retry time.Duration, bypassed bool) {
	retry, bypassed = c.down(now, err)
	if c.nb != nil {
		c.nb.failed(now, c, err, bypassed)
	}
	return retry, bypassed
}

// trip starts a bypass at now, whatever the failures counted so far.
func (b *Bypass) trip(now time.Time, err error) {
	b.mu.Lock()
	b.fails = b.opt.Threshold - 1
	b.mu.Unlock()
	Call{b: b}.down(now, err)
}

func (c Call) down(now time.Time, err error) (retry time.Duration, bypassed bool) {
	b := c.b
	b.mu.Lock()
	if !b.down {
		if b.fails++; b.fails < b.opt.Threshold {
			b.mu.Unlock()
			return 0, false
		}
	}
	first := !b.down
	switch {
	case first:
		b.down, b.backoff, b.warned = true, b.opt.Backoff, false
		b.setGauge(true)
	case c.probe:
		b.backoff = min(2*b.backoff, b.opt.MaxBackoff)
	}
	// Log a bypass when it starts, or (within LogEvery of the last line)
	// when its first probe fails: one that ends at once is only counted.
	log := !b.warned && (c.probe || b.lastLog.IsZero() || now.Sub(b.lastLog) >= b.opt.LogEvery)
	unlogged := b.unlog
	if log {
		b.warned, b.lastLog, b.unlog = true, now, 0
	}
	if c.probe {
		b.probing = false
	}
	b.retryAt = now.Add(b.backoff)
	retry = b.backoff
	b.mu.Unlock()
	if log {
		attrs := append([]any{"retry_in", retry.String(), "error", errString(err)}, b.opt.Attrs...)
		if b.opt.LogEvery > 0 {
			attrs = append(attrs, "short_bypasses_unlogged", unlogged)
		}
		b.opt.Logger.Warn(b.opt.DownMsg, attrs...)
	}
	return retry, true
}

// Down reports whether Redis is bypassed now.
func (b *Bypass) Down() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down
}

// setGauge writes the gauge; b.mu is held.
func (b *Bypass) setGauge(down bool) {
	if b.opt.Gauge == nil {
		return
	}
	v := 0.0
	if down {
		v = 1
	}
	b.opt.Gauge.Set(v)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// IsOutage reports whether err, from a call to Redis, says Redis is
// unreachable, hung or unusable rather than answering about the call (an
// error reply such as OOM or WRONGTYPE): what a Bypass counts as a
// failure. Refused credentials (the password changed under the gateway),
// a Redis loading its data set and a Cluster without a quorum are
// unusable: every call would fail the same way, each after a reconnect.
func IsOutage(err error) bool {
	if err == nil {
		return false
	}
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return true
	}
	msg := re.Error()
	for _, p := range unusablePrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// unusablePrefixes start the error replies of a Redis no call can use.
var unusablePrefixes = []string{"NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "CLUSTERDOWN", "MASTERDOWN"}
