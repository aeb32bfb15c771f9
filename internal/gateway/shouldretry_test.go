package gateway

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Every error answer of the pipeline, as apiError maps it and writeError
// writes it, tells the official SDKs (which retry 408, 409, 429 and 5xx
// unless x-should-retry says otherwise, and honour a Retry-After up to
// 2 minutes, Node up to 60 s) what they should do. The header is sent only
// where it changes their decision: a 429 or 503 whose Retry-After is past
// 2 minutes (admission's estimates reach 5) would be retried by Node on
// its own 0.5–8 s backoff instead, twice, while the gateway is shedding
// load; up to 2 minutes Python and Go wait and are served, so no header.
// Without x-should-retry the long-wait rows fail.
func TestEveryPipelineAnswerTellsTheSDKWhetherToRetry(t *testing.T) {
	rej := func(r admission.Reason, wait time.Duration) error {
		return fmt.Errorf("admit: %w", &admission.Rejection{Reason: r, RetryAfter: wait, Message: "refused"})
	}
	limited := func(wait time.Duration) error { // the rate limit stage's 429 (rateLimit)
		return &openai.Error{Status: 429, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded", Message: "m", RetryAfter: wait}
	}
	for _, c := range []struct {
		name        string
		err         error
		status      int
		code        string
		retryAfter  string // "" for none
		shouldRetry string // "" for none: the SDK's own rule is right
	}{
		{"tenant over share, short wait", rej(admission.TenantOverShare, 3*time.Second), 429, "tenant_over_share", "3", ""},
		{"tenant over share, 60 s", rej(admission.TenantOverShare, time.Minute), 429, "tenant_over_share", "60", ""},
		{"tenant over share, 61 s", rej(admission.TenantOverShare, 61*time.Second), 429, "tenant_over_share", "61", ""},
		{"tenant over share, 121 s", rej(admission.TenantOverShare, 121*time.Second), 429, "tenant_over_share", "121", "false"},
		{"tenant queue full, 5 min", rej(admission.TenantQueueFull, 5*time.Minute), 429, "tenant_queue_full", "300", "false"},
		{"pool saturated, short", rej(admission.Saturated, 2*time.Second), 503, "pool_saturated", "2", ""},
		{"pool saturated, 90 s", rej(admission.Saturated, 90*time.Second), 503, "pool_saturated", "90", ""},
		{"queue full, 2 min", rej(admission.QueueFull, 2*time.Minute), 503, "queue_full", "120", ""},
		{"queue full, 3 min", rej(admission.QueueFull, 3*time.Minute), 503, "queue_full", "180", "false"},
		{"shed", rej(admission.Shed, time.Second), 503, "shed", "1", ""},
		{"rate limit, 60 s", limited(time.Minute), 429, "rate_limit_exceeded", "60", ""},
		{"rate limit, 2 min", limited(2 * time.Minute), 429, "rate_limit_exceeded", "120", ""},
		{"rate limit, an hour", limited(time.Hour), 429, "rate_limit_exceeded", "3600", "false"},
		{"rate limit, no wait known", limited(0), 429, "rate_limit_exceeded", "", ""},
		{"never fits", openai.BadRequest("exceeds_rate_limit_capacity", "m"), 400, "exceeds_rate_limit_capacity", "", ""},
		{"body memory", proxy.ErrBodyMemory, 503, "body_memory_full", "1", ""},
		{"no spare", admission.ErrNoSpare, 503, "no_spare_capacity", "1", ""},
		{"backends at their limit", proxy.ErrSaturated, 503, "pool_saturated", "1", ""},
		{"no healthy backend", proxy.ErrNoBackend, 503, "no_healthy_backend", "5", ""},
		{"unreachable", fmt.Errorf("%w: refused", proxy.ErrConnect), 502, "upstream_unreachable", "1", ""},
		{"malformed answer", proxy.ErrBadAnswer, 502, "upstream_bad_response", "1", ""},
		{"reset", fmt.Errorf("%w: reset", proxy.ErrUpstream), 502, "upstream_error", "1", ""},
		{"first token", proxy.ErrFirstTokenTimeout, 504, "upstream_timeout", "", ""},
		{"first byte", proxy.ErrFirstByteTimeout, 504, "upstream_timeout", "", ""},
		{"total", proxy.ErrTotalTimeout, 504, "request_timeout", "", ""},
		{"idle", proxy.ErrStreamIdle, 504, "upstream_idle_timeout", "", ""},
		{"stalled body", &netguard.BodyTimeoutError{}, 408, "request_timeout", "", ""},
		{"too large", proxy.ErrBodyTooLarge, 413, "request_too_large", "", ""},
		{"queue down", errQueueDown, 503, "queue_unavailable", "5", ""},
		{"rate limit store", &openai.Error{Status: 503, Type: openai.TypeServer, Code: codeStoreUnavailable, Message: "m", RetryAfter: time.Second}, 503, codeStoreUnavailable, "1", ""},
		{"bad token", errInvalidToken, 401, "invalid_api_key", "", ""},
		{"client left", context.Canceled, 499, "client_closed_request", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, apiError(c.err, "m"))
			_, code, _ := apiErr(t, rec.Body.String())
			if rec.Code != c.status || code != c.code {
				t.Fatalf("status %d code %q, want %d %q", rec.Code, code, c.status, c.code)
			}
			h := rec.Header()
			if got := h.Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if got := h.Get("X-Should-Retry"); got != c.shouldRetry {
				t.Errorf("x-should-retry %q, want %q", got, c.shouldRetry)
			}
		})
	}
}

// Through a real gateway: a request rate limit refilling in 2.5 minutes
// answers its 429 with Retry-After: 150 and x-should-retry: false (Node
// would otherwise retry it twice within seconds, both refused); one
// refilling within two minutes leaves the retry to the SDK, which (Python,
// Go; Node within a minute) waits as told and succeeds. A backend's own long 429, relayed, is treated alike
// unless it says itself; a proxied 200 carries no header.
func TestLongWaitsTellTheSDKNotToRetry(t *testing.T) {
	for _, c := range []struct {
		limit       string
		retryAfter  [2]int // its bounds: the second request comes some milliseconds after the first
		shouldRetry string
	}{
		{"rate=0.4r/m", [2]int{149, 150}, "false"},
		{"rate=0.5r/m", [2]int{119, 120}, ""},
		{"rate=1r/m", [2]int{59, 60}, ""},
	} {
		t.Run(c.limit, func(t *testing.T) {
			be := newOKBackend(t)
			cfg := testConfig(be.URL)
			cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, c.limit)}
			srv, _ := startGateway(t, cfg)
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer k")
			if readAll(t, resp); resp.StatusCode != 200 || resp.Header.Values("X-Should-Retry") != nil {
				t.Fatalf("first: status %d, x-should-retry %q", resp.StatusCode, resp.Header.Values("X-Should-Retry"))
			}
			resp = post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer k")
			body := readAll(t, resp)
			if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || ra < c.retryAfter[0] || ra > c.retryAfter[1] {
				t.Fatalf("second: status %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			if got := resp.Header.Get("X-Should-Retry"); got != c.shouldRetry {
				t.Fatalf("x-should-retry %q with Retry-After %s, want %q", got, resp.Header.Get("Retry-After"), c.shouldRetry)
			}
		})
	}
	for _, c := range []struct {
		name        string
		hdr         []string
		shouldRetry string
	}{
		{"backend 429, an hour", []string{"Retry-After", "3600"}, "false"},
		{"backend 429, 30 s", []string{"Retry-After", "30"}, ""},
		{"backend 429, an hour, says retry", []string{"Retry-After", "3600", "X-Should-Retry", "true"}, "true"},
		{"backend 429, none", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := startGateway(t, testConfig(statusBackend(t, 429, c.hdr...).URL))
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
			body := readAll(t, resp)
			if resp.StatusCode != 429 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Should-Retry"); got != c.shouldRetry {
				t.Fatalf("x-should-retry %q (Retry-After %q), want %q", got, resp.Header.Get("Retry-After"), c.shouldRetry)
			}
		})
	}
}
