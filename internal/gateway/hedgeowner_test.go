package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestShutdownJoinsHeadlessHedgeLoser: hedge -> shutdown. A backend that
// turns hung (it accepts streams and never answers a head) loses a hedge
// race; its first attempt runs on past the request's end, toward its own
// first-token bound (here a minute), so the hung backend can be charged the
// timeout that ejects it. That goroutine belongs to the gateway's
// Background: shutdown's join (Wait) counts it, cancels it when the grace
// is over (here: at once), and returns only once it has ended. Afterwards
// no proxy goroutine is left, the hung backend's slot is free and it was
// charged nothing for being cut by shutdown.
func TestShutdownJoinsHeadlessHedgeLoser(t *testing.T) {
	var stall atomic.Bool
	fast := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	t.Cleanup(fast.Close)
	quit := make(chan struct{})
	var cut atomic.Bool // the hung request's cancellation reached the backend
	turned := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !stall.Load() {
			fast.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		select { // no head: the attempt stays headless
		case <-r.Context().Done():
			cut.Store(true)
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); turned.Close() })
	healthy := httptest.NewServer(fast)
	t.Cleanup(healthy.Close)

	cfg := testConfig(turned.URL, healthy.URL) // round_robin: turned, healthy, turned, ...
	cfg.Timeouts.FirstByte = config.Duration(time.Minute)
	cfg.Timeouts.StreamIdle = config.Duration(time.Minute)
	cfg.Admission.MaxWait = config.Duration(15 * time.Second) // first-token bound: 4 x 15s
	bg := NewBackground()
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Background = bg })
	for range 2 { // both learn a typical time to first token
		if resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody); !strings.HasSuffix(readAll(t, resp), "data: [DONE]\n\n") {
			t.Fatal("warm-up stream did not complete")
		}
	}
	stall.Store(true)
	resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("status %d body %q; want the healthy backend's stream by a hedge", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("X-Sluice-Backend"), strings.TrimPrefix(healthy.URL, "http://"); got != want {
		t.Fatalf("served by %q, want the hedge's backend %q", got, want)
	}
	hung := gw.Runtime().Pools["m1"].Backends[0]
	if hung.Inflight() != 1 || cut.Load() {
		t.Fatalf("hung backend in flight %d, cut %v after the request; want its headless attempt running on", hung.Inflight(), cut.Load())
	}

	srv.Close() // the server has stopped: no handler runs, the loser does
	shut, cancel := context.WithCancel(context.Background())
	cancel() // the grace is over
	if err := bg.Wait(shut); !errors.Is(err, ErrBackgroundCut) {
		t.Fatalf("Wait = %v; want ErrBackgroundCut (the running-on loser cancelled)", err)
	}
	// Wait joined the loser's goroutine: its call has ended.
	if hung.Inflight() != 0 || hung.Failures() != 0 {
		t.Fatalf("hung backend in flight %d failures %d after shutdown; want its slot free and no failure (shutdown is not its fault)",
			hung.Inflight(), hung.Failures())
	}
	waitFor(t, func() bool { return len(goroutinesIn("sluice/internal/proxy.")) == 0 })
	waitFor(t, cut.Load) // the backend learns of the cancel from the closed connection
}

// goroutinesIn lists the stacks of goroutines with a frame in pkg
// (goleak-style, limited to the code under test: the test's own servers
// still run).
func goroutinesIn(pkg string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, pkg) {
			out = append(out, g)
		}
	}
	return out
}
