package admission

import "time"

// A request that does not stream shows its client nothing before its whole
// answer, so its client waits for the answer, not for a first token: the
// first-token objective plus the answer's decode. Priced like a stream, it
// was refused at the class's delay target (a quarter of the first-token
// objective) although its client would have waited seconds longer, and
// round robin, which let it queue in the engines, answered more of them in
// time (docs/BENCHMARKS.md §8, the mix scenario: non-streamed long prompts
// at 1.2x, 0.49-0.74 of round robin's). Request.Slack is that longer wait,
// set by the caller (the gateway: the answer's bound in tokens times
// admission.answer_token_wait, at most admission.answer_max_wait):
//
//   - its delay target is the class's plus Slack: an arrival whose wait
//     fits within it queues, one whose wait does not is still refused at
//     once; its review (kept or refused) comes Slack later;
//   - but only while its flow and class are not congested (their streams
//     meet their target): congested, it is admitted, and shed from the
//     head, at the class's target like a stream. The slack is the room the
//     streams leave: measured (bench/overload --scenarios mix, 2x and 4x),
//     non-streams kept through congestion took the slots in fair order and
//     the streams in SLO fell by half or more;
//   - its wait counts toward the class's and its flow's congestion only
//     past Slack (counted), so a non-stream waiting within what its client
//     waits does not make the streams of its class or tenant be shed;
//   - within its slack it yields: the waiters of its class without slack
//     are served before it and leave its work out of their estimates
//     (slackorder.go); when it runs out, the request arrives afresh at
//     the back of its flow, as one sent then (rearrive), not ahead of the
//     streams that queued meanwhile; while its class refuses most of its
//     streams it still yields to them (refusing).

// maxSlack bounds Request.Slack: the queue's times stay far from overflow
// whatever the caller computes.
const maxSlack = time.Hour

// dueOf is when w's wait starts counting against its class's delay
// target for its review: due, or its arrival while its flow or class is
// congested (the slack is the streams' spare room: see above).
func (q *Queue) dueOf(w *waiter) time.Time {
	if q.classes[w.req.Class].flowOrClass(q.flowKey(w.req)).congested {
		return w.enqueued
	}
	return w.due()
}

// due is when w's wait starts counting against its class's delay target:
// its arrival, or Slack after it.
func (w *waiter) due() time.Time { return w.enqueued.Add(w.req.Slack) }

// counted is w's wait at now as the controlled delay observes it, and
// whether it observes it at all. A wait under half the target says the
// queue drains, whatever w's Slack. Past that, w's wait counts only past
// its Slack, and only once that part reaches half the target: a waiter
// within (or just past) what its client waits says neither that the queue
// drains (a sojourn under half the target ends congestion, which would
// spare the streams the discipline sheds) nor that it is congested.
func (w *waiter) counted(now time.Time, target time.Duration) (sojourn time.Duration, ok bool) {
	waited := now.Sub(w.enqueued)
	if w.req.Slack <= 0 || waited < target/2 {
		return waited, true
	}
	late := waited - w.req.Slack
	return late, late >= target/2
}
