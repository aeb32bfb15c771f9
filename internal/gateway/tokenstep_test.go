package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

// A stream's budget asked its limits for whole steps (256 tokens), all
// or nothing, and for every step a read carried the count past: refused,
// the stream was cut with up to a step's tokens still in its limit. On a
// limit of 400 (25 prompt + 256 reserved, 119 left) it was cut at 256;
// on 1,000 at 768, or at 512 when one read passed two steps at once. The
// limits now grant what they have left, so a stream is cut where its
// limit runs out: at the limit less its prompt, charged the whole limit
// (to the token: a limit's count of what is left is what it grants).
func TestACutStreamUsesItsWholeLimit(t *testing.T) {
	const gen = 2000
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	for _, limit := range []int{400, 1000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			be := longStreamBackend(t, gen, nil, nil)
			url, clk := tokenGatewayClock(t, testConfig(be.URL), int64(limit))
			got := readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer k"))
			used := usedOf(t, url, "k", limit, clk)
			if got.status != 200 || !got.cut || got.tokens != limit-prompt || used != prompt+got.tokens {
				t.Fatalf("%d, %d of %d tokens, cut %v, charged %d; want cut at %d (the limit less the %d prompt), charged %d",
					got.status, got.tokens, gen, got.cut, used, limit-prompt, prompt, limit)
			}
		})
	}
}

// A flight's leader whose client left before the first byte was settled
// at once as unreached (its reservation given back) while the flight ran
// on for its follower, charged nothing as coalesced: the tokens the
// flight relayed were charged to nobody but for the budget's steps. k1
// (1,000 a minute) twice: the follower got 975 tokens, k1 paid 719 for
// them (+ 25 prompt). The flight now keeps its leader's reservation and
// settles it to what it relayed: k1 pays for what its follower got.
func TestALeaderThatLeftLeavesItsFlightCharged(t *testing.T) {
	const gen = 2000
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	openAtCleanup(t, release)
	be := longStreamBackend(t, gen, arrived, release)
	cfg := twoKeys(1000)
	cfg.Models[0].Backends = []config.Backend{{URL: be.URL}}
	clk := &frozenClock{now: time.Now()}
	url, gw := startCachingGatewayCfg(t, cfg, nil, clk.Now)

	got := leaderLeavesItsFlight(t, url, gw, arrived, release)
	if len(arrived) != 0 || got.xcache != "COALESCED" || got.status != 200 || !got.cut {
		t.Fatalf("follower: %d, X-Cache %q, cut %v, %d more backend calls; want it coalesced and cut", got.status, got.xcache, got.cut, len(arrived))
	}
	// The flight settles on its goroutine when its upstream call ends.
	wait, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Runtime().flights.bg.Wait(wait); err != nil {
		t.Fatalf("the flight's call still running: %v", err)
	}
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	used := usedOf(t, url, "k1", 1000, clk)
	t.Logf("follower: %d tokens; k1 charged %d", got.tokens, used)
	if used != prompt+got.tokens {
		t.Fatalf("k1 charged %d for the %d tokens its flight relayed (+ %d prompt)", used, got.tokens, prompt)
	}
}
