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
	if got, err := r.Extend(ctx, 100, t0); got != 100 || err != nil {
		t.Fatalf("extend within both limits: %v %v", got, err)
	}
	// The tenant holds 100 more only, all of which it grants: its count of
	// what is left is what a take of that many gets (gcra).
	got, err := r.Extend(ctx, 300, t0)
	if got != 100 || err != nil {
		t.Fatalf("extend past the tenant's limit granted %d (%v), want the 100 it has left", got, err)
	}
	if got, err := r.Extend(ctx, 50, t0); got != 0 || err != nil {
		t.Fatalf("extend past an empty tenant granted %d (%v)", got, err)
	}
	// Both took 400 + got in all: the key gave back what it took of the
	// refused takes and the tenant has nothing left.
	probe := check(t, lim, Subject{Key: "k"}, 0, t0)
	if probe.Tokens.Remaining != 600-got {
		t.Fatalf("key remaining %d, want %d", probe.Tokens.Remaining, 600-got)
	}
	if probe := check(t, lim, Subject{Tenant: "t"}, 0, t0); probe.Tokens.Remaining != 100-got {
		t.Fatalf("tenant remaining %d, want %d", probe.Tokens.Remaining, 100-got)
	}
	// Settled at 350 used: the 400 + got taken less the difference.
	if err := r.Reconcile(ctx, 350, t0); err != nil {
		t.Fatal(err)
	}
	if probe := check(t, lim, Subject{Tenant: "t"}, 0, t0); probe.Tokens.Remaining != 150 {
		t.Fatalf("tenant remaining after settling %d, want 150", probe.Tokens.Remaining)
	}
}

// Extend granted a whole step or nothing: a stream asking for 256 more
// with 119 left in its limit was refused, and cut a step early. It now
// gets the 119, from every limit alike; the limit with the fewest left
// decides.
func TestExtendGrantsWhatIsLeft(t *testing.T) {
	lim, _ := newTestLimiter(t, Rules{PerKey: Rule{TokensPerMinute: 400}, PerTenant: Rule{TokensPerMinute: 1000}, Global: Rule{TokensPerMinute: 5000}})
	r := check(t, lim, Subject{Key: "k", Tenant: "t"}, 281, t0)
	got, err := r.Extend(context.Background(), 256, t0)
	if got != 119 || err != nil {
		t.Fatalf("extend of 256 with 119 left granted %d (%v), want 119", got, err)
	}
	for _, c := range []struct {
		s    Subject
		want int64
	}{{Subject{Key: "k"}, 119 - got}, {Subject{Tenant: "t"}, 719 - got}, {Subject{}, 4719 - got}} {
		if p := check(t, lim, c.s, 0, t0); p.Tokens.Remaining != c.want {
			t.Errorf("%+v: %d left, want %d (281 + %d taken from each)", c.s, p.Tokens.Remaining, c.want, got)
		}
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
