package scaling

// What a backend sustains is learned only while it is full, which may be
// rare (a busy hour a day). Without it a restarted gateway plans on the
// optimistic figure of a backend not yet full: at 20 req/s on two sim
// backends 31 req/s per backend against the 13 they sustain (desired 0.79
// where 1.85 is needed). So the at-capacity figures outlive the process:
// Capacities gives them to be saved (the forecast snapshot) and Restore
// takes them back at start.

// Capacities is, per model, the mean per-backend service measured at
// capacity: over the backends full long enough to be trusted now, else
// the figure restored at start and not yet replaced. Models with neither
// are absent. Slots and PerSlot are means over those backends such that
// Slots × PerSlot is their mean service rate.
func (m *Meter) Capacities() map[string]Service {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]Service, len(m.models))
	for name, mm := range m.models {
		mm.mu.Lock()
		if sv, ok := mm.capacity(); ok {
			out[name] = sv
		}
		mm.mu.Unlock()
	}
	return out
}

// capacity is Capacities for one model; mm.mu is held.
func (mm *modelMeter) capacity() (Service, bool) {
	var slots, rate, tokRate float64
	var n, withTokens int
	for _, b := range mm.backends {
		bs := &b.busy
		if bs.count < minBusy {
			continue
		}
		s, per := bs.slots/bs.n, bs.n/bs.held
		slots += s
		rate += s * per
		n++
		if bs.heldTokd > 0 {
			tokRate += s * bs.tokens / bs.heldTokd
			withTokens++
		}
	}
	if n == 0 {
		if mm.restored != nil {
			return *mm.restored, true
		}
		return Service{}, false
	}
	k := float64(n)
	sv := Service{Slots: slots / k, AtCapacity: true}
	if sv.Slots > 0 {
		sv.PerSlot = rate / k / sv.Slots
		if withTokens > 0 {
			sv.TokensPerSlot, sv.TokensKnown = tokRate/float64(withTokens)/sv.Slots, true
		}
	}
	return sv, sv.Slots > 0 && sv.PerSlot > 0
}

// Restore gives model the per-backend service measured at capacity before
// a restart (Capacities then): until a backend of the model has been full
// long enough to be measured again, Read reports this figure for it (with
// Restored set) rather than the optimistic one of its completions below
// capacity, or the prior for one with none. A figure with no slots or
// rate is ignored.
func (m *Meter) Restore(model string, sv Service) {
	if !(sv.Slots > 0 && sv.PerSlot > 0) {
		return
	}
	mm, _ := m.model(model)
	mm.mu.Lock()
	sv.AtCapacity, sv.Restored, sv.Evidence = true, true, 0
	mm.restored = &sv
	mm.mu.Unlock()
}
