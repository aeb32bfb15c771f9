package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
)

// Subject is who a request is charged to. An empty field means that scope
// does not apply (no API key, no tenant, IP unknown).
type Subject struct {
	Key    string // API key (hashed before it is used in a bucket key)
	Tenant string
	IP     string
	// KeyRule, when set, is the key's own rule, carried by its verified
	// credential (a JWT's limit claims): each of its non-zero fields
	// replaces that field of the key's configured rule (Keys, else
	// PerKey), as a Keys entry does over PerKey.
	KeyRule *Rule
	// KeyName is what Key counts when it is not an API key the caller
	// presented but its stand-in (an anonymous caller's address, so that
	// sending no key dodges nothing), as a refusal by the per-key limits
	// names it: "client address (no verified key)". "" = "API key".
	KeyName string
	// KeyBucket, when set, names Key's bucket in place of Key itself: a
	// stand-in whose name another caller's key may also be (a token with
	// no subject counted as its tenant "jwt:acme", which is also the key
	// of the token whose subject is "acme") gets a bucket of its own,
	// while rules (Keys) still find it by Key.
	KeyBucket string
}

// Rule is the limits of one scope. A zero field is no limit.
type Rule struct {
	Requests        Limit // requests, nginx limit_req semantics
	TokensPerMinute int64 // tokens: the estimate is reserved, then reconciled
}

// tokens is the token bucket of a TokensPerMinute rule.
func (r Rule) tokens() Limit { return rate.TokensPerMinute(r.TokensPerMinute) }

// Rules are a Limiter's limits. Keys and Tenants hold per-key and
// per-tenant rules that replace PerKey / PerTenant for those subjects.
type Rules struct {
	Global, PerKey, PerTenant, PerIP Rule
	Keys, Tenants                    map[string]Rule
}

// Limiter applies Rules through a Store, once per request.
type Limiter struct {
	store  Store
	rules  Rules
	checks *prometheus.CounterVec
	closer func()      // releases what Open created; nil otherwise
	local  *LocalStore // the in-process store Open made, carried to the Limiter that replaces this one
}

// NewLimiter returns a limiter over store. reg (may be nil) gets
// sluice_ratelimit_checks_total.
func NewLimiter(store Store, rules Rules, reg prometheus.Registerer) (*Limiter, error) {
	for _, r := range ruleList(rules) {
		if !r.Requests.IsZero() {
			if err := r.Requests.Validate(); err != nil {
				return nil, fmt.Errorf("ratelimit: requests: %w", err)
			}
		}
		if err := r.tokens().Validate(); r.TokensPerMinute > 0 && err != nil {
			return nil, fmt.Errorf("ratelimit: tokens_per_minute: %w", err)
		}
	}
	l := &Limiter{store: store, rules: rules, checks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_ratelimit_checks_total",
		Help: "Rate limit checks by result (allowed, delayed, limited, never_fits, error) and, for refusals, the scope and kind that refused.",
	}, []string{"result", "scope", "kind"})}
	if reg != nil {
		if err := reg.Register(l.checks); err != nil {
			return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return l, nil
}

func ruleList(r Rules) []Rule {
	out := []Rule{r.Global, r.PerKey, r.PerTenant, r.PerIP}
	for _, v := range r.Keys {
		out = append(out, v)
	}
	for _, v := range r.Tenants {
		out = append(out, v)
	}
	return out
}

// Close releases the store connections Open made. It does nothing for a
// Limiter built with NewLimiter: its store belongs to the caller.
func (l *Limiter) Close() {
	if l.closer != nil {
		l.closer()
	}
}

// Result is the outcome of Check.
type Result struct {
	// Allowed: every applicable limit had room and all were taken.
	Allowed bool
	// NeverFits: the request's tokens exceed a limit's capacity; waiting
	// will not help (answer with a non-retryable error, not a retry time).
	NeverFits bool
	// Delay is how long an allowed request waits before going on (the
	// largest nginx delay among its limits).
	Delay time.Duration
	// RetryAfter, for a refusal, is when the request could pass.
	RetryAfter time.Duration
	// Requests and Tokens are the binding decision of each kind: the
	// refusal, or else the limit with the least room. Limit == 0 when no
	// limit of that kind applied.
	Requests, Tokens Decision
	// Scope and Kind name the refusing limit: scope "key", "tenant", "ip",
	// "global" (or "store" when a fail-closed store is down), kind
	// "requests" or "tokens". Empty when allowed.
	Scope, Kind string

	res     *reservation
	keyName string // Subject.KeyName, for Reason
}

// Reason is a one-line explanation of a refusal for the error message.
func (r Result) Reason() string {
	switch {
	case r.Allowed:
		return ""
	case r.Scope == "store":
		return "rate limit store unavailable"
	case r.NeverFits:
		return fmt.Sprintf("request needs more %s than the %s limit allows at once (%d)", r.Kind, r.scopeName(), r.Tokens.Limit)
	}
	return fmt.Sprintf("%s rate limit exceeded (%s)", r.scopeName(), r.Kind)
}

// scopeName is the refusing limit's scope as a message names it.
func (r Result) scopeName() string {
	if r.Scope == "key" && r.keyName != "" {
		return r.keyName
	}
	return scopeName[r.Scope]
}

var scopeName = map[string]string{"key": "API key", "tenant": "tenant", "ip": "client IP", "global": "global"}

// reservation is the token part of an allowed request, kept so the
// estimate can be corrected when the backend reports usage.
type reservation struct {
	store   Store
	mu      sync.Mutex
	ops     []Op // one per token limit taken
	charged int64
}

// Reconcile corrects the token reservation to the tokens actually used
// (the usage the backend reported, or counted at the end of a stream):
// the difference is charged, or refunded when fewer were used, on every
// token limit the request took from. Calling it again with a newer total
// charges only the new difference. It does nothing for a refused request
// or one with no token limit.
func (r Result) Reconcile(ctx context.Context, actualTokens int64, now time.Time) error {
	res := r.res
	if res == nil || len(res.ops) == 0 {
		return nil
	}
	actualTokens = clampTokens(actualTokens)
	res.mu.Lock()
	defer res.mu.Unlock()
	delta := actualTokens - res.charged
	if delta == 0 {
		return nil
	}
	ops := make([]Op, len(res.ops))
	for i, op := range res.ops {
		ops[i] = Op{Key: op.Key, Limit: op.Limit, Cost: delta, Force: true}
	}
	if _, err := res.store.Apply(ctx, ops, now); err != nil {
		return fmt.Errorf("ratelimit: reconcile tokens: %w", err)
	}
	res.charged = actualTokens
	return nil
}

// Extend takes up to n more tokens for an allowed request still
// generating, from every token limit its reservation took from, as Check
// takes them: n when each has room for n; else the fewest any of them has
// left, taken from each alike; else (one has none) nothing. It is all or
// nothing across the limits either way: each is charged the same tokens,
// and what some took of a take another refused is given back. It reports
// the tokens taken, which the reconciled total then counts. A store that
// fails grants n (the error says why): a stream is not cut for an outage,
// and its end settles what it used. It grants n to a request with no token
// limit.
//
// A stream asks for a step of tokens at a time; granting only whole steps
// cut it a step early, with up to a step's tokens still in its limits.
func (r Result) Extend(ctx context.Context, n int64, now time.Time) (int64, error) {
	res := r.res
	if res == nil || len(res.ops) == 0 || n <= 0 {
		return max(n, 0), nil
	}
	n = clampTokens(n)
	res.mu.Lock()
	defer res.mu.Unlock()
	got, err := res.takeUpTo(ctx, n, now)
	if err != nil {
		return n, fmt.Errorf("ratelimit: extend tokens: %w", err)
	}
	res.charged += got
	return got, nil
}

// takeUpTo takes n tokens from every token limit of the reservation, or
// failing that the fewest any of them has left, or nothing, and reports
// how many; res.mu held. The smaller take goes with the give-backs of the
// take before it in one Apply. A limit's Remaining is exactly what a take
// of that many gets at the same instant (gcra), so the smaller take is
// refused only when a concurrent take came first; then what it took of
// the others is given back, and nothing is granted. Give-backs that fail
// leave their tokens charged until they refill, as a refund's.
func (res *reservation) takeUpTo(ctx context.Context, n int64, now time.Time) (int64, error) {
	ops := res.takes(n)
	ds, err := res.store.Apply(ctx, ops, now)
	if err != nil {
		return 0, err
	}
	back, left := givenBack(ops, ds, n)
	if len(back) < len(ops) && left > 0 {
		n, ops = left, res.takes(left)
		if ds, err = res.store.Apply(ctx, append(back, ops...), now); err != nil {
			return 0, err
		}
		back, _ = givenBack(ops, ds[len(back):], n)
	}
	if len(back) == len(ops) {
		return n, nil
	}
	if len(back) > 0 {
		_, _ = res.store.Apply(ctx, back, now)
	}
	return 0, nil
}

// takes are the operations taking n tokens from each token limit.
func (res *reservation) takes(n int64) []Op {
	ops := make([]Op, len(res.ops))
	for i, op := range res.ops {
		ops[i] = Op{Key: op.Key, Limit: op.Limit, Cost: n}
	}
	return ops
}

// givenBack is the refunds of the takes of n that ds allowed, and the
// fewest tokens left among the limits that refused (n when none did).
func givenBack(ops []Op, ds []Decision, n int64) (back []Op, left int64) {
	left = n
	for i, d := range ds {
		if d.Allowed {
			back = append(back, Op{Key: ops[i].Key, Limit: ops[i].Limit, Cost: -n, Force: true})
		} else {
			left = min(left, d.Remaining)
		}
	}
	return back, left
}

// Settled is r as its x-ratelimit-*-tokens headers state it once its
// token reservation is settled to tokens, fewer than the estimate it took
// (a cache hit, charged none): the binding token decision with the
// difference given back, as Reconcile will give it back on the store.
// Headers are written before the answer and Reconcile runs after it, so
// without this a hit would tell its client of a charge it never pays.
// More than the estimate is left as it is: the charge is not known
// before the answer ends.
func (r Result) Settled(tokens int64) Result {
	if r.res == nil || r.Tokens.Limit == 0 {
		return r
	}
	r.res.mu.Lock()
	back := r.res.charged - clampTokens(tokens)
	r.res.mu.Unlock()
	if back > 0 {
		r.Tokens = r.Tokens.givenBack(back)
	}
	return r
}

// ChargesTokens reports whether an allowed request took tokens from a
// token limit: only then does its usage need settling (Reconcile).
func (r Result) ChargesTokens() bool { return r.res != nil && len(r.res.ops) > 0 }

// TokenScope names the token limits an allowed request took from: their
// buckets (the API key's hashed, as the store names them) and sizes (a
// key's own rule from its credential may size its bucket apart), "" when
// none. Two requests of the same scope are granted or refused more
// tokens (Extend) alike: whoever asks, the same limits answer.
func (r Result) TokenScope() string {
	if r.res == nil || len(r.res.ops) == 0 {
		return ""
	}
	var b strings.Builder
	for _, op := range r.res.ops {
		b.WriteString(op.Key)
		b.WriteByte('@')
		b.WriteString(strconv.FormatFloat(op.Limit.Rate, 'g', -1, 64))
		b.WriteByte('/')
		b.WriteString(strconv.FormatInt(op.Limit.Burst, 10))
		b.WriteByte(0)
	}
	return b.String()
}

// MaxTokens bounds a token reservation and a reconciled total. Far above
// any real request (the gateway's own estimates are capped at 2^32 too), it keeps
// every difference of two counts and every GCRA step (cost times the
// emission interval, in float64 microseconds) exact and finite, whatever a
// caller or a backend's usage report claims.
const MaxTokens = 1 << 32

// clampTokens saturates n into [0, MaxTokens].
func clampTokens(n int64) int64 { return min(max(n, 0), MaxTokens) }

// opMeta says which scope and kind an operation of a check belongs to.
type opMeta struct{ scope, kind string }

// Check takes one request and estTokens tokens from every limit that
// applies to s: its API key's, tenant's, IP's and the global one. It is
// all-or-nothing: if any limit refuses, what was taken from the others is
// refunded, so a refused request costs nothing. An allowed request should
// wait Result.Delay before going on, and call Result.Reconcile once its
// token usage is known.
//
// The error is non-nil only when the store fails; with a fail-closed store
// the Result is then a refusal (Scope "store") carrying RetryAfter and the
// error wraps ErrStoreUnavailable.
func (l *Limiter) Check(ctx context.Context, s Subject, estTokens int64, now time.Time) (Result, error) {
	estTokens = clampTokens(estTokens)
	ops := make([]Op, 0, 8)
	meta := make([]opMeta, 0, 8)
	add := func(scope, id string, r Rule) {
		if !r.Requests.IsZero() {
			ops = append(ops, Op{Key: "req:" + scope + ":" + id, Limit: r.Requests, Cost: 1})
			meta = append(meta, opMeta{scope, "requests"})
		}
		if t := r.tokens(); !t.IsZero() {
			ops = append(ops, Op{Key: "tok:" + scope + ":" + id, Limit: t, Cost: estTokens})
			meta = append(meta, opMeta{scope, "tokens"})
		}
	}
	if s.Key != "" {
		r, ok := l.rules.Keys[s.Key]
		if !ok {
			r = l.rules.PerKey
		}
		if kr := s.KeyRule; kr != nil {
			if !kr.Requests.IsZero() {
				r.Requests = kr.Requests
			}
			if kr.TokensPerMinute > 0 {
				r.TokensPerMinute = kr.TokensPerMinute
			}
		}
		bucket := s.Key
		if s.KeyBucket != "" {
			bucket = s.KeyBucket
		}
		add("key", hashKey(bucket), r)
	}
	if s.Tenant != "" {
		r, ok := l.rules.Tenants[s.Tenant]
		if claim := config.PolicyTenant(s.Tenant); !ok && claim != "" {
			// A token's tenant "jwt:acme" has a rule written for "acme"
			// (its bucket stays its own: the key below).
			r, ok = l.rules.Tenants[claim]
		}
		if !ok {
			r = l.rules.PerTenant
		}
		add("tenant", s.Tenant, r)
	}
	if s.IP != "" {
		add("ip", s.IP, l.rules.PerIP)
	}
	add("global", "", l.rules.Global)
	if len(ops) == 0 {
		l.checks.WithLabelValues("allowed", "", "").Inc()
		return Result{Allowed: true}, nil
	}

	ds, err := l.store.Apply(ctx, ops, now)
	if err != nil {
		return l.storeFailed(ds, err)
	}
	res := l.decide(ctx, ops, meta, ds, estTokens, now)
	res.keyName = s.KeyName
	return res, nil
}

// storeFailed is Check's answer when the store fails: with a fail-closed
// store (ErrStoreUnavailable) a refusal of scope "store" carrying the
// longest RetryAfter of its decisions, else no result.
func (l *Limiter) storeFailed(ds []Decision, err error) (Result, error) {
	l.checks.WithLabelValues("error", "", "").Inc()
	if errors.Is(err, ErrStoreUnavailable) {
		retry := time.Duration(0)
		for _, d := range ds {
			retry = max(retry, d.RetryAfter)
		}
		return Result{RetryAfter: retry, Scope: "store"}, fmt.Errorf("ratelimit: %w", err)
	}
	return Result{}, fmt.Errorf("ratelimit: %w", err)
}

// decide turns the store's decisions on ops (meta[i] says what ops[i]
// is) into Check's result: a refusal gives back what the other limits
// granted; an allowance carries the reservation of its tokens that
// Result.Reconcile settles.
func (l *Limiter) decide(ctx context.Context, ops []Op, meta []opMeta, ds []Decision, estTokens int64, now time.Time) Result {
	res := summarize(meta, ds)
	if !res.Allowed {
		l.refund(ctx, ops, ds, now)
		// The headers state the buckets as the refund leaves them: the
		// limits that allowed this request were given their units back.
		for i := range ds {
			if ds[i].Allowed && ops[i].Cost > 0 {
				ds[i] = ds[i].givenBack(ops[i].Cost)
			}
		}
		res = summarize(meta, ds)
		result := "limited"
		if res.NeverFits {
			result = "never_fits"
		}
		l.checks.WithLabelValues(result, res.Scope, res.Kind).Inc()
		return res
	}
	r := &reservation{store: l.store, charged: estTokens}
	for i, m := range meta {
		if m.kind == "tokens" {
			r.ops = append(r.ops, ops[i])
		}
	}
	res.res = r
	if res.Delay > 0 {
		l.checks.WithLabelValues("delayed", "", "").Inc()
	} else {
		l.checks.WithLabelValues("allowed", "", "").Inc()
	}
	return res
}

// refund gives back what a refused check took from the limits that allowed
// it. A failed refund is not reported: the request is refused either way,
// and the only cost is that those limits stay charged until they refill.
func (l *Limiter) refund(ctx context.Context, ops []Op, ds []Decision, now time.Time) {
	var back []Op
	for i, d := range ds {
		if d.Allowed && ops[i].Cost > 0 {
			back = append(back, Op{Key: ops[i].Key, Limit: ops[i].Limit, Cost: -ops[i].Cost, Force: true})
		}
	}
	if len(back) > 0 {
		_, _ = l.store.Apply(ctx, back, now)
	}
}

// summarize picks the binding decision of each kind and the overall one.
func summarize(meta []opMeta, ds []Decision) Result {
	res := Result{Allowed: true}
	var worst *Decision // the refusal to report
	for i := range ds {
		d := &ds[i]
		bind := &res.Requests
		if meta[i].kind == "tokens" {
			bind = &res.Tokens
		}
		if binds(*d, *bind) {
			*bind = *d
		}
		if d.Allowed {
			res.Delay = max(res.Delay, d.Delay)
			continue
		}
		res.Allowed = false
		if worst == nil || refusalWorse(*d, *worst) {
			worst = d
			res.Scope, res.Kind = meta[i].scope, meta[i].kind
		}
	}
	if !res.Allowed {
		res.Delay = 0
		res.NeverFits = worst.NeverFits
		res.RetryAfter = worst.RetryAfter
		for _, d := range ds {
			if !d.Allowed {
				res.RetryAfter = max(res.RetryAfter, d.RetryAfter)
			}
		}
		if res.NeverFits {
			res.RetryAfter = 0
		}
	}
	return res
}

// binds reports whether d should replace cur as the decision reported for
// its kind: refusals beat allowances, NeverFits beats other refusals, a
// longer retry beats a shorter one, and among allowances the least
// remaining (then the longest reset) wins.
func binds(d, cur Decision) bool {
	switch {
	case cur.Limit == 0:
		return true
	case d.Allowed != cur.Allowed:
		return !d.Allowed
	case !d.Allowed:
		return refusalWorse(d, cur)
	case d.Remaining != cur.Remaining:
		return d.Remaining < cur.Remaining
	}
	return d.Reset > cur.Reset
}

func refusalWorse(d, cur Decision) bool {
	if d.NeverFits != cur.NeverFits {
		return d.NeverFits
	}
	return d.RetryAfter > cur.RetryAfter
}

// hashKey keeps API keys out of bucket keys (Redis keys are visible to
// anyone with MONITOR or SCAN): the first 128 bits of SHA-256, in hex.
func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:16])
}
