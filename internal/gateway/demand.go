package gateway

import (
	"hash/maphash"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// Arrivals is told of each live inference request that reaches a model's
// pool: the traffic forecast's input (internal/forecast, wired by
// internal/app). It is demand, so it is counted before rate limits, the
// cache and admission, refused requests included — once: the retry of a
// refused request is not told (demandStage). Jobs are not counted:
// they run on spare capacity and must not drive scale-out. tokens is the
// admission estimate (prompt bytes / 4 + max_tokens). It is called on the
// request's goroutine and must be quick.
type Arrivals interface {
	Arrival(t time.Time, model, tenant string, tokens float64)
}

// demandStage decides whether a live request is new demand, and tells
// Options.Arrivals of it if so. A client refused for capacity comes back
// with the same request (after Retry-After, or its SDK's back-off): that
// return is the demand already counted, not more of it, so it counts
// neither for the forecast nor for the scaling signals' arrivals
// (upstreamCall.retry); the scaling meter awaits the client instead
// (record → awaitRetry, scaling/retry.go).
type demandStage struct{ g *Gateway }

func (s demandStage) serve(x *exchange) bool {
	// A tokenizer call (upstreamCall.cpuOnly) is no demand on the engine
	// the forecast sizes.
	if x.job != nil || x.ep.CPUOnly() || x.pool == nil {
		return true
	}
	// Only while some refused request is awaited can this be its retry:
	// the key (a hash of the body) is not computed otherwise, as on a
	// cache hit in a pool that refuses nothing (it cost 4% of a hit's
	// instructions); a refused request's own key is then computed when
	// it is refused (awaitRetry).
	if s.g.meter.Awaiting(x.rec.start) {
		x.retryKey, x.bodyPrint = s.g.retryKey(x)
		// An SDK's first attempt says so (x-stainless-retry-count: 0): the
		// same body from another client is new demand, whatever was refused.
		x.retry = x.r.Header.Get(headerStainlessRetry) != "0" && s.g.meter.Returned(x.pool.Model, x.retryKey, x.rec.start)
		x.rec.retry = x.retry
	}
	if s.g.arrivals == nil || x.retry {
		return true
	}
	s.g.arrivals.Arrival(x.rec.start, x.parsed.Peek.Model, x.id.tenant, x.cost)
	return true
}

// headerStainlessRetry is the OpenAI SDKs' attempt number (0 the first).
const headerStainlessRetry = "X-Stainless-Retry-Count"

// retryKey identifies a request across its client's retries: its
// Idempotency-Key when it sends one (with its tenant and path), else its
// tenant, path and body (the admission queue's fingerprint, returned as
// bodyPrint too so that the cache stage hashes the body once).
func (g *Gateway) retryKey(x *exchange) (key, bodyPrint uint64) {
	if k := x.r.Header.Get("Idempotency-Key"); k != "" {
		var h maphash.Hash
		h.SetSeed(g.seed)
		h.WriteString(x.id.tenant)
		h.WriteByte(0)
		h.WriteString(x.r.URL.Path)
		h.WriteByte(1)
		h.WriteString(k)
		return h.Sum64() | 1, 0
	}
	fp := g.fingerprint(x.id.tenant, x.r.URL.Path, x.body.Bytes())
	return fp, fp
}

// awaitRetry notes a live request refused for capacity (429/503) after
// it reached its pool: its client is expected back within the refusal's
// Retry-After and scaling.AwaitGrace, and its return is no new demand.
// It runs in record before the body is released.
//
// An answer with x-should-retry: false (a Retry-After past the SDKs'
// bound, or a final refusal) is not awaited: the SDKs do not come back
// after it, so its client is not waiting for the pool. Awaited for its
// whole Retry-After (215 s), one-shot clients refused at 0.5 req/s read
// as 16 clients waiting, desired_backends 11.7 for a pool whose rate
// needed about 2 (docs/RELIABILITY.md).
func (g *Gateway) awaitRetry(x *exchange) {
	if !x.called || !x.call.live || !refusedForCapacity(x.rec.status) {
		return
	}
	if x.w.Header().Get(openai.ShouldRetryHeader) == "false" {
		return
	}
	if x.retryKey == 0 { // not computed on arrival (demandStage): the body is still held
		if x.body == nil || x.rec.result.BodyReleased {
			return
		}
		x.retryKey, _ = g.retryKey(x)
	}
	now := g.now()
	g.meter.Await(x.pool.Model, x.retryKey, now, now.Add(retryAfterOf(x.w.Header())+scaling.AwaitGrace))
}

// retryAfterOf is the wait an answer advised: Retry-After-Ms, else
// Retry-After in seconds (the gateway states both, a relayed refusal's
// too); 0 for none.
func retryAfterOf(h http.Header) time.Duration {
	if ms, err := strconv.ParseInt(h.Get("Retry-After-Ms"), 10, 64); err == nil && ms > 0 && ms < int64(24*time.Hour/time.Millisecond) {
		return time.Duration(ms) * time.Millisecond
	}
	if s, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && s > 0 && s < int64(24*time.Hour/time.Second) {
		return time.Duration(s) * time.Second
	}
	return 0
}
