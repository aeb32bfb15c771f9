package ratelimit

import (
	"context"
	"math"
	"testing"
	"time"
)

// Token reservations saturate: an absurd estimate is refused as never
// fitting (not wrapped into a negative cost that would refill the bucket),
// an absurd usage report charges a bounded amount whose refill time is
// finite, and neither touches another tenant's bucket.
func TestTokenReservationsSaturate(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerTenant: Rule{TokensPerMinute: 6000}})
	for _, est := range []int64{math.MaxInt64, math.MaxInt64 - 1, MaxTokens + 1} {
		if r := check(t, lim, Subject{Tenant: "greedy"}, est, t0); r.Allowed || !r.NeverFits {
			t.Fatalf("estimate %d: %+v, want refused as never fitting", est, r)
		}
	}
	if r := check(t, lim, Subject{Tenant: "greedy"}, math.MinInt64, t0); !r.Allowed {
		t.Fatalf("negative estimate (taken as 0) refused: %+v", r)
	}
	r := check(t, lim, Subject{Tenant: "greedy"}, 100, t0)
	if !r.Allowed {
		t.Fatalf("normal request refused: %+v", r)
	}
	if err := r.Reconcile(context.Background(), math.MaxInt64, t0); err != nil {
		t.Fatal(err)
	}
	later := check(t, lim, Subject{Tenant: "greedy"}, 1, t0.Add(time.Second))
	if later.Allowed || later.RetryAfter <= 0 {
		t.Fatalf("after an absurd usage report: %+v, want refused with a positive Retry-After", later)
	}
	// Bounded: MaxTokens at 100 tokens/s refills in MaxTokens/100 seconds.
	if bound := time.Duration(MaxTokens/100+60) * time.Second; later.RetryAfter > bound {
		t.Fatalf("Retry-After %v beyond the saturated charge's refill time %v", later.RetryAfter, bound)
	}
	if r := check(t, lim, Subject{Tenant: "other"}, 5000, t0.Add(time.Second)); !r.Allowed {
		t.Fatalf("another tenant refused: %+v", r)
	}
}
