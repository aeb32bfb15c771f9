package scaling

import (
	"testing"
	"time"
)

// The queue term is at most a slot per queued request: with that many
// more backends every queued request starts at once, and more start none
// sooner. A μ measured from a few long requests (two 18 s answers on a
// 2-slot backend: 0.11 req/s) made 30 short requests queued behind them
// read as 135 backends on their own, for a pool where 15 more would start
// them all now.
func TestQueueTermIsAtMostASlotPerQueuedRequest(t *testing.T) {
	m := NewMeter(10 * time.Second)
	now := t0
	m.Served("m", "a", now, -1, 2, 18*time.Second, false)
	m.Served("m", "a", now, -1, 2, 18*time.Second, false)
	r := m.Read("m", now, []string{"a"})
	p := PoolState{Backends: []BackendState{{Name: "a", Slots: 2, Usable: true}}, Queued: 30, InUse: 2, Capacity: 2,
		QueueDrainFor: 2 * time.Second, DefaultSlots: 8}
	s := Plan("m", now, r, p, Policy{Headroom: 0.2})
	near(t, "measured μ", s.Service.RequestsPerSecond, 2.0/18, 1e-9)
	near(t, "queue term", s.Need.Queue, 15, 1e-9) // 30 queued over 2 slots a backend

	// With μ high enough to start them within the objective the rate
	// decides, as before: 30 queued at 20 req/s a backend within 2 s.
	p.Queued = 30
	fast := Reading{Service: map[string]Service{"a": {PerSlot: 10, Slots: 2}}}
	near(t, "queue term at a high μ", Plan("m", now, fast, p, Policy{}).Need.Queue, 0.75, 1e-9)
}
