package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestPrefixAffinityKeepsSharedPromptOnOneBackend: chats sharing a long
// system prompt all go to one simulator, whose prefix cache then hits.
func TestPrefixAffinityKeepsSharedPromptOnOneBackend(t *testing.T) {
	var sims []*sim.Server
	var urls []string
	for i := range 3 {
		s := sim.New(sim.Config{Model: "m1", Seed: int64(i), DecodeStepBase: time.Millisecond,
			DecodeStepPerSeq: time.Microsecond, PrefillTokensPerSec: 1e7})
		srv := httptest.NewServer(s)
		t.Cleanup(func() { srv.Close(); s.Close() })
		sims = append(sims, s)
		urls = append(urls, srv.URL)
	}
	cfg := testConfig(urls...)
	cfg.Models[0].Policy = "prefix_affinity"
	gw, _ := startGateway(t, cfg)

	system := strings.Repeat("You are a meticulous assistant for the Sluice project. ", 40)
	chat := func(sys, user string) string {
		t.Helper()
		body := fmt.Sprintf(`{"model":"m1","max_tokens":2,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, sys, user)
		resp := post(t, gw.URL+"/v1/chat/completions", body)
		if out := readAll(t, resp); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Sluice-Backend")
	}

	first := chat(system, "question 0")
	for i := 1; i < 8; i++ {
		if got := chat(system, fmt.Sprintf("question %d about something else entirely", i)); got != first {
			t.Fatalf("request %d went to %q, the shared prefix to %q", i, got, first)
		}
	}
	var hits int64
	for _, s := range sims {
		hits += s.Stats().PrefixHitTokens
	}
	if hits == 0 {
		t.Fatal("the simulators report no prefix-cache hits")
	}

	// Different prompts still spread over the pool.
	seen := map[string]bool{}
	for i := range 24 {
		seen[chat(fmt.Sprintf("system prompt number %d. %s", i, system), "hi")] = true
	}
	if len(seen) < 2 {
		t.Fatalf("24 distinct prompts all went to %v", seen)
	}
}
