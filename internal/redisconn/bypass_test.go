package redisconn

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

var errRefused = errors.New("connection refused")

// fail admits a call at now and reports it failed; it must be admitted.
func fail(t *testing.T, b *Bypass, now time.Time) (time.Duration, bool) {
	t.Helper()
	c, _, ok := b.Admit(now)
	if !ok {
		t.Fatalf("at %v: not admitted", now)
	}
	return c.Down(now, errRefused)
}

// TestBypassThresholdBackoffAndProbe: the threshold's failures in a row
// start a bypass (a success between them restarts the count); calls are
// refused with the wait until the back-off has passed; then one probe at
// a time, whose failure doubles the back-off up to its bound and whose
// success ends the bypass. One log line per bypass, one per recovery; the
// gauge follows.
func TestBypassThresholdBackoffAndProbe(t *testing.T) {
	var logs logbuf.Buffer
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	b := NewBypass(BypassOptions{Threshold: 2, Backoff: time.Second, MaxBackoff: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), DownMsg: "x down", UpMsg: "x up", Attrs: []any{"who", "test"}, Gauge: g})
	now := time.Unix(1000, 0)

	if _, down := fail(t, b, now); down {
		t.Fatal("bypassed after one failure, threshold 2")
	}
	c, _, _ := b.Admit(now)
	c.Up() // Redis answered: the run starts again
	if _, down := fail(t, b, now); down || b.Down() {
		t.Fatal("a success between failures did not restart the count")
	}
	retry, down := fail(t, b, now)
	if !down || !b.Down() || retry != time.Second || testutil.ToFloat64(g) != 1 {
		t.Fatalf("second failure in a row: retry %v down %v gauge %v; want 1s, true, 1", retry, b.Down(), testutil.ToFloat64(g))
	}
	if _, wait, ok := b.Admit(now.Add(400 * time.Millisecond)); ok || wait != 600*time.Millisecond {
		t.Fatalf("within the back-off: admitted %v, wait %v; want refused, 600ms", ok, wait)
	}

	// Past the back-off: one probe; the others are refused while it runs.
	now = now.Add(time.Second)
	p, _, ok := b.Admit(now)
	if !ok || !p.Probe() {
		t.Fatal("past the back-off: no probe")
	}
	if _, _, ok := b.Admit(now); ok {
		t.Fatal("a second call admitted while the probe runs")
	}
	if retry, _ := p.Down(now, errRefused); retry != 2*time.Second {
		t.Fatalf("failed probe: retry %v, want the back-off doubled, 2s", retry)
	}
	now = now.Add(2 * time.Second)
	p, _, _ = b.Admit(now)
	if retry, _ := p.Down(now, errRefused); retry != 3*time.Second {
		t.Fatalf("second failed probe: retry %v, want the bound, 3s", retry)
	}
	// An abandoned probe gives its turn back without a verdict.
	now = now.Add(3 * time.Second)
	p, _, _ = b.Admit(now)
	p.Abandon()
	p, _, ok = b.Admit(now)
	if !ok || !p.Probe() {
		t.Fatal("after an abandoned probe: no new probe")
	}
	p.Up()
	if b.Down() || testutil.ToFloat64(g) != 0 {
		t.Fatal("a probe Redis answered did not end the bypass")
	}
	if c, _, ok := b.Admit(now); !ok || c.Probe() {
		t.Fatal("after recovery: calls not admitted as usual")
	}
	out := logs.String()
	if strings.Count(out, "x down") != 1 || strings.Count(out, "x up") != 1 || strings.Count(out, "who=test") != 2 {
		t.Fatalf("want one line down and one up, with the attrs:\n%s", out)
	}
	if strings.Contains(out, "short_bypasses_unlogged") {
		t.Fatalf("LogEvery 0 counts no short bypasses:\n%s", out)
	}
}

// TestBypassLogSpacing: with LogEvery, a bypass that starts within it of
// the last logged one and ends at its first probe is not logged; the next
// one whose probe fails is, with the count of those before it.
func TestBypassLogSpacing(t *testing.T) {
	var logs logbuf.Buffer
	b := NewBypass(BypassOptions{LogEvery: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	now := time.Unix(1000, 0)
	flap := func(failedProbes int) {
		fail(t, b, now)
		for range failedProbes {
			now = now.Add(time.Hour)
			fail(t, b, now)
		}
		now = now.Add(DefaultBypassMaxBackoff)
		p, _, _ := b.Admit(now)
		p.Up()
	}
	flap(0) // logged: the first
	flap(0)
	flap(0)
	if n := strings.Count(logs.String(), "redis bypassed"); n != 1 {
		t.Fatalf("%d lines for a bypass and two flaps within LogEvery, want 1:\n%s", n, logs.String())
	}
	flap(1)
	out := logs.String()
	if strings.Count(out, "redis bypassed") != 2 || !strings.Contains(out, "short_bypasses_unlogged=2") ||
		strings.Count(out, "redis recovered") != 2 {
		t.Fatalf("a bypass whose probe failed: want it logged with the 2 flaps before it:\n%s", out)
	}
}

// lockCheckGauge fails the test when written while the bypass' lock is
// free: a recovery and a failure at once could then leave it wrong.
type lockCheckGauge struct {
	prometheus.Gauge
	t *testing.T
	b *Bypass
}

func (g *lockCheckGauge) Set(v float64) {
	if g.b.mu.TryLock() {
		g.b.mu.Unlock()
		g.t.Errorf("gauge set to %v outside the bypass' lock", v)
	}
	g.Gauge.Set(v)
}

func TestBypassGaugeUnderLock(t *testing.T) {
	g := &lockCheckGauge{Gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}), t: t}
	b := NewBypass(BypassOptions{Gauge: g, Logger: slog.New(slog.DiscardHandler)})
	g.b = b
	now := time.Unix(1000, 0)
	fail(t, b, now)
	p, _, _ := b.Admit(now.Add(time.Second))
	p.Up()
	if testutil.ToFloat64(g.Gauge) != 0 || b.Down() {
		t.Fatal("gauge or state wrong after recovery")
	}
}

// TestBypassOnRecover: OnRecover is called once when a probe ends the
// bypass, not for calls that succeed while Redis is up, nor for a failed
// probe.
func TestBypassOnRecover(t *testing.T) {
	recovered := 0
	b := NewBypass(BypassOptions{Backoff: time.Second, Logger: slog.New(slog.DiscardHandler), OnRecover: func() { recovered++ }})
	now := time.Unix(1000, 0)
	c, _, _ := b.Admit(now)
	c.Up()
	fail(t, b, now)
	now = now.Add(time.Second)
	fail(t, b, now) // the first probe fails
	if recovered != 0 {
		t.Fatalf("OnRecover called %d times before any recovery", recovered)
	}
	now = now.Add(2 * time.Second)
	p, _, ok := b.Admit(now)
	if !ok || !p.Probe() {
		t.Fatal("no probe after the back-off")
	}
	p.Up()
	c, _, _ = b.Admit(now)
	c.Up()
	if recovered != 1 {
		t.Fatalf("OnRecover called %d times, want 1 (the probe that ended the bypass)", recovered)
	}
}
