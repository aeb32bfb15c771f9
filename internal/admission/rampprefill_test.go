package admission

import (
	"errors"
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

// A parked long prompt refused as late is told to come back when one sent
// afresh, with its whole objective, would go at once, not one with what
// it has left (branch prefillrate). One backend running one request, its
// queued prefill 0.55 s, the prompt's own 1.4 s, its objective 2 s: held
// (0.55 s is past the 0.5 s delay target), then 0.3 s later another 1 s
// of prefill is queued ahead: with 1.25 s queued it can no longer start
// within its 1.7 s left. A retry with 2 s goes once the queued prefill is
// within min(0.5 s, 2 s - 1.4 s): in 0.75 s; judged by the 1.7 s it had
// left, in 0.95 s (as it was refused before).
func TestHeldLatePromptRetryAfterForItsWholeObjective(t *testing.T) {
	clk := newFakeClock()
	const lateStart, own = 500 * time.Millisecond, 1400 * time.Millisecond
	start, ahead := clk.Now(), 550*time.Millisecond
	cfg := QueueConfig{Fair: true, RampWindow: 2 * time.Second, MinRetryAfter: time.Millisecond,
		PrefillCapacity: func(_ float64, left time.Duration) PrefillFit { // as gateway.Pool prices one backend
			queued := max(ahead-clk.Now().Sub(start), 0)
			within := min(lateStart, left-own)
			f := PrefillFit{Slots: 1, Late: queued+own > left, RetryAfter: max(queued-within, 0)}
			if queued <= within {
				f.Slots = 2
			}
			return f
		}}
	q := NewQueue(cfg, newCapacity(16).get, clk.Now)
	running := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	defer running.Release()
	long := Request{Tenant: "A", Cost: 100, Streams: true, Prompt: 3500, LongPrefill: true, Due: clk.Now().Add(2 * time.Second)}
	tk, w, err := q.submit(long)
	if err != nil || tk != nil || w == nil {
		t.Fatalf("a long prompt beside 0.55 s of queued prefill: %v, %v, %v; want held", tk, w, err)
	}
	clk.Advance(300 * time.Millisecond)
	ahead += time.Second // another prompt's prefill queued ahead of it
	q.Kick()
	select {
	case <-w.ready:
	default:
		t.Fatal("still held with its queued prefill and its own past its time left")
	}
	var rej *Rejection
	if !errors.As(w.err, &rej) {
		t.Fatalf("held late prompt: %v; want a refusal", w.err)
	}
	if rej.RetryAfter != 750*time.Millisecond {
		t.Errorf("Retry-After %v; want 750ms (when a retry with its whole 2 s objective goes at once)", rej.RetryAfter)
	}
}
