package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/sim"
)

// firstThenOthers picks first while it is untried, then the others in order.
type firstThenOthers struct {
	first  *endpoint.Backend
	others []*endpoint.Backend
}

func (s firstThenOthers) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	for _, b := range append([]*endpoint.Backend{s.first}, s.others...) {
		untried := true
		for _, t := range tried {
			untried = untried && t != b
		}
		if untried {
			return b, nil
		}
	}
	return nil, proxy.ErrNoBackend
}

// TestStreamAfterFirstSlowAnswerIsHedgedAtOnce: three real simulators; one
// turns a hundred times slower after a history of fast answers, and has
// given one slow answer since. Its typical latency and the median of its
// last three answers are still fast, and no stream waits there (Stalled
// is 0), so before, the next stream sent to it waited the whole hedge
// delay and then a healthy first token (chaos backend-slow's p99). Its
// last answer took more than twice the delay: the stream is hedged at
// once and served by a healthy simulator. Time is injected: the clock
// stands still and the hedge timer fires only when asked for at once.
func TestStreamAfterFirstSlowAnswerIsHedgedAtOnce(t *testing.T) {
	engine := sim.Config{Slots: 8, DecodeStepBase: 5 * time.Millisecond, PrefillTokensPerSec: 200000}
	slowEngine := engine
	slowEngine.DecodeStepBase *= 100
	slowEngine.PrefillTokensPerSec /= 100
	serve := func(h http.Handler) *endpoint.Backend {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	newSim := func(c sim.Config) *sim.Server {
		s := sim.New(c)
		t.Cleanup(s.Close)
		return s
	}
	fast, slow := newSim(engine), newSim(slowEngine)
	var turned atomic.Bool
	turning := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if turned.Load() {
			slow.ServeHTTP(w, r)
			return
		}
		fast.ServeHTTP(w, r)
	}))
	healthyA, healthyB := serve(newSim(engine)), serve(newSim(engine))

	now := time.Unix(1000, 0)
	const after = 50 * time.Millisecond
	for _, b := range []*endpoint.Backend{turning, healthyA, healthyB} {
		for range 5 {
			b.FirstTokenOf(now, 20*time.Millisecond, endpoint.Wait{})
		}
	}
	turned.Store(true)
	turning.FirstTokenOf(now, 400*time.Millisecond, endpoint.Wait{}) // its first slow answer
	if turning.TypicalLatency() >= after || min(turning.Latency(now), turning.RecentLatency()) >= after || turning.Stalled(now) > 0 {
		t.Fatalf("setup: typical %v, settled %v, stalled %v; want all under the %v delay",
			turning.TypicalLatency(), min(turning.Latency(now), turning.RecentLatency()), turning.Stalled(now), after)
	}

	delays := make(chan time.Duration, 4)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport, Attempts: 2, Hedges: proxy.NewHedgeBudget(0.1, 1),
		Now: func() time.Time { return now },
		After: func(d time.Duration) <-chan time.Time {
			delays <- d
			if d > 0 {
				return nil // the delay never passes: only an at-once hedge starts
			}
			fire := make(chan time.Time, 1)
			fire <- now
			return fire
		},
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	raw := `{"model":"sim-model","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"stream":true}`
	body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Release()
	w := httptest.NewRecorder()
	res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
		Body: body, Peek: openai.Peek{Model: "sim-model", Stream: true}, ServeModel: "sim-model", HedgeAfter: after, KVNeed: 1234},
		firstThenOthers{first: turning, others: []*endpoint.Backend{healthyA, healthyB}})
	if d := <-delays; d != 0 {
		t.Errorf("hedge delay %v on a backend whose last answer took 400ms, want 0 (at once)", d)
	}
	if res.Err != nil || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "[DONE]") {
		t.Fatalf("status %d, err %v, body %q", w.Code, res.Err, w.Body.String())
	}
	if res.Backend == turning || res.Hedge != proxy.HedgeWon {
		t.Fatalf("served by %s (hedge outcome %d); want a healthy simulator's stream by an at-once hedge", res.Backend.Name(), res.Hedge)
	}
	// The loser's wait ends withdrawn (its goroutine, maybe after Forward
	// returned), the winner's at its first token: then neither backend
	// still counts the stream's KV need (branch kvneed).
	hang := time.Now().Add(time.Minute)
	for _, b := range []*endpoint.Backend{turning, healthyA, healthyB} {
		streams, kv := b.WaitingStreams()
		for ; streams > 0 && time.Now().Before(hang); streams, kv = b.WaitingStreams() {
			time.Sleep(time.Millisecond)
		}
		if streams != 0 || kv != 0 {
			t.Errorf("%s: %d streams of KV need %d still waiting; want none", b.Name(), streams, kv)
		}
	}
}
