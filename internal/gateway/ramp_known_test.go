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
	rig := startRampRig(t, func(cfg *config.Config) {
		cfg.Models[0].Backends[0].MaxConcurrency = 8
	}, nil)
	streams := rig.streams(t)
	<-streams.open("sk-a")
	<-streams.open("sk-b")
	burst := make([]<-chan struct{}, 5)
	for i := range burst {
		burst[i] = streams.open("sk-b")
	}
	for _, first := range burst {
		<-first
	}
	streams.end()
	if started, refused := streams.started.Load(), streams.refused.Load(); started != 7 || refused != 0 {
		t.Fatalf("streams started %d, refused %d; want all 7 started (A 1, B 6 of 8 static slots)", started, refused)
	}
}

// rampRig is a gateway in front of a simulated engine of 16 slots (10 ms
// decode steps) for tenants a (sk-a) and b (sk-b), without hedging: the
// pool the tenant ramp's tests grow a newcomer on.
type rampRig struct {
	sim *sim.Server
	srv *httptest.Server // the gateway
	gw  *Gateway
}

// startRampRig starts a rampRig; editCfg changes the config and editDeps
// the gateway's Deps before the start, each when not nil.
func startRampRig(t *testing.T, editCfg func(*config.Config), editDeps func(*Deps)) rampRig {
	t.Helper()
	return startRampRigOn(t, sim.Config{Model: "m1", Seed: 1, Slots: 16, DecodeStepBase: 10 * time.Millisecond}, editCfg, editDeps)
}

// startRampRigOn is startRampRig with an engine of simCfg.
func startRampRigOn(t *testing.T, simCfg sim.Config, editCfg func(*config.Config), editDeps func(*Deps)) rampRig {
	t.Helper()
	return startRampRigVia(t, simCfg, nil, editCfg, editDeps)
}

// startRampRigVia is startRampRigOn with the engine's handler wrapped by
// wrap, when not nil (another engine's metrics over the simulator's).
func startRampRigVia(t *testing.T, simCfg sim.Config, wrap func(*sim.Server) http.Handler, editCfg func(*config.Config), editDeps func(*Deps)) rampRig {
	t.Helper()
	s := sim.New(simCfg)
	t.Cleanup(s.Close)
	var h http.Handler = s
	if wrap != nil {
		h = wrap(s)
	}
	be := httptest.NewServer(h)
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Retry.HedgeFactor = 0
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-a", Tenant: "a"}, {Key: "sk-b", Tenant: "b"}}
	if editCfg != nil {
		editCfg(cfg)
	}
	srv, gw := startGatewayWith(t, cfg, editDeps)
	return rampRig{sim: s, srv: srv, gw: gw}
}

// rampStreams are long streams (2,000 tokens) a test opens on a rampRig:
// each, once its first token came, holds its slot until end. The counts
// say how many started (a 200 and a first event) and how many were
// refused while the test still ran.
type rampStreams struct {
	t                *testing.T
	url              string
	ctx              context.Context
	cancel           context.CancelFunc
	hold             chan struct{}
	release          func()
	wg               sync.WaitGroup
	started, refused atomic.Int64
}

// streams is a set of streams on the rig, every one of them ended
// before the test is (a failure too): none logs after it.
func (r rampRig) streams(t *testing.T) *rampStreams {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rampStreams{t: t, url: r.srv.URL, ctx: ctx, cancel: cancel, hold: make(chan struct{})}
	s.release = sync.OnceFunc(func() { close(s.hold) })
	t.Cleanup(s.end)
	return s
}

// open starts a long stream for key; the channel returned closes once
// its first token came (or it was refused).
func (s *rampStreams) open(key string) <-chan struct{} {
	first := make(chan struct{})
	signal := sync.OnceFunc(func() { close(first) })
	s.wg.Go(func() {
		defer signal()
		body := `{"model":"m1","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"hello"}]}`
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.url+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			s.t.Error(err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if s.ctx.Err() == nil {
				s.refused.Add(1)
			}
			return
		}
		defer resp.Body.Close()
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "data: ") {
			if s.ctx.Err() == nil {
				s.t.Logf("%s: %d %s", key, resp.StatusCode, line)
				s.refused.Add(1)
			}
			return
		}
		s.started.Add(1)
		signal()
		select {
		case <-s.hold:
		case <-s.ctx.Done():
		}
	})
	return first
}

// end lets every stream go and waits until all have ended.
func (s *rampStreams) end() {
	s.release()
	s.cancel()
	s.wg.Wait()
}
