package admission

import "math"

// The probes above the ramp's base (rampprobe.go) fill the engines for as
// long as they start promptly, and that is all they can learn: a probe
// proves the slot it holds, so after it the pool has no proven slot free.
// In the chaos suite's slow-readers row that took every slot beyond the
// steady tenant's recent peak for the burst's long answers, and the steady
// tenant's arrivals above that peak (its Poisson variation, which the
// peak-based base had left room for by never growing) waited inside full
// engines: the well-behaved client refused 16 and 29 of 328, p99 TTFT
// ~1 s against 50 ms (docs/RELIABILITY.md, branch ramp2).
//
// So a probe may go only while the other active tenants' headroom is
// covered by the slots the base has proven: the unused part of their
// recent peaks (kept, as for any grant of a ramping tenant) plus a margin
// above each peak for its variation. A tenant's count in flight varies by
// about the square root of its mean (Poisson), so the margin of a tenant
// that held p slots at its recent peak is ⌈√p⌉. A tenant that held at most
// one slot sent one request at a time: its next request takes the slot its
// last gives back, and it needs no margin.
//
// A probe tests the slot above the base, so it goes only with the whole
// base in use, when no proven slot is free: probes go only while every
// other active tenant is such a one-at-a-time tenant at its peak. Tenant
// A on one long answer, B newly busy beside it: B's parallel streams
// start one first token after another. Beside a tenant on several slots the margin is not proven and
// the ramp keeps the peak-based base: its newcomer is held for a round
// trip of its first answer, as before the probes.

// rampMargin is the headroom kept free above the recent peak of an active
// tenant that held peak slots in it.
func rampMargin(peak int) int {
	if peak <= 1 {
		return 0
	}
	return int(math.Ceil(math.Sqrt(float64(peak))))
}
