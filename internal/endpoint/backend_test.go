package endpoint

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustNew(t testing.TB, spec Spec, p HealthPolicy) *Backend {
	t.Helper()
	b, err := New(spec, p)
	if err != nil {
		t.Fatalf("New(%+v): %v", spec, err)
	}
	return b
}

func TestNew(t *testing.T) {
	tests := []struct {
		url        string
		wantErr    bool
		wantName   string
		wantPath   string
		weight     int
		wantWeight int
	}{
		{url: "", wantErr: true},
		{url: "://nohost", wantErr: true},
		{url: "http://h:bad%port", wantErr: true},
		{url: "ftp://h:21", wantErr: true},
		{url: "localhost:8000", wantErr: true}, // parses as scheme "localhost"
		{url: "h:8000/v1", wantErr: true},
		{url: "http://", wantErr: true},
		{url: "http:///v1", wantErr: true},
		{url: "/v1/chat", wantErr: true},
		{url: "http://h:8000", wantName: "h:8000", wantPath: "", wantWeight: 1},
		{url: "https://h/v1/", wantName: "h/v1", wantPath: "/v1", weight: 3, wantWeight: 3},
		{url: "http://10.0.0.1:8000/", wantName: "10.0.0.1:8000", wantPath: "", weight: -2, wantWeight: 1},
	}
	for _, tt := range tests {
		b, err := New(Spec{URL: tt.url, Weight: tt.weight}, HealthPolicy{})
		if tt.wantErr {
			if err == nil {
				t.Errorf("New(%q) = nil error, want error", tt.url)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tt.url, err)
			continue
		}
		if b.Name() != tt.wantName || b.Target().Path != tt.wantPath || b.Weight() != tt.wantWeight {
			t.Errorf("New(%q): name %q path %q weight %d, want %q %q %d",
				tt.url, b.Name(), b.Target().Path, b.Weight(), tt.wantName, tt.wantPath, tt.wantWeight)
		}
		if s := b.State(t0); s != StateHealthy || !b.Usable(t0) {
			t.Errorf("New(%q): starts %v, want healthy", tt.url, s)
		}
	}
}

func TestAcquireRelease(t *testing.T) {
	tests := []struct {
		max, tries, wantOK int
	}{
		{max: 0, tries: 100, wantOK: 100}, // 0 = unlimited
		{max: 1, tries: 3, wantOK: 1},
		{max: 3, tries: 5, wantOK: 3},
	}
	for _, tt := range tests {
		b := mustNew(t, Spec{URL: "http://h", MaxConcurrency: tt.max}, HealthPolicy{})
		ok := 0
		for range tt.tries {
			if b.Acquire() {
				ok++
			}
		}
		if ok != tt.wantOK || b.Inflight() != int64(ok) || b.Requests() != uint64(ok) {
			t.Fatalf("max %d: %d acquired, inflight %d, requests %d; want %d", tt.max, ok, b.Inflight(), b.Requests(), tt.wantOK)
		}
		if tt.max > 0 && b.HasCapacity() {
			t.Errorf("max %d: HasCapacity true at the cap", tt.max)
		}
		b.Release(t0, outcome.Success, time.Millisecond, 0)
		if b.Inflight() != int64(ok-1) || !b.HasCapacity() {
			t.Errorf("max %d: after Release inflight %d, capacity %v", tt.max, b.Inflight(), b.HasCapacity())
		}
		if !b.Acquire() {
			t.Errorf("max %d: Acquire failed after Release freed a slot", tt.max)
		}
	}
}

// TestAcquireConcurrent hammers Acquire/Release; run with -race. The cap
// must hold at every instant, and the counters must balance at the end.
func TestAcquireConcurrent(t *testing.T) {
	const limit, workers, iters = 4, 32, 500
	b := mustNew(t, Spec{URL: "http://h", MaxConcurrency: limit}, HealthPolicy{})
	var active, acquired atomic.Int64
	var over atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range iters {
				if !b.Acquire() {
					continue
				}
				acquired.Add(1)
				// active counts holders between Acquire and Release, so it
				// can never exceed the real in-flight count.
				if n := active.Add(1); n > limit || b.Inflight() > limit {
					over.Store(true)
				}
				active.Add(-1)
				b.Release(t0, outcome.Success, time.Millisecond, 0)
			}
		})
	}
	wg.Wait()
	if over.Load() {
		t.Errorf("more than %d requests held at once", limit)
	}
	if b.Inflight() != 0 {
		t.Errorf("inflight = %d after all releases, want 0", b.Inflight())
	}
	if b.Requests() != uint64(acquired.Load()) || acquired.Load() == 0 {
		t.Errorf("requests = %d, acquired = %d", b.Requests(), acquired.Load())
	}
}

type event struct {
	at         time.Duration
	out        outcome.Outcome
	retryAfter time.Duration
}

type check struct {
	at   time.Duration
	want State
}

func failures(offsets ...time.Duration) []event {
	ev := make([]event, len(offsets))
	for i, o := range offsets {
		ev[i] = event{at: o, out: outcome.Failure}
	}
	return ev
}

// TestPassiveHealth replays outcomes at explicit times and checks the state
// at explicit times: nginx max_fails/fail_timeout plus the busy penalty.
func TestPassiveHealth(t *testing.T) {
	const s = time.Second
	nginx := HealthPolicy{MaxFails: 3, FailTimeout: 10 * s, BusyPenalty: 2 * s}
	growing := HealthPolicy{MaxFails: 2, FailTimeout: 10 * s, MaxEjectionTime: 35 * s}
	tests := []struct {
		name   string
		policy HealthPolicy
		events []event
		checks []check
	}{
		{"max_fails within fail_timeout ejects for fail_timeout", nginx,
			failures(0, 1*s, 2*s),
			[]check{{2 * s, StateEjected}, {12*s - 1, StateEjected}, {12 * s, StateHealthy}}},
		{"fewer than max_fails stays healthy", nginx,
			failures(0, 1*s),
			[]check{{1 * s, StateHealthy}}},
		{"failures spread wider than fail_timeout do not eject", nginx,
			failures(0, 6*s, 12*s, 18*s, 24*s),
			[]check{{24 * s, StateHealthy}}},
		{"failures exactly fail_timeout apart are within it", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s},
			failures(0, 10*s),
			[]check{{10 * s, StateEjected}, {20*s - 1, StateEjected}, {20 * s, StateHealthy}}},
		{"a burst straddling an earlier window still ejects", nginx,
			failures(0, 9*s, 11*s, 12*s), // 9s, 11s, 12s: three within 3s
			[]check{{12 * s, StateEjected}, {22 * s, StateHealthy}}},
		{"the first failure after an ejection ejects again (nginx)", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s},
			failures(0, 1*s, 12*s),
			[]check{{11*s - 1, StateEjected}, {12 * s, StateEjected}, {22*s - 1, StateEjected}, {22 * s, StateHealthy}}},
		{"an answer after an ejection restores max_fails", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s},
			[]event{{0, outcome.Failure, 0}, {1 * s, outcome.Failure, 0}, {12 * s, outcome.Success, 0}, {13 * s, outcome.Failure, 0}},
			[]check{{13 * s, StateHealthy}}},
		{"max_ejection_time: the second ejection in a row lasts 2 × fail_timeout (Envoy)", growing,
			failures(0, 1*s, 12*s), // back at 11s, its first request fails
			[]check{{32*s - 1, StateEjected}, {32 * s, StateHealthy}}},
		{"max_ejection_time: the third 3 × fail_timeout", growing,
			failures(0, 1*s, 12*s, 33*s), // back at 11s and 32s
			[]check{{63*s - 1, StateEjected}, {63 * s, StateHealthy}}},
		{"max_ejection_time: the fourth capped at max_ejection_time", growing,
			failures(0, 1*s, 12*s, 33*s, 64*s), // back at 11s, 32s, 63s
			[]check{{99*s - 1, StateEjected}, {99 * s, StateHealthy}}},
		{"max_ejection_time: a failure during a grown ejection restarts it, not grows it", growing,
			failures(0, 1*s, 12*s, 20*s),
			[]check{{40*s - 1, StateEjected}, {40 * s, StateHealthy}}},
		{"max_ejection_time: an answer ends the run", growing,
			[]event{{0, outcome.Failure, 0}, {1 * s, outcome.Failure, 0}, {12 * s, outcome.Failure, 0}, {32 * s, outcome.Success, 0},
				{33 * s, outcome.Failure, 0}, {34 * s, outcome.Failure, 0}, {44 * s, outcome.Failure, 0}},
			[]check{{34 * s, StateEjected}, {44*s - 1, StateEjected}, {44 * s, StateEjected}, {64*s - 1, StateEjected}, {64 * s, StateHealthy}}},
		{"max_ejection_time at most fail_timeout: nginx", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s, MaxEjectionTime: 10 * s},
			failures(0, 1*s, 12*s, 23*s),
			[]check{{33*s - 1, StateEjected}, {33 * s, StateHealthy}}},
		{"a failure during the ejection runs it fail_timeout from then", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s},
			failures(0, 1*s, 5*s),
			[]check{{11 * s, StateEjected}, {15*s - 1, StateEjected}, {15 * s, StateHealthy}}},
		{"a busy answer after an ejection is no answer", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s, BusyPenalty: s},
			[]event{{0, outcome.Failure, 0}, {1 * s, outcome.Failure, 0}, {12 * s, outcome.Busy, 0}, {14 * s, outcome.Failure, 0}},
			[]check{{14 * s, StateEjected}, {24*s - 1, StateEjected}}},
		{"a success does not reset the window", HealthPolicy{MaxFails: 2, FailTimeout: 10 * s},
			[]event{{0, outcome.Failure, 0}, {1 * s, outcome.Success, 0}, {2 * s, outcome.Failure, 0}},
			[]check{{2 * s, StateEjected}}},
		{"max_fails 1 ejects on the first failure", HealthPolicy{MaxFails: 1, FailTimeout: 5 * s},
			failures(3 * s),
			[]check{{3 * s, StateEjected}, {8 * s, StateHealthy}}},
		{"max_fails 0 never ejects", HealthPolicy{MaxFails: 0, FailTimeout: 10 * s},
			failures(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1*s, 2*s),
			[]check{{2 * s, StateHealthy}}},
		{"busy without Retry-After lasts BusyPenalty", nginx,
			[]event{{0, outcome.Busy, 0}},
			[]check{{0, StateBusy}, {2*s - 1, StateBusy}, {2 * s, StateHealthy}}},
		{"busy honours Retry-After", nginx,
			[]event{{0, outcome.Busy, 5 * s}},
			[]check{{5*s - 1, StateBusy}, {5 * s, StateHealthy}}},
		{"a shorter busy does not shorten a longer one", nginx,
			[]event{{0, outcome.Busy, 5 * s}, {1 * s, outcome.Busy, 1 * s}},
			[]check{{3 * s, StateBusy}, {5 * s, StateHealthy}}},
		{"busy never ejects", HealthPolicy{MaxFails: 1, FailTimeout: 10 * s, BusyPenalty: s},
			[]event{{0, outcome.Busy, 0}, {0, outcome.Busy, 0}, {0, outcome.Busy, 0}, {100 * time.Millisecond, outcome.Busy, 0}},
			[]check{{100 * time.Millisecond, StateBusy}, {2 * s, StateHealthy}}},
		{"ejected outranks busy", HealthPolicy{MaxFails: 1, FailTimeout: 3 * s, BusyPenalty: 10 * s},
			[]event{{0, outcome.Busy, 0}, {1 * s, outcome.Failure, 0}},
			[]check{{1 * s, StateEjected}, {4 * s, StateBusy}, {10 * s, StateHealthy}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, Spec{URL: "http://h"}, tt.policy)
			var nfail uint64
			for _, e := range tt.events {
				b.Observe(at(e.at), e.out, time.Millisecond, e.retryAfter)
				if e.out == outcome.Failure {
					nfail++
				}
			}
			for _, c := range tt.checks {
				if got := b.State(at(c.at)); got != c.want {
					t.Errorf("State(+%v) = %v, want %v", c.at, got, c.want)
				}
				wantUsable := c.want == StateHealthy || c.want == StateBusy
				if got := b.Usable(at(c.at)); got != wantUsable {
					t.Errorf("Usable(+%v) = %v, want %v", c.at, got, wantUsable)
				}
			}
			if b.Failures() != nfail {
				t.Errorf("Failures() = %d, want %d", b.Failures(), nfail)
			}
		})
	}
}

func TestOnlySuccessFeedsLatency(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://h"}, HealthPolicy{MaxFails: 5, FailTimeout: time.Second, BusyPenalty: time.Second})
	b.Observe(t0, outcome.Success, 10*time.Millisecond, 0)
	b.Observe(t0, outcome.Busy, 5*time.Second, 0)
	b.Observe(t0, outcome.Failure, 7*time.Second, 0)
	if got := b.Latency(t0); got != 10*time.Millisecond {
		t.Errorf("Latency = %v after busy and failure outcomes, want 10ms", got)
	}
}

type sample struct {
	at  time.Duration
	lat time.Duration
}

func TestPeakEWMA(t *testing.T) {
	const ms, s = time.Millisecond, time.Second
	decay := func(d time.Duration) float64 { return math.Exp(-float64(d) / float64(ewmaTau)) }
	tests := []struct {
		name    string
		samples []sample
		readAt  time.Duration
		want    time.Duration
		within  time.Duration // tolerance; 0 = exact
		atMost  bool          // want is an upper bound
	}{
		{"no sample reads 0", nil, 0, 0, 0, false},
		{"first sample is taken as is", []sample{{0, 10 * ms}}, 0, 10 * ms, 0, false},
		{"a slower sample is taken at once", []sample{{0, 10 * ms}, {ms, 100 * ms}}, ms, 100 * ms, 0, false},
		{"a faster sample after tau moves 1-1/e of the way",
			[]sample{{0, 100 * ms}, {10 * s, 10 * ms}}, 10 * s,
			time.Duration(10*float64(ms) + 90*float64(ms)*decay(10*s)), time.Microsecond, false},
		{"a faster sample soon after barely moves it",
			[]sample{{0, 100 * ms}, {100 * ms, 10 * ms}}, 100 * ms,
			time.Duration(10*float64(ms) + 90*float64(ms)*decay(100*ms)), time.Microsecond, false},
		{"steady fast samples converge",
			[]sample{{0, 100 * ms}, {10 * s, 10 * ms}, {20 * s, 10 * ms}, {30 * s, 10 * ms}, {40 * s, 10 * ms}, {50 * s, 10 * ms}, {60 * s, 10 * ms}},
			60 * s, 11 * ms, 0, true},
		{"an idle estimate decays, so one slow sample cannot starve a backend",
			[]sample{{0, 5 * s}}, 30 * s,
			time.Duration(5 * float64(s) * decay(30*s)), time.Microsecond, false},
		{"a sample reported out of order does not raise the estimate",
			[]sample{{10 * s, 100 * ms}, {9 * s, 10 * ms}}, 10 * s, 100 * ms, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, Spec{URL: "http://h"}, HealthPolicy{})
			for _, smp := range tt.samples {
				b.Observe(at(smp.at), outcome.Success, smp.lat, 0)
			}
			got := b.Latency(at(tt.readAt))
			switch {
			case tt.atMost && got > tt.want:
				t.Errorf("Latency = %v, want <= %v", got, tt.want)
			case !tt.atMost && (got < tt.want-tt.within || got > tt.want+tt.within):
				t.Errorf("Latency = %v, want %v ± %v", got, tt.want, tt.within)
			}
		})
	}
}

func TestSetProbeHealthy(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://h"}, HealthPolicy{MaxFails: 1, FailTimeout: time.Minute, BusyPenalty: time.Minute})
	b.SetProbeHealthy(false)
	if s := b.State(t0); s != StateProbeDown || b.Usable(t0) {
		t.Fatalf("probe down: state %v usable %v", s, b.Usable(t0))
	}
	b.Observe(t0, outcome.Failure, 0, 0)
	b.Observe(t0, outcome.Busy, 0, 0)
	if s := b.State(t0); s != StateProbeDown {
		t.Errorf("probe down must outrank ejected and busy, got %v", s)
	}
	b.SetProbeHealthy(true)
	if s := b.State(t0); s != StateEjected {
		t.Errorf("after probe up, passive state shows: got %v, want ejected", s)
	}
	if s := b.State(at(2 * time.Minute)); s != StateHealthy || !b.Usable(at(2*time.Minute)) {
		t.Errorf("later: %v, want healthy", s)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateHealthy: "healthy", StateBusy: "busy", StateEjected: "ejected", StateProbeDown: "down"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestSpecKeyDistinguishesCredentialsAndModel(t *testing.T) {
	base := Spec{URL: "http://h", APIKey: "k", UpstreamModel: "m", Weight: 1}
	if base.Key() != (Spec{URL: "http://h", APIKey: "k", UpstreamModel: "m", Weight: 7}).Key() {
		t.Error("weight must not change the key (counters survive a reweight)")
	}
	for _, other := range []Spec{{URL: "http://h2", APIKey: "k", UpstreamModel: "m"}, {URL: "http://h", APIKey: "k2", UpstreamModel: "m"}, {URL: "http://h", APIKey: "k", UpstreamModel: "m2"}} {
		if other.Key() == base.Key() {
			t.Errorf("%+v shares the key of %+v", other, base)
		}
	}
}

// One slow answer holds the peak EWMA (for pickers) for seconds, but not the
// typical latency (for deadlines), which follows the recent requests.
func TestTypicalLatencyFollowsRecentRequests(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://127.0.0.1:1"}, HealthPolicy{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Observe(now, outcome.Success, 50*time.Millisecond, 0)
	b.Observe(now, outcome.Success, 2*time.Second, 0)
	for i := range 100 {
		b.Observe(now.Add(time.Duration(i)*time.Millisecond), outcome.Success, 50*time.Millisecond, 0)
	}
	at := now.Add(100 * time.Millisecond)
	if got := b.Latency(at); got < time.Second {
		t.Fatalf("peak EWMA %v: should still hold the slow sample", got)
	}
	if got := b.TypicalLatency(); got > 60*time.Millisecond {
		t.Fatalf("typical %v: should be back near 50ms", got)
	}
	b.Observe(at, outcome.Failure, 10*time.Second, 0)
	if got := b.TypicalLatency(); got > 60*time.Millisecond {
		t.Fatalf("typical %v: a failure's latency says nothing", got)
	}
}

// TestStalledIsALowerBoundOfTheOldestWait: Stalled counts from when
// requests started waiting or from the last first token, whichever is
// later, and is 0 when none waits; FirstToken and EndWaiting end a wait,
// Release and ReleaseFed do not.
func TestStalledIsALowerBoundOfTheOldestWait(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	if s := b.Stalled(t0); s != 0 {
		t.Fatalf("idle Stalled = %v", s)
	}
	for range 2 {
		b.Acquire()
	}
	b.StartWaitingOf(at(0), Wait{})
	b.StartWaitingOf(at(100*time.Millisecond), Wait{})
	if s := b.Stalled(at(250 * time.Millisecond)); s != 250*time.Millisecond {
		t.Fatalf("Stalled = %v, want 250ms (the first waiter's age)", s)
	}
	b.FirstTokenOf(at(300*time.Millisecond), 300*time.Millisecond, Wait{})
	if s := b.Stalled(at(350 * time.Millisecond)); s != 50*time.Millisecond {
		t.Fatalf("Stalled = %v, want 50ms since the last first token", s)
	}
	b.ReleaseFed(at(400*time.Millisecond), outcome.Success, 300*time.Millisecond, 0) // the first one's stream ends
	if s := b.Stalled(at(450 * time.Millisecond)); s != 150*time.Millisecond {
		t.Fatalf("Stalled = %v, want 150ms: the second still waits", s)
	}
	b.Release(at(500*time.Millisecond), outcome.Failure, 400*time.Millisecond, 0)
	if s := b.Stalled(at(time.Second)); s != 700*time.Millisecond {
		t.Fatalf("Stalled = %v after a Release: the second still waits, none answered since 300ms", s)
	}
	b.EndWaitingOf(at(time.Second), Wait{})
	if s := b.Stalled(at(time.Second)); s != 0 {
		t.Fatalf("Stalled with none waiting = %v", s)
	}
	if l := b.Latency(at(300 * time.Millisecond)); l < 300*time.Millisecond {
		t.Fatalf("Latency = %v: the first token must feed the estimate at once", l)
	}
}

// TestTailLatencyIsAboveTypical: the tail (the hedge delay's basis) starts
// at twice the first sample, not at it (else half the streams would be
// hedged until deviations are learned), and settles at typical plus twice
// the mean deviation: 40±10ms alternating -> about 60ms.
func TestTailLatencyIsAboveTypical(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://127.0.0.1:1"}, HealthPolicy{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Observe(now, outcome.Success, 40*time.Millisecond, 0)
	if got := b.TailLatency(); got != 80*time.Millisecond {
		t.Fatalf("tail after one 40ms sample = %v; want 80ms", got)
	}
	for i := range 400 {
		d := 30 * time.Millisecond
		if i%2 == 0 {
			d = 50 * time.Millisecond
		}
		b.Observe(now, outcome.Success, d, 0)
	}
	if typ, tail := b.TypicalLatency(), b.TailLatency(); typ < 38*time.Millisecond || typ > 42*time.Millisecond ||
		tail < 57*time.Millisecond || tail > 63*time.Millisecond {
		t.Fatalf("typical %v tail %v; want about 40ms and 60ms", typ, tail)
	}
}

// TestWithdrawnLearnsOnlyAboveTheEstimate: a stream cancelled by a hedge
// race after waiting 300ms on a backend estimated at 40ms makes it dearer
// for routing (300ms + about 40ms: it would have taken longer still) and raises
// its typical latency; one cancelled after 10ms says nothing and changes
// nothing. Neither is an answer (Stalled is not reset) nor a failure.
func TestWithdrawnLearnsOnlyAboveTheEstimate(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://127.0.0.1:1"}, HealthPolicy{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 20 {
		b.Observe(now, outcome.Success, 40*time.Millisecond, 0)
	}
	typical := b.TypicalLatency()
	for range 2 {
		b.Acquire()
		b.StartWaitingOf(now, Wait{})
	}
	b.WithdrawnOf(now.Add(10*time.Millisecond), 10*time.Millisecond, Wait{})
	if got := b.Latency(now); got != 40*time.Millisecond || b.TypicalLatency() != typical {
		t.Fatalf("latency %v typical %v after a 10ms cancelled wait; want both unchanged", got, b.TypicalLatency())
	}
	if got := b.Stalled(now.Add(300 * time.Millisecond)); got != 300*time.Millisecond {
		t.Fatalf("Stalled = %v; a cancelled stream is no answer, want 300ms", got)
	}
	at := now.Add(300 * time.Millisecond)
	est := b.Latency(at) // 40ms, decayed a little
	b.WithdrawnOf(at, 300*time.Millisecond, Wait{})
	if got := b.Latency(at); got != 300*time.Millisecond+est {
		t.Fatalf("peak EWMA %v after a 300ms cancelled wait; want 300ms + the estimate %v", got, est)
	}
	if b.TypicalLatency() <= typical || b.Inflight() != 0 || b.Failures() != 0 {
		t.Fatalf("typical %v (was %v), inflight %d, failures %d", b.TypicalLatency(), typical, b.Inflight(), b.Failures())
	}
}

// endCounting is a limit that counts Observe calls and ends.
type endCounting struct {
	observed, ended int
}

func (*endCounting) Limit() int { return 100 }
func (e *endCounting) Observe(time.Time, time.Duration, int, outcome.Outcome) {
	e.observed++
}
func (e *endCounting) Ended() { e.ended++ }

// Every way a request ends tells a limit that counts ends, once, after its
// Observe if it has one: a stream fed at its first token (ReleaseFed) ends
// without a sample, and the adaptive limit counts the slot it frees as a
// start its window may wait for (admission.LimitConfig.ReportsEnds).
func TestEveryEndIsReportedToTheLimit(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	l := &endCounting{}
	b.SetLimiter(l)
	for range 5 {
		if !b.Acquire() {
			t.Fatal("refused")
		}
	}
	b.FirstTokenOf(at(time.Second), time.Second, Wait{})
	b.ReleaseFed(at(2*time.Second), outcome.Success, time.Second, 0)
	b.ReleaseFed(at(2*time.Second), outcome.Failure, time.Second, 0)
	b.Release(at(2*time.Second), outcome.Success, time.Second, 0)
	b.ReleaseAnswer(at(2*time.Second), outcome.Success, time.Second, 10)
	b.Abandon()
	if l.ended != 5 || l.observed != 4 {
		t.Fatalf("ended %d (want 5), observed %d (want 4: one first token, three releases with a sample)", l.ended, l.observed)
	}
	if n := b.Inflight(); n != 0 {
		t.Fatalf("in flight %d", n)
	}
}
