package gateway

import (
	"bufio"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

const streamChatBody = `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}`

// hungBackend reads each request and never answers it (headFirst: after
// sending a 200 event-stream head), until the client goes or the test ends.
func hungBackend(t *testing.T, headFirst bool) *httptest.Server {
	quit := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if headFirst {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); s.Close() })
	return s
}

// TestStreamCutAtFirstTokenBound: a stream from a backend that never
// starts is cut at first_token_factor x the interactive objective (here
// 4 x 100ms), far inside first_byte, with a 504 naming that bound, and the
// backend is charged a failure; a non-streaming request to the same
// backend is not: its first byte is its whole answer, so only first_byte
// (1s) ends it.
func TestStreamCutAtFirstTokenBound(t *testing.T) {
	be := hungBackend(t, false)
	cfg := testConfig(be.URL)
	cfg.Timeouts.FirstByte = config.Duration(time.Second)
	cfg.Admission.MaxWait = config.Duration(100 * time.Millisecond)
	cfg.Retry.Attempts = 1
	srv, gw := startGateway(t, cfg)

	resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("stream: status %d, body %s; want 504", resp.StatusCode, body)
	}
	if _, code, msg := apiErr(t, body); code != "upstream_timeout" || !strings.Contains(msg, "time-to-first-token") {
		t.Fatalf("stream: code %q message %q; want upstream_timeout naming the first-token bound", code, msg)
	}
	b := gw.Runtime().Pools["m1"].Backends[0]
	if b.Failures() != 1 {
		t.Fatalf("backend failures = %d, want 1: a hung stream is the backend's fault", b.Failures())
	}
	if l := b.Latency(time.Now()); l < 300*time.Millisecond {
		t.Fatalf("latency estimate %v after a cut at 400ms; want the wait learned", l)
	}

	resp = post(t, srv.URL+"/v1/chat/completions", chatBody)
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("non-stream: status %d, body %s; want 504", resp.StatusCode, body)
	}
	if _, _, msg := apiErr(t, body); !strings.Contains(msg, "first-byte timeout") {
		t.Fatalf("non-stream: message %q; want the first-byte timeout, not the stream bound", msg)
	}
}

// TestStreamHeadWithoutTokenCutAtFirstTokenBound: a backend that sends its
// stream head at once (as vLLM does) and then no token is cut at the same
// bound, not at stream_idle. The gateway sends a stream's head with its
// first valid event (docs/RELIABILITY.md, "Broken backends"), so nothing
// reached the client: it gets a 504 naming the bound.
func TestStreamHeadWithoutTokenCutAtFirstTokenBound(t *testing.T) {
	be := hungBackend(t, true)
	cfg := testConfig(be.URL)
	cfg.Timeouts.StreamIdle = config.Duration(time.Hour) // only the first-token bound can end it
	cfg.Admission.MaxWait = config.Duration(100 * time.Millisecond)
	srv, gw := startGateway(t, cfg)

	resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "time-to-first-token bound") {
		t.Fatalf("status %d body %q; want a 504 naming the first-token bound", resp.StatusCode, body)
	}
	if f := gw.Runtime().Pools["m1"].Backends[0].Failures(); f != 1 {
		t.Fatalf("backend failures = %d, want 1", f)
	}
}

// TestLatencyLearnedAtFirstToken: a stream's time to first token reaches
// the backend's latency estimate when the token comes, while the stream
// is still open, not when it ends: a backend that turned slow is seen as
// slow before its slow streams finish.
func TestLatencyLearnedAtFirstToken(t *testing.T) {
	_, be := simBackend(t, sim.Config{Model: "m1", DecodeStepBase: 20 * time.Millisecond})
	srv, gw := startGateway(t, testConfig(be.URL))
	b := gw.Runtime().Pools["m1"].Backends[0]

	// 200 tokens at 20ms a step: the stream lasts seconds after its first
	// token; the body is closed after the check, before its end.
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":200,"stream":true}`)
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	waitFor(t, func() bool { return b.Latency(time.Now()) > 0 })
	if b.Inflight() != 1 {
		t.Fatalf("inflight = %d: the stream should still be open", b.Inflight())
	}
}

// TestHedgeServesLateStreamFromAnotherBackend: a stream whose head came
// but whose first token is late (the backend turned slow: here, it stops
// after the head) is hedged to another backend, and the client gets that
// backend's complete stream, counted as a hedge won; the late one is
// cancelled (at the request's end at the latest) and charged its wait, not
// a failure.
//
// The stream that stalls is the first to reach either backend once the
// stall is on (the gateway's probes pass), and the hedges are counted
// from there: a warm-up stream
// whose first token is late on a loaded machine (over the 10 ms hedge
// delay a 1 ms pool learns) is hedged too, rightly, and that hedge, and
// the round-robin turn it took, are not the test's (it saw won = 2).
func TestHedgeServesLateStreamFromAnotherBackend(t *testing.T) {
	var stall atomic.Bool
	stalled := make(chan string, 1) // the backend that stalled, by its host
	fast := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	t.Cleanup(fast.Close)
	quit := make(chan struct{})
	serve := func(w http.ResponseWriter, r *http.Request) {
		// Only a stream stalls, not the gateway's own probes of the backend.
		if r.URL.Path != "/v1/chat/completions" || !stall.CompareAndSwap(true, false) {
			fast.ServeHTTP(w, r)
			return
		}
		stalled <- r.Host
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}
	a := httptest.NewServer(http.HandlerFunc(serve))
	b := httptest.NewServer(http.HandlerFunc(serve))
	t.Cleanup(func() { close(quit); a.Close(); b.Close() })

	cfg := testConfig(a.URL, b.URL) // round_robin: a, b, a, ...
	var reg *prometheus.Registry
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) }) // hedging is on by default
	for range 2 {                                                                                  // both learn a typical time to first token
		if resp := post(t, srv.URL+"/v1/chat/completions", streamChatBody); !strings.HasSuffix(readAll(t, resp), "data: [DONE]\n\n") {
			t.Fatal("warm-up stream did not complete")
		}
	}
	backends := gw.Runtime().Pools["m1"].Backends
	hedges := func(event string) float64 { return metricValueOrZero(t, reg, "sluice_hedges_total", "event", event) }
	var (
		resp              *http.Response
		body, late        string
		wonBefore, rounds = 0.0, 0
	)
	for {
		// A warm-up's hedge that lost ends after its request: settled first.
		waitFor(t, func() bool { return backends[0].Inflight() == 0 && backends[1].Inflight() == 0 })
		wonBefore = hedges("won")
		startedBefore := hedges("started")
		stall.Store(true)
		resp = post(t, srv.URL+"/v1/chat/completions", streamChatBody)
		body = readAll(t, resp)
		late = <-stalled
		rounds++
		// A hedge races in every round (one leg drew the stall); it is
		// counted when the request is recorded, after its last byte.
		waitFor(t, func() bool { return hedges("started") > startedBefore })
		// On a loaded machine the stream's own first token can be later
		// than the hedge delay: its hedge is sent, reaches the other
		// backend first and draws the stall, and the stream (unstalled)
		// wins: a hedge lost, not the case under test (it saw "won not
		// found"). That round is run again, a bounded number of times.
		lostToStall := resp.StatusCode == http.StatusOK && hedges("won") == wonBefore &&
			resp.Header.Get("X-Sluice-Backend") != late
		if !lostToStall || rounds == 10 {
			break
		}
		t.Logf("round %d: the stream was late itself and its hedge drew the stall; again", rounds)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "data: [DONE]\n\n") || strings.Contains(body, `"error"`) {
		t.Fatalf("status %d body %q; want the healthy backend's complete stream", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Sluice-Backend"); got == late || got == "" {
		t.Fatalf("served by %q, the backend that stalled; want the hedge's", got)
	}
	for _, be := range backends {
		waitFor(t, func() bool { return be.Inflight() == 0 })
		if be.Failures() != 0 {
			t.Fatalf("backend %s got %d failures; losing a race is not one", be.Name(), be.Failures())
		}
	}
	if got := hedges("won") - wonBefore; got != 1 {
		t.Fatalf("sluice_hedges_total{event=won} rose by %v in round %d; want 1", got, rounds)
	}
}

// TestNonStreamNeverCountsAsStalled: a non-streaming request's first byte
// is its whole answer, seconds long for a long generation; it must not make
// its backend look stalled to p2c (that starved backends serving long
// non-streamed answers, and slow readers of them, of new requests).
func TestNonStreamNeverCountsAsStalled(t *testing.T) {
	be := hungBackend(t, false)
	srv, gw := startGateway(t, testConfig(be.URL))
	b := gw.Runtime().Pools["m1"].Backends[0]
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, func() bool { return b.Inflight() == 1 })
	if s := b.Stalled(time.Now().Add(time.Minute)); s != 0 {
		t.Fatalf("Stalled = %v with only a non-streaming request waiting; want 0", s)
	}
	srv.CloseClientConnections()
	<-done
}
