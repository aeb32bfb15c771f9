package ratelimit

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/rate"
)

// headersOf is the x-ratelimit-* trio of kind r states, as
// "limit/remaining/reset".
func headersOf(r Result, kind string) string {
	h := http.Header{}
	r.WriteHeaders(h)
	return h.Get("x-ratelimit-limit-"+kind) + "/" + h.Get("x-ratelimit-remaining-"+kind) + "/" + h.Get("x-ratelimit-reset-"+kind)
}

// TestHeadersStateTheMinute: x-ratelimit-limit-requests is what OpenAI's
// is, the requests a minute allows (600 for rate=10r/s burst=20), not the
// bucket's capacity (21: the old value); remaining is that less the
// requests in use, which the reset refills, so the three agree; a refusal
// says 0 remaining, the room the bucket has. A burst above a minute's
// rate is the limit itself (more passes at once), and a tokens_per_minute
// limit states its own figure.
func TestHeadersStateTheMinute(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{
		PerKey:  Rule{Requests: rate.PerSecond(10, 20).NoDelay(), TokensPerMinute: 600},
		PerIP:   Rule{Requests: rate.PerMinute(1, 4).NoDelay()},
		Tenants: map[string]Rule{"debt": {TokensPerMinute: 600}},
	})
	s := Subject{Key: "sk"}
	if got := headersOf(check(t, lim, s, 100, t0), "requests"); got != "600/599/100ms" {
		t.Fatalf("first request: requests %s, want 600/599/100ms", got)
	}
	var last Result
	for range 20 {
		last = check(t, lim, s, 0, t0)
	}
	if got := headersOf(last, "requests"); !last.Allowed || got != "600/579/2.1s" {
		t.Fatalf("21st at once: allowed %v, requests %s, want 600/579/2.1s", last.Allowed, got)
	}
	refused := check(t, lim, s, 0, t0)
	if got := headersOf(refused, "requests"); refused.Allowed || got != "600/0/2.1s" {
		t.Fatalf("22nd at once: allowed %v, requests %s, want a refusal saying 600/0/2.1s", refused.Allowed, got)
	}
	if got := headersOf(check(t, lim, s, 0, t0.Add(time.Second)), "requests"); got != "600/588/1.2s" {
		t.Fatalf("a second later: requests %s, want 600/588/1.2s (11 in use and this one)", got)
	}
	if got := headersOf(check(t, lim, s, 50, t0.Add(time.Minute)), "tokens"); got != "600/550/5s" {
		t.Fatalf("tokens: %s, want 600/550/5s", got)
	}

	ip := Subject{IP: "192.0.2.1"} // rate=1r/m burst=4: 5 at once
	if got := headersOf(check(t, lim, ip, 0, t0), "requests"); got != "5/4/1m0s" {
		t.Fatalf("burst over a minute's rate: requests %s, want 5/4/1m0s", got)
	}

	// A charge past the bucket (usage above the estimate) is debt: 0 left
	// until it is repaid, and the reset says when the bucket is full.
	debt := Subject{Tenant: "debt"}
	r := check(t, lim, debt, 600, t0)
	if err := r.Reconcile(context.Background(), 900, t0); err != nil {
		t.Fatal(err)
	}
	r = check(t, lim, debt, 0, t0.Add(10*time.Second))
	if got := headersOf(r, "tokens"); got != "600/0/1m20s" {
		t.Fatalf("in debt: tokens %s, want 600/0/1m20s", got)
	}
	if got := headersOf(check(t, lim, debt, 0, t0.Add(75*time.Second)), "tokens"); got != "600/450/15s" {
		t.Fatalf("repaid: tokens %s, want 600/450/15s", got)
	}
}

// TestAnonymousRefusalNamesTheAddress: a refusal by the per-key limits
// of a caller counted by a stand-in for a key names what was counted; the
// message used to say "API key".
func TestAnonymousRefusalNamesTheAddress(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{Requests: rate.PerMinute(1, 0).NoDelay(), TokensPerMinute: 100}})
	anon := Subject{Key: "ip:192.0.2.1", KeyName: "client address (no verified key)"}
	check(t, lim, anon, 0, t0)
	if r := check(t, lim, anon, 0, t0); r.Allowed || r.Reason() != "client address (no verified key) rate limit exceeded (requests)" {
		t.Fatalf("refusal %q", r.Reason())
	}
	if r := check(t, lim, anon, 1000, t0.Add(time.Hour)); !r.NeverFits || !strings.Contains(r.Reason(), "than the client address (no verified key) limit") {
		t.Fatalf("never fits %q", r.Reason())
	}
	if r := check(t, lim, Subject{Key: "sk"}, 0, t0); !r.Allowed {
		t.Fatal("a key's first request refused")
	} else if r = check(t, lim, Subject{Key: "sk"}, 0, t0); r.Reason() != "API key rate limit exceeded (requests)" {
		t.Fatalf("a key's refusal %q", r.Reason())
	}
}
