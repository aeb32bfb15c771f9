package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestSteadyTenantKeepsSlotsDuringBurst: a tenant streaming short answers
// back to back on four of the pool's eight slots keeps them while another
// tenant, newly busy, sends a burst of long streams (the chaos suite's
// slow-readers shape). Between two of the steady tenant's requests its slot
// is free for an instant; without the ramp (admission.tenant_ramp: 0) the
// burst's queued requests took each such slot for a whole long answer, and
// the steady tenant's next request waited for one. With it, the burst gets
// the four free slots and the rest of it waits; every one of the steady
// tenant's requests is served.
func TestSteadyTenantKeepsSlotsDuringBurst(t *testing.T) {
	for _, c := range []struct {
		name string
		ramp time.Duration
	}{{"ramp", 2 * time.Second}, {"no ramp", 0}} {
		t.Run(c.name, func(t *testing.T) {
			burstStarted, steadyRefused := steadyNextToBurst(t, c.ramp)
			t.Logf("burst streams started %d, steady requests refused %d", burstStarted, steadyRefused)
			if c.ramp > 0 {
				if burstStarted > 4 || steadyRefused > 0 {
					t.Fatalf("burst started %d streams (want at most the 4 free slots), steady tenant refused %d times (want 0)",
						burstStarted, steadyRefused)
				}
				return
			}
			// Negative control: the same run takes the steady tenant's slots.
			if burstStarted <= 4 {
				t.Fatalf("without the ramp the burst started only %d streams: the scenario does not discriminate", burstStarted)
			}
		})
	}
}

// steadyNextToBurst runs the scenario on two simulators (eight slots, four
// per backend) and returns how many of the burst's streams started and how
// many of the steady tenant's requests were refused.
func steadyNextToBurst(t *testing.T, ramp time.Duration) (burstStarted int64, steadyRefused int64) {
	var urls []string
	for i := range 2 {
		_, be := simBackend(t, sim.Config{Model: "m1", Seed: int64(i), Slots: 8, DecodeStepBase: 10 * time.Millisecond})
		urls = append(urls, be.URL)
	}
	cfg := testConfig(urls...)
	for i := range cfg.Models[0].Backends {
		cfg.Models[0].Backends[i].MaxConcurrency = 4
	}
	cfg.Retry.HedgeFactor = 0
	cfg.Admission.TenantRamp = config.Duration(ramp)
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-steady", Tenant: "steady"}, {Key: "sk-burst", Tenant: "burst"}}
	srv, _ := startGateway(t, cfg)

	var started atomic.Int64 // burst streams that got their first token
	stream := func(ctx context.Context, key string, maxTokens int, hold <-chan struct{}) (ok bool) {
		body := `{"model":"m1","stream":true,"max_tokens":` + itoa(maxTokens) + `,"messages":[{"role":"user","content":"hello"}]}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return false
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		br := bufio.NewReader(resp.Body)
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "data: ") {
			return false
		}
		if hold != nil {
			started.Add(1)
			select { // a long answer: its slot stays taken until the end
			case <-hold:
			case <-ctx.Done():
			}
			return true
		}
		for {
			line, err := br.ReadString('\n')
			if strings.Contains(line, "[DONE]") {
				return true
			}
			if err != nil {
				return false
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The steady tenant alone first: four streams back to back.
	steady := func(n int) int64 {
		var refused atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n {
					if !stream(ctx, "sk-steady", 3, nil) {
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return refused.Load()
	}
	if r := steady(3); r > 0 {
		t.Fatalf("steady tenant alone refused %d times", r)
	}

	// The burst lands next to it, and the steady tenant goes on.
	hold := make(chan struct{})
	var bursts sync.WaitGroup
	for range 12 {
		bursts.Go(func() { stream(ctx, "sk-burst", 2000, hold) })
	}
	refused := steady(10)
	burstStarted = started.Load()
	close(hold)
	cancel()
	bursts.Wait()
	return burstStarted, refused
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
