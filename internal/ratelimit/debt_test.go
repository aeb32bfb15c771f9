package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// debtStores runs f on the local store and on a real redis-server (the
// caller's clock), the two stores gcra.go and gcra.lua decide for.
func debtStores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("local", func(t *testing.T) { f(t, NewLocalStore(0)) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, NewRedisStore(newClient(t, srv.Addr), RedisOptions{CallerClock: true}))
	})
}

func debtLimiter(t *testing.T, s Store) *Limiter {
	t.Helper()
	l, err := NewLimiter(s, Rules{PerKey: Rule{TokensPerMinute: 1200}}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Usage reported far past its reservation is owed in full. Four JSON
// requests without max_tokens each reserve 266 tokens of a 1,200-a-minute
// key (a fifth does not fit) and each report 2,010 used: 8,040 tokens,
// 6.7 minutes of the limit. The debt used to be capped at one capacity
// beyond empty (2,400 charged, whatever was used): the key was admitted
// again after 2 minutes, having used 3.35 times its limit. Now a request
// of 266 fits only once the 8,040 are paid down to room for it (355.3 s).
func TestUsagePastTheEstimateIsOwedInFull(t *testing.T) {
	debtStores(t, func(t *testing.T, s Store) {
		lim, key, ctx := debtLimiter(t, s), Subject{Key: "k"}, context.Background()
		var admitted []Result
		for range 5 {
			if r := check(t, lim, key, 266, t0); r.Allowed {
				admitted = append(admitted, r)
			}
		}
		if len(admitted) != 4 {
			t.Fatalf("%d of 5 admitted at once, want 4 (4 x 266 of 1,200)", len(admitted))
		}
		for _, r := range admitted {
			if err := r.Reconcile(ctx, 2010, t0); err != nil {
				t.Fatal(err)
			}
		}
		// 8,040 tokens at 20 a second: idle at 402 s; room for 266 once
		// what is in use is 934, at 402 - 46.7 = 355.3 s.
		at := t0.Add(330 * time.Second)
		r := check(t, lim, key, 266, at)
		if r.Allowed {
			t.Fatalf("admitted at 5.5 minutes with 8,040 tokens charged on 1,200 a minute: the debt was not owed in full")
		}
		if want := 25300 * time.Millisecond; r.RetryAfter < want-time.Millisecond || r.RetryAfter > want+time.Millisecond {
			t.Fatalf("refused with Retry-After %v, want %v (when the debt leaves room for 266)", r.RetryAfter, want)
		}
		if r.Tokens.Reset < 72*time.Second-time.Millisecond || r.Tokens.Reset > 72*time.Second+time.Millisecond {
			t.Fatalf("reset %v at 330 s, want 72 s (idle at 402 s)", r.Tokens.Reset)
		}
		if r := check(t, lim, key, 266, t0.Add(356*time.Second)); !r.Allowed {
			t.Fatalf("refused at 356 s, once the debt left room for 266: %+v", r.Tokens)
		}
	})
}

// A check of 0 tokens (a follow-up: a stored response fetched, a
// background one cancelled) takes nothing from a token limit, so it is
// not refused while that limit is in debt; it used to be, until the debt
// was paid (a key could not cancel the background response running it
// further into debt). Its request count still applies.
func TestACheckOfNoTokensPassesADebt(t *testing.T) {
	debtStores(t, func(t *testing.T, s Store) {
		lim, key, ctx := debtLimiter(t, s), Subject{Key: "k"}, context.Background()
		r := check(t, lim, key, 266, t0)
		if err := r.Reconcile(ctx, 2000, t0); err != nil {
			t.Fatal(err)
		}
		at := t0.Add(10 * time.Second)
		if r := check(t, lim, key, 1, at); r.Allowed {
			t.Fatalf("a take of 1 allowed in debt")
		}
		z := check(t, lim, key, 0, at)
		if !z.Allowed || z.Tokens.Remaining != 0 || z.Tokens.Limit != 1200 {
			t.Fatalf("a check of 0 tokens in debt: allowed %v, tokens %+v; want allowed, 0 of 1,200 left", z.Allowed, z.Tokens)
		}
		// It took nothing: the debt is as it was (1,200 refill at 20/s
		// from 100 s, the time 2,000 tokens take).
		if r := check(t, lim, key, 1, at); r.Allowed || r.Tokens.Reset != 90*time.Second {
			t.Fatalf("after the check of 0: allowed %v, reset %v; want refused, reset 1m30s", r.Allowed, r.Tokens.Reset)
		}
	})
}
