package endpoint

import "time"

// SignalEjections makes each passive ejection send a value on ch, never
// blocking (a value already pending stands for it): what the ejection
// watcher sleeps on while no backend is ejected. nil: no signal.
func (b *Backend) SignalEjections(ch chan<- struct{}) {
	b.mu.Lock()
	b.ejections = ch
	b.mu.Unlock()
}

func (b *Backend) signalEjectionLocked() {
	if b.ejections != nil {
		select {
		case b.ejections <- struct{}{}:
		default:
		}
	}
}

// EjectedUntil is when the last passive ejection ends (in the past, or
// zero, when none is in force), whatever the backend's other state: a
// backend both ejected and probe-down shows as down until the probe
// passes, then as ejected until this time.
func (b *Backend) EjectedUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ejectUntil
}

// BusyUntil is when the backend's last 429/503 stops deprioritising it:
// its Retry-After, or busy_penalty without one (in the past, or zero,
// when it is not busy).
func (b *Backend) BusyUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.busyUntil
}

// BusyEpoch counts the backend's push-backs (a 429/503 observed). A call
// takes it when it starts (proxy claim), so that AnsweredSince can tell
// whether the backend pushed back again while the call was out.
func (b *Backend) BusyEpoch() uint64 { return b.busyEpoch.Load() }

// AnsweredSince ends the backend's push-back when a call that started at
// epoch (BusyEpoch, after a push-back) has been answered with no 429/503
// since: the backend took a request sent after it said it was busy, so
// it is not. Without it a Retry-After kept its backend busy for all of
// it whatever came after: one 429 saying 10^20 s (read as the 24 h cap)
// showed the backend busy for a day (/status, sluice_backend_state) and
// put it last in the picker's order, while it answered every request it
// was given. A call started before the push-back (epoch 0, or an older
// one) proves nothing: it may have been admitted before the backend
// filled up.
func (b *Backend) AnsweredSince(epoch uint64) {
	if epoch == 0 || b.busyEpoch.Load() != epoch {
		return
	}
	b.mu.Lock()
	if b.busyEpoch.Load() == epoch { // no push-back came in meanwhile
		b.busyUntil = time.Time{}
	}
	b.mu.Unlock()
}

// SetProbeHealthy is called by the active health checker.
func (b *Backend) SetProbeHealthy(ok bool) { b.SetProbeResult(ok, "") }

// SetProbeResult is SetProbeHealthy with why a failing probe failed (a
// few words, as the log's "error"), kept for /status while it is down.
func (b *Backend) SetProbeResult(ok bool, cause string) {
	b.mu.Lock()
	b.probeDown = !ok
	b.probeCause = ""
	if !ok {
		b.probeCause = cause
	}
	b.mu.Unlock()
}

// ProbeCause is why the active probe marks the backend down ("" when it
// does not, or when the checker gave no cause).
func (b *Backend) ProbeCause() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.probeCause
}

// State reports the backend's health state at now.
func (b *Backend) State(now time.Time) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stateLocked(now)
}

func (b *Backend) stateLocked(now time.Time) State {
	switch {
	case b.probeDown:
		return StateProbeDown
	case now.Before(b.ejectUntil):
		return StateEjected
	}
	if br := b.brk.Load(); br != nil && !br.Ready(now) {
		return StateOpen
	}
	switch {
	case now.Before(b.busyUntil):
		return StateBusy
	}
	return StateHealthy
}

// Usable reports whether the backend may be selected at all (not ejected and
// not probe-down). A busy backend is usable but should be tried last.
func (b *Backend) Usable(now time.Time) bool {
	s := b.State(now)
	return s == StateHealthy || s == StateBusy
}

// A backend back from a passive ejection is on probation until it answers
// (a success, or a stream's first token): its first failure ejects it
// again at once, for fail_timeout from that failure, rather than after
// max_fails new ones. nginx does the same: a server's failure count is
// kept past fail_timeout, so the first request it gets after is a try
// whose failure takes it out again, and only a success clears the count.
// Without it a backend that is still broken when its ejection ends costs
// max_fails client errors every fail_timeout instead of one. A failed
// last-resort trial (lastresort.go) is such a failure too: the ejection
// runs fail_timeout from it. Envoy's outlier detection also lengthens
// each consecutive ejection (base_ejection_time × ejections, capped by
// max_ejection_time): health.max_ejection_time turns that on, counting
// the ejections since the backend last answered; off by default, as
// max_fails and fail_timeout are nginx's keys and promise nginx's rule.

// ejectAgainLocked ejects a backend on probation at its failure at now:
// one more ejection in its run when it had come back (a failure during
// the ejection, a trial's or one sent before it, restarts the same one).
// b.mu is held.
func (b *Backend) ejectAgainLocked(now time.Time) {
	if !now.Before(b.ejectUntil) {
		b.ejectRun++
	}
	if until := now.Add(b.policy.ejectionTime(b.ejectRun)); until.After(b.ejectUntil) {
		b.ejectUntil = until
	}
	b.failTimes = b.failTimes[:0]
	b.signalEjectionLocked()
}

// answeredLocked records that b answered: its probation ends, and a trial
// outstanding ends its ejection. b.mu is held.
func (b *Backend) answeredLocked() {
	b.trialSucceededLocked()
	b.ejectRun = 0
}

// ejectionTime is how long the nth ejection in a row lasts: FailTimeout,
// or n × FailTimeout up to MaxEjectionTime when that is longer.
func (p HealthPolicy) ejectionTime(n int) time.Duration {
	d := p.FailTimeout
	if p.MaxEjectionTime <= d || n <= 1 {
		return d
	}
	if n > int(p.MaxEjectionTime/d) { // also keeps n × d from overflowing
		return p.MaxEjectionTime
	}
	return time.Duration(n) * d
}
