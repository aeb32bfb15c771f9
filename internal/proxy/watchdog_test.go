package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stepClock and stepTimer run a watchdog on a clock the test moves; the
// timer fires only when the test fires it, at the instant it was armed for.
type stepClock struct{ t time.Time }

func (c *stepClock) now() time.Time { return c.t }

type stepTimer struct {
	clk    *stepClock
	f      func()
	at     time.Time
	armed  bool
	resets int
}

func (s *stepTimer) Reset(d time.Duration) bool {
	was := s.armed
	s.at, s.armed = s.clk.t.Add(d), true
	s.resets++
	return was
}

func (s *stepTimer) Stop() bool {
	was := s.armed
	s.armed = false
	return was
}

// fire moves the clock to the timer's instant and fires it.
func (s *stepTimer) fire(t *testing.T) {
	t.Helper()
	if !s.armed {
		t.Fatal("the timer is not armed")
	}
	s.clk.t, s.armed = s.at, false
	s.f()
}

type stepWatchdog struct {
	*watchdog
	clk    *stepClock
	timer  *stepTimer
	t0     time.Time
	cause  error
	cutAt  time.Time
	cutted bool
}

func newStepWatchdog(firstByte, total time.Duration) *stepWatchdog {
	t0 := time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)
	s := &stepWatchdog{clk: &stepClock{t: t0}, t0: t0}
	after := func(d time.Duration, f func()) Timer {
		s.timer = &stepTimer{clk: s.clk, f: f, at: s.clk.t.Add(d), armed: true}
		return s.timer
	}
	s.watchdog = startWatchdog(firstByte, 0, t0.Add(total), t0, s.clk.now, after, func(err error) {
		s.cause, s.cutAt, s.cutted = err, s.clk.t, true
	})
	return s
}

// A stalled stream is cut at its last chunk plus the stream-idle bound,
// while its chunks, relayed (paused around the client write) or not, move
// no timer: the timer, armed for an earlier end of the gap, rearms for the
// rest when it fires.
func TestWatchdogCutsAStallAtTheIdleBound(t *testing.T) {
	const d = 10 * time.Second
	s := newStepWatchdog(30*time.Second, time.Hour)
	s.clk.t = s.t0.Add(time.Second)
	s.idle(d) // the response head
	resets := s.timer.resets
	for i := 0; i < 100; i++ { // a chunk each 50 ms, each written to the client
		s.clk.t = s.clk.t.Add(50 * time.Millisecond)
		s.idle(d)
		s.pause()
		s.idle(d)
	}
	if s.timer.resets != resets {
		t.Fatalf("100 chunks reset the timer %d times, want none", s.timer.resets-resets)
	}
	last := s.clk.t
	s.timer.fire(t) // armed at the head, for head + d
	if s.cutted {
		t.Fatalf("cut at %v, %v after the last chunk (bound %v)", s.cutAt.Sub(s.t0), s.cutAt.Sub(last), d)
	}
	s.timer.fire(t)
	if !s.cutted || !errors.Is(s.cause, ErrStreamIdle) || !s.cutAt.Equal(last.Add(d)) {
		t.Fatalf("cut %v with %v at %v after the last chunk, want ErrStreamIdle at %v", s.cutted, s.cause, s.cutAt.Sub(last), d)
	}
}

// A client write, however long, is not timed as a gap: the timer that
// fires during it cuts nothing and stays unarmed, and the write's end
// starts a full gap.
func TestWatchdogPausedWhileTheClientWrites(t *testing.T) {
	const d = 10 * time.Second
	s := newStepWatchdog(30*time.Second, time.Hour)
	s.idle(d)
	s.pause()
	s.timer.fire(t)
	if s.cutted || s.timer.armed {
		t.Fatalf("cut %v (%v), timer armed %v during the client's write", s.cutted, s.cause, s.timer.armed)
	}
	s.clk.t = s.clk.t.Add(10 * time.Minute) // the write returns
	end := s.clk.t
	s.idle(d)
	s.timer.fire(t)
	if !s.cutted || !errors.Is(s.cause, ErrStreamIdle) || !s.cutAt.Equal(end.Add(d)) {
		t.Fatalf("cut %v with %v at %v after the write, want ErrStreamIdle at %v", s.cutted, s.cause, s.cutAt.Sub(end), d)
	}
}

// Chunks that keep coming do not carry a stream past the total deadline.
func TestWatchdogTotalDeadlineWithChunksFlowing(t *testing.T) {
	const d = 10 * time.Second
	s := newStepWatchdog(30*time.Second, 25*time.Second)
	s.idle(d)
	for !s.cutted {
		s.clk.t = s.clk.t.Add(time.Second)
		if s.clk.t.After(s.timer.at) || s.clk.t.Equal(s.timer.at) {
			s.timer.fire(t)
			continue
		}
		s.idle(d)
	}
	if !errors.Is(s.cause, ErrTotalTimeout) || !s.cutAt.Equal(s.t0.Add(25*time.Second)) {
		t.Fatalf("cut with %v at %v, want ErrTotalTimeout at 25s", s.cause, s.cutAt.Sub(s.t0))
	}
}

// A stopped watchdog cancels nothing, and its firing does not rearm it.
func TestWatchdogStopped(t *testing.T) {
	s := newStepWatchdog(30*time.Second, time.Hour)
	s.idle(time.Second)
	s.stop()
	s.timer.armed = true // a firing that raced with the stop
	s.timer.fire(t)
	if s.cutted || s.timer.armed {
		t.Fatalf("a stopped watchdog cut %v (%v) or rearmed %v", s.cutted, s.cause, s.timer.armed)
	}
}

// On real timers, with the gap bound so short that the timer fires among
// the relay's chunks and pauses in every interleaving, the watchdog is
// never left disarmed: once the chunks stop, the stall is cut.
func TestWatchdogRealTimersStillCutAfterRaces(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	const d = 20 * time.Microsecond
	wd := startWatchdog(time.Minute, 0, time.Now().Add(time.Hour), time.Now(), time.Now,
		func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }, cancel)
	defer wd.stop()
	wd.idle(d) // the head
	for i := 0; i < 20000 && ctx.Err() == nil; i++ {
		wd.idle(d)
		wd.pause()
		wd.idle(d)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute): // a hang guard: the stall should be cut d after the last chunk
		t.Fatal("a stall after chunks and pauses racing the timer was never cut")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, ErrStreamIdle) {
		t.Fatalf("cut with %v, want ErrStreamIdle", cause)
	}
}
