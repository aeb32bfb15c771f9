package app

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// stepTimer is an injected one-shot timer: it hands the test each timer
// armed (its duration and its channel), which fires when the test says.
type stepTimer struct{ armed chan armedTimer }

type armedTimer struct {
	d    time.Duration
	fire chan time.Time
}

func (s *stepTimer) timer(d time.Duration) (<-chan time.Time, func()) {
	c := make(chan time.Time, 1)
	s.armed <- armedTimer{d, c}
	return c, func() {}
}

func (s *stepTimer) next(t *testing.T) armedTimer {
	t.Helper()
	select {
	case a := <-s.armed:
		return a
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("no timer armed")
		return armedTimer{}
	}
}

// drainClockApp is an app with one backend, its drains' grace and polls
// on the returned timer and ticker, its log in the buffer.
func drainClockApp(t *testing.T) (*App, *endpoint.Backend, *stepTimer, *stepTicker, *logbuf.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nforecast: {enabled: false}\n"+
		"models:\n  - name: m\n    backends:\n      - url: http://127.0.0.1:9\n")
	a, logs := newLoggedApp(t, path, config.Load)
	t.Cleanup(func() { a.drains.cancel(); a.drains.wg.Wait(); a.release() })
	tm, tk := &stepTimer{armed: make(chan armedTimer, 4)}, newStepTicker()
	a.timer, a.ticker = tm.timer, tk.tick
	return a, a.gw.Runtime().Pools["m"].Backends[0], tm, tk, logs
}

// drainBusy takes a slot on be (a request running) and starts its drain
// with a grace of an hour, as a reload removing it does.
func drainBusy(t *testing.T, a *App, be *endpoint.Backend) {
	t.Helper()
	if !be.Acquire() {
		t.Fatal("no slot")
	}
	a.reloadMu.Lock()
	a.drain(be, time.Hour)
	a.reloadMu.Unlock()
}

// retired waits for be's retirement (its context ended).
func retired(t *testing.T, be *endpoint.Backend) {
	t.Helper()
	select {
	case <-be.Context().Done():
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("the removed backend was not retired")
	}
}

// A removed backend's drain waits its grace on the app's clock: the
// test, not the wall, ends it. A request still running when the grace
// passes is cut (Retire, logged); one that ends first ends the drain at
// the next poll, the grace never reached. Before, the grace was a
// time.NewTimer of the real clock: a test of its end had to wait it out.
func TestDrainGraceIsOnTheAppClock(t *testing.T) {
	t.Run("grace passes", func(t *testing.T) {
		a, be, tm, tk, logs := drainClockApp(t)
		drainBusy(t, a, be)
		grace := tm.next(t)
		if grace.d != time.Hour {
			t.Fatalf("drain armed %v, want its grace (1h)", grace.d)
		}
		poll := tk.next(t)
		poll <- time.Time{} // still running: the drain goes on
		grace.fire <- time.Time{}
		retired(t, be)
		if !strings.Contains(logs.String(), "grace over") {
			t.Fatalf("the cut was not logged: %s", logs.String())
		}
	})
	t.Run("last request ends", func(t *testing.T) {
		a, be, tm, tk, logs := drainClockApp(t)
		drainBusy(t, a, be)
		tm.next(t) // never fired
		poll := tk.next(t)
		be.Release(time.Now(), outcome.Success, time.Millisecond, 0)
		// The drain may see the release at its first look, before it
		// waits on the ticker (a loaded machine left it between making
		// the ticker and that look): it ends without taking this poll,
		// which an unconditional send then waited for forever.
		select {
		case poll <- time.Time{}:
		case <-be.Context().Done():
		}
		retired(t, be)
		if strings.Contains(logs.String(), "grace over") {
			t.Fatalf("a drain whose requests ended logged a cut: %s", logs.String())
		}
	})
}
