package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNewTenantGrowsIntoAdaptiveSlots: TestNewTenantGetsFreeStaticSlots
// on adaptive limits, the default (no max_concurrency: no slot is known).
// Tenant A streams one long answer, tenant B becomes busy beside it with a
// long answer of its own, then sends five more at once. The ramp reckoned
// from the pool's recent peak (2) held the five until B's first answer
// came back, with 2 of the engine's 16 slots in use. Each of them going
// above the base as a probe that starts promptly now adds a slot: they
// start while B's first answer still runs. In the batch class (5 min
// objective), so a first token slowed by a loaded machine (a late probe
// pauses probing for tenant_ramp) delays them but cannot refuse them. The
// answers fit the simulator's KV cache together (5,000 + 3,000 + 5 x
// 2,000 tokens of 65,536): with A at 60,000 the fifth stream waited in
// the engine for KV room, its probe came late, and the base rightly
// stopped growing.
func TestNewTenantGrowsIntoAdaptiveSlots(t *testing.T) {
	rig := startRampRig(t, nil, nil)
	srv, gw := rig.srv, rig.gw

	// The app kicks the queues every 250 ms while one has work
	// (App.kickQueues): a probe paused by a late one goes again on a Kick.
	var kicker sync.WaitGroup
	defer kicker.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kicker.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				gw.Runtime().Kick()
			}
		}
	})
	hold := make(chan struct{})
	var started, refused atomic.Int64
	var streams sync.WaitGroup
	send := func(key string, tokens int) (*http.Response, error) {
		body := `{"model":"m1","stream":true,"max_tokens":` + itoa(tokens) + `,"messages":[{"role":"user","content":"hello"}]}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Sluice-Priority", "batch")
		return http.DefaultClient.Do(req)
	}
	// open starts a stream of tokens for key and returns once its first
	// token came (or it was refused). The stream then holds its slot
	// until hold closes; or, with done set, is read to its end, which
	// closes done.
	open := func(key string, tokens int, done chan struct{}) {
		first := make(chan struct{})
		signal := sync.OnceFunc(func() { close(first) })
		streams.Go(func() {
			defer signal()
			resp, err := send(key, tokens)
			if err != nil {
				refused.Add(1)
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, _ := br.ReadString('\n')
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "data: ") {
				rest, _ := io.ReadAll(br)
				t.Logf("%s: %d %s%s", key, resp.StatusCode, line, rest)
				refused.Add(1)
				return
			}
			started.Add(1)
			signal()
			if done != nil {
				_, _ = io.Copy(io.Discard, br)
				close(done)
				return
			}
			select {
			case <-hold:
			case <-ctx.Done():
			}
		})
		<-first
	}
	open("sk-a", 5000, nil)
	bFirst := make(chan struct{})
	open("sk-b", 3000, bFirst) // 30 s of decode steps or more
	var burst sync.WaitGroup
	for range 5 {
		burst.Go(func() { open("sk-b", 2000, nil) })
	}
	burst.Wait()
	select {
	case <-bFirst:
		t.Fatalf("B's five started (%d of 7 streams, %d refused) only once its first answer had ended: held for its round trip with slots free",
			started.Load(), refused.Load())
	default:
	}
	close(hold)
	cancel()
	streams.Wait()
	if started.Load() != 7 || refused.Load() != 0 {
		t.Fatalf("streams started %d, refused %d; want all 7 started (A 1, B 6 of 16 engine slots)", started.Load(), refused.Load())
	}
}
