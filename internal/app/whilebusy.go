package app

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/gateway"
)

// whileBusy calls step every `every` while step reports work left, and
// while it reports none, sleeps until wake (or ctx ends) with no ticker
// running: an idle gateway's loops cost nothing. It starts busy: the first
// step, one period in, finds out. A wake starts the ticker again, so the
// first step after it comes one period later, as it would have on the
// running ticker. tick makes the ticker (time.NewTicker outside tests).
func whileBusy(ctx context.Context, every time.Duration, tick gateway.Ticker, wake <-chan struct{}, step func() (busy bool)) {
	for {
		if !tickWhileBusy(ctx, every, tick, step) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// tickWhileBusy runs one busy spell of whileBusy: step on each tick until
// it reports no work. false: ctx ended.
func tickWhileBusy(ctx context.Context, every time.Duration, tick gateway.Ticker, step func() bool) bool {
	c, stop := tick(every)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c:
			if !step() {
				return true
			}
		}
	}
}

func realTicker(every time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// timer is a one-shot timer: its channel fires once after d; stop
// releases it. The drains' grace (waitIdle, closeRetiredTLS) waits on
// one, injectable as the ticker is: realTimer outside tests.
type timer func(d time.Duration) (fire <-chan time.Time, stop func())

func realTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
