package breaker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

func TestDefaults(t *testing.T) {
	got := New(Settings{}).Settings()
	want := Settings{
		Window: DefaultWindow, Buckets: DefaultBuckets, MinRequests: DefaultMinRequests,
		FailureRatio: DefaultFailureRatio, SlowRatio: DefaultSlowRatio,
		OpenFor: DefaultOpenFor, MaxOpenFor: DefaultOpenFor * DefaultMaxOpenFactor,
		HalfOpenProbes: DefaultHalfOpenProbes,
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	neg := New(Settings{Window: -1, Buckets: -1, SlowCall: -1, OpenFor: time.Minute, MaxOpenFor: time.Second}).Settings()
	if neg.Window != DefaultWindow || neg.Buckets != DefaultBuckets || neg.SlowCall != 0 {
		t.Errorf("negative fields not defaulted: %+v", neg)
	}
	if neg.MaxOpenFor != time.Minute {
		t.Errorf("MaxOpenFor below OpenFor = %v, want OpenFor (fixed open time)", neg.MaxOpenFor)
	}
}

func TestOpenForBackoff(t *testing.T) {
	s := testSettings().withDefaults() // 5 s doubling, capped at 20 s
	for trips, want := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 4: 20 * time.Second, 100: 20 * time.Second,
	} {
		if got := s.openFor(trips); got != want {
			t.Errorf("openFor(%d) = %v, want %v", trips, got, want)
		}
	}
	huge := Settings{OpenFor: time.Second, MaxOpenFor: 1<<63 - 1}.withDefaults()
	if got := huge.openFor(200); got <= 0 {
		t.Errorf("openFor overflowed: %v", got)
	}
}

// TestTrip drives a fresh breaker (testSettings: MinRequests 10, ratios 0.5,
// SlowCall 1 s) with calls all at one instant and checks the state after.
func TestTrip(t *testing.T) {
	cases := []struct {
		name   string
		adjust func(*Settings)
		evs    []ev
		want   State
	}{
		{"min requests gate: 9 failures stay closed", nil, repeat(9, evFail), Closed},
		{"min requests reached: 10 failures open", nil, repeat(10, evFail), Open},
		{"error ratio below threshold", nil, seq(repeat(6, evOK), repeat(4, evFail)), Closed},
		{"error ratio at threshold trips", nil, seq(repeat(5, evOK), repeat(5, evFail)), Open},
		{"error ratio judged over the window, not a streak", nil, seq(repeat(20, evOK), repeat(19, evFail)), Closed},
		{"slow ratio below threshold", nil, seq(repeat(6, evOK), repeat(4, evSlow)), Closed},
		{"slow ratio at threshold trips", nil, seq(repeat(5, evOK), repeat(5, evSlow)), Open},
		{"latency equal to SlowCall is not slow", nil, repeat(10, ev{outcome.Success, time.Second}), Closed},
		{"slow failures count as slow", func(s *Settings) { s.FailureRatio = 2 },
			seq(repeat(5, evOK), repeat(5, ev{outcome.Failure, 5 * time.Second})), Open},
		{"slow detection off without SlowCall", func(s *Settings) { s.SlowCall = 0 }, repeat(50, evSlow), Closed},
		{"FailureRatio above 1 disables error trip", func(s *Settings) { s.FailureRatio = 1.5 }, repeat(50, evFail), Closed},
		{"busy never trips", nil, repeat(500, evBusy), Closed},
		{"busy does not reach the min-requests gate", nil, seq(repeat(50, evBusy), repeat(9, evFail)), Closed},
		{"busy does not dilute the error ratio", nil, seq(repeat(100, evBusy), repeat(5, evOK), repeat(5, evFail)), Open},
		{"busy does not count as slow", nil, seq(repeat(100, evBusy), repeat(10, evOK)), Closed},
		{"ignored counts nothing", nil, seq(repeat(100, evIgn), repeat(9, evFail)), Closed},
		{"unknown outcome counts nothing", nil, seq(repeat(100, ev{outcome.Outcome(99), 0}), repeat(9, evFail)), Closed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			if tc.adjust != nil {
				tc.adjust(&s)
			}
			b := New(s)
			for _, e := range tc.evs {
				if !call(b, t0, e) {
					break // opened mid-sequence; the state check below judges it
				}
			}
			if got := b.State(t0); got != tc.want {
				t.Errorf("state = %v, want %v (stats %+v)", got, tc.want, b.Stats(t0))
			}
		})
	}
}

func TestBusyIsTalliedButNotCounted(t *testing.T) {
	b := New(testSettings())
	run(t, b, t0, seq(repeat(7, evBusy), repeat(3, evOK)))
	st := b.Stats(t0)
	if st.Busy != 7 || st.Window.Calls != 3 || st.Window.Slow != 0 {
		t.Errorf("stats = %+v, want Busy 7, 3 calls, 0 slow", st)
	}
}

// TestWindowSlides checks that old buckets leave the window (Window 10 s in
// 1 s buckets).
func TestWindowSlides(t *testing.T) {
	cases := []struct {
		name string
		gap  time.Duration // between 5 failures and 5 more
		want State
	}{
		{"both halves inside the window", 5 * time.Second, Open},
		{"just inside: 9 buckets later", 9 * time.Second, Open},
		{"first half slid out", 10 * time.Second, Closed},
		{"long idle", time.Hour, Closed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := New(testSettings())
			run(t, b, t0, repeat(5, evFail))
			later := t0.Add(tc.gap)
			for range 5 {
				call(b, later, evFail)
			}
			if got := b.State(later); got != tc.want {
				t.Errorf("state = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOpenRejectsUntilOpenFor(t *testing.T) {
	rec := &transitions{}
	s := testSettings()
	s.OnStateChange = rec.hook
	b := New(s)
	at := trip(t, b, t0)
	for _, d := range []time.Duration{0, time.Second, 5*time.Second - 1} {
		now := at.Add(d)
		if _, ok := b.Allow(now); ok {
			t.Errorf("Allow at +%v admitted while open", d)
		}
		if b.Ready(now) || b.State(now) != Open {
			t.Errorf("at +%v: Ready %v State %v, want false/open", d, b.Ready(now), b.State(now))
		}
	}
	now := at.Add(5 * time.Second)
	if b.State(now) != HalfOpen || !b.Ready(now) {
		t.Fatalf("at OpenFor: State %v Ready %v, want half-open/true", b.State(now), b.Ready(now))
	}
	if _, ok := b.Allow(now); !ok {
		t.Fatal("Allow at OpenFor refused")
	}
	if got, want := rec.list(), []string{"closed>open", "open>half-open"}; !slices.Equal(got, want) {
		t.Errorf("transitions = %v, want %v", got, want)
	}
	if st := b.Stats(now); st.Trips != 1 {
		t.Errorf("Trips = %d, want 1", st.Trips)
	}
}

func TestHalfOpenAdmitsExactlyProbes(t *testing.T) {
	for _, probes := range []int{1, 2, 5} {
		s := testSettings()
		s.HalfOpenProbes = probes
		b := New(s)
		now := trip(t, b, t0).Add(s.OpenFor)
		var dones []Done
		for range probes {
			d, ok := b.Allow(now)
			if !ok {
				t.Fatalf("probes=%d: trial %d refused", probes, len(dones)+1)
			}
			dones = append(dones, d)
		}
		if _, ok := b.Allow(now); ok || b.Ready(now) {
			t.Fatalf("probes=%d: admitted a trial beyond the limit", probes)
		}
		// Successes so far do not free slots: exactly probes trials decide.
		for i, d := range dones {
			d(now, outcome.Success, 0)
			if i < probes-1 {
				if b.State(now) != HalfOpen {
					t.Fatalf("probes=%d: closed after %d successes", probes, i+1)
				}
				if _, ok := b.Allow(now); ok {
					t.Fatalf("probes=%d: admitted extra trial after %d successes", probes, i+1)
				}
			}
		}
		if b.State(now) != Closed {
			t.Fatalf("probes=%d: state %v after all trials succeeded, want closed", probes, b.State(now))
		}
		if st := b.Stats(now); st.Window.Calls != 0 {
			t.Errorf("probes=%d: window not reset on close: %+v", probes, st.Window)
		}
		// A fresh window: one failure right after closing does not reopen.
		call(b, now, evFail)
		if b.State(now) != Closed {
			t.Errorf("probes=%d: reopened on the old window", probes)
		}
	}
}

func TestHalfOpenBusyOrIgnoredFreesSlot(t *testing.T) {
	for _, e := range []ev{evBusy, evIgn} {
		s := testSettings()
		s.HalfOpenProbes = 1
		b := New(s)
		now := trip(t, b, t0).Add(s.OpenFor)
		d, ok := b.Allow(now)
		if !ok {
			t.Fatal("trial refused")
		}
		d(now, e.o, e.lat)
		if b.State(now) != HalfOpen {
			t.Fatalf("%v trial changed state to %v", e.o, b.State(now))
		}
		if !call(b, now, evOK) {
			t.Fatalf("slot not freed after a %v trial", e.o)
		}
		if b.State(now) != Closed {
			t.Errorf("state %v after a successful trial, want closed", b.State(now))
		}
	}
}

func TestHalfOpenFailureReopensWithBackoff(t *testing.T) {
	rec := &transitions{}
	s := testSettings()
	s.HalfOpenProbes = 1
	s.OnStateChange = rec.hook
	b := New(s)
	now := trip(t, b, t0)
	// OpenFor 5 s, doubling to the 20 s cap; the last trial is slow, which
	// counts as a failed trial.
	trials := []ev{evFail, evFail, evFail, evSlow}
	wantOpen := []time.Duration{5, 10, 20, 20, 20}
	for i, w := range wantOpen {
		openFor := w * time.Second
		if b.Ready(now.Add(openFor - 1)) {
			t.Fatalf("round %d: ready before %v", i, openFor)
		}
		now = now.Add(openFor)
		if i == len(trials) {
			break
		}
		if !call(b, now, trials[i]) {
			t.Fatalf("round %d: trial refused at +%v", i, openFor)
		}
		if b.State(now) != Open {
			t.Fatalf("round %d: state %v after failed trial, want open", i, b.State(now))
		}
	}
	// A success closes and resets the back-off: the next trip is 5 s again.
	if !call(b, now, evOK) || b.State(now) != Closed {
		t.Fatalf("success did not close: %v", b.State(now))
	}
	now = trip(t, b, now)
	if b.Ready(now.Add(5*time.Second-1)) || !b.Ready(now.Add(5*time.Second)) {
		t.Error("back-off not reset after close")
	}
	if st := b.Stats(now); st.Trips != 6 || st.OpenUntil != now.Add(5*time.Second) {
		t.Errorf("stats = %+v, want 6 trips, open until +5s", st)
	}
	got := rec.list()
	if len(got) != 12 || got[0] != "closed>open" || got[10] != "half-open>closed" || got[11] != "closed>open" {
		t.Errorf("transitions = %v", got)
	}
}

func TestStaleReportsDropped(t *testing.T) {
	s := testSettings()
	s.HalfOpenProbes = 2
	b := New(s)
	// 20 calls admitted while closed, reported after the breaker has cycled
	// open → half-open → closed: they belong to a finished period.
	var old []Done
	for range 20 {
		d, _ := b.Allow(t0)
		old = append(old, d)
	}
	now := trip(t, b, t0).Add(s.OpenFor)
	p1, _ := b.Allow(now)
	p2, _ := b.Allow(now)
	p1(now, outcome.Success, 0)
	p1(now, outcome.Failure, 0) // a second report of the same trial is ignored
	if b.State(now) != HalfOpen {
		t.Fatalf("double report changed state to %v", b.State(now))
	}
	p2(now, outcome.Success, 0)
	if b.State(now) != Closed {
		t.Fatalf("state %v, want closed", b.State(now))
	}
	for _, d := range old {
		d(now, outcome.Failure, 0)
	}
	if b.State(now) != Closed || b.Stats(now).Window.Calls != 0 {
		t.Errorf("stale reports counted: %+v", b.Stats(now))
	}
}

// TestReadyHasNoSideEffects asks Ready and State many times in every state
// and checks that nothing moved: no transition, no trial slot taken.
func TestReadyHasNoSideEffects(t *testing.T) {
	rec := &transitions{}
	s := testSettings()
	s.OnStateChange = rec.hook
	b := New(s)
	poll := func(now time.Time) {
		for range 100 {
			b.Ready(now)
			b.State(now)
			b.Stats(now)
		}
	}
	poll(t0)
	at := trip(t, b, t0)
	poll(at)
	expired := at.Add(time.Hour)
	poll(expired)
	if got := rec.list(); !slices.Equal(got, []string{"closed>open"}) {
		t.Fatalf("Ready/State caused transitions: %v", got)
	}
	for i := range s.HalfOpenProbes {
		if _, ok := b.Allow(expired); !ok {
			t.Fatalf("trial %d refused after polling", i)
		}
		poll(expired)
	}
	if _, ok := b.Allow(expired); ok {
		t.Error("polling changed the trial limit")
	}
}
