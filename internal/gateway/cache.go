package gateway

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// cachePlan is what the cache stage decided for a request: its key ("" =
// not cacheable), the TTL of a successful answer and the Cache-Control a
// fresh successful answer carries.
type cachePlan struct {
	key string
	ttl time.Duration // the client's rule's
	cc  string        // max-age from ttl: what the client is told as a flight's follower
	// fresh is the freshness the answer is stored with when this request's
	// call fills the entry: ttl jittered, chosen before the answer's head
	// is written; leadCC tells it (the shorter of it and ttl, as a later
	// HIT tells it: freshness). Before, a MISS was told ttl while the
	// entry was kept for the jittered one.
	fresh  time.Duration
	leadCC string
}

// jitterer is the level that jitters the TTLs it stores (cache.Tiered)
// and can store one jittered by its caller.
type jitterer interface {
	Jittered(ttl time.Duration) time.Duration
	JitteredAtMost(ttl time.Duration) time.Duration
	SetJittered(ctx context.Context, key string, e *cache.Entry, ttl time.Duration) error
}

// fillPlan chooses the freshness of the entry this request's call may
// fill (cachePlan.fresh) and the Cache-Control that says it.
func (rt *Runtime) fillPlan(p *cachePlan) {
	p.fresh = p.ttl
	if j, ok := rt.cache.(jitterer); ok {
		p.fresh = j.Jittered(p.ttl)
	}
	p.cc, p.leadCC = rt.cacheControl(p.ttl), rt.cacheControl(min(p.ttl, p.fresh))
}

// cacheModel names the model that answers a pool's requests as its
// backends see it: the pool's name and, when backends rewrite it
// (backends[].upstream_model), the models they rewrite it to. It is part
// of every cache key of the pool, so changing a rewrite never replays the
// previous model's answers.
func cacheModel(name string, backends []config.Backend) string {
	var ups []string
	for _, b := range backends {
		up := b.UpstreamModel
		if up == "" {
			up = name
		}
		if !slices.Contains(ups, up) {
			ups = append(ups, up)
		}
	}
	if len(ups) == 1 && ups[0] == name {
		return name
	}
	slices.Sort(ups)
	return name + "\x00" + strings.Join(ups, "\x00")
}

// cacheControl is the Cache-Control of a successful answer to a cacheable
// request that stays fresh for maxAge: private (browsers only, never a
// CDN) when the gateway keeps it per tenant; when the cache is shared,
// max-age alone, which a shared cache still may not use for requests that
// carry Authorization (RFC 9111 3.5). Everything else the gateway answers
// for inference is no-store (see proxy.Request.CacheControl).
func (rt *Runtime) cacheControl(maxAge time.Duration) string {
	secs := int64(max(maxAge, 0) / time.Second)
	kept := secs < int64(len(rt.ccValues))
	if kept {
		if v := rt.ccValues[secs].Load(); v != nil {
			return *v
		}
	}
	v := "private, max-age=" + strconv.FormatInt(secs, 10)
	if rt.Config.Cache.Shared {
		v = v[len("private, "):]
	}
	if kept {
		rt.ccValues[secs].Store(&v)
	}
	return v
}

// maxKeptMaxAge is the longest max-age whose Cache-Control value is kept
// once made (an hour: 28KiB of pointers per runtime with a cache).
const maxKeptMaxAge = 3600

// cacheBypassed honours the client's Cache-Control cc: no-store / no-cache.
func cacheBypassed(cc string) bool {
	if cc == "" {
		return false
	}
	cc = strings.ToLower(cc)
	return strings.Contains(cc, "no-store") || strings.Contains(cc, "no-cache")
}

// cacheRule returns the mode and TTL of the first cache rule matching the
// request (the defaults when none does).
func (rt *Runtime) cacheRule(model string, id *identity) (mode string, ttl time.Duration) {
	mode, ttl = config.CacheDeterministic, rt.Config.Cache.TTL.D()
	for i := range rt.Config.Cache.Rules {
		r := &rt.Config.Cache.Rules[i]
		if r.Matches(model, id.key, id.tenant) {
			if r.Mode != "" {
				mode = r.Mode
			}
			if r.TTL > 0 {
				ttl = r.TTL.D()
			}
			break
		}
	}
	return mode, ttl
}

// cacheLookup is the cache stage. It decides whether the request is
// cacheable (rules, determinism, the client's Cache-Control) and answers it
// from the cache when it can. stale is set when the answer served was past
// its freshness (stale-while-revalidate): the caller refreshes it.
func (rt *Runtime) cacheLookup(ctx context.Context, w http.ResponseWriter, vals *answerValues, r *http.Request, bypassed bool, body []byte,
	parsed *cache.Parsed, pool *Pool, id *identity, rl *ratelimit.Result, now time.Time) (plan cachePlan, served bool, status int, stale bool) {
	peek := &parsed.Peek // read only: not copied, nor passed on by value
	if rt.cache == nil {
		return plan, false, 0, false
	}
	mode, ttl := rt.cacheRule(peek.Model, id)
	cacheable := mode == config.CacheAlways ||
		mode == config.CacheDeterministic && (peek.Deterministic || r.URL.Path == pathEmbeddings)
	// A chat request with "store": true has an effect on its backend:
	// OpenAI keeps the completion (with the caller's metadata) under its
	// own id, which the caller then lists or gets. Answered from the cache
	// or by another caller's call (a plan with a key is also coalesced),
	// nothing would be stored for it, or another caller's id would be
	// returned: it always goes to the backend itself, whatever the rules.
	if !cacheable || bypassed || peek.Store {
		w.Header()["X-Cache"] = bypassValue
		return plan, false, 0, false
	}
	k, err := rt.cacheKey(parsed, body, cache.Scope{Path: r.URL.Path, Model: pool.cacheModel, Tenant: id.tenant,
		Shared: rt.Config.Cache.Shared})
	if err != nil {
		w.Header()["X-Cache"] = bypassValue
		return plan, false, 0, false
	}
	plan = cachePlan{key: k, ttl: ttl}
	if e, hit, _ := rt.cache.Get(ctx, k); hit {
		lifetime, usable, isStale := rt.freshness(e, ttl, now)
		stale = isStale
		xc := hitValue
		if stale {
			xc = staleValue
		}
		age := e.Age(now)
		if usable && !lacksUsage(e, peek) {
			// A hit is charged no tokens (Gateway.settle): its headers say so.
			tokens := rl != nil && rl.ChargesTokens()
			if tokens {
				rl.Settled(0).WriteHeaders(w.Header())
			}
			if status, ok := replay(w, vals, e, peek, age, xc, rt.cacheControl(lifetime), pool.Model); ok {
				return plan, true, status, stale
			}
			if tokens { // a miss after all: charged as one
				rl.WriteHeaders(w.Header())
			}
		}
	}
	w.Header()["X-Cache"] = missValue
	rt.fillPlan(&plan)
	return plan, false, 0, false
}

// freshness judges a stored entry for a client whose cache rule gives
// ttl. lifetime is the answer's freshness lifetime as the client is told
// it (Cache-Control max-age, next to an Age that grows: RFC 9111 4.2, the
// client's remaining freshness is max-age - Age, so max-age stays the
// same on every hit): the rule's TTL, or the entry's own when it turns
// stale sooner (its stored freshness: jittered, or a shorter rule's).
// usable: the entry may answer this client at all: fresh for it, or past
// its own freshness within the stale-while-revalidate window (stale: the
// caller refreshes it). An entry older than the client's TTL that is still
// fresh by the rule of the client that stored it (two keys of one tenant
// share an entry; their rules may differ) is a miss for this one: its
// rule says how old an answer it takes, and a refresh it started would be
// skipped (the entry is fresh in L1).
//
// An entry past the client's TTL but fresh by its own freshness, which is
// that TTL jittered longer (the same rule stored it, up to 10% longer), is
// stale for the client, not a miss: before, a request in that window (up
// to the last tenth of an entry's life) went to the backend for an answer
// the cache held. Its refresh is skipped while the entry is fresh in L1
// (revalidate), so the jitter still spreads refreshes.
func (rt *Runtime) freshness(e *cache.Entry, ttl time.Duration, now time.Time) (lifetime time.Duration, usable, stale bool) {
	lifetime = ttl
	var own time.Duration
	if !e.Fresh.IsZero() && !e.Stored.IsZero() {
		own = e.Fresh.Sub(e.Stored)
		lifetime = min(lifetime, own)
	}
	age := max(now.Sub(e.Stored), 0)
	switch {
	case e.Stored.IsZero() || age < lifetime:
		return lifetime, true, false
	case rt.Config.Cache.StaleWhileRevalidate > 0 && (e.Stale(now) || rt.jitteredFrom(own, ttl)) &&
		age < ttl+rt.Config.Cache.StaleWhileRevalidate.D():
		return lifetime, true, true
	}
	return lifetime, false, false
}

// jitteredFrom says whether an entry's own freshness, longer than ttl,
// is ttl as the cache's jitter lengthens it.
func (rt *Runtime) jitteredFrom(own, ttl time.Duration) bool {
	j, ok := rt.cache.(jitterer)
	return ok && own > ttl && own <= j.JitteredAtMost(ttl)
}

// parse peeks at the body, from the memo for a repeated cacheable body.
func (rt *Runtime) parse(body []byte) (*cache.Parsed, error) {
	if rt.memo != nil {
		return rt.memo.Parse(body)
	}
	peek, err := openai.ParseRequest(body)
	if err != nil {
		return nil, err
	}
	return &cache.Parsed{Peek: peek}, nil
}

func (rt *Runtime) cacheKey(parsed *cache.Parsed, body []byte, s cache.Scope) (string, error) {
	if rt.memo != nil {
		return rt.memo.Key(parsed, body, s)
	}
	k, _, err := cache.Key(body, s)
	return k, err
}

// replay answers from a cached entry in the shape the request asked for:
// a cached stream can answer a plain request and the reverse. A success
// carries Cache-Control cc ("" = none), any other status no-store. model
// is the X-Sluice-Model of the answer ("" = none): the model whose pool
// served it, as on the answer that was stored (an entry is only ever its
// own pool's: a fallback's answer is not cached). No X-Sluice-Backend: no
// backend served this request. vals back the Age, Cache-Control and
// X-Sluice-Model values (nil: allocated here). w's header must hold no
// Content-Length: net/http sets it from the one Write. None of the stages
// before the cache sets one; a flight's follower deletes any (coalesce.go).
// xcache is X-Cache's value as a shared slice (hitValue, ...): a hit then
// runs no switch over the names (the code lines a hit spans are its cost,
// docs/BENCHMARKS.md §9 Step 5, branch hitpath).
func replay(w http.ResponseWriter, vals *answerValues, e *cache.Entry, peek *openai.Peek, age int, xcache []string, cc, model string) (int, bool) {
	var data []byte
	var err error
	ct := e.ContentType
	switch {
	case e.Status != http.StatusOK:
		data = e.Body // cached client errors are replayed as they were
	case peek.Stream:
		data, err = e.ToSSE(peek.IncludeUsage)
		ct = "text/event-stream"
		// As on every stream the gateway sends (relayed, coalesced, its
		// own): a replay is written at once, but a hit must not be told
		// from a MISS by a header other than X-Cache and Age.
		w.Header()["X-Accel-Buffering"] = noBufferingValue
	case e.IsStream():
		data, err = e.ToJSON()
		ct = "application/json"
	default:
		data = e.Body
	}
	if err != nil || data == nil {
		return 0, false
	}
	h := w.Header()
	h["Content-Type"] = headerValue(ct)
	h["X-Cache"] = xcache
	if e.Status != http.StatusOK {
		cc = "no-store"
	}
	if vals == nil {
		vals = new(answerValues)
	}
	vals.stampDate(h)
	vals.age[0] = strconv.Itoa(age)
	h["Age"] = vals.age[:]
	if cc != "" {
		vals.cc[0] = cc
		h["Cache-Control"] = vals.cc[:]
	}
	if model != "" {
		vals.model[0] = model
		h["X-Sluice-Model"] = vals.model[:]
	}
	if e.Status != http.StatusOK {
		w.WriteHeader(e.Status)
	} // else the Write sends the 200: one call, and one clock read of the send deadline, fewer
	w.Write(data)
	return e.Status, true
}

// lacksUsage reports whether e is a stream stored without its usage chunk
// (its client did not ask for one) and peek wants the usage: a stream
// asking for it (stream_options.include_usage), or a JSON request, whose
// answer always carries "usage" (OpenAI's does; the SDKs expose it, and
// clients bill and budget with it). Such a lookup is a miss, whose answer
// then replaces the entry and serves every shape. (A flight converts its
// own answer whatever it carries: the backend was asked for the usage
// there, see upstreamCall.flightKey.)
func lacksUsage(e *cache.Entry, peek *openai.Peek) bool {
	return e.Status == http.StatusOK && e.IsStream() && (!peek.Stream || peek.IncludeUsage) && !streamHasUsage(e.Events)
}

// streamHasUsage reports whether a stored stream carries its usage: the
// last events (the usage chunk comes last, or with the final choice chunk
// from some servers) have a non-null "usage".
func streamHasUsage(events [][]byte) bool {
	for i := len(events) - 1; i >= 0 && i >= len(events)-2; i-- {
		if _, ok := openai.FindUsage(events[i]); ok {
			return true
		}
	}
	return false
}

// Shared, never modified value slices for the headers every cache answer
// sets: a hit then allocates none for them.
var (
	hitValue, staleValue, coalescedValue = []string{"HIT"}, []string{"STALE"}, []string{"COALESCED"}
	jsonValue, sseValue                  = []string{"application/json"}, []string{"text/event-stream"}
	bypassValue, missValue               = []string{"BYPASS"}, []string{"MISS"}
	noBufferingValue                     = []string{"no"}
)

// headerValue returns a shared slice for common values, a new one else.
// A switch, not a map: two lookups of a string-keyed map cost a hit ~250
// instructions, the switch a few compares.
func headerValue(v string) []string {
	switch v {
	case "HIT":
		return hitValue
	case "STALE":
		return staleValue
	case "COALESCED":
		return coalescedValue
	case "application/json":
		return jsonValue
	case "text/event-stream":
		return sseValue
	}
	return []string{v}
}

// entryFrom turns a relayed answer into a cache entry, or nil when it is
// not a whole answer: streams count as whole only with their final [DONE],
// and a stream or 200 answer that carries the backend's own error object
// (a failure it reported in band, openai.ErrorObject) is no answer to
// replay, [DONE] or not; nor is a 200 answer that is an empty object.
func entryFrom(status int, contentType string, raw []byte, ok bool) *cache.Entry {
	if !ok || status == 0 {
		return nil
	}
	e := &cache.Entry{Status: status, ContentType: ownContentType(contentType)}
	if strings.HasPrefix(contentType, "text/event-stream") {
		if !openai.StreamComplete(raw) {
			return nil
		}
		e.Events = openai.ParseSSE(raw)
		for _, ev := range e.Events {
			if openai.ErrorObject(ev) {
				return nil
			}
		}
	} else {
		if status == http.StatusOK && (openai.ErrorObject(raw) || openai.EmptyObject(raw)) {
			return nil
		}
		e.Body = bytes.Clone(raw)
	}
	return e
}

// ownContentType is contentType in memory of its own: a backend's header
// values are slices of one string holding its whole header block
// (h1client's readHead), so an entry keeping the value as it came kept
// that block alive for as long as it is cached: ~90 bytes an entry from
// the simulator, a kilobyte or two from a hosted API's headers, none of
// it counted against cache.max_bytes. The common values are constants (no
// allocation); others are copied.
func ownContentType(contentType string) string {
	switch contentType {
	case "application/json":
		return "application/json"
	case "application/json; charset=utf-8":
		return "application/json; charset=utf-8"
	case "text/event-stream":
		return "text/event-stream"
	case "text/event-stream; charset=utf-8":
		return "text/event-stream; charset=utf-8"
	}
	return strings.Clone(contentType)
}

// cacheFill stores a relayed answer, raw, when it is complete, of a
// cacheable status and unencoded. With stale-while-revalidate the entry is
// kept that much longer than it is fresh. An error answer is never stored
// in a shared cache: it would reach other tenants.
func (rt *Runtime) cacheFill(ctx context.Context, plan cachePlan, header http.Header, res *proxy.Result, raw []byte, now time.Time) {
	if plan.key == "" || raw == nil || res.Err != nil || !res.Written || res.ForeignError != "" {
		// A backend's error page wrapped into an OpenAI error object
		// names this request's id (proxy.Result.ForeignError): another
		// client's hit would name an id not its own.
		return
	}
	if ce := header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return // the backend ignored Accept-Encoding: identity; never replay it to others
	}
	if res.Status != http.StatusOK && rt.Config.Cache.Shared {
		return
	}
	ttl := cache.TTLFor(res.Status, plan.ttl, rt.Config.Cache.NegativeTTL.D())
	if ttl <= 0 {
		return
	}
	e := entryFrom(res.Status, header.Get("Content-Type"), raw, true)
	if e == nil {
		return
	}
	e.Stored = now
	j, jittered := rt.cache.(jitterer)
	if res.Status == http.StatusOK {
		// The entry keeps its freshness with or without
		// stale-while-revalidate: a hit of a client whose rule is longer
		// than the storer's is told the entry's lifetime, not its own
		// rule's for an entry the gateway drops sooner (freshness). It is
		// the one the answer's max-age said (plan.fresh, jittered then).
		if plan.fresh > 0 {
			ttl = plan.fresh
		} else {
			jittered = false // no plan made for filling: the level jitters
		}
		e.Fresh = now.Add(ttl)
		ttl += rt.Config.Cache.StaleWhileRevalidate.D()
	} else {
		jittered = false // an error answer's Cache-Control is no-store: the level jitters
	}
	if jittered {
		j.SetJittered(ctx, plan.key, e, ttl)
		return
	}
	rt.cache.Set(ctx, plan.key, e, ttl)
}
