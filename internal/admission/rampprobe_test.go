package admission

import (
	"testing"
	"time"
)

// streamsOf submits n streaming requests of tenant, deadline two minutes
// on, and returns those granted at once and the waiters.
func streamsOf(t *testing.T, q *Queue, clk *fakeClock, tenant string, n int) (granted []*Ticket, waiting []*waiter) {
	t.Helper()
	for range n {
		tk, w, err := q.submit(Request{Tenant: tenant, Cost: 100, Streams: true, Deadline: clk.Now().Add(2 * time.Minute)})
		switch {
		case err != nil:
			t.Fatal(err)
		case tk != nil:
			granted = append(granted, tk)
		default:
			waiting = append(waiting, w)
		}
	}
	return granted, waiting
}

// firstTokens runs the clock on in 20 ms steps for d, kicking the queue as
// the gateway does, and tells every granted ticket (of tks and of ws) its
// first token 20 ms after its grant, prompt or not. Tickets told before
// are told again, which does nothing.
func firstTokens(q *Queue, clk *fakeClock, d time.Duration, prompt bool, tks []*Ticket, ws []*waiter) {
	for end := clk.Now().Add(d); clk.Now().Before(end); {
		var out []*Ticket
		out = append(out, tks...)
		for _, w := range ws {
			if w.state == granted {
				out = append(out, w.ticket)
			}
		}
		clk.Advance(20 * time.Millisecond)
		for _, tk := range out {
			tk.FirstToken(prompt)
		}
		q.Kick()
	}
}

// The case seen in production, on adaptive limits (the default: no
// max_concurrency, so no slot is known): tenant A runs one long answer,
// tenant B becomes busy beside it, B's first request holds its slot for a
// long answer too. Reckoned from the pool's peak (2) B's next five
// requests were held until that answer came back, a minute later, with 2
// of 16 slots in use. Each grant above the base (a probe) that starts
// promptly now adds its slot to the base: the five start one first token
// after another.
func TestRampProbesGrowBaseOnAdaptiveLimits(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	a := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	b := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true}) // answers for a minute
	clk.Advance(100 * time.Millisecond)
	got, held := streamsOf(t, q, clk, "B", 5)
	if s := q.Stats(); s.RampBase != 2 {
		t.Fatalf("base %d with no probe's first token come; want 2 (a probe's slot not counted before)", s.RampBase)
	}
	firstTokens(q, clk, time.Minute, true, append(got, a, b), held)
	if n := len(held) - grantedCount(held); n > 0 || len(got) != 1 {
		t.Fatalf("%d of B's requests held a minute with %d of 16 slots in use (%d granted at once); want one probe at once and every other granted as the probes started promptly",
			n, q.Stats().InUse, len(got))
	}
	if s := q.Stats(); s.InUse != 7 || s.RampProbes != 5 || s.RampProbesLate != 0 || s.RampBase != 7 {
		t.Fatalf("in use %d, probes %d (late %d), base %d; want 7, 5 (0), 7", s.InUse, s.RampProbes, s.RampProbesLate, s.RampBase)
	}
	// The five went one first token apart: within a second of the burst.
	for _, w := range held {
		if wait := w.ticket.Waited(); wait > time.Second {
			t.Fatalf("a held request waited %v; want its turn among five first tokens 20 ms apart", wait)
		}
	}

	// The grown base ages out of the peak like any slot: B quiet, A alone
	// on its one slot for two windows, the base is A's again.
	b.Release()
	got[0].Release()
	for _, w := range held {
		w.ticket.Release()
	}
	for range 5 {
		clk.Advance(time.Second)
		q.Kick()
	}
	if s := q.Stats(); s.RampBase != 1 {
		t.Fatalf("base %d two windows after B went quiet; want 1 (A's one slot)", s.RampBase)
	}
}

// A probe whose first token comes late (queued inside an engine behind a
// full batch) adds nothing, and no probe goes for a RampWindow after it.
func TestRampLateProbeStopsProbing(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	got, held := streamsOf(t, q, clk, "B", 5)
	if len(got) != 1 {
		t.Fatalf("B's five: %d granted at once; want one probe", len(got))
	}
	clk.Advance(100 * time.Millisecond)
	got[0].FirstToken(false)
	if s := q.Stats(); s.RampBase != 2 || s.RampProbesLate != 1 || s.RampProbes != 0 {
		t.Fatalf("base %d, probes late %d, prompt %d; want 2, 1, 0", s.RampBase, s.RampProbesLate, s.RampProbes)
	}
	firstTokens(q, clk, 1800*time.Millisecond, true, nil, held)
	if n := grantedCount(held); n != 0 {
		t.Fatalf("%d more probes within the window after a late one; want none", n)
	}
	firstTokens(q, clk, 200*time.Millisecond, true, nil, held)
	if n := grantedCount(held); n != 1 {
		t.Fatalf("%d probes a window after the late one; want 1", n)
	}
}

// Requests that never tell a first token (JSON answers) do not probe: a
// probe left unjudged for a whole answer would stop the others.
func TestRampNoProbeWithoutFirstToken(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	grantedT(t, q, Request{Tenant: "A", Cost: 100})
	clk.Advance(100 * time.Millisecond)
	grantedT(t, q, Request{Tenant: "B", Cost: 100})
	clk.Advance(100 * time.Millisecond)
	tk, _, err := q.submit(Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(time.Minute)})
	if err != nil || tk != nil {
		t.Fatalf("B's second JSON request: %v, %v; want held", tk, err)
	}
}

// The probes keep the steady tenant's headroom (rampmargin.go). On
// adaptive limits reading 36 (the chaos pool read 36-54 on 24 real
// slots) a steady tenant holds 12; a burst of 28 long streams arrives.
// Without the margin every probe started promptly and the burst grew
// into every slot beyond the steady tenant's peak, up to the capacity
// (the ramp2 branch: in the chaos suite the steady tenant's arrivals
// above its peak then waited inside full engines). Its margin, ⌈√12⌉ = 4
// slots, is not proven while the pool's base is its peak, so no probe
// goes: the burst keeps its allowance and the steady tenant's freed slot
// stays its own.
func TestRampProbesKeepActiveTenantsHeadroom(t *testing.T) {
	q, clk := rampQueue(36, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)
	got, waiting := streamsOf(t, q, clk, "burst", 28)
	firstTokens(q, clk, time.Second, true, got, waiting)
	if s := q.Stats(); s.InUse != 15 || s.Tenants["burst"].InUse != 3 || s.RampProbes != 0 {
		t.Fatalf("in use %d, burst %d, probes %d; want 15, 3 (its allowance), 0: the steady tenant's margin above its peak of 12 is not proven",
			s.InUse, s.Tenants["burst"].InUse, s.RampProbes)
	}
	before := grantedCount(waiting)
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	if n := grantedCount(waiting) - before; n != 0 {
		t.Fatalf("%d burst requests took the steady tenant's freed slot", n)
	}
	clk.Advance(20 * time.Millisecond)
	steady[0] = grantedT(t, q, Request{Tenant: "steady", Cost: 100})
}

// A margin is ⌈√peak⌉ slots above an active tenant's recent peak, none
// for a tenant that held one slot at a time.
func TestRampMargin(t *testing.T) {
	for _, c := range []struct{ peak, want int }{{0, 0}, {1, 0}, {2, 2}, {4, 2}, {5, 3}, {12, 4}, {16, 4}, {17, 5}} {
		if got := rampMargin(c.peak); got != c.want {
			t.Errorf("rampMargin(%d) = %d; want %d", c.peak, got, c.want)
		}
	}
}

// A probe takes no slot an active tenant gave back. A on one slot at a
// time, B probing beside it: when A's answer ends the pool holds less
// than its base, and a grant then is not a test of a slot above it but,
// in the engines, A's slot (the ramp2 branch's probes went whenever the
// capacity had room). B waits; A's next request finds its slot.
func TestRampProbeLeavesFreedSlot(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	a := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	b := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	got, held := streamsOf(t, q, clk, "B", 5)
	firstTokens(q, clk, time.Second, true, append(got, a, b), held)
	if s := q.Stats(); s.InUse != 7 || s.RampBase != 7 {
		t.Fatalf("in use %d, base %d; want 7, 7 (B's five probes started promptly)", s.InUse, s.RampBase)
	}
	a.Release()
	clk.Advance(20 * time.Millisecond)
	late, _ := streamsOf(t, q, clk, "B", 1)
	if len(late) != 0 {
		t.Fatalf("B's next request granted in the slot A gave back (6 of a base of 7 in use); want it held")
	}
	clk.Advance(20 * time.Millisecond)
	if tk, _, err := q.submit(Request{Tenant: "A", Cost: 100, Streams: true}); err != nil || tk == nil {
		t.Fatalf("A's next request: %v, %v; want its slot at once", tk, err)
	}
}

// A probe whose request ends before its first token (the backend failed
// it, the client went away, a retry or hedge gave up) leaks nothing: its
// release ends the probe unjudged, no probing pause is taken, the next
// probe goes, and a first token told after the release (a relay finishing
// late) does nothing. The release is no completion (noteRelease): the
// allowance stays, and one held request goes, as the next probe.
func TestRampProbeReleasedBeforeFirstToken(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(100 * time.Millisecond)
	got, held := streamsOf(t, q, clk, "B", 4)
	if len(got) != 1 || !got[0].probe {
		t.Fatalf("B's four: %d granted at once; want one, a probe", len(got))
	}
	clk.Advance(50 * time.Millisecond)
	got[0].Release()
	got[0].FirstToken(true) // after its release: nothing
	q.Kick()
	if n := grantedCount(held); n != 1 {
		t.Fatalf("%d of B's held requests granted after the probe ended unstarted; want 1 (the next probe; an unanswered release adds no allowance)", n)
	}
	s := q.Stats()
	if s.RampProbes != 0 || s.RampProbesLate != 0 || !q.probe.blocked.IsZero() {
		t.Fatalf("probes %d (late %d), probing blocked until %v; want 0 (0), not blocked: the unstarted probe was not judged",
			s.RampProbes, s.RampProbesLate, q.probe.blocked)
	}
	if out := q.probe.out; out == nil || out == got[0] || !out.probe {
		t.Fatal("the probe out is not a newly granted request")
	}
}
