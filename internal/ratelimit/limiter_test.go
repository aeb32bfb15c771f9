package ratelimit

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v4"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
)

func newTestLimiter(t *testing.T, rules Rules) (*Limiter, *LocalStore) {
	t.Helper()
	s := NewLocalStore(0)
	l, err := NewLimiter(s, rules, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return l, s
}

func check(t *testing.T, l *Limiter, s Subject, est int64, now time.Time) Result {
	t.Helper()
	r, err := l.Check(context.Background(), s, est, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A refused request costs nothing: what it took from the other limits is
// given back.
func TestCheckAllOrNothing(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{
		Global: Rule{Requests: rate.PerSecond(100, 4).NoDelay()}, // capacity 5
		PerIP:  Rule{Requests: rate.PerSecond(1, 0)},
	})
	alice := Subject{IP: "10.0.0.1"}
	if r := check(t, lim, alice, 0, t0); !r.Allowed {
		t.Fatalf("first request refused: %+v", r)
	}
	for range 10 { // refused by the IP limit after taking from global
		r := check(t, lim, alice, 0, t0)
		if r.Allowed || r.Scope != "ip" || r.Kind != "requests" || r.RetryAfter != time.Second {
			t.Fatalf("second request from the same IP: %+v", r)
		}
	}
	// Global still has 4 of 5: the ten refusals were refunded.
	r := check(t, lim, Subject{IP: "10.0.0.2"}, 0, t0)
	if !r.Allowed || r.Requests.Remaining != 0 || r.Requests.Limit != 1 {
		t.Fatalf("bob: %+v", r)
	}
	for i := range 3 {
		if r := check(t, lim, Subject{IP: "10.0.1." + string(rune('0'+i))}, 0, t0); !r.Allowed {
			t.Fatalf("global capacity lost to refused requests: %+v", r)
		}
	}
	if r := check(t, lim, Subject{IP: "10.0.2.1"}, 0, t0); r.Allowed || r.Scope != "global" {
		t.Fatalf("sixth distinct IP: %+v, want refused by global", r)
	}
}

// Tokens: the estimate is reserved at admission and reconciled with the
// usage the backend reports — refunded when fewer were used, charged extra
// when more were.
func TestTokenReservationReconcile(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{TokensPerMinute: 6000}}) // 100 tokens/s
	ctx := context.Background()
	key := Subject{Key: "sk-test"}

	first := check(t, lim, key, 4000, t0)
	if !first.Allowed || first.Tokens.Limit != 6000 || first.Tokens.Remaining != 2000 {
		t.Fatalf("reserve 4000 of 6000: %+v", first.Tokens)
	}
	if r := check(t, lim, key, 3000, t0); r.Allowed || r.Kind != "tokens" || r.RetryAfter != 10*time.Second {
		t.Fatalf("3000 more with 2000 left: %+v, want refused for 10s", r)
	}
	// The backend reports 1000 used: 3000 come back, and 3000 fit now.
	if err := first.Reconcile(ctx, 1000, t0); err != nil {
		t.Fatal(err)
	}
	second := check(t, lim, key, 3000, t0)
	if !second.Allowed || second.Tokens.Remaining != 2000 {
		t.Fatalf("after refund: %+v", second.Tokens)
	}
	// A stream reports more than estimated: the extra is charged, in steps.
	if err := second.Reconcile(ctx, 4000, t0); err != nil {
		t.Fatal(err)
	}
	if err := second.Reconcile(ctx, 4500, t0); err != nil {
		t.Fatal(err)
	}
	r := check(t, lim, key, 0, t0)
	if !r.Allowed || r.Tokens.Remaining != 500 {
		t.Fatalf("after charging 1500 extra: %+v, want 500 left", r.Tokens)
	}
	// Reconciling a refused request does nothing.
	refused := check(t, lim, key, 5000, t0)
	if refused.Allowed || refused.Reconcile(ctx, 0, t0) != nil {
		t.Fatal("refused request")
	}
	if r := check(t, lim, key, 0, t0); r.Tokens.Remaining != 500 {
		t.Fatalf("a refused request changed the bucket: %+v", r.Tokens)
	}
}

func TestCheckNeverFits(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{Requests: rate.PerSecond(10, 0), TokensPerMinute: 1000}})
	r := check(t, lim, Subject{Key: "sk"}, 1001, t0)
	if r.Allowed || !r.NeverFits || r.RetryAfter != 0 || r.Kind != "tokens" {
		t.Fatalf("%+v, want NeverFits on tokens", r)
	}
	if !strings.Contains(r.Reason(), "1000") {
		t.Fatalf("reason %q should state the limit", r.Reason())
	}
	h := http.Header{}
	r.WriteHeaders(h)
	if h.Get("Retry-After") != "" || h.Get("retry-after-ms") != "" {
		t.Fatalf("a request that can never fit got retry headers: %v", h)
	}
	// Nothing was charged: the request slot is still free.
	if r := check(t, lim, Subject{Key: "sk"}, 10, t0); !r.Allowed {
		t.Fatalf("after NeverFits: %+v", r)
	}
}

func TestCheckDelayAndOverrides(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{
		PerKey: Rule{Requests: mustParse(t, "rate=10r/s burst=5")},
		Keys:   map[string]Rule{"sk-vip": {}},
	})
	check(t, lim, Subject{Key: "sk-a"}, 0, t0)
	if r := check(t, lim, Subject{Key: "sk-a"}, 0, t0); !r.Allowed || r.Delay != 100*time.Millisecond {
		t.Fatalf("second request: %+v, want delayed 100ms (nginx default)", r)
	}
	for range 100 {
		if r := check(t, lim, Subject{Key: "sk-vip"}, 0, t0); !r.Allowed || r.Requests.Limit != 0 {
			t.Fatalf("unlimited override: %+v", r)
		}
	}
}

func TestWriteHeaders(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{Requests: rate.PerMinute(60, 59).NoDelay(), TokensPerMinute: 150000}})
	r := check(t, lim, Subject{Key: "sk"}, 1000, t0)
	h := http.Header{}
	r.WriteHeaders(h)
	want := map[string]string{
		"x-ratelimit-limit-requests":     "60",
		"x-ratelimit-remaining-requests": "59",
		"x-ratelimit-reset-requests":     "1s",
		"x-ratelimit-limit-tokens":       "150000",
		"x-ratelimit-remaining-tokens":   "149000",
		"x-ratelimit-reset-tokens":       "400ms",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("Retry-After") != "" {
		t.Error("Retry-After on an allowed request")
	}

	for range 59 {
		check(t, lim, Subject{Key: "sk"}, 0, t0)
	}
	refused := check(t, lim, Subject{Key: "sk"}, 0, t0.Add(500*time.Millisecond))
	h = http.Header{}
	refused.WriteHeaders(h)
	if refused.Allowed || h.Get("Retry-After") != "1" || h.Get("retry-after-ms") != "500" || h.Get("x-ratelimit-remaining-requests") != "0" {
		t.Fatalf("refusal headers %v", h)
	}
}

func TestFormatReset(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		time.Nanosecond:         "1ms",
		120 * time.Millisecond:  "120ms",
		time.Second:             "1s",
		1500 * time.Millisecond: "1.5s",
		6 * time.Minute:         "6m0s",
		8640 * time.Millisecond: "8.64s",
	} {
		if got := FormatReset(d); got != want {
			t.Errorf("FormatReset(%v) = %q, want %q", d, got, want)
		}
	}
}

const exampleYAML = `
rate_limits:
  store: redis
  redis: {addrs: ["127.0.0.1:6379"], password: "", failure_mode: closed, replicas: 3, timeout: 50ms}
  global: {requests: "1000r/s burst=2000"}
  per_key: {requests: "10r/s burst=20 nodelay", tokens_per_minute: 100000}
  per_ip: {requests: "60r/m"}
  per_tenant: {tokens_per_minute: 1000000}
  keys:
    sk-abc: {requests: "rate=100r/s burst=200 delay=50"}
    sk-internal: {requests: off, tokens_per_minute: 0}
  tenants:
    acme: {tokens_per_minute: 5000000}
`

func TestConfigYAML(t *testing.T) {
	var doc struct {
		RateLimits config.RateLimits `yaml:"rate_limits"`
	}
	if err := yaml.Load([]byte(exampleYAML), &doc, yaml.WithKnownFields()); err != nil {
		t.Fatal(err)
	}
	c := doc.RateLimits
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Redis.Timeout.D() != 50*time.Millisecond || c.Redis.Replicas != 3 || c.Redis.FailureMode != "closed" {
		t.Fatalf("redis section: %+v", c.Redis)
	}
	rules := RulesFrom(c)
	if rules.PerKey.Requests != (Limit{Rate: 10, Burst: 20, Delay: rate.NoDelay}) || rules.PerKey.TokensPerMinute != 100000 {
		t.Fatalf("per_key: %+v", rules.PerKey)
	}
	// Overrides replace only the fields they set.
	if abc := rules.Keys["sk-abc"]; abc.Requests != (Limit{Rate: 100, Burst: 200, Delay: 50}) || abc.TokensPerMinute != 100000 {
		t.Fatalf("sk-abc: %+v", abc)
	}
	if in := rules.Keys["sk-internal"]; !in.Requests.IsZero() || in.TokensPerMinute != 0 {
		t.Fatalf("sk-internal: %+v", in)
	}
	if rules.PerIP.Requests.Rate != 1 || rules.Tenants["acme"].TokensPerMinute != 5000000 {
		t.Fatalf("per_ip / tenants: %+v %+v", rules.PerIP, rules.Tenants)
	}
	// And it writes back as it reads.
	out, err := yaml.Dump(c.PerKey)
	if err != nil || !strings.Contains(string(out), "rate=10r/s burst=20 nodelay") {
		t.Fatalf("marshal: %s, %v", out, err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []struct {
		yaml, want string
	}{
		{`{store: memcached}`, "rate_limits.store"},
		{`{store: redis}`, "rate_limits.redis.addrs"},
		{`{store: redis, redis: {addrs: [x], failure_mode: maybe}}`, "failure_mode"},
		{`{per_key: {requests: "10r/s burst=-1"}}`, "burst"},
		{`{per_ip: {tokens_per_minute: -5}}`, "rate_limits.per_ip.tokens_per_minute"},
	}
	for _, b := range bad {
		var c config.RateLimits
		err := yaml.Load([]byte(b.yaml), &c, yaml.WithKnownFields())
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %v, want one mentioning %q", b.yaml, err, b.want)
		}
	}
}
