package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Admission configures overload protection: per-backend concurrency
// limits, the fair queue in front of each model's pool, and deadlines. It is
// on by default; config tunes it.
type Admission struct {
	// Enabled turns the gateway queue and adaptive limits on (default true).
	Enabled bool `yaml:"enabled"`
	// MaxWait is the interactive class's time-to-first-token objective:
	// the longest a client waits for the first token, queue time plus the
	// pool's expected time to first token (default 2s; a client may ask for
	// less with the X-Sluice-Max-Wait header; models[].max_wait overrides
	// it per model). A request the queue estimates cannot start in time is
	// refused at once with Retry-After; a waiter whose time runs out is
	// refused, never started late.
	MaxWait Duration `yaml:"max_wait"`
	// MaxWaitBatch is the same objective for the batch class, default 5m.
	MaxWaitBatch Duration `yaml:"max_wait_batch"`
	// DelayTarget is the controlled-delay target of the queue: once the
	// time requests spend waiting has stayed above it for twice as long
	// (the interval), the queue is congested and keeps every wait under
	// it, refusing the excess at arrival and shedding from the head. Default
	// 0: a quarter of each class's max_wait (500ms for interactive).
	DelayTarget Duration `yaml:"delay_target"`
	// MaxQueued / MaxQueuedPerTenant bound waiting requests per model.
	MaxQueued          int `yaml:"max_queued"`
	MaxQueuedPerTenant int `yaml:"max_queued_per_tenant"`
	// MaxQueuedTokens bounds the estimated tokens waiting per model; 0 = none.
	MaxQueuedTokens float64 `yaml:"max_queued_tokens"`
	// DefaultMaxTokens is the output estimate for requests without max_tokens.
	DefaultMaxTokens int `yaml:"default_max_tokens"`
	// AnswerTokenWait is how much longer than a stream of its class a
	// request that does not stream may wait for a slot, per token of its
	// answer's bound (max_tokens, or default_max_tokens): its client sees
	// nothing before the whole answer, so it waits for the first-token
	// objective plus the answer's decode, not for a first token. Its
	// deadline and delay target are longer by that much (at most
	// answer_max_wait; within X-Sluice-Max-Wait when the client sends
	// one), while the streams of its class and tenant are not congested;
	// within that slack the streams of its class go ahead of it and leave
	// its work out of their wait estimates; when it runs out the request
	// queues as if sent then (at the back of its tenant's queue), and
	// while its class refuses most of its streams it still yields to them.
	// Default 0: priced like a stream. Opt-in: measured (docs/RELIABILITY.md,
	// branches nonstream, streamslack and tokwait2), no setting yet both
	// answers more non-streamed long prompts at 1.2x and keeps the streams'
	// share at 2x and 4x.
	AnswerTokenWait Duration `yaml:"answer_token_wait"`
	// AnswerMaxWait bounds what answer_token_wait adds, default 10s.
	AnswerMaxWait Duration `yaml:"answer_max_wait"`
	// BatchMinShare guards the batch class against starvation: while batch
	// requests wait they get at least this share of granted capacity.
	BatchMinShare float64 `yaml:"batch_min_share"`
	// SpareReserve is the share of a pool's slots (rounded up) queued jobs
	// (async and Batch API work, which runs only in free capacity) leave
	// free while live requests are in flight, default 0.05, of the slots
	// the engines run at once: jobs never take the handover the limits
	// allow past an engine's batch bound. A live request granted into that
	// handover, or that still finds the pool full, preempts the youngest
	// job (it goes back to the queue).
	SpareReserve float64 `yaml:"spare_reserve"`
	// SizeAware orders each tenant's own waiting requests short first: an
	// arrival goes ahead of the tenant's longer requests (by estimated
	// tokens) that have waited less than half the delay target, so a long
	// one is overtaken only then. Other tenants' shares are unchanged.
	// Default true; false: first come, first served within a tenant. See
	// docs/BENCHMARKS.md §8 for the measurement behind the default.
	SizeAware bool `yaml:"size_aware"`
	// TenantRamp is how long a tenant counts as active after its last
	// request in a pool. A tenant that becomes busy while another is
	// active ramps up: it holds at most half its fair share of the slots
	// (reckoned from the backends' static max_concurrency, or the pool's
	// recent in-use peak when more: an adaptive limit can stand above
	// the slots a backend has), plus one per request of its own completed
	// since (slow start), and beyond that only slots no active tenant used
	// in the last one to two TenantRamp, so a burst of long requests
	// cannot take the slots a steady tenant frees between its requests,
	// and with static limits never waits while slots stand free that no
	// active tenant used. A tenant alone in a pool is never held. Default
	// 2s; 0 turns the ramp off.
	TenantRamp Duration `yaml:"tenant_ramp"`
	// Adaptive is the per-backend concurrency limit used when a backend has
	// no static max_concurrency.
	Adaptive Adaptive `yaml:"adaptive"`
}

// Adaptive configures the gradient concurrency controller.
type Adaptive struct {
	Initial int `yaml:"initial"` // starting limit, default 8
	Min     int `yaml:"min"`     // default 1
	// Max is the ceiling, default 1024. It binds only where latency does
	// not rise as the limit grows: long streams on an engine with more
	// batch slots than the ceiling (at 256, 256 of 400 streams wanted were
	// held; docs/RELIABILITY.md, "Probes, the scraped cap and the ceiling
	// with long streams"). The scraped batch cap bounds the limit by the
	// engine's slots where it queues.
	Max       int      `yaml:"max"`
	Window    Duration `yaml:"window"`    // adjustment window, default 1s
	Tolerance float64  `yaml:"tolerance"` // accepted TTFT / no-load TTFT, default 4.0 (prefill batching alone raises TTFT 2-3x)
}

// DefaultTenantWeight is a caller's share of contended capacity when its
// key (auth.keys[].weight) or token names none, and every open-mode
// caller's.
const DefaultTenantWeight = 1.0

// Tenant describes one API key: who it belongs to and what it may do.
type Tenant struct {
	// Key is the API key clients send as "Authorization: Bearer KEY".
	// ${VAR} is expanded from the environment.
	Key string `yaml:"key"`
	// Tenant groups keys for fairness and limits; default: a tenant of
	// the key's own, named key:<hash of the key> (never the key itself).
	// Never in a reserved namespace (ReservedTenantPrefixes).
	Tenant string `yaml:"tenant"`
	// Weight is the tenant's share of contended capacity, default
	// DefaultTenantWeight.
	Weight float64 `yaml:"weight"`
	// Priority is the default class: interactive (default) or batch.
	Priority string `yaml:"priority"`
	// MaxPriority is the highest class the key may ask for with the
	// X-Sluice-Priority header, default interactive.
	MaxPriority string `yaml:"max_priority"`
	// NoFallback forbids serving this key's requests with a fallback model.
	NoFallback bool `yaml:"no_fallback"`
}

// Auth says how clients are identified.
//
// With keys listed, a request presenting a key that is not listed is
// refused (401) whatever RequireKey says; RequireKey decides whether a
// request presenting no key at all is served. With no keys (open mode) a
// presented key identifies nobody: every caller is "ip:<client address>"
// for fairness and limits, so inventing keys buys no fresh limits.
type Auth struct {
	// RequireKey refuses requests that present no key (401). When false,
	// they are served as "ip:<client address>". Needs Keys or JWT.
	RequireKey bool     `yaml:"require_key"`
	Keys       []Tenant `yaml:"keys"`
	// TrustedProxies are the peers (CIDRs or addresses) whose forwarding
	// header is believed; from anyone else the connection's address is
	// the client. Default none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader is the header trusted proxies name the client in:
	// "X-Forwarded-For" (default) or "Forwarded" (RFC 7239). Only one is
	// read, since a proxy that sets one passes the other on from the client.
	ForwardedHeader string `yaml:"forwarded_header"`
	// JWT verifies bearer JSON Web Tokens besides the keys (jwt.go).
	JWT JWT `yaml:"jwt"`
}

// The headers auth.forwarded_header names; unset reads X-Forwarded-For.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded" // RFC 7239
)

func defaultAdmission() Admission {
	return Admission{
		Enabled: true, MaxWait: Duration(2 * time.Second), MaxWaitBatch: Duration(5 * time.Minute), MaxQueued: 1024,
		DefaultMaxTokens: 256, AnswerMaxWait: Duration(10 * time.Second),
		BatchMinShare: 0.1, SpareReserve: 0.05, SizeAware: true,
		TenantRamp: Duration(2 * time.Second),
		Adaptive:   Adaptive{Initial: 8, Min: 1, Max: 1024, Window: Duration(time.Second), Tolerance: 4.0},
	}
}

var priorities = map[string]bool{"": true, "interactive": true, "batch": true}

func (c *Config) validateAdmission(bad func(key, format string, args ...any)) {
	a := c.Admission
	if a.MaxWait <= 0 {
		bad("admission.max_wait", "must be a positive duration")
	}
	if a.MaxWaitBatch <= 0 {
		bad("admission.max_wait_batch", "must be a positive duration")
	}
	if a.DelayTarget < 0 {
		bad("admission.delay_target", "must be 0 (a quarter of max_wait) or a positive duration")
	}
	if a.MaxQueuedTokens < 0 {
		bad("admission.max_queued_tokens", "must be 0 (no bound) or more, got %g", a.MaxQueuedTokens)
	}
	if a.DefaultMaxTokens < 0 {
		bad("admission.default_max_tokens", "must be 0 or more, got %d", a.DefaultMaxTokens)
	}
	if a.AnswerTokenWait < 0 {
		bad("admission.answer_token_wait", "must be 0 (priced like a stream) or a positive duration")
	}
	if a.AnswerMaxWait < 0 {
		bad("admission.answer_max_wait", "must be 0 (priced like a stream) or a positive duration")
	}
	if a.MaxQueued < 1 {
		bad("admission.max_queued", "must be at least 1, got %d", a.MaxQueued)
	}
	// Checked against a valid max_queued only: a negative max_queued
	// otherwise also blamed max_queued_per_tenant, a key the user had
	// not written, at the section's line.
	if a.MaxQueued >= 1 && (a.MaxQueuedPerTenant < 0 || a.MaxQueuedPerTenant > a.MaxQueued) {
		bad("admission.max_queued_per_tenant", "must be between 0 (= max_queued) and max_queued, got %d (max_queued is %d)", a.MaxQueuedPerTenant, a.MaxQueued)
	}
	if a.BatchMinShare < 0 || a.BatchMinShare > 0.5 {
		bad("admission.batch_min_share", "must be between 0 and 0.5, got %g", a.BatchMinShare)
	}
	if a.SpareReserve < 0 || a.SpareReserve >= 1 {
		bad("admission.spare_reserve", "must be a share of capacity in [0, 1), got %g", a.SpareReserve)
	}
	if a.TenantRamp < 0 {
		bad("admission.tenant_ramp", "must be 0 (off) or a positive duration")
	}
	ad := a.Adaptive
	if ad.Min < 1 || ad.Max < ad.Min || ad.Initial < ad.Min || ad.Initial > ad.Max {
		bad("admission.adaptive", "need 1 <= min <= initial <= max, got min %d initial %d max %d", ad.Min, ad.Initial, ad.Max)
	}
	if ad.Tolerance < 1 {
		bad("admission.adaptive.tolerance", "must be at least 1, got %g", ad.Tolerance)
	}
	if ad.Window <= 0 {
		bad("admission.adaptive.window", "must be a positive duration")
	}
	seen := map[string]bool{}
	for i, k := range c.Auth.Keys {
		key := fmt.Sprintf("auth.keys[%d]", i)
		if k.Key == "" {
			bad(key+".key", "must not be empty (an unset ${VAR}?)")
		} else if seen[k.Key] {
			bad(key+".key", "duplicate key")
		}
		seen[k.Key] = true
		if ReservedTenant(k.Key) {
			// The rate limiter counts a token's subject as the key
			// "jwt:<sub>" and an anonymous caller as "ip:<address>": a key
			// spelled so would share (and drain) their buckets and
			// rate_limits.keys rules. Not quoted: the key is a secret.
			bad(key+".key", `must not start with "ip:", "key:" or "jwt:" (the gateway's own names for anonymous callers, keys naming no tenant and tokens: such a key would share their rate limit buckets)`)
		}
		if !(k.Weight >= 0 && k.Weight <= maxTenantWeight) { // also NaN
			bad(key+".weight", "must be between 0 (the default, 1) and %g", float64(maxTenantWeight))
		}
		if ReservedTenant(k.Tenant) {
			bad(key+".tenant", `must not start with "ip:", "key:" or "jwt:" (the gateway's own names for anonymous callers, keys naming no tenant and tokens), got %q`,
				k.Tenant)
		}
		if !priorities[k.Priority] {
			bad(key+".priority", "must be interactive or batch, got %q", k.Priority)
		}
		if !priorities[k.MaxPriority] {
			bad(key+".max_priority", "must be interactive or batch, got %q", k.MaxPriority)
		}
	}
	if c.Auth.RequireKey && len(c.Auth.Keys) == 0 && !c.Auth.JWT.Enabled() {
		bad("auth.require_key", "needs auth.keys or auth.jwt (with neither every request would be refused)")
	}
	c.validateJWT(bad)
	for i, p := range c.Auth.TrustedProxies {
		if !validProxy(p) {
			bad(fmt.Sprintf("auth.trusted_proxies[%d]", i), "want an IP address or CIDR, got %q", p)
		}
	}
	if h := c.Auth.ForwardedHeader; h != "" && !strings.EqualFold(h, HeaderXForwardedFor) && !strings.EqualFold(h, HeaderForwarded) {
		bad("auth.forwarded_header", "want X-Forwarded-For or Forwarded, got %q", h)
	}
}

func validProxy(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// maxTenantWeight bounds a tenant's weight: the fair queue divides cost by
// it, so an infinite or absurd weight would make its tags meaningless.
const maxTenantWeight = 1e6

// SLO is a model's time-to-first-token objective per priority class.
type SLO struct {
	Interactive, Batch time.Duration
}

// SLOFor is model m's objective: its own max_wait / max_wait_batch where
// set, else admission's.
func (c *Config) SLOFor(m *Model) SLO {
	s := SLO{Interactive: c.Admission.MaxWait.D(), Batch: c.Admission.MaxWaitBatch.D()}
	if m.MaxWait > 0 {
		s.Interactive = m.MaxWait.D()
	}
	if m.MaxWaitBatch > 0 {
		s.Batch = m.MaxWaitBatch.D()
	}
	return s
}
