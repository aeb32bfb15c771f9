package gateway

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// Each stage of the chain (chain.go) is tested here on its own contract:
// given an exchange as the stages before it leave it, what it answers
// (next == false, with the answer written and noted in the record) and
// what it passes on (next == true, with what it learned in the exchange
// and nothing written). The exchanges are made as handle makes them, on
// runtimes built from configs as the app builds them, with real backends;
// the admit stage's terms are in deadline_test.go (TestAdmitStageTerms).

// stageRequest is a completion request with body, from the public
// listener's usual test client address (192.0.2.1), and hdr as pairs.
func stageRequest(body string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// newExchange is what handle makes for r (without the pool).
func newExchange(gw *Gateway, r *http.Request, job *jobCall) (*exchange, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	x := &exchange{exchangeState: exchangeState{w: w, r: r, rt: gw.Runtime(), job: job, rec: record{id: "req-1", path: r.URL.Path, start: time.Now()}}}
	x.hdr.read(r.Header)
	return x, w
}

// through runs the stages before the one under test, which must all pass.
func through(t *testing.T, x *exchange, stages ...stage) {
	t.Helper()
	for _, s := range stages {
		if !s.serve(x) {
			t.Fatalf("%T answered %d (%s) where it should pass", s, x.rec.status, x.rec.errCode)
		}
	}
}

// passed checks that a stage passed the exchange on without answering.
func passed(t *testing.T, name string, next bool, x *exchange, w *httptest.ResponseRecorder) {
	t.Helper()
	if !next || x.rec.status != 0 || w.Body.Len() != 0 {
		t.Fatalf("%s: next %v, status %d, body %q: want it passed on, unanswered", name, next, x.rec.status, w.Body)
	}
}

// answered checks that a stage answered with status and error code.
func answered(t *testing.T, name string, next bool, x *exchange, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if next {
		t.Fatalf("%s: passed on, want an answer %d", name, status)
	}
	if x.rec.status != status || w.Code != status || x.rec.errCode != code {
		t.Fatalf("%s: answered %d (recorded %d, %q), want %d %q: %s", name, w.Code, x.rec.status, x.rec.errCode, status, code, w.Body)
	}
	if code != "" {
		if _, got, _ := apiErr(t, w.Body.String()); got != code {
			t.Fatalf("%s: error code %q in the body, want %q", name, got, code)
		}
	}
}

func TestIdentifyStage(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	_, open := startGateway(t, cfg)
	keyed := testConfig(be.URL)
	keyed.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "acme"}}
	_, gw := startGateway(t, keyed)

	x, w := newExchange(open, stageRequest(chatBody), nil)
	passed(t, "anonymous, open mode", identifyStage{open}.serve(x), x, w)
	if x.from.key != "192.0.2.1" || x.id.tenant != "ip:192.0.2.1" || x.rec.tenant != x.id.tenant {
		t.Fatalf("anonymous: client %+v tenant %q (recorded %q), want the address's tenant", x.from, x.id.tenant, x.rec.tenant)
	}
	// With the connection's memo (as through a listener) the tenant is
	// named per connection and the stage sets the anonymous identity in
	// place (setAnonymous): the same identity as the whole path's.
	whole := x.id
	x, w = newExchange(open, stageRequest(chatBody), nil)
	x.connMemo = new(atomic.Value)
	passed(t, "anonymous, open mode, memo", identifyStage{open}.serve(x), x, w)
	if x.from.openTenant == "" || !reflect.DeepEqual(x.id, whole) {
		t.Fatalf("anonymous through the memo: client %+v identity %+v, want %+v", x.from, x.id, whole)
	}

	x, w = newExchange(gw, stageRequest(chatBody, "Authorization", "Bearer k1", "X-Sluice-Max-Wait", "1500", "X-Sluice-Priority", "batch"), nil)
	passed(t, "known key", identifyStage{gw}.serve(x), x, w)
	if x.id.key != "k1" || x.id.tenant != "acme" || x.ctl.maxWait != 1500*time.Millisecond || x.id.class.String() != "batch" {
		t.Fatalf("known key: identity %+v, control %+v", x.id, x.ctl)
	}

	x, w = newExchange(gw, stageRequest(chatBody, "Authorization", "Bearer nope"), nil)
	answered(t, "unknown key", identifyStage{gw}.serve(x), x, w, http.StatusUnauthorized, "invalid_api_key")

	x, w = newExchange(open, stageRequest(chatBody, JobTenantHeader, "acme"), nil)
	answered(t, "job tenant asserted on the public listener", identifyStage{open}.serve(x), x, w, http.StatusBadRequest, "invalid_worker_assertion")

	x, w = newExchange(open, stageRequest(chatBody, "X-Sluice-Max-Wait", "soon"), nil)
	answered(t, "unreadable control header", identifyStage{open}.serve(x), x, w, http.StatusBadRequest, "invalid_header")

	// A job is its tenant's, whatever key its request carries (the
	// submitter's, checked when it was queued).
	job := &jobCall{id: identity{tenant: "acme", weight: 1}}
	x, w = newExchange(gw, stageRequest(chatBody, "Authorization", "Bearer nope"), job)
	passed(t, "job", identifyStage{gw}.serve(x), x, w)
	if x.id.tenant != "acme" || !x.rec.job {
		t.Fatalf("job: tenant %q, recorded as job %v", x.id.tenant, x.rec.job)
	}
}

func TestParseStage(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.MaxBodyBytes = 1 << 10
	_, gw := startGateway(t, cfg)
	parse := func(body string) (*exchange, *httptest.ResponseRecorder, bool) {
		x, w := newExchange(gw, stageRequest(body), nil)
		through(t, x, identifyStage{gw})
		next := parseStage{gw}.serve(x)
		return x, w, next
	}

	x, w, next := parse(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	passed(t, "a request for a known model", next, x, w)
	if x.body == nil || x.parsed.Peek.Model != "m1" || x.pool == nil || x.pool.Model != "m1" || x.rec.model != "m1" || !x.rec.stream {
		t.Fatalf("parsed: pool %v, record %+v", x.pool, x.rec)
	}
	x.body.Release()

	x, w, next = parse(`{"messages":[]}`)
	answered(t, "no model", next, x, w, http.StatusBadRequest, "missing_model")
	x, w, next = parse(`{"model":"m2","messages":[]}`)
	answered(t, "unknown model", next, x, w, http.StatusNotFound, "model_not_found")
	if x.pool != nil {
		t.Fatal("unknown model: a pool was set")
	}
	x, w, next = parse(`{"model":`)
	if answered(t, "not JSON", next, x, w, http.StatusBadRequest, x.rec.errCode); x.rec.errCode == "" {
		t.Fatal("not JSON: no error code")
	}
	_, w, next = parse(`{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<10) + `"}]}`)
	if next || w.Code != http.StatusRequestEntityTooLarge || w.Header().Get("Connection") != "close" {
		t.Fatalf("too large: next %v, %d, Connection %q", next, w.Code, w.Header().Get("Connection"))
	}
}

func TestEnqueueStage(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	enqueue := func(job *jobCall, hdr ...string) (*exchange, *httptest.ResponseRecorder, bool) {
		x, w := newExchange(gw, stageRequest(chatBody, hdr...), job)
		through(t, x, identifyStage{gw}, parseStage{gw})
		t.Cleanup(x.body.Release)
		return x, w, enqueueStage{gw}.serve(x)
	}
	x, w, next := enqueue(nil)
	passed(t, "a live request", next, x, w)
	x, w, next = enqueue(&jobCall{id: identity{tenant: "t", weight: 1}}, "Prefer", "respond-async")
	passed(t, "a job running (asked async when queued)", next, x, w)
	// Asked async with no queue on this gateway: answered here, never
	// forwarded.
	x, w, next = enqueue(nil, "Prefer", "respond-async")
	if _, code, _ := apiErr(t, w.Body.String()); next || x.rec.status != errQueueDisabled.Status || w.Code != x.rec.status || code != errQueueDisabled.Code {
		t.Fatalf("async without a queue: next %v, %d (recorded %d): %s", next, w.Code, x.rec.status, w.Body)
	}
	if be.calls.Load() != 0 {
		t.Fatalf("the backend was called %d times", be.calls.Load())
	}
}

func TestLimitStage(t *testing.T) {
	be := newOKBackend(t)
	_, open := startGateway(t, testConfig(be.URL))
	limited := testConfig(be.URL)
	limited.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=1 nodelay")}
	limited.RateLimits.PerTenant = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=1 nodelay")}
	limited.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "acme"}, {Key: "k2", Tenant: "acme"}}
	_, gw := startGateway(t, limited)
	limit := func(gw *Gateway, job *jobCall, hdr ...string) (*exchange, *httptest.ResponseRecorder, bool) {
		x, w := newExchange(gw, stageRequest(chatBody, hdr...), job)
		through(t, x, identifyStage{gw}, parseStage{gw}, enqueueStage{gw})
		t.Cleanup(x.body.Release)
		return x, w, limitStage{gw}.serve(x)
	}

	// No limits: passed on uncharged; the upstream call is the cache
	// stage's to make.
	x, w, next := limit(open, nil)
	passed(t, "no limits", next, x, w)
	if x.limited || x.called {
		t.Fatalf("no limits: limited %v, call made %v", x.limited, x.called)
	}

	for range 2 { // burst=1: the request itself and one more
		x, w, next = limit(gw, nil, "Authorization", "Bearer k1")
		passed(t, "within the limit", next, x, w)
		if !x.limited {
			t.Fatal("within the limit: not charged")
		}
	}
	x, w, next = limit(gw, nil, "Authorization", "Bearer k1")
	answered(t, "over the key's limit", next, x, w, http.StatusTooManyRequests, "rate_limit_exceeded")
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("over the limit: no Retry-After")
	}
	// A job is charged to its tenant only, and told it was throttled.
	job := &jobCall{id: identity{tenant: "acme", weight: 1}}
	x, w, next = limit(gw, job)
	answered(t, "a job of a tenant over its limit", next, x, w, http.StatusTooManyRequests, "rate_limit_exceeded")
	if !job.throttled {
		t.Fatal("job refused by the limit: not marked throttled")
	}
}

func TestCacheStage(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	_, nocache := startGateway(t, testConfig(be.URL))
	const det = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"cache me"}],"max_tokens":4}`
	lookup := func(gw *Gateway, body string, hdr ...string) (*exchange, *httptest.ResponseRecorder, bool) {
		x, w := newExchange(gw, stageRequest(body, hdr...), nil)
		through(t, x, identifyStage{gw}, parseStage{gw}, enqueueStage{gw}, limitStage{gw})
		t.Cleanup(x.body.Release)
		return x, w, cacheStage{gw}.serve(x)
	}

	x, w, next := lookup(nocache, det)
	passed(t, "cache off", next, x, w)
	if x.call.plan.key != "" || w.Header().Get("X-Cache") != "" || x.call.fingerprint == 0 {
		t.Fatalf("cache off: plan %+v, X-Cache %q, fingerprint %x", x.call.plan, w.Header().Get("X-Cache"), x.call.fingerprint)
	}
	x, w, next = lookup(gw, chatBody)
	passed(t, "not deterministic", next, x, w)
	if x.call.plan.key != "" || w.Header().Get("X-Cache") != "BYPASS" {
		t.Fatalf("not deterministic: plan %+v, X-Cache %q", x.call.plan, w.Header().Get("X-Cache"))
	}
	x, w, next = lookup(gw, det)
	passed(t, "a miss", next, x, w)
	if x.call.plan.key == "" || x.call.plan.cc == "" || w.Header().Get("X-Cache") != "MISS" || x.call.fingerprint == 0 {
		t.Fatalf("miss: plan %+v, X-Cache %q", x.call.plan, w.Header().Get("X-Cache"))
	}
	// The upstream call, described from what the stages before learned.
	if !x.called || x.call.cost <= 0 || x.call.cost != x.cost || x.call.path != "/v1/chat/completions" || x.call.reqID != "req-1" ||
		x.call.ip != "192.0.2.1" || x.call.forwardedFor != "192.0.2.1" || x.call.id.tenant != x.id.tenant || x.call.body != x.body || x.call.peek != x.parsed.Peek {
		t.Fatalf("miss: call made %v, %+v", x.called, x.call)
	}

	// Filled by the forward stage (which stores the answer before it
	// returns), then answered by this stage alone.
	x, w, next = lookup(gw, det)
	passed(t, "the miss before the fill", next, x, w)
	through(t, x, admitStage{})
	forwardStage{gw}.serve(x)
	if x.ra != nil {
		x.ra.Finish()
	}
	want := w.Body.String()
	if !strings.Contains(want, `"chat.completion"`) {
		t.Fatalf("the fill: %d %q", w.Code, want)
	}
	x, w, next = lookup(gw, det)
	answered(t, "a hit", next, x, w, http.StatusOK, "")
	if x.rec.cache != "HIT" || w.Header().Get("X-Cache") != "HIT" || w.Body.String() != want {
		t.Fatalf("hit: recorded %q, X-Cache %q, body %q (want %q)", x.rec.cache, w.Header().Get("X-Cache"), w.Body, want)
	}
	if x.called || x.call.fingerprint != 0 {
		t.Fatal("hit: an upstream call made or fingerprinted, though it calls no backend and will never queue")
	}
	if !strings.Contains(w.Header().Get("Cache-Control"), "max-age=") || w.Header().Get("Age") == "" {
		t.Fatalf("hit: Cache-Control %q, Age %q", w.Header().Get("Cache-Control"), w.Header().Get("Age"))
	}
	// The client may refuse the cache.
	x, w, next = lookup(gw, det, "Cache-Control", "no-cache")
	passed(t, "no-cache", next, x, w)
	if w.Header().Get("X-Cache") != "BYPASS" {
		t.Fatalf("no-cache: X-Cache %q", w.Header().Get("X-Cache"))
	}
	if n := be.calls.Load(); n != 1 {
		t.Fatalf("the backend was called %d times, want once (the fill)", n)
	}
}

func TestForwardStage(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	forward := func(job *jobCall) (*exchange, *httptest.ResponseRecorder, bool) {
		x, w := newExchange(gw, stageRequest(chatBody), job)
		through(t, x, identifyStage{gw}, parseStage{gw}, enqueueStage{gw}, limitStage{gw}, cacheStage{gw}, admitStage{})
		t.Cleanup(x.body.Release)
		next := forwardStage{gw}.serve(x)
		if x.ra != nil {
			x.ra.Finish()
		}
		return x, w, next
	}
	for _, c := range []struct {
		name string
		job  *jobCall
	}{{"a live request", nil}, {"a job", &jobCall{id: identity{tenant: "t", weight: 1}}}} {
		x, w, next := forward(c.job)
		answered(t, c.name, next, x, w, http.StatusOK, "")
		if x.rec.result.Backend == nil || !x.rec.result.UsageKnown || !strings.Contains(w.Body.String(), `"chat.completion"`) {
			t.Fatalf("%s: result %+v, body %q", c.name, x.rec.result, w.Body)
		}
		// Only an answer to the public listener is read ahead of its
		// client; the stage makes the writer, the stages before it never.
		if (x.ra != nil) != (c.job == nil) {
			t.Fatalf("%s: read-ahead writer %v", c.name, x.ra != nil)
		}
	}
}

// TestServeRefusesOtherMethods: the chain runs for POST only; anything
// else is answered 405 before the first stage, and not counted in flight.
func TestServeRefusesOtherMethods(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	r := httptest.NewRequest(http.MethodGet, "/v1/chat/completions", nil)
	x, w := newExchange(gw, r, nil)
	gw.serve(x)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" || x.inflight || x.from.key != "" {
		t.Fatalf("GET: %d, Allow %q, in flight %v, identified %q", w.Code, w.Header().Get("Allow"), x.inflight, x.from.key)
	}
}

// The header constants are read from the map directly (headerGet): they
// must be canonical, as net/http stores received keys.
func TestHeaderConstantsCanonical(t *testing.T) {
	for _, k := range []string{headerPriority, headerMaxWait, headerPrefer, headerProgress, headerRequestID, JobTenantHeader,
		"Authorization", "Cache-Control"} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is read as is, but its canonical form is %q", k, c)
		}
	}
}

// The parse stage's pool look-up answers as Pools does, whether the
// runtime serves one model (a compare) or several (the map), for a model
// it serves and for one it does not.
func TestPoolMatchesPools(t *testing.T) {
	cfg := config.Default()
	for _, models := range [][]string{{"m"}, {"m", "n"}} {
		var pools []*Pool
		for _, m := range models {
			pools = append(pools, &Pool{Model: m})
		}
		rt := NewRuntime(&cfg, Parts{Pools: pools})
		for _, m := range []string{"m", "n", "", "M", "m "} {
			if got, want := rt.pool(m), rt.Pools[m]; got != want {
				t.Fatalf("models %v: pool(%q) = %v, Pools has %v", models, m, got, want)
			}
		}
	}
}

// release clears all of an exchange, whatever its requests set: a miss
// (the upstream call made, the rate limit charged) and a hit, with and
// without rate limits.
func TestReleaseClearsExchange(t *testing.T) {
	be := newOKBackend(t)
	for _, limited := range []bool{false, true} {
		cfg := testConfig(be.URL)
		if limited {
			cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=100r/s burst=100 nodelay")}
		}
		_, gw := startCachingGatewayCfg(t, cfg, nil, time.Now)
		for _, want := range []string{"MISS", "HIT"} {
			x, w := newExchange(gw, stageRequest(cacheHitBody), nil)
			x.vals = new(answerValues)
			gw.serve(x)
			if got := w.Header().Get("X-Cache"); got != want || x.limited != limited || x.called != (want == "MISS") {
				t.Fatalf("limited %v: X-Cache %q (limited %v, called %v), want %s", limited, got, x.limited, x.called, want)
			}
			gw.release(x, false) // kept (by a connection): read below without the pool between
			if v := reflect.ValueOf(*x); !v.IsZero() {
				t.Fatalf("limited %v, %s: the released exchange is not cleared: %+v", limited, want, *x)
			}
		}
	}
}
