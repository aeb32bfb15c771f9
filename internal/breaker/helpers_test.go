package breaker

import (
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// t0 is the fake clock's origin; tests pass explicit times and never sleep.
var t0 = time.Unix(1_700_000_000, 0)

// testSettings are small, round numbers so the tables read easily.
func testSettings() Settings {
	return Settings{
		Window:         10 * time.Second,
		Buckets:        10,
		MinRequests:    10,
		FailureRatio:   0.5,
		SlowCall:       time.Second,
		SlowRatio:      0.5,
		OpenFor:        5 * time.Second,
		MaxOpenFor:     20 * time.Second,
		HalfOpenProbes: 2,
	}
}

// ev is one call: its outcome and latency.
type ev struct {
	o   outcome.Outcome
	lat time.Duration
}

func repeat(n int, e ev) []ev {
	out := make([]ev, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func seq(parts ...[]ev) []ev {
	var out []ev
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	evOK   = ev{outcome.Success, 10 * time.Millisecond}
	evFail = ev{outcome.Failure, 10 * time.Millisecond}
	evSlow = ev{outcome.Success, 2 * time.Second}
	evBusy = ev{outcome.Busy, 30 * time.Second} // a slow 503 must not count as slow either
	evIgn  = ev{outcome.Ignored, 30 * time.Second}
)

// call sends one call at now and reports it at once; false if refused.
func call(b *Breaker, now time.Time, e ev) bool {
	done, ok := b.Allow(now)
	if !ok {
		return false
	}
	done(now, e.o, e.lat)
	return true
}

// run sends every event at now and fails the test if one is refused.
func run(t *testing.T, b *Breaker, now time.Time, evs []ev) {
	t.Helper()
	for i, e := range evs {
		if !call(b, now, e) {
			t.Fatalf("event %d refused (state %v)", i, b.State(now))
		}
	}
}

// trip sends failures until b opens, and returns that time.
func trip(t *testing.T, b *Breaker, now time.Time) time.Time {
	t.Helper()
	for i := 0; i < 1000 && b.State(now) == Closed; i++ {
		call(b, now, evFail)
	}
	if got := b.State(now); got != Open {
		t.Fatalf("could not trip: state %v", got)
	}
	return now
}

// transitions records OnStateChange calls.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (r *transitions) hook(from, to State) {
	r.mu.Lock()
	r.got = append(r.got, from.String()+">"+to.String())
	r.mu.Unlock()
}

func (r *transitions) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}
