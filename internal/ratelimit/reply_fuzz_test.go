package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// FuzzScriptReply drives replyDecision, the Go side of gcra.lua's reply
// (six integers off Redis), with any six (or fewer, or more) integers and
// with the replies the script itself makes: gcra, its line-by-line twin,
// on fuzzed bucket states. Properties: no panic; a reply the script
// cannot make is errReply, never a decision; a reply it made reads back
// as the outcome it encodes (round trip); an accepted decision has
// 0 <= Remaining <= Limit and no wait negative or past maxReplyMicros.
func FuzzScriptReply(f *testing.F) {
	f.Add(int64(1), int64(0), int64(0), int64(0), int64(5), int64(1000), uint16(5), uint8(6), 0.0, 0.0, int64(1), false)
	f.Add(int64(0), int64(0), int64(0), int64(166667), int64(0), int64(1000000), uint16(5), uint8(6), 5e6, 0.0, int64(1), false)
	f.Add(int64(0), int64(1), int64(0), int64(0), int64(3), int64(0), uint16(2), uint8(6), 0.0, 0.0, int64(9), false)
	f.Add(int64(1), int64(0), int64(1<<62), int64(0), int64(0), int64(0), uint16(1), uint8(6), 1e12, 0.0, int64(1<<40), true)
	f.Add(int64(1), int64(0), int64(0), int64(0), int64(-1), int64(0), uint16(0), uint8(5), 0.0, 0.0, int64(0), false)
	f.Fuzz(func(t *testing.T, a, nf, delay, retry, remain, reset int64, burst uint16, n uint8, tat, now float64, cost int64, force bool) {
		l := Limit{Rate: 10, Burst: int64(burst)}
		op := Op{Key: "k", Limit: l}
		v := []int64{a, nf, delay, retry, remain, reset, a}[:min(int(n%8), 7)]
		d, err := replyDecision(op, v)
		if err != nil {
			if !errors.Is(err, errReply) {
				t.Fatalf("reply %v: error %v is not errReply", v, err)
			}
		} else {
			checkDecision(t, v, d, l)
		}

		// The script's own replies are always read, and read as made.
		if cost < 0 || tat != tat || now != now || tat < 0 || now < 0 || tat > 1e15 || now > 1e15 {
			return
		}
		cost = min(cost, 1<<40)
		_, _, o := gcra(tat, true, now, paramsOf(l), cost, force)
		b2i := func(b bool) int64 {
			if b {
				return 1
			}
			return 0
		}
		made := []int64{b2i(o.allowed), b2i(o.neverFits), o.delay, o.retry, o.remain, o.reset}
		got, err := replyDecision(op, made)
		if err != nil {
			// A bucket is at most span+maxDebt ahead, both at most
			// rate.MaxRefill (twice that read under a limit a reload
			// shortened); only states past it may be refused.
			if tat-now <= 2*maxDebt {
				t.Fatalf("the script's reply %v (tat %v now %v cost %d force %v) refused: %v", made, tat, now, cost, force, err)
			}
			return
		}
		if want := o.decision(l); got != want {
			t.Fatalf("reply %v read as %+v, want %+v", made, got, want)
		}
	})
}

func checkDecision(t *testing.T, v []int64, d Decision, l Limit) {
	t.Helper()
	if d.Remaining < 0 || d.Remaining > l.Capacity() {
		t.Fatalf("reply %v: Remaining %d outside 0..%d", v, d.Remaining, l.Capacity())
	}
	bound := time.Duration(maxReplyMicros) * time.Microsecond
	for name, w := range map[string]time.Duration{"Delay": d.Delay, "RetryAfter": d.RetryAfter, "Reset": d.Reset} {
		if w < 0 || w > bound {
			t.Fatalf("reply %v: %s %v outside 0..%v", v, name, w, bound)
		}
	}
	if d.Allowed && d.NeverFits {
		t.Fatalf("reply %v: allowed and never fits", v)
	}
}

// A Redis whose script answers what gcra.lua cannot (here a delay of
// 2^62 µs, and a negative count) is answered as a store error, the
// failure mode's case, not read as a decision: the old parse read the
// delay as written and the gateway paced the request for 292 years, until
// its client gave up. The script is swapped by NewRedisStore's source, so
// the reply comes through a real Redis and rueidis as gcra.lua's would.
func TestImpossibleScriptReplyIsAnError(t *testing.T) {
	srv := redistest.Start(t).Addr
	real := gcraScript
	t.Cleanup(func() { gcraScript = real })
	for _, reply := range []string{"{1,0,4611686018427387904,0,0,0}", "{1,0,0,0,-3,0}", "{2,0,0,0,0,0}"} {
		gcraScript = "return " + reply
		s := NewRedisStore(newClient(t, srv), RedisOptions{})
		d, err := s.Take(context.Background(), "k", Limit{Rate: 10, Burst: 5}, 1, time.Unix(1000, 0))
		if !errors.Is(err, errReply) {
			t.Errorf("script reply %s: decision %+v, err %v; want errReply", reply, d, err)
		}
	}
}
