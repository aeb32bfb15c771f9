package admission

import (
	"testing"
	"time"
)

// An answer whose slack has run out competes as one arriving then: the
// stream that queued during its slack goes first (by its older tags the
// answer took the first slot freed after its slack, ahead of it), and a
// stream arriving after its slack ran out goes after it.
func TestAnswerPastItsSlackGoesAsIfItArrivedThen(t *testing.T) {
	q, clk, held := codelQueue(t)
	deadline := clk.Now().Add(5 * time.Second)
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 300 * time.Millisecond})
	clk.Advance(100 * time.Millisecond)
	during := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline})
	clk.Advance(300 * time.Millisecond) // the answer's slack ran out 100ms ago
	after := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline})

	held[0].Release()
	if during.state != granted || answer.state != waiting {
		t.Fatalf("first slot after the answer's slack: stream queued during it %v, answer %v; want the stream granted, the answer waiting", during.state, answer.state)
	}
	held[1].Release()
	if answer.state != granted || after.state != waiting {
		t.Fatalf("second slot: answer %v, stream arriving after its slack %v; want the answer granted first", answer.state, after.state)
	}
	held[2].Release()
	if after.state != granted {
		t.Fatalf("third slot: stream arriving after the answer's slack %v; want granted", after.state)
	}
}

// An answer leaving its place when its slack runs out gives the place to
// the waiters behind it in its flow: its tenant is charged for it once,
// at its new place. Tenant a (answer, then stream) and b (two streams),
// all of cost 100: a's stream goes in the answer's old turn, the answer in
// a's second turn, before b's second stream (charged twice, the answer
// went after it).
func TestAnswerArrivingAfreshIsChargedOnce(t *testing.T) {
	q, clk, held := codelQueue(t)
	deadline := clk.Now().Add(5 * time.Second)
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 300 * time.Millisecond})
	a2 := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline})
	b1 := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline})
	b2 := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline})
	clk.Advance(400 * time.Millisecond)

	want := []*waiter{a2, b1, answer, b2}
	names := map[*waiter]string{answer: "a's answer", a2: "a's stream", b1: "b's first stream", b2: "b's second stream"}
	for i, w := range want {
		held[i].Release()
		if w.state != granted {
			var got []string
			for _, o := range want {
				if o.state == granted {
					got = append(got, names[o])
				}
			}
			t.Fatalf("slot %d: %s %v; want granted (granted so far: %v; want order %s, %s, %s, %s)",
				i+1, names[w], w.state, got, names[a2], names[b1], names[answer], names[b2])
		}
	}
}

// While its class refuses a large share of its streams (overloaded), a
// non-stream past its slack still yields to the streams queued: the slot
// it would take is one a refused stream lacked. Tenant a's answer (slack
// 300 ms) is past its slack and arrived afresh level with tenant b's
// stream, ahead of it by arrival; then twenty streams with no time left
// are refused at arrival (20 of about 30 streams sent lately, the ten held
// slots' included: over 60%). The next slot is the stream's (the answer's
// before); once the refusals have aged out (10 s on), the answer goes next.
func TestAnswerPastItsSlackYieldsWhileStreamsAreRefused(t *testing.T) {
	q, clk, held := codelQueue(t)
	deadline := clk.Now().Add(30 * time.Second)
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 300 * time.Millisecond})
	clk.Advance(400 * time.Millisecond)
	stream := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline})
	for range 20 {
		if tk, _, err := q.submit(Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Millisecond)}); err == nil {
			t.Fatalf("stream with 1 ms left behind two waiters: %v; want refused at arrival", tk)
		}
	}

	held[0].Release()
	if stream.state != granted || answer.state != waiting {
		t.Fatalf("slot freed while streams are refused: stream %v, answer past its slack %v; want the stream granted", stream.state, answer.state)
	}
	clk.Advance(10 * time.Second) // the refusals aged out
	later := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline})
	held[1].Release()
	if answer.state != granted || later.state != waiting {
		t.Fatalf("slot freed once the refusals aged out: answer %v, stream %v; want the answer granted", answer.state, later.state)
	}
}

// One stream refused among many served is no overload: the answer past
// its slack keeps its turn (yielding through the bursts of refusals the
// mix sees at 1.2x starved the non-streams).
func TestAnswerPastItsSlackKeepsItsTurnBesideARareRefusal(t *testing.T) {
	q, clk, held := codelQueue(t)
	deadline := clk.Now().Add(30 * time.Second)
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 300 * time.Millisecond})
	clk.Advance(400 * time.Millisecond)
	stream := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline})
	if tk, _, err := q.submit(Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Millisecond)}); err == nil {
		t.Fatalf("stream with 1 ms left behind two waiters: %v; want refused at arrival", tk)
	}
	held[0].Release()
	if answer.state != granted || stream.state != waiting {
		t.Fatalf("slot freed beside one refusal in twelve streams: answer %v, stream %v; want the answer granted (ahead by arrival)", answer.state, stream.state)
	}
}

// An answer arriving afresh when a slot frees changes its class's head
// after the heads held for their tenant were parked: the new head is
// checked too (review45 of branch tokwait2). Tenant a's answer (slack
// 300 ms) is ahead of tenant b's long prompt by arrival, level by tags,
// and a's stream is behind it. Past the answer's slack the engines cannot
// start one more long prompt (PrefillCapacity: 1 slot), so b's is held;
// a slot frees. The answer's re-arrival puts a's stream level with b's
// long prompt and b's ahead by arrival: the merged code granted it as the
// head, past the hold; the slot is a's stream's.
func TestAnswerArrivingAfreshDoesNotLetAHeldHeadIn(t *testing.T) {
	clk := newFakeClock()
	slots := 0 // the engines' room for one more long prompt; 0: not priced
	cfg := QueueConfig{Name: "m", Fair: true, RampWindow: 2 * time.Second,
		PrefillCapacity: func(float64, time.Duration) PrefillFit { return PrefillFit{Slots: slots} }}
	q := NewQueue(cfg, newCapacity(2).get, clk.Now)
	held := []*Ticket{grantedT(t, q, Request{Tenant: "x", Cost: 100}), grantedT(t, q, Request{Tenant: "x", Cost: 100})}
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Slack: 300 * time.Millisecond})
	long := submitT(t, q, Request{Tenant: "b", Cost: 100, Prompt: 2000, LongPrefill: true})
	stream := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(400 * time.Millisecond) // past the answer's slack
	slots = 1                           // one running: no room for b's long prompt beside it

	held[0].Release()
	if long.state == granted {
		t.Fatalf("slot freed while b's long prompt is held: granted it (answer %v, a's stream %v); want it held", answer.state, stream.state)
	}
	if stream.state != granted {
		t.Fatalf("slot freed: a's stream %v, answer %v, b's held long prompt %v; want a's stream granted (first by tags after the answer arrived afresh)", stream.state, answer.state, long.state)
	}
}
