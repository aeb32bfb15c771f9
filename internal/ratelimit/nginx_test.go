package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/rate"
)

// t0 is an arbitrary fixed start for fake clocks.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// burstAt sends n unit requests at the same instant and returns the decisions.
func burstAt(t *testing.T, s Store, key string, l Limit, n int, now time.Time) []Decision {
	t.Helper()
	out := make([]Decision, n)
	for i := range out {
		d, err := s.Take(context.Background(), key, l, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

func mustParse(t testing.TB, s string) Limit {
	t.Helper()
	l, err := rate.ParseNginx(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The seed's and nginx's documented example: rate=10r/s burst=20. Thirty
// requests at once: the first is served, the next 20 are queued (delayed to
// leave at the rate: 100 ms apart), the last 9 are refused (nginx 503, our
// 429). With nodelay the 20 burst requests are served at once instead.
func TestNginxBurstDelayed(t *testing.T) {
	s := NewLocalStore(0)
	ds := burstAt(t, s, "k", mustParse(t, "rate=10r/s burst=20"), 30, t0)
	for i, d := range ds {
		switch {
		case i <= 20:
			if !d.Allowed {
				t.Fatalf("request %d refused, want served", i+1)
			}
			if want := time.Duration(i) * 100 * time.Millisecond; d.Delay != want {
				t.Errorf("request %d delay %v, want %v", i+1, d.Delay, want)
			}
		default:
			if d.Allowed || d.NeverFits {
				t.Fatalf("request %d = %+v, want refused", i+1, d)
			}
			if d.RetryAfter != 100*time.Millisecond {
				t.Errorf("request %d retry after %v, want 100ms", i+1, d.RetryAfter)
			}
		}
	}
}

func TestNginxBurstNodelay(t *testing.T) {
	s := NewLocalStore(0)
	l := mustParse(t, "rate=10r/s burst=20 nodelay")
	served := 0
	for i, d := range burstAt(t, s, "k", l, 30, t0) {
		if d.Allowed {
			served++
			if d.Delay != 0 {
				t.Errorf("request %d delayed %v under nodelay", i+1, d.Delay)
			}
		}
	}
	if served != 21 {
		t.Fatalf("served %d of 30, want 21", served)
	}
	// nodelay serves the burst at once but the slots still refill at the
	// rate: one more every 100 ms, not the whole burst again.
	for step := 1; step <= 3; step++ {
		now := t0.Add(time.Duration(step) * 100 * time.Millisecond)
		ds := burstAt(t, s, "k", l, 2, now)
		if !ds[0].Allowed || ds[1].Allowed {
			t.Fatalf("at +%dms: %v %v, want exactly one served", step*100, ds[0].Allowed, ds[1].Allowed)
		}
	}
	// After 2.1 s idle the whole burst is back.
	ds := burstAt(t, s, "k", l, 22, t0.Add(300*time.Millisecond+2100*time.Millisecond))
	if !ds[20].Allowed || ds[21].Allowed {
		t.Fatal("burst not fully restored after idling")
	}
}

// delay=8 (nginx 1.15.7): the first 8 excess requests pass at once, the
// rest are delayed.
func TestNginxDelayN(t *testing.T) {
	s := NewLocalStore(0)
	for i, d := range burstAt(t, s, "k", mustParse(t, "rate=10r/s burst=20 delay=8"), 22, t0) {
		var want time.Duration
		if i > 8 {
			want = time.Duration(i-8) * 100 * time.Millisecond
		}
		switch {
		case i == 21 && d.Allowed:
			t.Fatal("request 22 served beyond the burst")
		case i < 21 && d.Delay != want:
			t.Errorf("request %d delay %v, want %v", i+1, d.Delay, want)
		}
	}
}

// Without a burst, nginx refuses any request closer than 1/rate to the
// previous accepted one.
func TestNginxNoBurst(t *testing.T) {
	s := NewLocalStore(0)
	l := mustParse(t, "10r/s")
	steps := []struct {
		at    time.Duration
		ok    bool
		retry time.Duration
	}{
		{0, true, 0}, {50 * time.Millisecond, false, 50 * time.Millisecond},
		{100 * time.Millisecond, true, 0}, {150 * time.Millisecond, false, 50 * time.Millisecond},
		{199 * time.Millisecond, false, time.Millisecond}, {200 * time.Millisecond, true, 0},
		{1 * time.Second, true, 0},
	}
	for _, st := range steps {
		d, err := s.Take(context.Background(), "k", l, 1, t0.Add(st.at))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != st.ok || d.RetryAfter != st.retry || d.Delay != 0 {
			t.Errorf("at %v: %+v, want allowed=%v retry=%v", st.at, d, st.ok, st.retry)
		}
	}
}

// 60r/m is one request per second.
func TestNginxPerMinute(t *testing.T) {
	s := NewLocalStore(0)
	l := mustParse(t, "rate=60r/m")
	if d := burstAt(t, s, "k", l, 2, t0); !d[0].Allowed || d[1].Allowed || d[1].RetryAfter != time.Second {
		t.Fatalf("got %+v", d)
	}
	if d := burstAt(t, s, "k", l, 1, t0.Add(time.Second)); !d[0].Allowed {
		t.Fatal("second request one second later refused")
	}
}

func TestNeverFits(t *testing.T) {
	s := NewLocalStore(0)
	l := rate.PerSecond(100, 999).NoDelay() // capacity 1000
	ctx := context.Background()
	d, err := s.Take(ctx, "k", l, 1001, t0)
	if err != nil || d.Allowed || !d.NeverFits || d.RetryAfter != 0 {
		t.Fatalf("cost above capacity: %+v, %v; want NeverFits without retry", d, err)
	}
	if d.Remaining != 1000 {
		t.Fatalf("a NeverFits refusal took something: remaining %d", d.Remaining)
	}
	// Exactly the capacity fits an idle bucket; while it is partly used,
	// the same cost is an ordinary, retryable refusal.
	if d, _ := s.Take(ctx, "k", l, 1000, t0); !d.Allowed {
		t.Fatalf("cost == capacity refused: %+v", d)
	}
	d, _ = s.Take(ctx, "k", l, 1000, t0.Add(time.Second))
	if d.Allowed || d.NeverFits || d.RetryAfter != 9*time.Second {
		t.Fatalf("refill pending: %+v, want retry after 9s", d)
	}
}

func TestDecisionFields(t *testing.T) {
	s := NewLocalStore(0)
	l := rate.PerSecond(10, 4).NoDelay() // capacity 5, 100ms per unit
	ctx := context.Background()
	d, _ := s.Take(ctx, "k", l, 2, t0)
	if d.Limit != 5 || d.Remaining != 3 || d.Reset != 200*time.Millisecond {
		t.Fatalf("after 2 of 5: %+v", d)
	}
	d, _ = s.Take(ctx, "k", l, 0, t0.Add(50*time.Millisecond))
	if !d.Allowed || d.Remaining != 3 || d.Reset != 150*time.Millisecond {
		t.Fatalf("cost 0 probe: %+v", d)
	}
	d, _ = s.Take(ctx, "k", l, 0, t0.Add(time.Second))
	if d.Remaining != 5 || d.Reset != 0 {
		t.Fatalf("idle: %+v", d)
	}
}

// Charges after the fact: a refund gives units back (never beyond full),
// an extra charge can push the bucket into debt (all of it, up to
// rate.MaxRefill beyond empty), which later takes wait out.
func TestChargeAndRefund(t *testing.T) {
	s := NewLocalStore(0)
	l := rate.PerSecond(10, 9).NoDelay() // capacity 10
	ctx := context.Background()
	s.Take(ctx, "k", l, 8, t0)
	if d, _ := s.Charge(ctx, "k", l, -5, t0); d.Remaining != 7 {
		t.Fatalf("after refund of 5: remaining %d, want 7", d.Remaining)
	}
	if d, _ := s.Charge(ctx, "k", l, -100, t0); d.Remaining != 10 || d.Reset != 0 {
		t.Fatalf("over-refund: %+v, want a full bucket", d)
	}
	if s.Len() != 0 {
		t.Fatalf("a full bucket is still stored (%d keys)", s.Len())
	}
	if d, _ := s.Charge(ctx, "k", l, 1000, t0); !d.Allowed || d.Remaining != 0 || d.Reset != 100*time.Second {
		t.Fatalf("charge beyond capacity: %+v, want all of it owed (reset 1m40s)", d)
	}
	d, _ := s.Take(ctx, "k", l, 1, t0.Add(time.Second))
	if d.Allowed || d.RetryAfter != 98100*time.Millisecond {
		t.Fatalf("in debt: %+v, want refused for 98.1s more", d)
	}
	// An absurd charge (a usage report of 2^40) is held to rate.MaxRefill
	// of refill beyond empty.
	if d, _ := s.Charge(ctx, "k", l, 1<<40, t0); d.Reset != time.Second+rate.MaxRefill {
		t.Fatalf("absurd charge: reset %v, want %v", d.Reset, time.Second+rate.MaxRefill)
	}
}

func TestLocalEvictionBound(t *testing.T) {
	s := NewLocalStore(640) // 10 per shard
	l := rate.PerSecond(1, 0)
	ctx := context.Background()
	for i := range 10_000 {
		if _, err := s.Take(ctx, string(rune('a'+i%26))+time.Duration(i).String(), l, 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n > 640 {
		t.Fatalf("%d keys held, bound is 640", n)
	}
	// Idle buckets are dropped first and lose nothing: a later key sees a
	// full bucket either way.
	later := t0.Add(time.Hour)
	for i := range 1000 {
		d, _ := s.Take(ctx, "new"+time.Duration(i).String(), l, 1, later)
		if !d.Allowed {
			t.Fatal("fresh key refused")
		}
	}
	if n := s.Len(); n > 640 {
		t.Fatalf("%d keys held after idle eviction", n)
	}
}
