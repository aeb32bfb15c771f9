package ratelimit

import (
	"context"
	"testing"
)

// Extend takes more tokens as Check does, from every token limit of the
// request, all or nothing: a refusal by one gives back what the others
// granted, and a grant is counted in what Reconcile later settles.
func TestExtendAllOrNothing(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{TokensPerMinute: 1000}, PerTenant: Rule{TokensPerMinute: 500}})
	s := Subject{Key: "k", Tenant: "t"}
	r := check(t, lim, s, 300, t0)
	ctx := context.Background()
	if ok, err := r.Extend(ctx, 100, t0); !ok || err != nil {
		t.Fatalf("extend within both limits: %v %v", ok, err)
	}
	if ok, err := r.Extend(ctx, 200, t0); ok || err != nil { // the tenant holds 100 more only
		t.Fatalf("extend past the tenant's limit granted: %v %v", ok, err)
	}
	// The key gave back the refused 200: 1000 - 400 = 600 left; the
	// tenant 100.
	probe := check(t, lim, Subject{Key: "k"}, 0, t0)
	if probe.Tokens.Remaining != 600 {
		t.Fatalf("key remaining %d, want 600", probe.Tokens.Remaining)
	}
	if probe := check(t, lim, Subject{Tenant: "t"}, 0, t0); probe.Tokens.Remaining != 100 {
		t.Fatalf("tenant remaining %d, want 100", probe.Tokens.Remaining)
	}
	// Settled at 350 used: the 400 taken less 50.
	if err := r.Reconcile(ctx, 350, t0); err != nil {
		t.Fatal(err)
	}
	if probe := check(t, lim, Subject{Tenant: "t"}, 0, t0); probe.Tokens.Remaining != 150 {
		t.Fatalf("tenant remaining after settling %d, want 150", probe.Tokens.Remaining)
	}
}
