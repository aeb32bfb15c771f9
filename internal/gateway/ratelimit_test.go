package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

func limitPtr(t *testing.T, s string) *rate.Limit {
	l, err := rate.ParseNginx(s)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

func TestRateLimitPerKeyWithOpenAIHeaders(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=2 nodelay")}
	cfg.Auth.Keys = []config.Tenant{{Key: "k1"}, {Key: "k2"}}
	srv, _ := startGateway(t, cfg)
	for i := 0; i < 3; i++ {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer k1")
		readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d within burst: %d", i, resp.StatusCode)
		}
		if got, want := resp.Header.Get("X-Ratelimit-Remaining-Requests"), strconv.Itoa(2-i); got != want {
			t.Fatalf("remaining %q, want %s", got, want)
		}
		if resp.Header.Get("X-Ratelimit-Limit-Requests") != "3" || resp.Header.Get("X-Ratelimit-Reset-Requests") == "" {
			t.Fatalf("headers %v", resp.Header)
		}
	}
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer k1")
	body := readAll(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After-Ms") == "" {
		t.Fatalf("over the limit: %d %v", resp.StatusCode, resp.Header)
	}
	if typ, code, _ := apiErr(t, body); typ != "rate_limit_error" || code != "rate_limit_exceeded" {
		t.Fatalf("type %s code %s", typ, code)
	}
	// Another key has its own bucket.
	resp = post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer k2")
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("other key refused: %d", resp.StatusCode)
	}
	if n := len(be.bodies); n != 4 {
		t.Fatalf("backend saw %d requests, want 4 (refusals never reach it)", n)
	}
}

func TestTokenLimitNeverFitsIsNotRetryable(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	tpm := int64(100)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","max_tokens":5000}`, "Authorization", "Bearer k")
	body := readAll(t, resp)
	if resp.StatusCode != 400 || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("status %d retry-after %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if _, code, _ := apiErr(t, body); code != "exceeds_rate_limit_capacity" {
		t.Fatalf("code %s", code)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","max_tokens":50}`, "Authorization", "Bearer k")
	if readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Tokens") != "100" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
}

// TestDistributedLimitAcrossThreeGateways: three gateway replicas sharing one
// Redis admit the configured limit, not three times it.
func TestDistributedLimitAcrossThreeGateways(t *testing.T) {
	rd := redistest.Start(t)
	be := newOKBackend(t)
	var urls []string
	var regs []*prometheus.Registry
	for i := 0; i < 3; i++ {
		cfg := testConfig(be.URL)
		cfg.RateLimits.Store = "redis"
		cfg.RateLimits.Redis.Addrs = []string{rd.Addr}
		// The test is about the shared limit, not a slow Redis: a call that
		// outlived the 100ms default on a loaded machine made the replica
		// fall back to its local share, and the count meant nothing.
		cfg.RateLimits.Redis.Timeout = config.Duration(time.Minute)
		cfg.RateLimits.Redis.ConnectTimeout = config.Duration(time.Minute)
		// Capacity 100, refilling one a minute: the count hardly depends
		// on how long the run takes.
		cfg.RateLimits.Global = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=99 nodelay")}
		var reg *prometheus.Registry
		srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
		urls = append(urls, srv.URL)
		regs = append(regs, reg)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				resp := post(t, urls[(w+i)%3]+"/v1/chat/completions", chatBody)
				readAll(t, resp)
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}(w)
	}
	wg.Wait()
	for i, reg := range regs {
		if n := metricValue(t, reg, "sluice_ratelimit_store_errors_total"); n != 0 {
			t.Fatalf("replica %d: %v Redis errors, so it limited on its own share for a while", i, n)
		}
	}
	// Redis judges time by its own clock, which the run's duration bounds.
	refill := int64(time.Since(start).Minutes()) + 1
	if n := ok.Load(); n < 100 || n > 100+refill {
		t.Fatalf("three replicas admitted %d requests, want 100..%d (limit is shared, not per replica); refused %d", n, 100+refill, refused.Load())
	}
}

var _ = config.Default
