package gateway

import (
	"fmt"
	"testing"

	"github.com/sluice-gw/sluice/internal/admission"
)

// A stream's budget asked its limits for whole steps (256 tokens), all
// or nothing, and for every step a read carried the count past: refused,
// the stream was cut with up to a step's tokens still in its limit. On a
// limit of 400 (25 prompt + 256 reserved, 119 left) it was cut at 256;
// on 1,000 at 768, or at 512 when one read passed two steps at once. The
// limits now grant what they have left, so a stream is cut where its
// limit runs out: at the limit less its prompt, charged the whole limit
// (a token short at most: ratelimit's takeUpTo, a count's rounding).
func TestACutStreamUsesItsWholeLimit(t *testing.T) {
	const gen = 2000
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	for _, limit := range []int{400, 1000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			be := longStreamBackend(t, gen, nil, nil)
			url, clk := tokenGatewayClock(t, testConfig(be.URL), int64(limit))
			got := readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer k"))
			used := usedOf(t, url, "k", limit, clk)
			if got.status != 200 || !got.cut || got.tokens < limit-prompt-1 || got.tokens > limit-prompt || used != prompt+got.tokens {
				t.Fatalf("%d, %d of %d tokens, cut %v, charged %d; want cut at %d (the limit less the %d prompt), charged %d",
					got.status, got.tokens, gen, got.cut, used, limit-prompt, prompt, limit)
			}
		})
	}
}
