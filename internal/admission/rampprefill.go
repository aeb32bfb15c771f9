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
// the others' margins are not taken from it; and it only holds a ramping
// tenant beyond its allowance: an established tenant's short prompt is
// granted as before and waits in the engine behind at most a delay
// target of prefill plus one prompt.

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
