package jobs

import (
	"context"
	"sync"
	"time"
)

// whileAway runs op, one step of a delivery's bookkeeping, and runs it
// again every PollWait while it fails because NATS is away, for at most
// AckWait/2 (heartbeats missed in an outage longer than that may have let
// the server hand the message to another worker). The message stays ours
// meanwhile, so the job carries on as soon as NATS is back. Giving up at
// once would cost the job AckWait: a nak sent into the outage is lost with
// it, and a result not recorded means the job runs again. Holding ends
// early when the worker stops.
func (w *worker) whileAway(d *delivery, step string, op func() error) error {
	err := op()
	if err == nil || !IsUnavailable(err) {
		return err
	}
	s := w.s
	s.log.Warn("NATS away: holding the job until it is back", "key", d.key, "step", step, "err", err)
	giveUp := time.Now().Add(s.o.AckWait / 2)
	for time.Now().Before(giveUp) {
		if sleep(w.stop, w.o.PollWait); w.stop.Err() != nil {
			return err
		}
		if err = op(); err == nil {
			_ = d.msg.InProgress() // restart AckWait, heartbeats went missing
			return nil
		}
		if !IsUnavailable(err) {
			return err
		}
	}
	return err
}

// heartbeat tells JetStream the message is still being worked on, every
// AckWait/4, until the returned stop is called.
func (w *worker) heartbeat(msg jobMsg) (stop func()) {
	done := make(chan struct{})
	ticks, stopTicks := w.o.ticker(w.s.o.AckWait / 4)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stopTicks()
		for {
			select {
			case <-ticks:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
