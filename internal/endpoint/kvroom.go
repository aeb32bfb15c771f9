package endpoint

import "math"

// An engine's KV cache bounds its batch as much as its slots do: a
// sequence holds the KV of its prompt and of every token it has generated,
// and an engine whose cache is full starts nothing more (vLLM preempts a
// running sequence, or leaves the newcomer waiting) whatever its batch
// bound says. The engines report the cache's usage as a fraction
// (vLLM's vllm:kv_cache_usage_perc, SGLang's sglang:token_usage), and the
// mean footprint of a running sequence is that fraction over the running
// count, so the sequences the free part holds are
//
//	running × (1 − usage − kvReserve) / usage
//
// counted in sequences like the running ones: the cache's size in tokens
// cancels out. Where the engine reports that size, the room counts the
// newcomer's own tokens instead (kvTokenRoom, below); this estimate
// stands for engines that do not, and for the status's ceiling before
// any request was judged.
//
// It is an estimate, kept on the low side:
//   - kvReserve holds part of the free cache back: the running sequences
//     grow into it by a token per step each while the reading stands (up
//     to StaleAfter), and vLLM admits nothing into its last 1% (its
//     watermark).
//   - The requests waiting in the engine take the free cache first.
//   - A newcomer is taken to be no larger than the running ones now; a
//     burst of longer prompts beside short ones is overestimated, and the
//     engine then queues, which the next readings show (no room after a
//     queue in two of them). The mirror error, short newcomers beside a
//     few long prompts, is underestimated: two 6,500-token prompts fill
//     79% of a cache and the estimate is no more sequences, where dozens
//     of one-word requests fit. Beside a reported batch bound this
//     held a newcomer's short requests the engine would have started at
//     once (branch review17), so there, without the cache's size, the
//     KV room counts only when the cache is full (kvFullUsage).
//   - The simulator reserves a request's prompt plus max_tokens when it
//     starts it but reports the tokens held, as vLLM does; its KV room
//     overstates what it admits by the running streams' unwritten tokens.
const kvReserve = 0.05

// kvFullUsage is the usage from which the KV room lowers a reported batch
// bound: the point where the estimate above is no more sequences whatever
// their size (at u >= 1 − kvReserve the free part, less the reserve the
// running ones grow into, is nothing), so the running sequences' footprint,
// which says nothing of a newcomer's, no longer decides it. Below it the
// bound alone is the room: an engine whose cache is full for a longer
// newcomer queues it, and a queue in two readings is no room already. An
// engine without a bound (vLLM) has the KV room alone at any usage: without
// it, it has no ceiling at all.
const kvFullUsage = 1 - kvReserve

// kvEstimateMinRunning is the fewest sequences running from which the KV
// room alone (an engine that reports no batch bound, vLLM) is estimated:
// one sequence's footprint says little of the next one's, and an idle
// engine says nothing at all. Beside a reported bound the KV room can only
// lower the room, so one running sequence is enough there.
const kvEstimateMinRunning = 2

// kvRoom is this gateway's share of what the engine's KV cache holds: its
// requests in the engine at the scrape (InflightAtScrape, at most what the
// engine ran or queued then) plus the sequences the free cache holds less
// those waiting. ok is false when the reading cannot say: no usage
// reported, or fewer sequences running than the estimate needs
// (kvEstimateMinRunning, or one beside a reported bound), and beside a
// reported bound while the cache is not full (kvFullUsage).
func (l Load) kvRoom(bounded bool) (room float64, ok bool) {
	u := min(l.KVCacheUsage, 1)
	running := math.Round(l.Running)
	need := float64(kvEstimateMinRunning)
	if bounded {
		need = 1
	}
	if u <= 0 || running < need || bounded && u < kvFullUsage {
		return 0, false
	}
	free := max(math.Floor(min(running*(1-u-kvReserve)/u, maxReportedBound)), 0)
	mine := min(float64(l.InflightAtScrape), math.Round(l.Running+l.Waiting))
	return mine + free - math.Round(l.Waiting), true
}

// The estimate above takes a newcomer to be like the running sequences,
// which held short newcomers back beside a few long prompts (review17).
// An engine that reports its cache's size in tokens (vLLM's
// cache_config_info, num_gpu_blocks × block_size; SGLang's
// max_total_num_tokens; the simulator's budget: Load.KVCacheTokens) says
// the free tokens exactly, size × (1 − usage − kvReserve), and the
// gateway knows the newcomer's own need, its estimated prompt plus
// max_tokens (admission.EstimateCost, the queue's cost): the newcomers
// like it that fit are free tokens over need, at any usage and beside a
// bound or not. A newcomer longer than the free cache gets no room beyond
// this gateway's requests there; one of a few dozen tokens beside long
// prompts gets the bound. The need counts all of max_tokens: vLLM
// allocates as it generates and may preempt later, SGLang and the
// simulator reserve it, so the whole answer's KV is the honest need. The
// requests waiting in the engine take the free tokens first: this
// gateway's own at their sizes, the others' as newcomers like this one
// (waitingTokens).
//
// A need the whole cache of an idle engine would not hold (above
// size × (1 − kvReserve)) is not judged here: no room would ever come,
// so the ramp held such a request to its deadline and refused it with a
// Retry-After no retry could keep. Either the estimate is wrong (bytes / 4
// reads long words, escapes or an image's base64 as many tokens) and the
// engine runs it, or the prompt is longer than the engine takes, and the
// engine says so at once: vLLM refuses a prompt beyond max_model_len
// (400), and its cache holds max_model_len, as the simulator does (branch
// kvneed). The estimate from the running sequences (kvRoom) stands for it.

// kvTokenRoom is this gateway's requests in the engine at the scrape plus
// the newcomers of need tokens the free cache holds, less those waiting;
// ok is false when the engine reports no size, need is unknown (<= 0), or
// the need is more than the engine's whole cache holds.
func (l Load) kvTokenRoom(need float64) (room float64, ok bool) {
	if l.KVCacheTokens < 1 || !(need > 0) || need > l.KVCacheTokens*(1-kvReserve) {
		return 0, false
	}
	u := min(l.KVCacheUsage, 1)
	free := max(l.KVCacheTokens*(1-u-kvReserve), 0) - l.waitingTokens(need)
	fits := math.Floor(min(free/need, maxReportedBound))
	mine := min(float64(l.InflightAtScrape), math.Round(l.Running+l.Waiting))
	return mine + fits, true
}

// waitingTokens is what the requests waiting in the engine will take of
// its free cache: up to WaitingAtScrape of them are this gateway's
// streams still waiting for their first token, at their own needs (their
// mean, WaitingKVAtScrape over their count: which of them the engine
// still holds waiting is not reported), and the rest, other clients'
// requests and this gateway's not streamed, whose sizes are unknown, at
// the newcomer's need. Counted all at the newcomer's need (branch
// kvexact), a burst of this gateway's long prompts waiting there left
// room for a short newcomer's as many again, and its short ones none for
// a long newcomer (branch kvneed).
func (l Load) waitingTokens(need float64) float64 {
	waiting := math.Round(l.Waiting)
	if waiting <= 0 {
		return 0
	}
	ours := min(waiting, float64(l.WaitingAtScrape))
	tokens := (waiting - ours) * need
	if ours > 0 {
		tokens += ours * float64(l.WaitingKVAtScrape) / float64(l.WaitingAtScrape)
	}
	return tokens
}
