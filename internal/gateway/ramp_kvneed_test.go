package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/sim"
)

// B's prompts are 1,000 words of 64 letters: 1,000 tokens to the
// simulator (a word a token), about 16,250 to the gateway's estimate
// (bytes / 4), more than the whole of the engine's 16,384 KV tokens less
// the 5% reserve. No room would ever come for such a need: the code of
// branch kvexact held B's five to their deadline (ceiling 3, the three in
// the engine) and refused them with a Retry-After no retry could keep,
// while the engine, 16 slots and 13,000 tokens free, would run them all
// at once. A need beyond the whole cache is the engine's to judge (it
// refuses a prompt longer than it takes, 400, as vLLM does beyond
// max_model_len): the bound's room stands, all five are granted and
// start.
func TestColdNewcomerBeyondTheWholeCacheIsTheEnginesToJudge(t *testing.T) {
	st, refused := coldRamp{
		sim:   sim.Config{Model: "m1", Seed: 1, Slots: 16, KVTokens: 16384, DecodeStepBase: 50 * time.Millisecond},
		words: 1000, maxTokens: 200, newcomerWords: 1000, newcomerWord: strings.Repeat("w", 64), awaitStarts: 8,
	}.run(t)
	if st.InUse != 8 || st.Queued != 0 || refused != 0 {
		t.Fatalf("in use %d, queued %d, refused %d (ramp held total %d, ceiling %d); want all 8 granted and started: the engine takes them",
			st.InUse, st.Queued, refused, st.RampHeldTotal, st.RampCeiling)
	}
}

// A room of 0 with none of this gateway's requests on the engine (others'
// long prompts hold 79% of its 16,384 tokens; a newcomer of 3,000 does
// not fit) is a reported ceiling of 0, not none: none let the memory of
// prompt starts and probes send the newcomer to wait in the engine (the
// code of branch kvexact, whose ceiling was an int, 0 for none).
func TestPoolNoRoomIsAReportedZero(t *testing.T) {
	at := time.Unix(1000, 0)
	b, err := endpoint.New(endpoint.Spec{URL: "http://x"}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b.SetLoad(endpoint.Load{Running: 3, KVCacheUsage: 0.79, KVCacheTokens: 16384, At: at, Expires: at.Add(3 * time.Second)})
	pool := NewPool(PoolParts{Model: &config.Model{Name: "m1"}, Backends: []*endpoint.Backend{b}, Now: func() time.Time { return at }})
	if room, ok := pool.ReportedCapacity(3000); room != 0 || !ok {
		t.Errorf("a 3,000-token newcomer in 2,600 free tokens: room %d, reported %t; want 0, reported", room, ok)
	}
	if room, ok := pool.ReportedCapacity(250); room != 10 || !ok {
		t.Errorf("a 250-token newcomer: room %d, reported %t; want 10, reported", room, ok)
	}
}
