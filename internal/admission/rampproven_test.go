package admission

import (
	"testing"
	"time"
)

// provenEarlier has tenant "early" run n streams at once, each starting
// promptly, then go quiet for ten seconds (five RampWindows of 2 s): the
// pool's recent peak is gone, its memory of prompt starts is n.
func provenEarlier(t *testing.T, q *Queue, clk *fakeClock, n int) {
	t.Helper()
	got, waiting := streamsOf(t, q, clk, "early", n)
	if len(waiting) != 0 {
		t.Fatalf("early: %d of %d waiting; want all granted", len(waiting), n)
	}
	clk.Advance(20 * time.Millisecond)
	for _, tk := range got {
		tk.FirstToken(true)
	}
	clk.Advance(time.Second)
	for _, tk := range got {
		tk.Release()
	}
	for range 10 {
		clk.Advance(time.Second)
		q.Kick()
	}
	if s := q.Stats(); s.RampProven != n || s.RampBase != 1 {
		t.Fatalf("after early's %d prompt starts and 10 s quiet: proven %d, base %d; want %d, 1", n, s.RampProven, s.RampBase, n)
	}
}

// twoTenants is the ramp3 section's case: A on two long streams (both
// started promptly), B newly busy beside it with a long stream, then B's
// five more at once. It returns those of the five granted at once.
func twoTenants(t *testing.T, q *Queue, clk *fakeClock, bFirstPrompt bool) (got []*Ticket, held []*waiter) {
	t.Helper()
	a1 := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	a2 := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(20 * time.Millisecond)
	a1.FirstToken(true)
	a2.FirstToken(true)
	clk.Advance(300 * time.Millisecond)
	b := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(20 * time.Millisecond)
	b.FirstToken(bFirstPrompt)
	clk.Advance(500 * time.Millisecond)
	return streamsOf(t, q, clk, "B", 5)
}

// Beside a tenant on two or more slots no probe goes (its margin is not
// proven), so the ramp reckoned from the pool's recent peak held a
// newcomer's parallel streams for a round trip of its first answer, even
// when the engines had started ten streams at once minutes before: A on
// two, B's five held with 3 of 16 in use (ramp3's "Left alone"). What the
// engines proved within the memory, less A's margin above its peak
// (⌈√2⌉ = 2), is now free to B: its five start at once, and the pool
// stops at 10 - 2 = 8, A's margin left free for A.
func TestRampProvenSlotsLetNewcomerGrow(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	provenEarlier(t, q, clk, 10)
	clk.Advance(5 * time.Minute)
	q.Kick()
	got, held := twoTenants(t, q, clk, true)
	if len(got) != 5 {
		t.Fatalf("B's five: %d granted at once, %d held with %d of 16 in use; want all five: the engines started 10 at once within the memory",
			len(got), len(held), q.Stats().InUse)
	}
	if s := q.Stats(); s.InUse != 8 || s.RampProbes != 0 {
		t.Fatalf("in use %d, probes %d; want 8, 0", s.InUse, s.RampProbes)
	}
	// A's margin stays free: B's next is held, A's next two go.
	if more, _ := streamsOf(t, q, clk, "B", 1); len(more) != 0 {
		t.Fatal("B's sixth granted into A's margin (8 of a proven 10 in use); want it held")
	}
	for range 2 {
		grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	}
}

// A late first token forgets what the memory held above the slots in use
// at that ticket's grant: the engines were full below it (a backend lost
// or slowed since the memory was made). B's first stream, granted with 3
// in use, starts late: the memory drops to 2, and B's five are held as
// before the memory.
func TestRampProvenForgetsAboveLateStart(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	provenEarlier(t, q, clk, 10)
	got, _ := twoTenants(t, q, clk, false)
	if len(got) != 0 {
		t.Fatalf("B's five: %d granted at once after a late start at 3 in use; want none", len(got))
	}
	if s := q.Stats(); s.RampProven != 2 {
		t.Fatalf("proven %d after a late start at 3 in use; want 2", s.RampProven)
	}
}

// The memory spans one to two rampProvenWindows: past it, what the
// engines proved is forgotten and B's five are held as before.
func TestRampProvenAgesOut(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	provenEarlier(t, q, clk, 10)
	clk.Advance(2 * rampProvenWindow)
	got, _ := twoTenants(t, q, clk, true)
	if len(got) != 0 {
		t.Fatalf("B's five: %d granted at once two windows of memory later; want none", len(got))
	}
	if s := q.Stats(); s.RampProven != 3 {
		t.Fatalf("proven %d; want 3 (A's two and B's first, started promptly)", s.RampProven)
	}
}

// The chaos suite's slow-readers row with a memory: a steady tenant on
// 12 of an adaptive capacity of 36, the engines proven at 24 earlier, a
// burst of 28 long streams. The burst may reach 24 less the steady
// tenant's margin (⌈√12⌉ = 4), 20 in use, never the slots of that margin,
// which the steady tenant's next arrivals take: ramp2's probes gave the
// burst every slot above the steady tenant's peak.
func TestRampProvenKeepsActiveTenantsMargin(t *testing.T) {
	q, clk := rampQueue(36, 2*time.Second)
	provenEarlier(t, q, clk, 24)
	steady := steadyHolding(t, q, clk, 12)
	got, waiting := streamsOf(t, q, clk, "burst", 28)
	firstTokens(q, clk, time.Second, true, got, waiting)
	if s := q.Stats(); s.InUse != 20 || s.Tenants["burst"].InUse != 8 || s.RampProbes != 0 {
		t.Fatalf("in use %d, burst %d, probes %d; want 20, 8, 0: the steady tenant's margin of 4 above its peak of 12 kept out of the proven 24",
			s.InUse, s.Tenants["burst"].InUse, s.RampProbes)
	}
	before := grantedCount(waiting)
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	if n := grantedCount(waiting) - before; n != 0 {
		t.Fatalf("%d burst requests took the steady tenant's freed slot", n)
	}
	for range 5 { // its slot back and its margin
		grantedT(t, q, Request{Tenant: "steady", Cost: 100})
	}
	if s := q.Stats(); s.Tenants["burst"].InUse != 8 {
		t.Fatalf("burst %d after the steady tenant took its margin; want 8", s.Tenants["burst"].InUse)
	}
}

// A stream released before its first token (the backend failed it, its
// first event was an error, the client went away) is no completion of
// its tenant's ramp: the allowance, which grows by one per answer as TCP's
// slow start by acks, stayed the same. Every release counted: B's
// requests failing at once doubled its allowance as answers would.
func TestRampCompletionNeedsFirstToken(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	steadyHolding(t, q, clk, 4) // peak 4, margin 2: no probe goes
	first := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	for range 3 { // B's streams failing before a first token
		clk.Advance(20 * time.Millisecond)
		first.Release()
		first = grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	}
	clk.Advance(20 * time.Millisecond)
	if got, _ := streamsOf(t, q, clk, "B", 3); len(got) != 0 {
		t.Fatalf("%d of B's next three granted after three failed streams; want none: its allowance (1) held, no answer came back", len(got))
	}
	// An answered stream is a completion: its allowance grows by one.
	first.FirstToken(true)
	clk.Advance(20 * time.Millisecond)
	first.Release()
	if s := q.Stats(); s.Tenants["B"].InUse != 2 {
		t.Fatalf("B holds %d after an answered stream; want 2 (its allowance grown by one, a held request granted)", s.Tenants["B"].InUse)
	}
}

// A stream request answered whole (JSON: a backend that ignored "stream",
// a transcription) is a completion, as an answered stream is, and proves
// no slot: Answered counts it without a start. Before, only a first token
// counted, and such a tenant's allowance never grew.
func TestRampAnsweredStreamIsCompletion(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	steadyHolding(t, q, clk, 4) // peak 4, margin 2: no probe goes
	proven := q.Stats().RampProven
	first := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(20 * time.Millisecond)
	if got, _ := streamsOf(t, q, clk, "B", 2); len(got) != 0 {
		t.Fatalf("%d of B's next two granted beside its first; want both held (allowance 1)", len(got))
	}
	first.Answered()
	first.Answered() // told twice: one completion
	clk.Advance(20 * time.Millisecond)
	first.Release()
	first.Answered() // after its release: nothing
	if s := q.Stats(); s.Tenants["B"].InUse != 2 || s.RampProven != proven {
		t.Fatalf("after a stream answered whole: B holds %d, proven %d; want 2 (its allowance grown by one: both held ones granted), %d (nothing proven)",
			s.Tenants["B"].InUse, s.RampProven, proven)
	}
}
