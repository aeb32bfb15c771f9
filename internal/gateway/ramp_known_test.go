package gateway

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestNewTenantGetsFreeStaticSlots: on a pool of eight static slots
// (max_concurrency) tenant A streams one long answer, tenant B becomes
// busy beside it with a long answer of its own, then sends five more at
// once. The ramp reckoned from the pool's recent peak (2) held all five
// while six slots stood free, until B's first answer came back; with the
// default 2s objective they were refused at their deadline (503). With
// the static slots as the ramp's base they start at once.
func TestNewTenantGetsFreeStaticSlots(t *testing.T) {
	srv, _ := startTwoTenantRampGateway(t, func(cfg *config.Config) {
		cfg.Models[0].Backends[0].MaxConcurrency = 8
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := make(chan struct{})
	var started, refused atomic.Int64
	var streams sync.WaitGroup
	// open starts a long stream for key and returns once its first token
	// came (or it was refused); the stream then holds its slot until hold
	// closes.
	open := func(key string) {
		first := make(chan struct{})
		signal := sync.OnceFunc(func() { close(first) })
		streams.Go(func() {
			defer signal()
			body := `{"model":"m1","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"hello"}]}`
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				refused.Add(1)
				return
			}
			defer resp.Body.Close()
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "data: ") {
				refused.Add(1)
				return
			}
			started.Add(1)
			signal()
			select {
			case <-hold:
			case <-ctx.Done():
			}
		})
		<-first
	}
	open("sk-a")
	open("sk-b")
	var burst sync.WaitGroup
	for range 5 {
		burst.Go(func() { open("sk-b") })
	}
	burst.Wait()
	close(hold)
	cancel()
	streams.Wait()
	if started.Load() != 7 || refused.Load() != 0 {
		t.Fatalf("streams started %d, refused %d; want all 7 started (A 1, B 6 of 8 static slots)", started.Load(), refused.Load())
	}
}

// startTwoTenantRampGateway starts a gateway in front of a simulated
// engine of 16 slots (10 ms decode steps) for tenants a (sk-a) and b
// (sk-b), without hedging; edit changes the config before the start.
func startTwoTenantRampGateway(t *testing.T, edit func(*config.Config)) (*httptest.Server, *Gateway) {
	t.Helper()
	s := sim.New(sim.Config{Model: "m1", Seed: 1, Slots: 16, DecodeStepBase: 10 * time.Millisecond})
	t.Cleanup(s.Close)
	be := httptest.NewServer(s)
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
	if edit != nil {
		edit(cfg)
	}
	return startGateway(t, cfg)
}
