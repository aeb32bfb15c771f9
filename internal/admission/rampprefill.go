package admission

// The reported room (rampceiling.go) and the memory of prompt starts
// count slots; an engine also prefills the prompts it was sent one after
// another (or as one batch), so a burst of long prompts can take longer
// to start than the objective with most slots free. On one simulator
// prefilling 2,500 tokens/s, warm (its rate learned), a newcomer's five
// 2,000-word prompts went in at once beside one still prefilling: all
// five started 4.3 s after they were sent, and the established tenant's
// next two streams were refused 503 while its two running ones stalled
// 4 s (docs/RELIABILITY.md, branch burstprefill).
//
// Where the backends have learned their prefill rate, the pool reports
// how many of the requests of a prompt's size they can run with each new
// one starting within the interactive delay target beyond its own prefill
// (QueueConfig.PrefillCapacity, endpoint.Backend.PrefillRoom): what they
// run, plus as many more as their queued prefill leaves time for. The
// ramping tenant's base is never above it, whatever the slots say: the
// rest of its burst is held (parked, bounded by its deadline: refused 503
// with Retry-After at it) until the engines have started enough of what
// they were sent, and no probe goes past it. It is time, not slots, so
// the others' margins are not taken from it. Beyond its allowance it
// holds a ramping tenant's short prompts too; any other request only as a
// long prompt (below): a short prompt is granted as before and waits in
// the engine behind at most a delay target of prefill plus one prompt.

// An established tenant's own burst of long prompts went by slots alone:
// on the same simulator (static max_concurrency 16), a tenant sending a
// 10-word stream every 0.3 s sent six 2,000-word prompts at once; all six
// went in on free slots and started 2.4-4.9 s later, its short streams
// stalled behind them: 3 of its ~21 requests from then on started within
// the 2 s objective (docs/RELIABILITY.md, branch prefill2). So any tenant's long prompt (longPrompt tokens or
// more) is held while the engines cannot start one more within the delay
// target (prefillFull): the rest of such a burst waits parked, as a
// ramping tenant's does (bounded by its deadline, refused 503 with
// Retry-After at it), and goes as the engines start what they were sent.
// It holds nothing while the queued prefill is within the delay target,
// so a tenant's steady long prompts, sent no faster than the engines
// prefill them, go at once; and a short prompt, whose own prefill delays
// nobody, never asks (the fast path is unchanged: no call of the hook).

// longPrompt is the prompt (estimated tokens) from which any tenant's
// request is priced by the queued prefill: the size from which a start
// teaches the prefill rate (endpoint's minPrefillTokens), where the
// prefill, not a start's fixed cost, is most of the wait it adds.
const longPrompt = 1024

// prefillFull reports whether a request of prompt estimated tokens must
// wait for the engines' queued prefill: a long prompt while the pool,
// priced, has no room for one more within the delay target. capacity 0:
// no hold (an opened queue's grants).
func (q *Queue) prefillFull(prompt float64, capacity int) bool {
	if prompt < longPrompt || capacity <= 0 || !q.rampOn() {
		return false
	}
	prefill := q.prefillSlots(prompt)
	return prefill > 0 && q.inUse+1 > prefill
}

// prefillSlots is QueueConfig.PrefillCapacity for a prompt of prompt
// estimated tokens; 0 when not priced.
func (q *Queue) prefillSlots(prompt float64) int {
	if q.cfg.PrefillCapacity == nil {
		return 0
	}
	return max(q.cfg.PrefillCapacity(prompt), 0)
}

// rampFit is what the ramp reckons the engines' room for: a request's KV
// need (kvNeed) and its prompt (promptNeed).
type rampFit struct{ need, prompt float64 }

// rampFit is r's, each rounded as kvNeed rounds (a distinct fit is a call
// of each hook when the parked waiters are looked at).
func (r Request) rampFit() rampFit {
	return rampFit{need: r.kvNeed(), prompt: roundNeed(r.Prompt)}
}
