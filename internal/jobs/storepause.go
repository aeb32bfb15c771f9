package jobs

import (
	"context"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxStorePause bounds one pause of a worker on a full store: the longest
// a job waits for its start to be tried again once space has freed
// without the store's usage showing it (another account's data, say).
const maxStorePause = 30 * time.Second

// storePause stops a worker taking jobs while the job store refuses their
// starts for lack of room (JetStream at its hard bound: the embedded
// server's queue.max_store_bytes, or an external account's limit), as the
// Gate stops it on a full pool. Without it each slot naked its job for
// BusyDelay and pulled the next at once: with a large backlog, a refused
// write and a warning line per job, over and over, until space freed.
//
// A pause begins with a refused start. The dispatcher sends no pull while
// it backs off, and a slot holding a message keeps it (its heartbeats go
// on; the record stays queued, no attempt counted) and waits. When the backoff
// ends (BusyDelay, doubling with each refused probe up to maxStorePause,
// less a random share of up to half, so paused workers do not probe in
// step), or at once when a reading of the store's usage (every PollWait)
// shows less than when the backoff began (a delete, or retention), one
// slot tries its start again: the probe. The others wait for its outcome:
// refused, the next backoff; written, the pause ends and the slots go on. One warning line when a pause begins, one
// info line when it ends.
type storePause struct {
	s     *Store
	stop  context.Context // the worker's: ends the backoff and the waits
	every time.Duration   // between readings of the store's usage
	// timer paces the backoff, default newTicker (its first tick);
	// tests inject one to end backoffs themselves.
	timer func(d time.Duration) (fire <-chan time.Time, stop func())
	wg    sync.WaitGroup // the backoff under way

	mu       sync.Mutex
	paused   bool          // a pause is under way
	wake     chan struct{} // backing off: closed at its end; probing: at the probe's outcome
	probing  bool          // the backoff ended: the next start is the probe
	probeOut bool          // the probe's start is being written
	round    int           // refused probes this pause: the backoff's exponent
	since    time.Time     // the pause's beginning
	refused  int           // starts refused during this pause
}

func newStorePause(s *Store, stop context.Context, o WorkerOptions) *storePause {
	timer := o.pauseTimer
	if timer == nil {
		timer = newTicker
	}
	return &storePause{s: s, stop: stop, every: o.PollWait, timer: timer}
}

// stalled is a channel closed when the backoff under way ends, nil when
// there is none: the dispatcher pulls nothing while it is not nil. Once
// the backoff ends it pulls for its free slots again, so a probe can
// start even when no slot held on to a message; what they take waits
// for the probe's outcome, at most a message per slot.
func (p *storePause) stalled() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused || p.probing {
		return nil
	}
	return p.wake
}

// finish waits for the backoff under way, which ends with the worker,
// and takes a pause under way off the gauge.
func (p *storePause) finish() {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.s.stats.workersPaused.Add(-1)
		p.paused = false
	}
}

// admit waits until a slot may write its job's start: at once when no
// pause is under way; else when the slot's start is the probe, or the
// probe got through. probe says which; ok is false when the worker
// stopped first.
func (p *storePause) admit() (probe, ok bool) {
	for {
		p.mu.Lock()
		if !p.paused {
			p.mu.Unlock()
			return false, true
		}
		if p.probing && !p.probeOut {
			p.probeOut = true
			p.mu.Unlock()
			return true, true
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-p.stop.Done():
			return false, false
		}
	}
}

// done takes the outcome of a write admit let through (a job's start,
// or a result held by heldresult.go), or of a first try at one: err is
// the write's error, errNoChange when nothing was written. It reports
// whether the store refused the write for lack of room, counted in
// refusals: the slot then keeps its message and asks admit again.
func (p *storePause) done(probe bool, err error, refusals *atomic.Uint64) (refused bool) {
	refused = err != nil && isStoreFullErr(err)
	st := &p.s.stats
	if refused {
		refusals.Add(1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if refused && p.paused {
		p.refused++
	}
	switch {
	case probe && refused:
		p.round++
		delay := p.backOff()
		p.s.log.Debug("job store still full: jobs stay paused", "retry_in", delay.String())
	case probe && err == nil:
		close(p.wake)
		p.paused, p.wake, p.probing, p.probeOut = false, nil, false, false
		st.workersPaused.Add(-1)
		p.s.log.Info("job store has room again: the worker takes jobs again",
			"paused_for", time.Since(p.since).Round(time.Millisecond).String(), "writes_refused", p.refused)
	case probe: // nothing written, or another error: the next start probes
		p.probeOut = false
		old := p.wake
		p.wake = make(chan struct{})
		close(old)
	case refused && !p.paused:
		p.paused, p.round, p.refused, p.since = true, 0, 1, time.Now()
		st.workersPaused.Add(1)
		st.storePauses.Add(1)
		delay := p.backOff()
		p.s.log.Warn("job store full: the worker takes no jobs until it has room; delete files or wait for retention",
			"retry_in", delay.String(), "err", err)
	}
	return refused
}

// backOff starts a backoff (p.mu held) and returns its length.
func (p *storePause) backOff() time.Duration {
	old := p.wake
	p.wake = make(chan struct{})
	if old != nil {
		close(old) // the waiters see the new backoff and wait for it
	}
	p.probing, p.probeOut = false, false
	delay := p.s.jitter(min(p.s.o.BusyDelay<<min(p.round, 20), maxStorePause))
	wake := p.wake
	p.wg.Go(func() { p.wait(wake, delay) })
	return delay
}

// wait ends the backoff whose channel is wake after delay, or sooner
// when the store's usage falls below its reading at the start.
func (p *storePause) wait(wake chan struct{}, delay time.Duration) {
	fire, stopTimer := p.timer(delay)
	defer stopTimer()
	readings := time.NewTicker(p.every)
	defer readings.Stop()
	start := p.usedBytes()
	for freed := false; !freed; {
		select {
		case <-p.stop.Done():
			return
		case <-fire:
			freed = true
		case <-readings.C:
			used := p.usedBytes()
			freed = start >= 0 && used >= 0 && used < start
			if start < 0 {
				start = used
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == wake {
		p.probing = true
		p.wake = make(chan struct{})
		close(wake)
	}
}

// usedBytes reads the store's usage, -1 when it cannot.
func (p *storePause) usedBytes() int64 {
	ctx, cancel := context.WithTimeout(p.stop, p.s.o.RequestTimeout)
	defer cancel()
	u, err := p.s.StoreUsage(ctx)
	if err != nil {
		return -1
	}
	return u.Bytes
}

// jitter is d less a random share of up to half of it, from Options.Rand
// ("equal jitter"): retries of many stores or webhooks that failed
// together do not come back in lockstep.
func (s *Store) jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d - s.randN(d/2)
}

// randN is a random duration in [0, n) from Options.Rand (0 when n <= 0
// or the source fails).
func (s *Store) randN(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	var b [8]byte
	s.randMu.Lock()
	_, err := io.ReadFull(s.o.Rand, b[:])
	s.randMu.Unlock()
	if err != nil {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(b[:]) % uint64(n))
}

// writeOutcome is what storePause.done is told of a transition: its
// error, or errNoChange when it wrote nothing.
func writeOutcome(changed bool, err error) error {
	if err == nil && !changed {
		return errNoChange
	}
	return err
}
