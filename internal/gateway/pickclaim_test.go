package gateway

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// holdingPicker prefers want and holds its first two picks until both
// were made: two requests stand between their pick and their claim at
// once, deterministically.
type holdingPicker struct {
	want    *endpoint.Backend
	mu      sync.Mutex
	held    int
	arrived chan struct{}
	release chan struct{}
}

func (p *holdingPicker) Pick(_ *routing.Request, cands []*endpoint.Backend) *endpoint.Backend {
	p.mu.Lock()
	p.held++
	hold := p.held <= 2
	p.mu.Unlock()
	if hold {
		p.arrived <- struct{}{}
		<-p.release
	}
	for _, b := range cands {
		if b == p.want {
			return b
		}
	}
	return cands[0]
}

// TestPickAndClaimShareTheBound: a backend is picked while its in-flight
// count is under its peer bound (limits 18, 7, 7: backend 0 is bounded
// by 1.5x the median, 10), and its slot is claimed within that same
// bound. Two requests picked while it had 9 in flight, held between the
// pick and the claim, used to both get a slot (the claim checked
// Limit(), 18): 11 on a backend bounded by 10. Now one gets it and the
// other picks again: backend 1's last slot.
func TestPickAndClaimShareTheBound(t *testing.T) {
	var urls []string
	for i := range 3 {
		_, be := simBackend(t, sim.Config{Model: "m1", Seed: int64(i), Slots: 32, DecodeStepBase: 20 * time.Millisecond})
		urls = append(urls, be.URL)
	}
	cfg := testConfig(urls...)
	cfg.Retry.HedgeFactor = 0 // one attempt per request
	srv, gw := startGateway(t, cfg)
	pool := gw.Runtime().Pools["m1"]
	bs := pool.Backends
	for i, b := range bs {
		b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{
			Initial: []int{18, 7, 7}[i], Window: time.Hour, MinSamples: 1 << 30, NoProbe: true}))
	}
	if l := bs[0].LimitAmong(endpoint.PeerLimit(bs, time.Now())); l != 10 {
		t.Fatalf("backend 0's peer bound is %d, want 10", l)
	}
	// Backend 0 one below its bound, backend 1 one below its limit,
	// backend 2 full: both requests see room on 0 and 1 and pick 0.
	hold := func(b *endpoint.Backend, n int) {
		for range n {
			if !b.Acquire() {
				t.Fatal("could not take a slot")
			}
			t.Cleanup(b.Abandon)
		}
	}
	hold(bs[0], 9)
	hold(bs[1], 6)
	hold(bs[2], 7)
	picker := &holdingPicker{want: bs[0], arrived: make(chan struct{}), release: make(chan struct{})}
	pool.picker = picker

	body := `{"model":"m1","messages":[{"role":"user","content":"a long answer"}],"max_tokens":1000,"stream":true}`
	started := make(chan bool, 2)
	stop := make(chan struct{})
	var open sync.WaitGroup
	for range 2 {
		open.Go(func() {
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				started <- false
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				started <- false
				return
			}
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			started <- strings.HasPrefix(line, "data: ")
			<-stop // the stream holds its slot
		})
	}
	defer func() { close(stop); open.Wait() }()
	<-picker.arrived
	<-picker.arrived // both picked, neither claimed
	close(picker.release)
	for range 2 {
		if !<-started {
			t.Error("a request did not start its stream")
		}
	}
	if got := bs[0].Inflight(); got > 10 {
		t.Errorf("backend 0 has %d in flight, past its peer bound of 10 (backend 1: %d)", got, bs[1].Inflight())
	}
	if got0, got1 := bs[0].Inflight(), bs[1].Inflight(); got0 != 10 || got1 != 7 {
		t.Errorf("in flight %d and %d on backends 0 and 1, want 10 and 7: the loser of the race picks backend 1", got0, got1)
	}
}

// TestLostClaimAfterSlotWaitWaitsAgain: a first pick that waited for a
// slot (every backend at its bound) and lost the slot it woke for to
// another request between pick and claim waits again, within what is
// left of its wait, rather than being refused as saturated: before the
// bound was claimed (Claim) the claim could not fail there.
func TestLostClaimAfterSlotWaitWaitsAgain(t *testing.T) {
	var urls []string
	for range 3 {
		be := httptest.NewServer(http.NotFoundHandler()) // never sent to
		t.Cleanup(be.Close)
		urls = append(urls, be.URL)
	}
	_, gw := startGateway(t, testConfig(urls...))
	pool := gw.Runtime().Pools["m1"]
	bs := pool.Backends
	for i, b := range bs {
		b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{
			Initial: []int{18, 7, 7}[i], Window: time.Hour, MinSamples: 1 << 30, NoProbe: true}))
	}
	peer := endpoint.PeerLimit(bs, time.Now())
	for i, n := range []int{10, 7, 7} { // each at its bound
		for range n {
			if !bs[i].AcquireAmong(peer) {
				t.Fatalf("could not take a slot on backend %d", i)
			}
			t.Cleanup(bs[i].Abandon)
		}
	}
	s := &selector{pool: pool, req: routing.Request{Model: "m1"}, ctx: t.Context(), slotWait: time.Hour}
	// waitFor runs s.Select, frees a slot on b once the pick waits on it,
	// and returns the pick.
	waitFor := func(b *endpoint.Backend) (*endpoint.Backend, error) {
		type picked struct {
			b   *endpoint.Backend
			err error
		}
		// A wait before left its Freed channels on the backends it did
		// not take: a release with nobody waiting clears them, so
		// Awaited below says this pick waits.
		for _, o := range bs {
			o.Abandon()
			if !o.AcquireAmong(0) {
				t.Fatal("could not take a slot back")
			}
		}
		got := make(chan picked, 1)
		go func() {
			b, err := s.Select(nil)
			got <- picked{b, err}
		}()
		for !b.Awaited() { // the pick found no room and waits on Freed
			select {
			case p := <-got: // it did not wait
				return p.b, p.err
			default:
			}
			runtime.Gosched()
		}
		b.Abandon() // one slot frees (the Cleanup's Abandon is one too many: take it back)
		t.Cleanup(func() { b.AcquireAmong(0) })
		p := <-got
		return p.b, p.err
	}
	b, err := waitFor(bs[0])
	if b != bs[0] || err != nil || s.waited != slotWaitServed {
		t.Fatalf("first pick = %v, %v (waited %v); want backend 0 after a wait", b, err, s.waited)
	}
	if !bs[0].AcquireAmong(peer) { // another request takes that slot first
		t.Fatal("could not take the freed slot")
	}
	t.Cleanup(bs[0].Abandon)
	if s.Claim(bs[0]) {
		t.Fatalf("claim won on backend 0 with %d in flight, past its bound of 10", bs[0].Inflight())
	}
	b, err = waitFor(bs[1])
	if b != bs[1] || err != nil {
		t.Fatalf("pick after the lost claim = %v, %v; want backend 1 after waiting again", b, err)
	}
}
