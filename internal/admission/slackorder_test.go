package admission

import (
	"testing"
	"time"
)

// A stream arriving behind answers still within their slack is estimated
// without their work and served before them: five answers of 3s slack
// (0.6s estimated ahead, target 0.5s) leave a stream of the same tenant
// and size queued, where it was refused at once, and the first slot freed
// is its. Past their slack the answers go first again, by their older
// tags.
func TestStreamGoesAheadOfAnswersWithinTheirSlack(t *testing.T) {
	q, clk, held := codelQueue(t)
	deadline := clk.Now().Add(5 * time.Second)
	var answers []*waiter
	for range 5 {
		answers = append(answers, submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 3 * time.Second}))
	}
	stream := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline})
	held[0].Release()
	if stream.state != granted {
		t.Fatalf("stream behind answers within their slack, a slot freed: %v; want granted first", stream.state)
	}
	for i, w := range answers {
		if w.state != waiting {
			t.Fatalf("answer %d: %v; want still waiting within its slack", i, w.state)
		}
	}

	// Past their slack, a later stream no longer goes ahead of them.
	clk.Advance(3 * time.Second)
	late := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: clk.Now().Add(5 * time.Second), Slack: 0})
	held[1].Release()
	if answers[0].state != granted || late.state != waiting {
		t.Fatalf("answer past its slack: %v, later stream %v; want the answer granted first", answers[0].state, late.state)
	}
}

// The starvation guard pays for the waiter a lower class actually serves
// (review41): with a batch non-stream of cost 100 within its slack at the
// head of the batch class and a batch stream of cost 8,000 behind it, the
// guard checked its credit against the head's 100 and charged 100, while
// nextIn served the 8,000 stream: after 9 interactive grants the batch
// class took 8,000 of work, about 90% of the pool instead of its 10%
// (batch_min_share). Now the stream goes once the class has earned its
// 8,000: 720 interactive grants of 100 at a 10% share.
func TestStarvationGuardChargesTheWaiterASlackClassServes(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true, MinShare: 0.1}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "x", Cost: 100})
	answer := submitT(t, q, Request{Tenant: "b", Class: Batch, Cost: 100, Slack: time.Hour})
	stream := submitT(t, q, Request{Tenant: "b", Class: Batch, Cost: 8000, Streams: true})
	const streams = 800
	var interactive []*waiter
	for range streams {
		interactive = append(interactive, submitT(t, q, Request{Tenant: "i", Cost: 100, Streams: true}))
	}
	release := held.Release
	served := 0
	for stream.state == waiting {
		release()
		switch {
		case stream.state == granted:
			release = stream.ticket.Release
		case served < streams && interactive[served].state == granted:
			release = interactive[served].ticket.Release
			served++
		default:
			t.Fatalf("after %d interactive grants neither the next interactive stream nor the batch stream was granted (answer %v)", served, answer.state)
		}
	}
	t.Logf("batch stream granted after %d interactive grants", served)
	if served < 700 {
		t.Errorf("batch stream of 8,000 granted after %d interactive grants of 100; want about 720 (a 10%% share of cost)", served)
	}
	release()
}
