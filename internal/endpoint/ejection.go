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

// SetProbeHealthy is called by the active health checker.
func (b *Backend) SetProbeHealthy(ok bool) {
	b.mu.Lock()
	b.probeDown = !ok
	b.mu.Unlock()
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
