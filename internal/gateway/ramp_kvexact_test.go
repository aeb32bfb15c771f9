package gateway

import (
	"testing"
	"time"

	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// The simulator read as vLLM (no batch bound; the cache's size from the
// vllm:cache_config_info it publishes, num_gpu_blocks x block_size): 16,384
// KV tokens, A's two 6,500-token prompts and B's one-word one hold 79% of
// it. Sequences like the running ones would not fit (3 x 0.16 / 0.79 is
// none), but B's one-word requests, about 230 tokens each with their
// max_tokens, do: ten of them in the 2,400 free. B's five are granted and
// start at once. The code before kvexact counted newcomers like the
// running ones and held all five (ceiling 3: the three in the engine).
func TestColdShortNewcomerBesideLongPromptsGrantedVLLM(t *testing.T) {
	st, refused := coldRamp{
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, KVTokens: 16384, DecodeStepBase: 50 * time.Millisecond},
		names: loadscrape.Names{BatchBound: []string{}, KVSize: []string{"vllm:cache_config_info"}},
		words: 6500, maxTokens: 200, newcomerWords: 1, awaitStarts: 8,
	}.run(t)
	wantAllGranted(t, st, refused, "the free KV tokens hold B's short requests")
}

// A newcomer longer than the free cache is held, beside a batch bound
// too: 16 slots, 16,384 KV tokens, A's two 5,000-token prompts and B's
// 3,000-token one hold 80% of it (the simulator reserves 13,600 of it with
// max_tokens). B's five of 3,000 tokens each need about 3,950 (the
// gateway's estimate of the prompt, bytes / 4, plus max_tokens) of the
// 2,600 free: none fits, in the engine either, so they are held in the
// gateway's queue and the ceiling is the three in the engine. The code
// before kvexact took the 13 free slots for room below a full cache (95%)
// and granted all five, to wait inside the engine.
func TestColdLongNewcomerBesideLongPromptsHeld(t *testing.T) {
	st, refused := coldRamp{
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, KVTokens: 16384, DecodeStepBase: 50 * time.Millisecond},
		words: 5000, maxTokens: 200, newcomerWords: 3000,
	}.run(t)
	wantHeldAtThree(t, st, refused, "B's prompts do not fit the free KV tokens")
}
