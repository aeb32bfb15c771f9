package app

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/outcome"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// stepTicker is a gateway.Ticker the test drives: each ticker made is
// handed over on made, unbuffered (a send returns once the loop took the
// tick), and each stop is reported on stopped.
type stepTicker struct {
	made    chan chan time.Time
	stopped chan struct{}
}

func newStepTicker() *stepTicker {
	return &stepTicker{made: make(chan chan time.Time, 8), stopped: make(chan struct{}, 8)}
}

func (s *stepTicker) tick(time.Duration) (<-chan time.Time, func()) {
	c := make(chan time.Time)
	s.made <- c
	return c, func() { s.stopped <- struct{}{} }
}

// next is the ticker the loop starts next.
func (s *stepTicker) next(t *testing.T) chan time.Time {
	t.Helper()
	select {
	case c := <-s.made:
		return c
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("the loop started no ticker")
		return nil
	}
}

// idle asserts that the loop stopped ticker c without taking another tick
// from it: the idle state does no work.
func (s *stepTicker) idle(t *testing.T, c chan time.Time, now time.Time) {
	t.Helper()
	select {
	case c <- now:
		t.Fatal("the loop took a tick with nothing to do")
	case <-s.stopped:
	case <-time.After(time.Minute):
		t.Fatal("the loop neither stopped its ticker nor took a tick")
	}
}

// settles asserts that the loop, whose last tick from c may still be
// running its step on older state, stops c within one more tick.
func (s *stepTicker) settles(t *testing.T, c chan time.Time, now time.Time) {
	t.Helper()
	select {
	case c <- now: // the step running saw the old state: this one must stop
		s.idle(t, c, now)
	case <-s.stopped:
	case <-time.After(time.Minute):
		t.Fatal("the loop neither stopped its ticker nor took a tick")
	}
}

// whileBusyApp is an app on clock with one model on two backends of one
// slot each, which max_fails 1 ejects for 1 s, its loops paced by the
// returned ticker.
func whileBusyApp(t *testing.T, clock *snapshotClock) (*App, *stepTicker, *logbuf.Buffer) {
	t.Helper()
	b1, b2 := backend(t, "b1"), backend(t, "b2")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
admin: {listen: "off"}
queue: {enabled: false}
forecast: {enabled: false}
health: {max_fails: 1, fail_timeout: 1s}
models:
  - name: m
    backends:
      - {url: %s, max_concurrency: 1}
      - {url: %s, max_concurrency: 1}
`, b1.URL, b2.URL)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	a, err := newWithClock(cfg, Source{}, slog.New(slog.NewTextHandler(logs, nil)), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.release)
	tk := newStepTicker()
	a.ticker = tk.tick
	return a, tk, logs
}

// runLoop runs loop until the test ends.
func runLoop(t *testing.T, loop func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); loop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// With every queue at rest the queue kicker stops its ticker and takes no
// tick; a request queued behind an ejected backend wakes it, and its kick
// grants the request once the ejection ends (no Release would); it ticks
// while the tenant is active and rests once its ramp is forgotten.
func TestKickQueuesRestsWhileIdleAndGrantsWhenCapacityReturns(t *testing.T) {
	clock := &snapshotClock{now: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	a, tk, _ := whileBusyApp(t, clock)
	runLoop(t, a.kickQueues)

	c := tk.next(t)
	c <- clock.Now() // the first look finds every queue at rest
	tk.idle(t, c, clock.Now())

	rt := a.gw.Runtime()
	rt.Pools["m"].Backends[0].Observe(clock.Now(), outcome.Failure, 0, 0) // ejected: capacity 1
	q := rt.Queues()["m"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held, err := q.Acquire(ctx, admission.Request{Tenant: "t"}) // the one slot left
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *admission.Ticket, 1)
	go func() {
		tkt, _ := q.Acquire(ctx, admission.Request{Tenant: "t"}) // nil if refused
		got <- tkt
	}()
	c = tk.next(t) // the first arrival woke the kicker
	for q.Waiting() != 1 {
		runtime.Gosched() // until the request is queued
	}
	clock.add(1100 * time.Millisecond) // the ejection is over: capacity 2, and no Release to notice
	c <- clock.Now()
	var tkt *admission.Ticket
	select {
	case tkt = <-got:
	case <-time.After(time.Minute):
		t.Fatal("the queued request was stranded")
	}
	if tkt == nil {
		t.Fatal("the queued request was refused, not granted")
	}
	c <- clock.Now() // taken: the tenant holds slots, so the granting kick kept ticking
	held.Release()
	tkt.Release()
	clock.add(3 * time.Second) // past tenant_ramp (2s): nothing left to forget
	tk.settles(t, c, clock.Now())
}

// The ejection watcher looks at nothing while no backend is ejected; an
// ejection wakes it, it logs the ejection and the recovery when
// fail_timeout passes, then rests again.
func TestWatchEjectionsRestsUntilAnEjection(t *testing.T) {
	clock := &snapshotClock{now: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	a, tk, logs := whileBusyApp(t, clock)
	runLoop(t, a.watchEjections)

	c := tk.next(t)
	c <- clock.Now() // the first look finds no backend ejected
	tk.idle(t, c, clock.Now())

	be := a.gw.Runtime().Pools["m"].Backends[0]
	be.Observe(clock.Now(), outcome.Failure, 0, 0) // max_fails 1: ejected for 1 s
	c = tk.next(t)
	c <- clock.Now()
	clock.add(500 * time.Millisecond)
	c <- clock.Now() // taken: the first look found the backend ejected
	if out := logs.String(); !strings.Contains(out, `msg="backend ejected: passive health check" model=m`) {
		t.Fatalf("ejection not logged:\n%s", out)
	}
	clock.add(600 * time.Millisecond)
	if !be.Usable(clock.Now()) {
		t.Fatal("not re-admitted when fail_timeout passed")
	}
	tk.settles(t, c, clock.Now())
	if out := logs.String(); !strings.Contains(out, `msg="backend back from ejection" model=m`) {
		t.Fatalf("recovery not logged:\n%s", out)
	}
}
