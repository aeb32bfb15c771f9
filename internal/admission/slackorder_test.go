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
