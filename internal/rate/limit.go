// Package rate is the rate limit as a value: a Limit with nginx limit_req
// semantics, its syntax (ParseNginx, String) and its bounds. The config
// decodes it from YAML and the limiter (internal/ratelimit) enforces it;
// neither needs the other for it.
package rate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Bounds of a valid Limit. The algorithm keeps time in float64
// microseconds: above MaxRate one unit's emission interval nears the
// resolution of the clock value it is added to; below MinRate, or with a
// bucket that takes longer than MaxRefill to refill, durations stop fitting
// the integers the Redis script returns.
const (
	MaxRate   = 1e8
	MinRate   = 1e-3
	MaxRefill = 366 * 24 * time.Hour
)

// Limit is a rate with nginx limit_req semantics.
//
// Rate is the sustained rate in units (requests or tokens) per second. Burst
// is nginx's burst: how many units beyond the one the rate allows "now" may
// be accepted, so Burst+1 units (Capacity) pass at once from an idle
// bucket. Delay says what happens to the excess above the rate (nginx
// "delay="): 0, nginx's default, delays every excess request until it
// conforms to the rate (Decision.Delay); N > 0 lets the first N excess
// requests through at once and delays the rest; -1 ("nodelay") lets the
// whole burst through at once. Requests beyond the burst are always refused.
//
// The zero Limit means "no limit" (written "off"); see IsZero.
type Limit struct {
	Rate  float64 // units per second
	Burst int64   // units accepted beyond the rate (nginx burst=)
	Delay int64   // excess units served without delay; -1 = nodelay, 0 = delay all
}

// NoDelay is the Delay value that serves the whole burst at once.
const NoDelay = -1

// PerSecond is n units per second with the given burst and nginx's default
// of delaying the excess; chain NoDelay or WithDelay to change that.
func PerSecond(n float64, burst int64) Limit { return Limit{Rate: n, Burst: burst} }

// PerMinute is n units per minute with the given burst (nginx "r/m").
func PerMinute(n float64, burst int64) Limit { return Limit{Rate: n / 60, Burst: burst} }

// NoDelay returns l with the burst served at once (nginx "nodelay").
func (l Limit) NoDelay() Limit { l.Delay = NoDelay; return l }

// WithDelay returns l serving the first n excess units at once and
// delaying the rest (nginx "delay=n").
func (l Limit) WithDelay(n int64) Limit { l.Delay = n; return l }

// TokensPerMinute is the token bucket of a tokens_per_minute limit: a full
// minute's tokens can be used at once, refilling continuously (nodelay).
// n <= 0 is the zero Limit (no limit).
func TokensPerMinute(n int64) Limit {
	if n <= 0 {
		return Limit{}
	}
	return Limit{Rate: float64(n) / 60, Burst: n - 1, Delay: NoDelay}
}

// IsZero reports whether l is the zero Limit, meaning no limit.
func (l Limit) IsZero() bool { return l == Limit{} }

// Capacity is how many units pass at once from an idle bucket: Burst+1.
// x-ratelimit-limit-* reports the units a minute allows, this only when it
// is more than the rate's minute (ratelimit.Result.WriteHeaders).
func (l Limit) Capacity() int64 { return l.Burst + 1 }

// Validate reports whether l can be used by a store. The zero Limit is not
// valid there: callers skip it.
func (l Limit) Validate() error {
	switch {
	case math.IsNaN(l.Rate) || l.Rate < MinRate || l.Rate > MaxRate:
		return fmt.Errorf("rate %v/s out of range [%g, %g]", l.Rate, MinRate, float64(MaxRate))
	case l.Burst < 0 || l.Burst > 1<<40:
		return fmt.Errorf("burst %d out of range [0, 2^40]", l.Burst)
	case float64(l.Capacity())/l.Rate > MaxRefill.Seconds():
		return fmt.Errorf("burst %d at %v/s takes longer than %v to refill", l.Burst, l.Rate, MaxRefill)
	case l.Delay < NoDelay:
		return fmt.Errorf("delay %d invalid (use -1 for nodelay)", l.Delay)
	}
	return nil
}

// Share is l split evenly across n replicas: what one gateway replica
// enforces on its own when the shared store is down (fail-open). Rate is
// divided by n; capacity and the undelayed excess are divided rounding up,
// so a share never drops to nothing.
func (l Limit) Share(n int) Limit {
	if n <= 1 || l.IsZero() {
		return l
	}
	div := func(v int64) int64 { return (v + int64(n) - 1) / int64(n) }
	s := Limit{Rate: l.Rate / float64(n), Burst: div(l.Capacity()) - 1, Delay: l.Delay}
	if l.Delay > 0 {
		s.Delay = div(l.Delay)
	}
	return s
}

// String writes l in ParseNginx syntax, e.g. "rate=10r/s burst=20 nodelay".
// Parsing the result gives back exactly l.
func (l Limit) String() string {
	if l.IsZero() {
		return "off"
	}
	var b strings.Builder
	b.WriteString("rate=")
	// r/m for a whole number per minute below one per second, as an
	// operator would write it; r/s otherwise.
	perMin := l.Rate * 60
	if l.Rate < 1 && perMin == math.Trunc(perMin) && perMin/60 == l.Rate {
		b.WriteString(strconv.FormatFloat(perMin, 'f', -1, 64))
		b.WriteString("r/m")
	} else {
		b.WriteString(strconv.FormatFloat(l.Rate, 'f', -1, 64))
		b.WriteString("r/s")
	}
	if l.Burst != 0 {
		b.WriteString(" burst=")
		b.WriteString(strconv.FormatInt(l.Burst, 10))
	}
	switch {
	case l.Delay == NoDelay:
		b.WriteString(" nodelay")
	case l.Delay > 0:
		b.WriteString(" delay=")
		b.WriteString(strconv.FormatInt(l.Delay, 10))
	}
	return b.String()
}

// MarshalText writes String, so a Limit reads back from YAML unchanged.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses ParseNginx syntax, so YAML can say
// `requests: "10r/s burst=20 nodelay"`.
func (l *Limit) UnmarshalText(b []byte) error {
	v, err := ParseNginx(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseNginx parses nginx limit_req parameters:
//
//	rate=10r/s burst=20            nginx defaults: the excess is delayed
//	10r/s burst=20 nodelay         "rate=" may be left out
//	rate=600r/m burst=50 delay=10  first 10 excess at once, the rest delayed
//	off                            no limit (the zero Limit)
//
// The rate is a positive number per second (r/s) or per minute (r/m).
// burst and delay are non-negative integers; delay and nodelay exclude each
// other. Parameters may come in any order, each at most once.
func ParseNginx(s string) (Limit, error) {
	fields := strings.Fields(s)
	if len(fields) == 1 && (fields[0] == "off" || fields[0] == "unlimited") {
		return Limit{}, nil
	}
	var l Limit
	var haveRate, haveBurst, haveDelay bool
	for i, f := range fields {
		key, val, hasEq := strings.Cut(f, "=")
		if !hasEq && i == 0 && strings.Contains(f, "r/") {
			key, val, hasEq = "rate", f, true
		}
		var err error
		switch {
		case key == "rate" && hasEq && !haveRate:
			haveRate = true
			l.Rate, err = parseRate(val)
		case key == "burst" && hasEq && !haveBurst:
			haveBurst = true
			l.Burst, err = parseCount(val)
		case key == "delay" && hasEq && !haveDelay:
			haveDelay = true
			l.Delay, err = parseCount(val)
		case f == "nodelay" && !haveDelay:
			haveDelay = true
			l.Delay = NoDelay
		case key == "rate" || key == "burst" || key == "delay" || f == "nodelay":
			err = errors.New("given twice (delay and nodelay exclude each other)")
		default:
			err = errors.New("unknown parameter (want rate=, burst=, delay= or nodelay)")
		}
		if err != nil {
			return Limit{}, fmt.Errorf("limit %q: %s: %w", s, f, err)
		}
	}
	if !haveRate {
		return Limit{}, fmt.Errorf("limit %q: missing rate (e.g. rate=10r/s)", s)
	}
	if err := l.Validate(); err != nil {
		return Limit{}, fmt.Errorf("limit %q: %w", s, err)
	}
	return l, nil
}

// errRate is wrapped by parseRate so the message shows the accepted form.
var errRate = errors.New("rate must look like 10r/s or 600r/m")

func parseRate(v string) (float64, error) {
	num, div := v, 0.0
	switch {
	case strings.HasSuffix(v, "r/s"):
		num, div = strings.TrimSuffix(v, "r/s"), 1
	case strings.HasSuffix(v, "r/m"):
		num, div = strings.TrimSuffix(v, "r/m"), 60
	default:
		return 0, errRate
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, errRate
	}
	if n <= 0 {
		// The form is right; the number is not: say that, and how to
		// have no limit.
		return 0, errors.New("rate must be positive (for no limit write off)")
	}
	return n / div, nil
}

func parseCount(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("must be a non-negative integer")
	}
	return n, nil
}
