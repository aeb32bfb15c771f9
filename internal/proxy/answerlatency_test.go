package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// fixedSelector sends every request to one backend.
type fixedSelector struct{ b *endpoint.Backend }

func (s fixedSelector) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	for _, t := range tried {
		if t == s.b {
			return nil, proxy.ErrNoBackend
		}
	}
	return s.b, nil
}

// seqRand is a deterministic routing.Rand: 0, 1, 2, ... modulo n.
type seqRand struct{ i int }

func (r *seqRand) IntN(n int) int { r.i++; return r.i % n }

// TestLongNonStreamedAnswersAreNoOutlier: three real simulators, one
// serving long non-streamed answers (64 tokens, a whole generation of 64
// decode steps before its first byte), one serving streams, one ten times
// slower serving streams. The long answers are learned per output token,
// so p2c still sends their backend its share, while the slow one is still
// ejected (no pick while the others have room). Taken whole, the long
// answers read 64 times a first token and their backend was an outlier
// too.
func TestLongNonStreamedAnswersAreNoOutlier(t *testing.T) {
	engine := sim.Config{Slots: 8, DecodeStepBase: 5 * time.Millisecond, PrefillTokensPerSec: 200000}
	slowEngine := engine
	slowEngine.DecodeStepBase *= 10
	slowEngine.PrefillTokensPerSec /= 10
	backend := func(name string, c sim.Config) *endpoint.Backend {
		s := sim.New(c)
		srv := httptest.NewServer(s)
		t.Cleanup(func() { srv.Close(); s.Close() })
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	long, streams, slow := backend("long", engine), backend("streams", engine), backend("slow", slowEngine)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	bodies := proxy.NewBodyPool(nil)
	send := func(b *endpoint.Backend, stream bool, tokens int) {
		raw := fmt.Sprintf(`{"model":"sim-model","messages":[{"role":"user","content":"hello there"}],"max_tokens":%d,"stream":%t}`, tokens, stream)
		body, err := bodies.ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
		if err != nil {
			t.Error(err)
			return
		}
		defer body.Release()
		w := httptest.NewRecorder()
		res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: body, Peek: openai.Peek{Model: "sim-model", Stream: stream}, ServeModel: "sim-model"}, fixedSelector{b})
		if res.Err != nil || w.Code != http.StatusOK {
			t.Errorf("%s: status %d, err %v", b.Name(), w.Code, res.Err)
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { send(long, false, 64) })
		wg.Go(func() { send(streams, true, 4) })
		wg.Go(func() { send(slow, true, 4) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	at := time.Now()
	picker, err := routing.New("p2c_ewma", &seqRand{}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	picks := map[*endpoint.Backend]int{}
	const n = 300
	for range n {
		picks[routing.Select(at, picker, &routing.Request{}, []*endpoint.Backend{long, streams, slow}, nil)]++
	}
	state := func(b *endpoint.Backend) string {
		return fmt.Sprintf("%d picks (latency %v, recent %v, typical %v)", picks[b], b.Latency(at), b.RecentLatency(), b.TypicalLatency())
	}
	if picks[long] < n/4 || picks[slow] > 0 {
		t.Fatalf("long non-streamed answers: %s; streams: %s; ten times slower: %s. Want the long answers' backend "+
			"picked at least a quarter of the time and the slow one never",
			state(long), state(streams), state(slow))
	}
}
