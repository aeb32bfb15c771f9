package ratelimit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/rate"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// A decision's Remaining is what a take of that many gets: the take of
// exactly Remaining is allowed and of one more refused, at the instant it
// was told and on either store. The count of what is left forgave the
// clock's float rounding a thousandth of a unit that the refusal did not,
// so a take of exactly all that was left could be refused (1,000 tokens a
// minute, 281 then 600 taken: 119 left, a take of 119 refused).
func TestRemainingIsWhatATakeGets(t *testing.T) {
	checkRemainingIsWhatATakeGets(t, NewLocalStore(0), 4000)
}

func TestRedisRemainingIsWhatATakeGets(t *testing.T) {
	srv := redistest.Start(t)
	checkRemainingIsWhatATakeGets(t, NewRedisStore(newClient(t, srv.Addr), RedisOptions{CallerClock: true}), 1500)
}

// checkRemainingIsWhatATakeGets charges random buckets with random takes at
// random instants (never into debt: only takes, which fit), then at a later
// random instant asks for their state (a take of 0) and takes Remaining+1,
// which must be refused, and Remaining, which must be allowed.
func checkRemainingIsWhatATakeGets(t *testing.T, s Store, cases int) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	take := func(key string, l Limit, cost int64, now time.Time) Decision {
		t.Helper()
		d, err := s.Take(ctx, key, l, cost, now)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	partial := 0
	for i := range cases {
		var l Limit
		if rng.IntN(2) == 0 { // a token limit as the config makes it: n a minute, all at once
			n := 1 + rng.Int64N(1_000_000)
			l = Limit{Rate: float64(n) / 60, Burst: n - 1, Delay: rate.NoDelay}
		} else { // a request limit at an awkward rate
			l = Limit{Rate: 0.01 + rng.Float64()*500, Burst: rng.Int64N(50), Delay: rng.Int64N(3) - 1}
		}
		key := "p" + strconv.Itoa(i)
		at := t0.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		for range 1 + rng.IntN(3) {
			take(key, l, rng.Int64N(l.Capacity()+1), at)
			at = at.Add(time.Duration(rng.Int64N(int64(float64(l.Capacity())/l.Rate*float64(time.Second)/4) + 1)))
		}
		told := take(key, l, 0, at)
		if !told.Allowed {
			t.Fatalf("case %d %+v: a take of 0 refused: %+v", i, l, told)
		}
		if told.Remaining > 0 && told.Remaining < l.Capacity() {
			partial++
		}
		if d := take(key, l, told.Remaining+1, at); d.Allowed {
			t.Fatalf("case %d %+v: %d left, a take of %d allowed: %+v", i, l, told.Remaining, told.Remaining+1, d)
		}
		if d := take(key, l, told.Remaining, at); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("case %d %+v: %d left, a take of that many: %+v", i, l, told.Remaining, d)
		}
	}
	if partial < cases/4 {
		t.Fatalf("only %d of %d buckets partly used: the cases prove little", partial, cases)
	}
}
