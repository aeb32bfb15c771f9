package admission

import (
	"testing"
	"time"
)

// A tenant's steady long prompts on an otherwise idle pool are never held
// past the engine's start of what it was sent: the next one, sent between
// its backend's release of the last (the engine's room counts it gone)
// and its ticket's, is parked, and the ticket's release lets it in, with
// no Kick and no time passing (review32 of branch prefill2). Likewise one
// held while the engine's queued prefill is beyond the delay target goes
// at the queue's next look once it falls within.
func TestLongPromptHeldOnlyUntilTheEnginesStartIt(t *testing.T) {
	clk := newFakeClock()
	engineInflight, within := 0, true // one backend, as endpoint.PrefillRoom prices it
	cfg := QueueConfig{Fair: true, RampWindow: 2 * time.Second,
		PrefillCapacity: func(float64, time.Duration) PrefillFit {
			if within {
				return PrefillFit{Slots: engineInflight + 1}
			}
			return PrefillFit{Slots: engineInflight}
		}}
	q := NewQueue(cfg, newCapacity(16).get, clk.Now)
	long := Request{Tenant: "A", Cost: 100, Streams: true, Prompt: 2000, LongPrefill: true}
	for i := range 20 {
		first := grantedT(t, q, long)
		engineInflight = 1
		clk.Advance(time.Second)
		engineInflight = 0 // its answer ended at the backend; its ticket not yet released
		tk, w, err := q.submit(long)
		if err != nil {
			t.Fatalf("long prompt %d: refused %v", i, err)
		}
		if tk != nil { // the transient hold this test is about did not happen
			t.Fatalf("long prompt %d: granted beside its ticket before; want parked until its release", i)
		}
		first.Release()
		select {
		case <-w.ready:
		default:
			t.Fatalf("long prompt %d: still held after the ticket before it was released (in use %d)", i, q.Stats().InUse)
		}
		w.ticket.Release()
	}
	first := grantedT(t, q, long)
	engineInflight, within = 1, false // its prefill queued beyond the delay target
	_, w, err := q.submit(long)
	if err != nil || w == nil {
		t.Fatalf("a long prompt beside one still prefilling: %v, %v; want held", w, err)
	}
	clk.Advance(300 * time.Millisecond)
	within = true // the engine started it: the queued prefill is within the target
	q.Kick()
	select {
	case <-w.ready:
	default:
		t.Fatal("held past the engine's start of the one before it")
	}
	w.ticket.Release()
	first.Release()
}
