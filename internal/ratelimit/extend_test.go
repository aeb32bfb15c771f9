package ratelimit

import (
	"context"
	"strings"
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

// TokenScope is the same for requests granted or refused tokens by the
// same limits, whatever else differs, and differs when any token limit
// does: another key, a key's own size, an address under a per-IP limit.
func TestTokenScopeNamesTheTokenLimits(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{TokensPerMinute: 1000}, PerTenant: Rule{TokensPerMinute: 5000},
		Keys: map[string]Rule{"big": {TokensPerMinute: 9000}}})
	scope := func(s Subject) string { return check(t, lim, s, 1, t0).TokenScope() }
	a := scope(Subject{Key: "a", Tenant: "t", IP: "1.2.3.4"})
	if a == "" || a != scope(Subject{Key: "a", Tenant: "t", IP: "5.6.7.8"}) { // no per-IP limit
		t.Fatalf("same key and tenant: %q vs %q", a, scope(Subject{Key: "a", Tenant: "t", IP: "5.6.7.8"}))
	}
	for _, s := range []Subject{{Key: "b", Tenant: "t"}, {Key: "a", Tenant: "u"}, {Key: "a", Tenant: "t", KeyRule: &Rule{TokensPerMinute: 2000}}, {Key: "big", Tenant: "t"}} {
		if scope(s) == a {
			t.Errorf("%+v shares key a's scope", s)
		}
	}
	if got := check(t, lim, Subject{}, 1, t0).TokenScope(); got != "" {
		t.Errorf("no token limit: %q", got)
	}
	if strings.Contains(a, ":a@") {
		t.Errorf("the API key in clear: %q", a)
	}
}
