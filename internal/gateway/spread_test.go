package gateway

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestBurstSpreadAcrossUnevenAdaptiveLimits: a burst that lands before any
// backend's batch size is known is spread over the pool, not piled onto
// the backend whose adaptive limit happened to grow furthest. The limits
// are the ones the chaos suite's slow-readers row measured on three
// identical simulators when 28 long requests arrived at once: 18, 7 and 7
// (held there: windows that never close). Before, routing filled the two
// small limits and sent the other 14 to the third backend; now no backend
// is sent more than half again its peers' median limit (10), and the rest
// wait in the gateway's queue, under its deadlines, instead of in one
// engine's.
func TestBurstSpreadAcrossUnevenAdaptiveLimits(t *testing.T) {
	var sims []*sim.Server
	var urls []string
	for i := range 3 {
		// Slots enough for any placement, so every stream sent starts at
		// once and each request's fate is known without waiting on a
		// generation: the count each simulator received is the spread.
		s, be := simBackend(t, sim.Config{Model: "m1", Seed: int64(i), Slots: 32, DecodeStepBase: 20 * time.Millisecond})
		sims, urls = append(sims, s), append(urls, be.URL)
	}
	cfg := testConfig(urls...)
	cfg.Models[0].Policy = "p2c_ewma"
	cfg.Retry.HedgeFactor = 0 // one attempt per request: the simulators' counts are the picks
	srv, gw := startGateway(t, cfg)
	for i, b := range gw.Runtime().Pools["m1"].Backends {
		b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{
			Initial: []int{18, 7, 7}[i], Window: time.Hour, MinSamples: 1 << 30, NoProbe: true}))
	}

	const burst = 28
	body := `{"model":"m1","messages":[{"role":"user","content":"a long answer"}],"max_tokens":1000,"stream":true}`
	started := make(chan bool, burst)
	var open sync.WaitGroup
	stop := make(chan struct{})
	for range burst {
		open.Go(func() {
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				started <- false
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				started <- false // refused by the queue: it never reached a backend
				return
			}
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			started <- strings.HasPrefix(line, "data: ")
			<-stop // hold the stream open: its backend slot stays taken
		})
	}
	defer func() { close(stop); open.Wait() }()
	n := 0
	for range burst {
		if <-started {
			n++
		}
	}

	var got []int64
	var total int64
	for _, s := range sims {
		r := s.Stats().Requests
		got, total = append(got, r), total+r
	}
	if total != int64(n) {
		t.Fatalf("simulators received %v (%d), but %d streams started", got, total, n)
	}
	for i, r := range got {
		if r > 10 {
			pool := gw.Runtime().Pools["m1"].Backends
			peer := endpoint.PeerLimit(pool, time.Now())
			var bounds []string
			for _, b := range pool {
				l, slots := b.ScrapedCap()
				bounds = append(bounds, fmt.Sprintf("limit %d among %d (scraped %d/%d, inflight %d)", b.Limit(), b.LimitAmong(peer), l, slots, b.Inflight()))
			}
			t.Errorf("backend %d was sent %d of the burst (all: %v); want at most 10, half again its peers' median limit of 7; peer %v, %v", i, r, got, peer, bounds)
		}
	}
	if total < 24 {
		t.Errorf("only %d of the burst reached the backends (%v); want the 24 their bounded limits allow", total, got)
	}
}
