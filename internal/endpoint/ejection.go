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
